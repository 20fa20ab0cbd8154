//! The custom events and messages every livetalk element, the server and the page share.
//!
//! - `livetalk-interrupt`: serialized downstream event. Drop pending speech; what was queued
//!   before it becomes idle (GAP) output.
//! - `livetalk-speech`: element message on the bus and serialized downstream event at the
//!   start and end of each sentence: `status` ("start" | "end"), `text`, `running-time`.
//! - `livetalk-word`: a word boundary: `text`, `offset` and `duration` (clock time from the
//!   sentence start), `running-time`.
//! - `livetalk-driver`: element message of `avatarbin` when it goes to READY: `driver`
//!   ("musetalk" | "lipwarp") and `reason`.
//! - `livetalk-vad`: bus message and serialized downstream event when voice activity starts
//!   or ends: `status` ("start" | "end"), `running-time` (of the first speech sample for
//!   "start", of the sample after the last for "end").
//! - `livetalk-transcript`: bus message and serialized downstream event with what was said:
//!   `text`, `final` (false for a piece of an utterance that goes on), `start` and `end`
//!   (running times of the transcribed audio).

pub const INTERRUPT: &str = "livetalk-interrupt";
pub const SPEECH: &str = "livetalk-speech";
pub const WORD: &str = "livetalk-word";
/// `avatarbin`'s choice of lip driver (element message): `driver`, `reason`.
pub const DRIVER: &str = "livetalk-driver";
pub const VAD: &str = "livetalk-vad";
pub const TRANSCRIPT: &str = "livetalk-transcript";

/// The `livetalk-interrupt` event.
pub fn interrupt_event() -> gst::Event {
    gst::event::CustomDownstream::new(gst::Structure::new_empty(INTERRUPT))
}

/// Whether an event is `livetalk-interrupt`.
pub fn is_interrupt(event: &gst::EventRef) -> bool {
    event.type_() == gst::EventType::CustomDownstream
        && event.structure().is_some_and(|s| s.name() == INTERRUPT)
}

/// `status` of a `livetalk-speech` event or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechStatus {
    Start,
    End,
}

impl SpeechStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpeechStatus::Start => "start",
            SpeechStatus::End => "end",
        }
    }
}

/// The structure of a `livetalk-speech` event or message: `status`, `text`, `running-time`
/// (of the sentence's first sample for "start", of the sample after its last for "end"), and
/// for "end" `interrupted` (true when `flush` cut the sentence short).
pub fn speech_structure(
    status: SpeechStatus,
    text: &str,
    running_time: gst::ClockTime,
    interrupted: bool,
) -> gst::Structure {
    let mut b = gst::Structure::builder(SPEECH)
        .field("status", status.as_str())
        .field("text", text)
        .field("running-time", running_time);
    if status == SpeechStatus::End {
        b = b.field("interrupted", interrupted);
    }
    b.build()
}

/// The serialized downstream `livetalk-speech` event.
pub fn speech_event(
    status: SpeechStatus,
    text: &str,
    running_time: gst::ClockTime,
    interrupted: bool,
) -> gst::Event {
    gst::event::CustomDownstream::new(speech_structure(status, text, running_time, interrupted))
}

/// The `livetalk-speech` element message for the bus.
pub fn speech_message(
    src: &impl gst::prelude::IsA<gst::Object>,
    status: SpeechStatus,
    text: &str,
    running_time: gst::ClockTime,
    interrupted: bool,
) -> gst::Message {
    gst::message::Element::builder(speech_structure(status, text, running_time, interrupted))
        .src(src)
        .build()
}

/// The structure of a `livetalk-word` event or message: `text`, `offset` and `duration`
/// (from the sentence's first sample), `running-time` (of the word's first sample).
pub fn word_structure(
    text: &str,
    offset: gst::ClockTime,
    duration: gst::ClockTime,
    running_time: gst::ClockTime,
) -> gst::Structure {
    gst::Structure::builder(WORD)
        .field("text", text)
        .field("offset", offset)
        .field("duration", duration)
        .field("running-time", running_time)
        .build()
}

/// The serialized downstream `livetalk-word` event.
pub fn word_event(
    text: &str,
    offset: gst::ClockTime,
    duration: gst::ClockTime,
    running_time: gst::ClockTime,
) -> gst::Event {
    gst::event::CustomDownstream::new(word_structure(text, offset, duration, running_time))
}

/// The `livetalk-word` element message for the bus.
pub fn word_message(
    src: &impl gst::prelude::IsA<gst::Object>,
    text: &str,
    offset: gst::ClockTime,
    duration: gst::ClockTime,
    running_time: gst::ClockTime,
) -> gst::Message {
    gst::message::Element::builder(word_structure(text, offset, duration, running_time))
        .src(src)
        .build()
}

