// SPDX-License-Identifier: MPL-2.0

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use crate::events::{self, SpeechStatus};
use crate::tts::segment::{self, Segmenter};
use crate::tts::{Engine, SynthError, SynthSink, WordBoundary};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ttssrc",
        gst::DebugColorFlags::empty(),
        Some("livetalk text-to-speech source base"),
    )
});

const DEFAULT_IS_LIVE: bool = true;
const DEFAULT_GAP_SILENCE: bool = true;
/// Audio per buffer.
const BUFFER_MS: u64 = 20;
/// Sentences synthesized ahead of the one playing.
const LOOKAHEAD: usize = 2;
/// A sentence still arriving (streamed engines) starts playing once this much is there.
const PREBUFFER_MS: u64 = 500;

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

/// One sentence: filled by the synthesis thread, played by the streaming thread.
struct Sentence {
    text: String,
    generation: u64,
    data: Mutex<SentenceData>,
}

#[derive(Default)]
struct SentenceData {
    samples: Vec<i16>,
    words: Vec<WordBoundary>,
    done: bool,
    failed: bool,
}

/// What the element, its synthesis thread and its streaming thread share.
#[derive(Default)]
struct Inner {
    /// Text waiting for synthesis, in order.
    pending: VecDeque<String>,
    /// Streamed fragments not yet cut into a sentence.
    segmenter: Segmenter,
    /// Sentences being or done being synthesized, not yet playing.
    ready: VecDeque<Arc<Sentence>>,
    /// Bumped by `flush` and `stop`: synthesis of an older generation is cancelled.
    generation: u64,
    /// Bumped by `start`/`stop`: a synthesis thread of an older epoch exits.
    epoch: u64,
    /// The streaming thread still has to act on a `flush`.
    flush_pending: bool,
    /// BaseSrc `unlock`: a waiting `create` returns FLUSHING.
    unlocked: bool,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl Shared {
    fn notify(&self) {
        let _guard = self.inner.lock().unwrap();
        self.cond.notify_all();
    }
}

/// The sentence being played.
struct Playing {
    sentence: Arc<Sentence>,
    /// Next sample to play.
    pos: usize,
    /// Running time of its first sample.
    start: gst::ClockTime,
    /// Stream offset (samples) of its first sample.
    start_offset: u64,
    next_word: usize,
}

/// Per-stream state of the streaming thread.
struct State {
    rate: u32,
    is_live: bool,
    /// Samples produced so far.
    offset: u64,
    /// Running time of sample 0 (live: the running time when the first buffer was made).
    base: Option<gst::ClockTime>,
    playing: Option<Playing>,
    /// A sentence finished in the last buffer: its end goes out before the next buffer.
    pending_end: Option<(String, gst::ClockTime)>,
}

impl State {
    fn time_of(&self, offset: u64) -> gst::ClockTime {
        self.base.unwrap_or(gst::ClockTime::ZERO)
            + gst::ClockTime::from_nseconds(
                (offset as u128 * 1_000_000_000 / self.rate as u128) as u64,
            )
    }

    fn samples_of_ns(&self, ns: u64) -> u64 {
        (ns as u128 * self.rate as u128 / 1_000_000_000) as u64
    }
}

/// Events and messages gathered under the locks, sent after they are released.
#[derive(Default)]
struct Out {
    events: Vec<gst::Event>,
    messages: Vec<gst::Message>,
}

pub struct TtsSrc {
    settings: Mutex<Settings>,
    shared: Arc<Shared>,
    engine: Mutex<Option<Arc<dyn Engine>>>,
    state: Mutex<Option<State>>,
    speaking: AtomicBool,
}

impl Default for TtsSrc {
    fn default() -> Self {
        Self {
            settings: Mutex::new(Settings::default()),
            shared: Arc::new(Shared::default()),
            engine: Mutex::new(None),
            state: Mutex::new(None),
            speaking: AtomicBool::new(false),
        }
    }
}

impl TtsSrc {
    pub(super) fn set_engine(&self, engine: Arc<dyn Engine>) {
        *self.engine.lock().unwrap() = Some(engine);
    }

