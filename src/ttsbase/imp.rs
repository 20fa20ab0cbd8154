// SPDX-License-Identifier: MPL-2.0
//
// Glue around the playout state machine (`crate::tts::playout`): the application's calls go
// into it, the synthesis thread takes its jobs and feeds it audio, `create` asks it for the
// next buffer and turns its events into GStreamer events, messages and notifications.
//
// Locks: `settings`, `engine`, `worker` and `shared.inner` are each taken alone; no code
// path holds two of them at once. `shared.inner` (the playout and the stream's running-time
// base) is shared by the application threads (signals), the streaming thread (`create`) and
// the synthesis thread; it is never held while pushing, posting, notifying a property,
// calling the engine, or joining the synthesis thread. The engine may take its own locks
// (a subclass's settings) from the synthesis thread, always without `shared.inner`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use crate::events::{self, SpeechStatus};
use crate::tts::playout::{self, Chunk, Config, Playout, PlayoutEvent, Refused};
use crate::tts::{CancelCheck, Engine, SynthError, SynthSink, WordBoundary};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ttsbase",
        gst::DebugColorFlags::empty(),
        Some("livetalk text-to-speech source base"),
    )
});

const DEFAULT_IS_LIVE: bool = true;
const DEFAULT_GAP_SILENCE: bool = true;

#[derive(Debug, Clone)]
struct Settings {
    text: Option<String>,
    is_live: bool,
    gap_silence: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            text: None,
            is_live: DEFAULT_IS_LIVE,
            gap_silence: DEFAULT_GAP_SILENCE,
        }
    }
}

/// What the element, its synthesis thread and its streaming thread share.
struct Inner {
    playout: Playout,
    /// Running time of sample 0 (live: when the first buffer was made).
    base: Option<gst::ClockTime>,
    /// BaseSrc `unlock`: a waiting `create` returns FLUSHING.
    unlocked: bool,
    /// `stop`: the synthesis thread returns.
    quit: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Signalled on every change the synthesis thread or a waiting `create` may wait for.
    cond: Condvar,
}

/// Sample offsets to running times.
#[derive(Debug, Clone, Copy)]
struct Timing {
    base: gst::ClockTime,
    rate: u32,
}

impl Timing {
    fn time_of(&self, offset: u64) -> gst::ClockTime {
        self.base
            + gst::ClockTime::from_nseconds(
                (offset as u128 * 1_000_000_000 / self.rate as u128) as u64,
            )
    }
}

pub struct TtsBaseSrc {
    settings: Mutex<Settings>,
    engine: Mutex<Option<Arc<dyn Engine>>>,
    shared: Arc<Shared>,
    /// The synthesis thread of the running stream, joined on stop.
    worker: Mutex<Option<JoinHandle<()>>>,
    speaking: AtomicBool,
}

impl Default for TtsBaseSrc {
    fn default() -> Self {
        Self {
            settings: Mutex::new(Settings::default()),
            engine: Mutex::new(None),
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    playout: Playout::new(Config::new(1, DEFAULT_IS_LIVE)),
                    base: None,
                    unlocked: false,
                    quit: false,
                }),
                cond: Condvar::new(),
            }),
            worker: Mutex::new(None),
            speaking: AtomicBool::new(false),
        }
    }
}

impl TtsBaseSrc {
    pub(super) fn set_engine(&self, engine: Arc<dyn Engine>) {
        *self.engine.lock().unwrap() = Some(engine);
    }

    fn queued(&self, what: &str, pieces: usize) {
        if pieces > 0 {
            gst::debug!(CAT, imp = self, "{what}: queued {pieces} piece(s)");
            self.shared.cond.notify_all();
        }
    }