/// Whether an event is a `livetalk-speech` or `livetalk-word` event; returns its structure.
pub fn livetalk_structure(event: &gst::EventRef) -> Option<&gst::StructureRef> {
    if event.type_() != gst::EventType::CustomDownstream {
        return None;
    }
    event
        .structure()
        .filter(|s| [INTERRUPT, SPEECH, WORD, VAD, TRANSCRIPT].contains(&s.name().as_str()))
}

/// `status` of a `livetalk-vad` event or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadStatus {
    Start,
    End,
}

impl VadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VadStatus::Start => "start",
            VadStatus::End => "end",
        }
    }
}

/// The structure of a `livetalk-vad` event or message.
pub fn vad_structure(status: VadStatus, running_time: gst::ClockTime) -> gst::Structure {
    gst::Structure::builder(VAD)
        .field("status", status.as_str())
        .field("running-time", running_time)
        .build()
}

/// The serialized downstream `livetalk-vad` event.
pub fn vad_event(status: VadStatus, running_time: gst::ClockTime) -> gst::Event {
    gst::event::CustomDownstream::new(vad_structure(status, running_time))
}

/// The `livetalk-vad` element message for the bus.
pub fn vad_message(
    src: &impl gst::prelude::IsA<gst::Object>,
    status: VadStatus,
    running_time: gst::ClockTime,
) -> gst::Message {
    gst::message::Element::builder(vad_structure(status, running_time))
        .src(src)
        .build()
}

/// Reads a `livetalk-vad` structure (from an event or a message): status and running time.
pub fn parse_vad(s: &gst::StructureRef) -> Option<(VadStatus, gst::ClockTime)> {
    if s.name() != VAD {
        return None;
    }
    let status = match s.get::<&str>("status").ok()? {
        "start" => VadStatus::Start,
        "end" => VadStatus::End,
        _ => return None,
    };
    Some((status, s.get::<gst::ClockTime>("running-time").ok()?))
}

/// A transcript as `livetalk-transcript` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub text: String,
    /// False for a piece of an utterance that goes on (utterances longer than the model's
    /// window are transcribed in pieces).
    pub is_final: bool,
    /// Running time of the first transcribed sample.
    pub start: gst::ClockTime,
    /// Running time of the sample after the last.
    pub end: gst::ClockTime,
}

/// The structure of a `livetalk-transcript` event or message.
pub fn transcript_structure(t: &Transcript) -> gst::Structure {
    gst::Structure::builder(TRANSCRIPT)
        .field("text", t.text.as_str())
        .field("final", t.is_final)
        .field("start", t.start)
        .field("end", t.end)
        .build()
}

/// The serialized downstream `livetalk-transcript` event.
pub fn transcript_event(t: &Transcript) -> gst::Event {
    gst::event::CustomDownstream::new(transcript_structure(t))
}

/// The `livetalk-transcript` element message for the bus.
pub fn transcript_message(
    src: &impl gst::prelude::IsA<gst::Object>,
    t: &Transcript,
) -> gst::Message {
    gst::message::Element::builder(transcript_structure(t))
        .src(src)
        .build()
}

/// Reads a `livetalk-transcript` structure (from an event or a message).
pub fn parse_transcript(s: &gst::StructureRef) -> Option<Transcript> {
    if s.name() != TRANSCRIPT {
        return None;
    }
    Some(Transcript {
        text: s.get::<&str>("text").ok()?.to_string(),
        is_final: s.get::<bool>("final").ok()?,
        start: s.get::<gst::ClockTime>("start").ok()?,
        end: s.get::<gst::ClockTime>("end").ok()?,
    })
}

/// The `livetalk-driver` element message: which lip driver `avatarbin` runs, and why.
pub fn driver_message(
    src: &impl gst::prelude::IsA<gst::Object>,
    driver: &str,
    reason: &str,
) -> gst::Message {
    gst::message::Element::builder(
        gst::Structure::builder(DRIVER)
            .field("driver", driver)
            .field("reason", reason)
            .build(),
    )
    .src(src)
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vad_and_transcript_round_trip() {
        gst::init().unwrap();
        let ev = vad_event(VadStatus::End, gst::ClockTime::from_mseconds(1234));
        let s = livetalk_structure(&ev).unwrap();
        assert_eq!(
            parse_vad(s),
            Some((VadStatus::End, gst::ClockTime::from_mseconds(1234)))
        );
        assert_eq!(parse_transcript(s), None);
        let t = Transcript {
            text: "Hello there.".into(),
            is_final: true,
            start: gst::ClockTime::from_mseconds(100),
            end: gst::ClockTime::from_mseconds(900),
        };
        let ev = transcript_event(&t);
        let s = livetalk_structure(&ev).unwrap();
        assert_eq!(parse_transcript(s), Some(t));
        assert_eq!(parse_vad(s), None);
    }
}