    fn queue_pieces(&self, pieces: Vec<String>) {
        if pieces.is_empty() {
            return;
        }
        gst::debug!(
            CAT,
            imp = self,
            "queued {} piece(s): {pieces:?}",
            pieces.len()
        );
        let mut inner = self.shared.inner.lock().unwrap();
        inner.pending.extend(pieces);
        self.shared.cond.notify_all();
    }

    /// `speak(text)`: the whole text, cut into sentences.
    fn speak(&self, text: &str) {
        let clean = segment::sanitize(text);
        if !segment::is_speakable(&clean) {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                (
                    "Nothing to speak in the text given to speak() ({} characters)",
                    text.chars().count()
                ),
                ["text after clean-up: {clean:?}"]
            );
            return;
        }
        let mut seg = Segmenter::default();
        let mut pieces = seg.push(&clean);
        pieces.extend(seg.finish());
        self.queue_pieces(pieces);
    }

    /// `push-fragment(text)`: a piece of a streamed answer.
    fn push_fragment(&self, fragment: &str) {
        let pieces = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.segmenter.push(fragment)
        };
        self.queue_pieces(pieces);
    }

    /// `end-fragments()`: the stream is over, speak what is left of it.
    fn end_fragments(&self) {
        let pieces = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.segmenter.finish()
        };
        self.queue_pieces(pieces);
    }

    /// `flush()`: drop queued and in-flight speech now; the streaming thread cuts the
    /// sentence playing and sends `livetalk-interrupt` with its next buffer.
    fn flush(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        let dropped = inner.pending.len() + inner.ready.len();
        inner.pending.clear();
        inner.segmenter.clear();
        inner.ready.clear();
        inner.generation += 1;
        inner.flush_pending = true;
        self.shared.cond.notify_all();
        drop(inner);
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

    fn spawn_worker(&self, engine: Arc<dyn Engine>, epoch: u64) {
        let shared = self.shared.clone();
        let element = self.obj().downgrade();
        let spawned = std::thread::Builder::new()
            .name("livetalk-tts".into())
            .spawn(move || worker(shared, engine, element, epoch));
        if let Err(e) = spawned {
            gst::element_imp_error!(
                self,
                gst::CoreError::Thread,
                ("Could not start the synthesis thread: {e}")
            );
        }
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

    fn send(&self, out: Out) {
        if !out.events.is_empty() {
            self.ensure_segment();
            let pad = self.obj().src_pad().clone();
            for ev in out.events {
                if !pad.push_event(ev) {
                    gst::debug!(CAT, imp = self, "downstream did not take an event");
                }
            }
        }
        for msg in out.messages {
            let _ = self.obj().post_message(msg);
        }
    }

    /// Ends the sentence playing, if any (`interrupted` by flush or not).
    fn end_sentence(&self, out: &mut Out, text: &str, at: gst::ClockTime, interrupted: bool) {
        let obj = self.obj();
        out.events.push(events::speech_event(
            SpeechStatus::End,
            text,
            at,
            interrupted,
        ));
        out.messages.push(events::speech_message(
            &*obj,
            SpeechStatus::End,
            text,
            at,
            interrupted,
        ));
    }

    /// Flush and pending-end handling shared by both modes; returns whether a flush was seen.
    fn handle_flush(&self, inner: &mut Inner, state: &mut State, out: &mut Out) -> bool {
        if let Some((text, at)) = state.pending_end.take() {
            self.end_sentence(out, &text, at, false);
        }
        if !inner.flush_pending {
            return false;
        }
        inner.flush_pending = false;
        let now = state.time_of(state.offset);
        if let Some(p) = state.playing.take() {
            self.end_sentence(out, &p.sentence.text, now, true);
        }
        out.events.push(events::interrupt_event());
        true
    }

    /// Starts the next playable sentence, if any. `need` is how many samples make a sentence
    /// still being synthesized playable.
    fn next_sentence(&self, inner: &mut Inner, state: &mut State, out: &mut Out, need: usize) {
        while state.playing.is_none() {
            let Some(front) = inner.ready.front().cloned() else {
                return;
            };
            if front.generation != inner.generation {
                inner.ready.pop_front();
                continue;
            }
            let (playable, skip) = {
                let d = front.data.lock().unwrap();
                (
                    d.done || d.samples.len() >= need,
                    d.done && (d.failed || d.samples.is_empty()),
                )
            };
            if skip {
                inner.ready.pop_front();
                continue;
            }
            if !playable {
                return;
            }
            inner.ready.pop_front();
            self.shared.cond.notify_all(); // room for the synthesis thread
            let start = state.time_of(state.offset);
            let obj = self.obj();
            out.events.push(events::speech_event(
                SpeechStatus::Start,
                &front.text,
                start,
                false,
            ));
            out.messages.push(events::speech_message(
                &*obj,
                SpeechStatus::Start,
                &front.text,
                start,
                false,
            ));
            gst::debug!(
                CAT,
                imp = self,
                "sentence starts at {start}: {:?}",
                front.text
            );
            state.playing = Some(Playing {
                sentence: front,
                pos: 0,
                start,
                start_offset: state.offset,
                next_word: 0,
            });
        }
    }

    /// Takes up to `n` samples of the sentence playing into `buf`; returns how many, and ends
    /// the sentence when it is over.
    fn play(&self, state: &mut State, out: &mut Out, buf: &mut [i16]) -> usize {
        let Some(p) = state.playing.as_mut() else {
            return 0;
        };
        let (k, over) = {
            let d = p.sentence.data.lock().unwrap();
            let k = (d.samples.len() - p.pos).min(buf.len());
            buf[..k].copy_from_slice(&d.samples[p.pos..p.pos + k]);
            p.pos += k;
            // Words that start in what has been played so far.
            while let Some(w) = d.words.get(p.next_word) {
                let at = (w.offset_ns as u128 * state.rate as u128 / 1_000_000_000) as usize;
                if at >= p.pos && !(d.done && p.pos >= d.samples.len()) {
                    break;
                }
                let offset = gst::ClockTime::from_nseconds(w.offset_ns);
                let duration = gst::ClockTime::from_nseconds(w.duration_ns);
                let rt = p.start + offset;
                out.events
                    .push(events::word_event(&w.text, offset, duration, rt));
                out.messages.push(events::word_message(
                    &*self.obj(),
                    &w.text,
                    offset,
                    duration,
                    rt,
                ));
                p.next_word += 1;
            }
            (k, d.done && p.pos >= d.samples.len())
        };
        if over {
            let p = state.playing.take().unwrap();
            let end = state.time_of(p.start_offset + p.pos as u64);
            state.pending_end = Some((p.sentence.text.clone(), end));
        }
        k
    }

    fn make_buffer(&self, state: &mut State, samples: &[i16], gap: bool) -> gst::Buffer {
        let n = samples.len() as u64;
        let pts = state.time_of(state.offset);
        let end = state.time_of(state.offset + n);
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(pts);
            b.set_duration(end - pts);
            b.set_offset(state.offset);
            b.set_offset_end(state.offset + n);
            if state.offset == 0 {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
            if gap && self.settings.lock().unwrap().gap_silence {
                b.set_flags(gst::BufferFlags::GAP);
            }
        }
        state.offset += n;
        buffer
    }

    fn create_live(&self) -> Result<gst::Buffer, gst::FlowError> {
        let mut out = Out::default();
        let mut state_guard = self.state.lock().unwrap();
        let state = state_guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        if state.base.is_none() {
            let obj = self.obj();
            let now = obj
                .clock()
                .zip(obj.base_time())
                .map(|(c, b)| c.time().saturating_sub(b));
            state.base = Some(now.unwrap_or(gst::ClockTime::ZERO));
        }
        let n = (state.rate as u64 * BUFFER_MS / 1000) as usize;
        let need = state.samples_of_ns(PREBUFFER_MS * 1_000_000) as usize;
        let mut samples = vec![0i16; n];
        let (gap, queued);
        {
            let mut inner = self.shared.inner.lock().unwrap();
            if inner.unlocked {
                return Err(gst::FlowError::Flushing);
            }
            self.handle_flush(&mut inner, state, &mut out);
            self.next_sentence(&mut inner, state, &mut out, need);
            gap = state.playing.is_none();
            queued = !inner.pending.is_empty() || !inner.ready.is_empty();
        }
        // Underruns of a sentence still arriving and the tail after its end stay silent.
        self.play(state, &mut out, &mut samples);
        // Still speaking between two sentences while the next one is being synthesized.
        let speaking = !gap || queued;
        let buffer = self.make_buffer(state, &samples, gap);
        drop(state_guard);
        self.send(out);
        self.set_speaking(speaking);
        Ok(buffer)
    }

    fn create_offline(&self) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let mut out = Out::default();
        let mut state_guard = self.state.lock().unwrap();
        let state = state_guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let n = (state.rate as u64 * BUFFER_MS / 1000) as usize;
        let mut inner = self.shared.inner.lock().unwrap();
        loop {
            if inner.unlocked {
                return Err(gst::FlowError::Flushing);
            }
            self.handle_flush(&mut inner, state, &mut out);
            self.next_sentence(&mut inner, state, &mut out, usize::MAX);
            if state.playing.is_some() {
                break;
            }
            if inner.ready.is_empty() && inner.pending.is_empty() {
                let rest = inner.segmenter.finish();
                if rest.is_empty() {
                    // Nothing left: EOS.
                    drop(inner);
                    drop(state_guard);
                    self.send(out);
                    self.set_speaking(false);
                    return Ok(None);
                }
                inner.pending.extend(rest);
                self.shared.cond.notify_all();
            }
            inner = self.shared.cond.wait(inner).unwrap();
        }
        drop(inner);
        let mut samples = vec![0i16; n];
        let k = self.play(state, &mut out, &mut samples);
        samples.truncate(k.max(1));
        let buffer = self.make_buffer(state, &samples, false);
        drop(state_guard);
        self.send(out);
        self.set_speaking(true);
        Ok(Some(buffer))
    }
}