    /// `speak(text)`: the whole text, cut into sentences. False when nothing was queued
    /// (no speakable text, or the queue is full), with a warning saying which.
    fn speak(&self, text: &str) -> bool {
        let result = self.shared.inner.lock().unwrap().playout.speak(text);
        match result {
            Ok(pieces) => {
                self.queued("speak", pieces);
                true
            }
            Err(Refused::NothingToSpeak(clean)) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Read,
                    (
                        "Nothing to speak in the text given to speak() ({} characters)",
                        text.chars().count()
                    ),
                    ["text after clean-up: {clean:?}"]
                );
                false
            }
            Err(Refused::QueueFull { queued }) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("The text queue is full ({queued} pieces wait): speak() refused"),
                    [
                        "at most {} pieces wait to play; flush() empties the queue",
                        playout::MAX_QUEUED
                    ]
                );
                false
            }
        }
    }

    /// `push-fragment(text)`: a piece of a streamed answer.
    fn push_fragment(&self, fragment: &str) {
        let (pieces, dropped) = {
            let mut inner = self.shared.inner.lock().unwrap();
            let before = inner.playout.dropped();
            let n = inner.playout.push_fragment(fragment);
            (n, inner.playout.dropped() - before)
        };
        if dropped > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::NoSpaceLeft,
                ("The text queue is full: {dropped} streamed sentence(s) dropped")
            );
        }
        self.queued("push-fragment", pieces);
    }

    /// `push-audio(label, samples)`: S16LE mono audio at the source's rate, played as it is,
    /// queued like a sentence (its speech events carry `label`).
    fn push_audio(&self, label: &str, bytes: &[u8]) -> bool {
        let samples: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let pieces = self
            .shared
            .inner
            .lock()
            .unwrap()
            .playout
            .push_audio(label, samples);
        self.queued("push-audio", pieces);
        pieces > 0
    }

    /// `end-fragments()`: the stream is over, speak what is left of it.
    fn end_fragments(&self) {
        let pieces = self.shared.inner.lock().unwrap().playout.end_fragments();
        self.queued("end-fragments", pieces);
    }

    /// `flush()`: drop queued and in-flight speech now; the next buffer cuts the sentence
    /// playing and sends `livetalk-interrupt` before it.
    fn flush(&self) {
        let dropped = self.shared.inner.lock().unwrap().playout.flush();
        self.shared.cond.notify_all();
        gst::info!(
            CAT,
            imp = self,
            "flush: dropped {dropped} queued sentence(s)"
        );
    }

    fn set_speaking(&self, speaking: bool) {
        if self.speaking.swap(speaking, Ordering::SeqCst) != speaking {
            self.obj().notify("speaking");
        }
    }

    fn spawn_worker(&self, engine: Arc<dyn Engine>) -> Result<(), gst::ErrorMessage> {
        let shared = self.shared.clone();
        let element = self.obj().downgrade();
        // Named after the element (the system keeps 15 bytes of it).
        let name = format!("tts:{}", self.obj().name());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker(shared, engine, element))
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ("Could not start the synthesis thread: {e}")
                )
            })?;
        *self.worker.lock().unwrap() = Some(handle);
        Ok(())
    }

    fn ensure_segment(&self) {
        let obj = self.obj();
        let pad = obj.src_pad();
        if pad.sticky_event::<gst::event::Segment>(0).is_none() {
            // BaseSrc sends its segment after the first `create` returns: a custom event sent
            // from the first `create` must not go before it.
            let segment = obj.segment();
            let _ = pad.push_event(gst::event::Segment::new(&segment));
        }
    }

    /// Turns the playout's events into downstream events, bus messages, warnings and the
    /// `speaking` notification, in that order. Called without locks.
    fn send(&self, playout_events: Vec<PlayoutEvent>, t: Timing) {
        let obj = self.obj();
        let mut downstream = Vec::new();
        let mut messages = Vec::new();
        let mut skipped = Vec::new();
        let mut speaking = None;
        for ev in playout_events {
            match ev {
                PlayoutEvent::SpeechStart { text, offset } => {
                    let at = t.time_of(offset);
                    gst::debug!(CAT, imp = self, "sentence starts at {at}: {text:?}");
                    let status = SpeechStatus::Start;
                    downstream.push(events::speech_event(status, &text, at, false));
                    messages.push(events::speech_message(&*obj, status, &text, at, false));
                }
                PlayoutEvent::SpeechEnd {
                    text,
                    offset,
                    interrupted,
                } => {
                    let at = t.time_of(offset);
                    let status = SpeechStatus::End;
                    downstream.push(events::speech_event(status, &text, at, interrupted));
                    messages.push(events::speech_message(
                        &*obj,
                        status,
                        &text,
                        at,
                        interrupted,
                    ));
                }
                PlayoutEvent::Word {
                    text,
                    sentence_offset,
                    offset_ns,
                    duration_ns,
                } => {
                    let offset = gst::ClockTime::from_nseconds(offset_ns);
                    let duration = gst::ClockTime::from_nseconds(duration_ns);
                    let at = t.time_of(sentence_offset) + offset;
                    downstream.push(events::word_event(&text, offset, duration, at));
                    messages.push(events::word_message(&*obj, &text, offset, duration, at));
                }
                PlayoutEvent::Interrupt => downstream.push(events::interrupt_event()),
                PlayoutEvent::Skipped { text, reason } => skipped.push((text, reason)),
                PlayoutEvent::Speaking(s) => speaking = Some(s),
            }
        }
        if !downstream.is_empty() {
            self.ensure_segment();
            let pad = obj.src_pad();
            for ev in downstream {
                if !pad.push_event(ev) {
                    gst::debug!(CAT, imp = self, "downstream did not take an event");
                }
            }
        }
        for msg in messages {
            let _ = obj.post_message(msg);
        }
        for (text, reason) in skipped {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("Could not synthesize a sentence, skipped: {reason}"),
                ["sentence: {text:?}"]
            );
        }
        if let Some(speaking) = speaking {
            self.set_speaking(speaking);
        }
    }

    fn make_buffer(&self, t: Timing, offset: u64, samples: &[i16], gap: bool) -> gst::Buffer {
        let n = samples.len() as u64;
        let pts = t.time_of(offset);
        let end = t.time_of(offset + n);
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(pts);
            b.set_duration(end - pts);
            b.set_offset(offset);
            b.set_offset_end(offset + n);
            if offset == 0 {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
            if gap {
                b.set_flags(gst::BufferFlags::GAP);
            }
        }
        buffer
    }
}

