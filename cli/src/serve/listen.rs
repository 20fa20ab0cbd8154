//! A session's ear: the browser's microphone, published by the page as a gstwebrtc-api
//! producer on the server's signalling server, received by `webrtcsrc` and run through
//! `silerovad ! whisperasr` in a pipeline of its own (`listen-<session>`), so that the
//! microphone comes and goes without touching the avatar's pipeline.
//!
//! The listener only reports what it hears ([`Heard`]) on a channel; the session decides what
//! to do with it (answer, barge in). [`BargeIn`] and [`SilenceWatch`] are pure and tested
//! here; their clock is the listening pipeline's running time.

use std::time::Duration;

use anyhow::{Context, anyhow};
use gst::prelude::*;
use gstlivetalk::events::{self, VadStatus};
use tokio::sync::mpsc;

use super::Config;

/// What the listener reports to its session.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// The microphone's audio reaches the recogniser.
    Listening,
    /// The VAD's start or end of speech, at this running time of the listening pipeline.
    Vad { start: bool, at: gst::ClockTime },
    /// A transcript: `is_final` false for a piece of an utterance that goes on (longer than
    /// whisper's 30 s window).
    Transcript { text: String, is_final: bool },
    /// No sound above the floor for [`SilenceWatch::LIMIT`] of microphone audio (a muted or
    /// dead microphone), once until sound comes back.
    Silent,
    /// The listener failed or the microphone went away; it is stopped.
    Ended(String),
}

/// The listening pipeline of one session.
pub struct Listener {
    pipeline: gst::Pipeline,
    pub peer: String,
    /// Unique in the process: tells this listener from a later one of the same session.
    pub serial: u64,
}

impl Listener {
    /// Connects to the microphone producer `peer` on the server's signalling server and
    /// starts listening; what is heard goes to `heard` (from GStreamer's threads).
    pub fn start(
        cfg: &Config,
        session: &str,
        peer: &str,
        heard: mpsc::UnboundedSender<Heard>,
    ) -> anyhow::Result<Listener> {
        let pipeline = gst::Pipeline::with_name(&format!("listen-{session}"));
        let src = gst::ElementFactory::make("webrtcsrc")
            .name("mic")
            .build()
            .context("webrtcsrc (gst-plugin-webrtc) is not registered")?;
        // The server's ICE settings, not webrtcsrc's default public STUN server.
        src.set_property("stun-server", cfg.stun.as_deref());
        if !cfg.turn.is_empty() {
            src.set_property("turn-servers", gst::Array::new(cfg.turn.iter()));
        }
        let signaller = src.property::<glib::Object>("signaller");
        signaller.set_property("uri", cfg.signalling_uri());
        signaller.set_property("producer-peer-id", peer);
        if cfg.listen.is_loopback() {
            // As for webrtcsink: loopback candidates need 127.0.0.1 as a local address.
            signaller.connect("webrtcbin-ready", false, |args| {
                if let Ok(webrtcbin) = args[2].get::<gst::Element>() {
                    let agent = webrtcbin.property::<glib::Object>("ice-agent");
                    agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
                }
                None
            });
        }
        let ear = gst::parse::bin_from_description(
            &format!(
                "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! \
                 audioconvert ! audioresample ! \
                 audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! \
                 identity name=level ! silerovad min-silence-ms={} ! whisperasr ! \
                 fakesink sync=false async=false",
                cfg.end_of_turn_ms
            ),
            true,
        )?;
        ear.set_property("name", "ear");
        pipeline.add_many([&src, ear.upcast_ref()])?;
        watch_level(&ear, heard.clone())?;

        let ear_sink = ear
            .static_pad("sink")
            .ok_or_else(|| anyhow!("ear without sink"))?;
        let linked = std::sync::atomic::AtomicBool::new(false);
        let pipeline_weak = pipeline.downgrade();
        src.connect_pad_added(move |_, pad| {
            if pad.name().starts_with("audio")
                && !linked.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let _ = pad.link(&ear_sink);
            } else if let Some(p) = pipeline_weak.upgrade() {
                // Video, or a second audio stream: drained.
                if let Ok(sink) = gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .property("async", false)
                    .build()
                {
                    let _ = p.add(&sink);
                    let _ = sink.sync_state_with_parent();
                    if let Some(s) = sink.static_pad("sink") {
                        let _ = pad.link(&s);
                    }
                }
            }
        });