/// The sink the synthesis thread gives an engine.
struct Sink {
    shared: Arc<Shared>,
    sentence: Arc<Sentence>,
    element: glib::WeakRef<super::TtsSrc>,
    epoch: u64,
}

impl SynthSink for Sink {
    fn audio(&mut self, samples: &[i16]) {
        self.sentence
            .data
            .lock()
            .unwrap()
            .samples
            .extend_from_slice(samples);
        self.shared.notify();
    }

    fn word(&mut self, word: WordBoundary) {
        self.sentence.data.lock().unwrap().words.push(word);
    }

    fn warning(&mut self, message: &str) {
        if let Some(element) = self.element.upgrade() {
            gst::element_warning!(
                element,
                gst::ResourceError::Read,
                ("{message}"),
                ["sentence: {:?}", self.sentence.text]
            );
        }
    }

    fn cancelled(&self) -> bool {
        let inner = self.shared.inner.lock().unwrap();
        inner.generation != self.sentence.generation || inner.epoch != self.epoch
    }
}

fn worker(
    shared: Arc<Shared>,
    engine: Arc<dyn Engine>,
    element: glib::WeakRef<super::TtsSrc>,
    epoch: u64,
) {
    loop {
        let sentence = {
            let mut inner = shared.inner.lock().unwrap();
            loop {
                if inner.epoch != epoch {
                    return;
                }
                if !inner.pending.is_empty() && inner.ready.len() < LOOKAHEAD {
                    break;
                }
                inner = shared.cond.wait(inner).unwrap();
            }
            let text = inner.pending.pop_front().unwrap();
            let sentence = Arc::new(Sentence {
                text,
                generation: inner.generation,
                data: Mutex::new(SentenceData::default()),
            });
            inner.ready.push_back(sentence.clone());
            sentence
        };
        let mut sink = Sink {
            shared: shared.clone(),
            sentence: sentence.clone(),
            element: element.clone(),
            epoch,
        };
        let started = std::time::Instant::now();
        let result = engine.synthesize(&sentence.text, &mut sink);
        let (failed, warning) = match result {
            Ok(()) => (false, None),
            Err(SynthError::Cancelled) => (true, None),
            Err(SynthError::Failed(msg)) => (true, (!sink.cancelled()).then_some(msg)),
        };
        {
            let mut d = sentence.data.lock().unwrap();
            d.done = true;
            d.failed = failed;
            gst::debug!(
                CAT,
                "synthesized {} samples in {:?}{}: {:?}",
                d.samples.len(),
                started.elapsed(),
                if failed { " (failed)" } else { "" },
                sentence.text
            );
        }
        shared.notify();
        // Posted once the sentence is marked done: whoever reacts to the warning sees it
        // skipped.
        if let Some(msg) = warning
            && let Some(element) = element.upgrade()
        {
            gst::element_warning!(
                element,
                gst::StreamError::Failed,
                ("Could not synthesize a sentence, skipped: {msg}"),
                ["sentence: {:?}", sentence.text]
            );
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TtsSrc {
    const NAME: &'static str = "GstLiveTalkTtsSrc";
    const ABSTRACT: bool = true;
    type Type = super::TtsSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for TtsSrc {
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
            let text_signal = |name: &'static str, f: fn(&TtsSrc, &str)| {
                glib::subclass::Signal::builder(name)
                    .param_types([String::static_type()])
                    .action()
                    .class_handler(move |args| {
                        let obj = args[0].get::<super::TtsSrc>().expect("signal arg");
                        let text = args[1].get::<Option<String>>().ok().flatten();
                        f(obj.imp(), text.as_deref().unwrap_or(""));
                        None
                    })
                    .build()
            };
            let plain_signal = |name: &'static str, f: fn(&TtsSrc)| {
                glib::subclass::Signal::builder(name)
                    .action()
                    .class_handler(move |args| {
                        let obj = args[0].get::<super::TtsSrc>().expect("signal arg");
                        f(obj.imp());
                        None
                    })
                    .build()
            };
            vec![
                text_signal("speak", TtsSrc::speak),
                text_signal("push-fragment", TtsSrc::push_fragment),
                plain_signal("end-fragments", TtsSrc::end_fragments),
                plain_signal("flush", TtsSrc::flush),
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
                // BaseSrc reads it when going to PAUSED, before `start`.
                self.obj().set_live(s.is_live);
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

impl GstObjectImpl for TtsSrc {}

impl ElementImpl for TtsSrc {
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

impl BaseSrcImpl for TtsSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let Some(engine) = self.engine.lock().unwrap().clone() else {
            return Err(gst::error_msg!(
                gst::CoreError::StateChange,
                ("No speech engine (the subclass did not set one)")
            ));
        };
        let settings = self.settings.lock().unwrap().clone();
        self.obj().set_live(settings.is_live);
        *self.state.lock().unwrap() = Some(State {
            rate: engine.rate(),
            is_live: settings.is_live,
            offset: 0,
            base: None,
            playing: None,
            pending_end: None,
        });
        let epoch = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.epoch += 1;
            inner.unlocked = false;
            inner.flush_pending = false;
            inner.epoch
        };
        self.spawn_worker(engine, epoch);
        if let Some(text) = settings.text.filter(|t| !t.trim().is_empty()) {
            self.speak(&text);
        }
        gst::debug!(CAT, imp = self, "started (live: {})", settings.is_live);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.epoch += 1;
            inner.generation += 1;
            // Sentences not yet playing go back to the queue: only flush loses text.
            let back: Vec<String> = inner.ready.drain(..).map(|s| s.text.clone()).collect();
            for text in back.into_iter().rev() {
                inner.pending.push_front(text);
            }
            self.shared.cond.notify_all();
        }
        *self.state.lock().unwrap() = None;
        *self.engine.lock().unwrap() = None;
        self.set_speaking(false);
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
                gst::ClockTime::from_mseconds(BUFFER_MS)
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

impl PushSrcImpl for TtsSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let live = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.is_live)
            .ok_or(gst::FlowError::Flushing)?;
        if live {
            self.create_live().map(CreateSuccess::NewBuffer)
        } else {
            match self.create_offline()? {
                Some(b) => Ok(CreateSuccess::NewBuffer(b)),
                None => {
                    gst::debug!(CAT, imp = self, "queue spoken: EOS");
                    Err(gst::FlowError::Eos)
                }
            }
        }
    }
}
