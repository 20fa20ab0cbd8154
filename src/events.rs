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

pub const INTERRUPT: &str = "livetalk-interrupt";
pub const SPEECH: &str = "livetalk-speech";
pub const WORD: &str = "livetalk-word";
/// `avatarbin`'s choice of lip driver (element message): `driver`, `reason`.
pub const DRIVER: &str = "livetalk-driver";

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
        .filter(|s| [INTERRUPT, SPEECH, WORD].contains(&s.name().as_str()))
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