        let bus = pipeline.bus().context("pipeline without a bus")?;
        let tx = heard.clone();
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Element(e) => {
                    if let Some(s) = e.structure() {
                        if let Some((status, at)) = events::parse_vad(s) {
                            let _ = tx.send(Heard::Vad {
                                start: status == VadStatus::Start,
                                at,
                            });
                        } else if let Some(t) = events::parse_transcript(s) {
                            let _ = tx.send(Heard::Transcript {
                                text: t.text,
                                is_final: t.is_final,
                            });
                        }
                    }
                }
                gst::MessageView::Error(e) => {
                    let why = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    let _ = tx.send(Heard::Ended(format!(
                        "the microphone failed: {}{why}",
                        e.error()
                    )));
                }
                gst::MessageView::Eos(_) => {
                    let _ = tx.send(Heard::Ended("the microphone stream ended".into()));
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
        if pipeline.set_state(gst::State::Playing).is_err() {
            let _ = pipeline.set_state(gst::State::Null);
            anyhow::bail!("the listening pipeline does not start (silerovad, whisperasr models?)");
        }
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Listener {
            pipeline,
            peer: peer.to_string(),
            serial: SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The listening pipeline's running time now.
    pub fn running_time(&self) -> Option<gst::ClockTime> {
        self.pipeline.current_running_time()
    }

    /// Stops listening. Blocking (the pipeline goes to NULL).
    pub fn stop(self) {
        if let Some(bus) = self.pipeline.bus() {
            bus.unset_sync_handler();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Watches the microphone's level before the VAD: `Listening` at the first buffer,
/// `Silent` when [`SilenceWatch`] says so.
fn watch_level(ear: &gst::Bin, heard: mpsc::UnboundedSender<Heard>) -> anyhow::Result<()> {
    let pad = ear
        .by_name("level")
        .and_then(|e| e.static_pad("src"))
        .ok_or_else(|| anyhow!("ear without its level point"))?;
    let watch = std::sync::Mutex::new((false, SilenceWatch::default()));
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(b)) = &info.data
            && let Ok(m) = b.map_readable()
        {
            let samples: Vec<f32> = m
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let mut w = watch.lock().unwrap();
            if !w.0 {
                w.0 = true;
                let _ = heard.send(Heard::Listening);
            }
            if w.1.push(&samples, 16_000) {
                let _ = heard.send(Heard::Silent);
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Says when a microphone has been silent (no sample above [`SilenceWatch::FLOOR`]) for
/// [`SilenceWatch::LIMIT`] of its audio: once, then again only after sound came back.
#[derive(Debug, Default)]
pub struct SilenceWatch {
    quiet_samples: u64,
    told: bool,
}

impl SilenceWatch {
    /// About -80 dBFS: below any real microphone's noise floor.
    pub const FLOOR: f32 = 1e-4;
    pub const LIMIT: Duration = Duration::from_secs(5);

    /// Takes the next samples; true when the silence has just reached the limit.
    pub fn push(&mut self, samples: &[f32], rate: u32) -> bool {
        if samples.iter().any(|s| s.abs() > Self::FLOOR) {
            self.quiet_samples = 0;
            self.told = false;
            return false;
        }
        self.quiet_samples += samples.len() as u64;
        let limit = Self::LIMIT.as_millis() as u64 * rate as u64 / 1000;
        if !self.told && self.quiet_samples >= limit {
            self.told = true;
            return true;
        }
        false
    }
}

/// Barge-in: user speech that has lasted `min` while the avatar talks interrupts it, once per
/// utterance. Times are the listening pipeline's running time.
#[derive(Debug)]
pub struct BargeIn {
    min: gst::ClockTime,
    speech_since: Option<gst::ClockTime>,
    done: bool,
}

impl BargeIn {
    pub fn new(min: Duration) -> BargeIn {
        BargeIn {
            min: gst::ClockTime::from_nseconds(min.as_nanos() as u64),
            speech_since: None,
            done: false,
        }
    }

    /// A VAD start or end.
    pub fn vad(&mut self, start: bool, at: gst::ClockTime) {
        if start {
            self.speech_since = Some(at);
            self.done = false;
        } else {
            self.speech_since = None;
        }
    }

    /// When to look again (the running time at which the current speech reaches `min`), if
    /// an utterance is going on and has not barged in yet.
    pub fn next_check(&self) -> Option<gst::ClockTime> {
        match (self.speech_since, self.done) {
            (Some(t), false) => Some(t + self.min),
            _ => None,
        }
    }

    /// Whether to interrupt now: the speech has lasted `min` and the avatar talks. True once
    /// per utterance.
    pub fn due(&mut self, now: gst::ClockTime, avatar_talking: bool) -> bool {
        let Some(t) = self.next_check() else {
            return false;
        };
        if now >= t && avatar_talking {
            self.done = true;
            return true;
        }
        false
    }
}

/// The text of one spoken turn: the pieces of a long utterance joined, bounded (the oldest
/// text goes first past `MAX_CHARS`).
#[derive(Debug, Default)]
pub struct Turn {
    text: String,
}

impl Turn {
    pub const MAX_CHARS: usize = 4000;

    /// Adds a transcript; returns the whole turn when it is final (and starts a new one).
    pub fn add(&mut self, text: &str, is_final: bool) -> Option<String> {
        let text = text.trim();
        if !text.is_empty() {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            self.text.push_str(text);
            if self.text.len() > Self::MAX_CHARS {
                let mut cut = self.text.len() - Self::MAX_CHARS;
                while !self.text.is_char_boundary(cut) {
                    cut += 1;
                }
                self.text.drain(..cut);
            }
        }
        if !is_final {
            return None;
        }
        let turn = std::mem::take(&mut self.text);
        (!turn.is_empty()).then_some(turn)
    }
}

use gst::glib;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> gst::ClockTime {
        gst::ClockTime::from_mseconds(v)
    }

    #[test]
    fn barge_in_needs_the_minimum_speech_while_the_avatar_talks() {
        let mut b = BargeIn::new(Duration::from_millis(300));
        assert_eq!(b.next_check(), None);
        assert!(!b.due(ms(10_000), true), "no speech, no barge-in");
        b.vad(true, ms(1000));
        assert_eq!(b.next_check(), Some(ms(1300)));
        assert!(!b.due(ms(1299), true), "too short yet");
        assert!(
            !b.due(ms(1300), false),
            "the avatar is quiet: nothing to interrupt"
        );
        assert!(b.due(ms(1400), true));
        assert!(!b.due(ms(1500), true), "once per utterance");
        assert_eq!(b.next_check(), None);
        // A cough: speech that ends before the minimum never interrupts.
        b.vad(false, ms(2000));
        b.vad(true, ms(3000));
        b.vad(false, ms(3200));
        assert!(!b.due(ms(3400), true));
        // The next utterance may barge in again.
        b.vad(true, ms(5000));
        assert!(b.due(ms(5300), true));
    }

    #[test]
    fn silence_is_told_once_after_the_limit_and_again_after_sound() {
        let mut w = SilenceWatch::default();
        let quiet = vec![0.0f32; 1600]; // 100 ms at 16 kHz
        let told: Vec<bool> = (0..50).map(|_| w.push(&quiet, 16_000)).collect();
        assert_eq!(told.iter().filter(|t| **t).count(), 1);
        assert_eq!(
            told.iter().position(|t| *t),
            Some(49),
            "after 5 s, not before"
        );
        assert!(!w.push(&quiet, 16_000), "told once");
        let mut loud = quiet.clone();
        loud[7] = 0.01;
        assert!(!w.push(&loud, 16_000));
        let again = (0..50).filter(|_| w.push(&quiet, 16_000)).count();
        assert_eq!(again, 1);
        // Low noise above the floor is a working microphone.
        let mut w = SilenceWatch::default();
        let hiss = vec![3e-4f32; 1600];
        assert!((0..100).all(|_| !w.push(&hiss, 16_000)));
    }

    #[test]
    fn a_turn_joins_pieces_and_is_bounded() {
        let mut t = Turn::default();
        assert_eq!(t.add("  ", true), None, "nothing heard, no turn");
        assert_eq!(t.add("Hello", false), None);
        assert_eq!(t.add(" there. ", true), Some("Hello there.".into()));
        assert_eq!(t.add("Next", true), Some("Next".into()));
        let piece = "é".repeat(1000); // 2000 bytes
        for _ in 0..5 {
            assert_eq!(t.add(&piece, false), None);
        }
        let all = t.add("end", true).unwrap();
        assert!(
            all.len() <= Turn::MAX_CHARS && all.ends_with("end"),
            "{}",
            all.len()
        );
    }
}