/// The sink the synthesis thread gives an engine for one job.
struct Sink<'a> {
    shared: &'a Arc<Shared>,
    id: u64,
    text: &'a str,
    element: &'a glib::WeakRef<super::TtsBaseSrc>,
    samples: usize,
}

impl SynthSink for Sink<'_> {
    fn audio(&mut self, samples: &[i16]) {
        self.samples += samples.len();
        self.shared
            .inner
            .lock()
            .unwrap()
            .playout
            .audio(self.id, samples);
        self.shared.cond.notify_all();
    }

    fn word(&mut self, word: WordBoundary) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .playout
            .word(self.id, word);
    }

    fn warning(&mut self, message: &str) {
        if let Some(element) = self.element.upgrade() {
            gst::element_warning!(
                element,
                gst::ResourceError::Read,
                ("{message}"),
                ["sentence: {:?}", self.text]
            );
        }
    }

    fn debug(&mut self, message: &str) {
        gst::debug!(CAT, "{message}");
    }

    fn cancelled(&self) -> bool {
        is_cancelled(self.shared, self.id)
    }

    fn cancel_check(&self) -> Option<CancelCheck> {
        let (shared, id) = (self.shared.clone(), self.id);
        Some(Arc::new(move || is_cancelled(&shared, id)))
    }
}

fn is_cancelled(shared: &Shared, id: u64) -> bool {
    let inner = shared.inner.lock().unwrap();
    inner.quit || !inner.playout.is_wanted(id)
}

/// The synthesis thread: takes the playout's jobs one by one until `stop`.
fn worker(shared: Arc<Shared>, engine: Arc<dyn Engine>, element: glib::WeakRef<super::TtsBaseSrc>) {
    loop {
        let job = {
            let mut inner = shared.inner.lock().unwrap();
            loop {
                if inner.quit {
                    return;
                }
                if let Some(job) = inner.playout.next_job() {
                    break job;
                }
                inner = shared.cond.wait(inner).unwrap();
            }
        };
        let mut sink = Sink {
            shared: &shared,
            id: job.id,
            text: &job.text,
            element: &element,
            samples: 0,
        };
        let started = std::time::Instant::now();
        let result = engine.synthesize(&job.text, &mut sink);
        gst::debug!(
            CAT,
            "synthesized {} samples in {:?} ({}): {:?}",
            sink.samples,
            started.elapsed(),
            match &result {
                Ok(()) => "done".to_string(),
                Err(e) => e.to_string(),
            },
            job.text
        );
        let result = match result {
            Ok(()) => Ok(()),
            Err(SynthError::Cancelled) => Err(None),
            Err(SynthError::Failed(reason)) => Err(Some(reason)),
        };
        shared
            .inner
            .lock()
            .unwrap()
            .playout
            .finished(job.id, result);
        shared.cond.notify_all();
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TtsBaseSrc {
    const NAME: &'static str = "GstTtsBaseSrc";
    const ABSTRACT: bool = true;
    type Type = super::TtsBaseSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for TtsBaseSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("text")
                    .nick("Text")
                    .blurb("Text spoken when the element starts (cut into sentences like speak())")
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb(
                        "Live: real-time audio, GAP silence while idle. Not live: speak the \
                         queue as fast as possible, then EOS (offline rendering)",
                    )
                    .default_value(DEFAULT_IS_LIVE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("gap-silence")
                    .nick("GAP silence")
                    .blurb(
                        "Flag the silence between sentences as GAP, so that downstream elements \
                         skip work on it. Set false when the audio goes straight to an encoder \
                         that drops GAP buffers (avenc_aac for FLV/RTMP, MP4): silence then \
                         stays in the stream",
                    )
                    .default_value(DEFAULT_GAP_SILENCE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("speaking")
                    .nick("Speaking")
                    .blurb("Whether speech is playing or queued to play, not idle (notifies)")
                    .default_value(false)
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            let text_signal = |name: &'static str, f: fn(&TtsBaseSrc, &str)| {
                glib::subclass::Signal::builder(name)
                    .param_types([String::static_type()])
                    .action()
                    .class_handler(move |args| {
                        let obj = args[0].get::<super::TtsBaseSrc>().expect("signal arg");
                        let text = args[1].get::<Option<String>>().ok().flatten();
                        f(obj.imp(), text.as_deref().unwrap_or(""));
                        None
                    })
                    .build()
            };
            let plain_signal = |name: &'static str, f: fn(&TtsBaseSrc)| {
                glib::subclass::Signal::builder(name)
                    .action()
                    .class_handler(move |args| {
                        let obj = args[0].get::<super::TtsBaseSrc>().expect("signal arg");
                        f(obj.imp());
                        None
                    })
                    .build()
            };
            vec![
                glib::subclass::Signal::builder("speak")
                    .param_types([String::static_type()])
                    .return_type::<bool>()
                    .action()
                    .class_handler(|args| {
                        let obj = args[0].get::<super::TtsBaseSrc>().expect("signal arg");
                        let text = args[1].get::<Option<String>>().ok().flatten();
                        Some(obj.imp().speak(text.as_deref().unwrap_or("")).to_value())
                    })
                    .build(),
                text_signal("push-fragment", TtsBaseSrc::push_fragment),
                plain_signal("end-fragments", TtsBaseSrc::end_fragments),
                plain_signal("flush", TtsBaseSrc::flush),
                glib::subclass::Signal::builder("push-audio")
                    .param_types([String::static_type(), glib::Bytes::static_type()])
                    .return_type::<bool>()
                    .action()
                    .class_handler(|args| {
                        let obj = args[0].get::<super::TtsBaseSrc>().expect("signal arg");
                        let label = args[1].get::<Option<String>>().ok().flatten();
                        let bytes = args[2].get::<Option<glib::Bytes>>().ok().flatten();
                        let ok = bytes.is_some_and(|b| {
                            obj.imp().push_audio(label.as_deref().unwrap_or(""), &b)
                        });
                        Some(ok.to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "text" => s.text = value.get().expect("type checked"),
            "is-live" => {
                s.is_live = value.get().expect("type checked");
                let live = s.is_live;
                drop(s);
                // BaseSrc reads it when going to PAUSED, before `start`.
                self.obj().set_live(live);
            }
            "gap-silence" => s.gap_silence = value.get().expect("type checked"),
            _ => unimplemented!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "text" => self.settings.lock().unwrap().text.to_value(),
            "is-live" => self.settings.lock().unwrap().is_live.to_value(),
            "gap-silence" => self.settings.lock().unwrap().gap_silence.to_value(),
            "speaking" => self.speaking.load(Ordering::SeqCst).to_value(),
            _ => unimplemented!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_format(gst::Format::Time);
        obj.set_live(DEFAULT_IS_LIVE);
    }
}

impl GstObjectImpl for TtsBaseSrc {}

impl ElementImpl for TtsBaseSrc {
    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("layout", "interleaved")
                .field("channels", 1i32)
                .field("rate", gst::IntRange::new(1i32, i32::MAX))
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for TtsBaseSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let Some(engine) = self.engine.lock().unwrap().clone() else {
            return Err(gst::error_msg!(
                gst::CoreError::StateChange,
                ("No speech engine (the subclass did not set one)")
            ));
        };
        let settings = self.settings.lock().unwrap().clone();
        self.obj().set_live(settings.is_live);
        {
            let mut inner = self.shared.inner.lock().unwrap();
            inner
                .playout
                .start(Config::new(engine.rate(), settings.is_live));
            inner.base = None;
            inner.unlocked = false;
            inner.quit = false;
        }
        self.spawn_worker(engine)?;
        if let Some(text) = settings.text.filter(|t| !t.trim().is_empty()) {
            let _ = self.speak(&text);
        }
        gst::debug!(CAT, imp = self, "started (live: {})", settings.is_live);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.quit = true;
            // Sentences not yet playing go back to the queue: only flush loses text.
            inner.playout.stop();
        }
        self.shared.cond.notify_all();
        // The engine sees its job cancelled and returns soon; wait for it.
        let handle = self.worker.lock().unwrap().take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            gst::error!(CAT, imp = self, "the synthesis thread panicked");
        }
        *self.engine.lock().unwrap() = None;
        self.set_speaking(false);
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let rate = self.engine.lock().unwrap().as_ref().map(|e| e.rate());
        let mut caps = match rate {
            Some(rate) => gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("layout", "interleaved")
                .field("channels", 1i32)
                .field("rate", rate as i32)
                .build(),
            None => self.obj().src_pad().pad_template_caps(),
        };
        if let Some(f) = filter {
            caps = f.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
        }
        Some(caps)
    }

    fn times(&self, buffer: &gst::BufferRef) -> (Option<gst::ClockTime>, Option<gst::ClockTime>) {
        // Live: a buffer goes out when its last sample is due, like a capture source.
        if self.obj().is_live() {
            match (buffer.pts(), buffer.duration()) {
                (Some(pts), Some(d)) => (Some(pts + d), None),
                _ => (None, None),
            }
        } else {
            (None, None)
        }
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let live = self.obj().is_live();
            let latency = if live {
                gst::ClockTime::from_mseconds(playout::BUFFER_MS)
            } else {
                gst::ClockTime::ZERO
            };
            q.set(live, latency, None);
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.unlocked = true;
        self.shared.cond.notify_all();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.shared.inner.lock().unwrap().unlocked = false;
        Ok(())
    }
}

impl PushSrcImpl for TtsBaseSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let gap_silence = self.settings.lock().unwrap().gap_silence;
        let obj = self.obj();
        // Live: the running time now is sample 0's (used on the first buffer only).
        let now = if obj.is_live() {
            obj.clock()
                .zip(obj.base_time())
                .map(|(c, b)| c.time().saturating_sub(b))
        } else {
            None
        };
        let mut inner = self.shared.inner.lock().unwrap();
        if !inner.playout.is_started() {
            return Err(gst::FlowError::Flushing);
        }
        let config = *inner.playout.config();
        if config.live && inner.base.is_none() {
            inner.base = Some(now.unwrap_or(gst::ClockTime::ZERO));
        }
        let t = Timing {
            base: inner.base.unwrap_or(gst::ClockTime::ZERO),
            rate: config.rate,
        };
        let n = config.buffer_samples();
        let mut events = Vec::new();
        loop {
            if inner.unlocked {
                return Err(gst::FlowError::Flushing);
            }
            let step = inner.playout.next(n);
            events.extend(step.events);
            match step.chunk {
                Chunk::Audio {
                    offset,
                    samples,
                    silence,
                } => {
                    // A sentence may have left the look-ahead: room for the synthesis thread.
                    let wake = inner.playout.has_job();
                    drop(inner);
                    if wake {
                        self.shared.cond.notify_all();
                    }
                    let buffer = self.make_buffer(t, offset, &samples, silence && gap_silence);
                    self.send(events, t);
                    return Ok(CreateSuccess::NewBuffer(buffer));
                }
                Chunk::Wait => {
                    // Not live: wait for the synthesis thread (woken first if it has work).
                    if inner.playout.has_job() {
                        self.shared.cond.notify_all();
                    }
                    inner = self.shared.cond.wait(inner).unwrap();
                }
                Chunk::Eos => {
                    drop(inner);
                    self.send(events, t);
                    gst::debug!(CAT, imp = self, "queue spoken: EOS");
                    return Err(gst::FlowError::Eos);
                }
            }
        }
    }
}
