// SPDX-License-Identifier: MPL-2.0

// Lock order: `state`, then `session`, `batch` or `counters`; `settings` and `warned_caps`
// are taken alone.
//
// With shared-batching the streaming thread hands each job's encoder windows to the
// process's batching service for this encoder (lipsync::encoder: one service thread runs
// windows of the same length from every whisperfeat element as one batch) and blocks until
// they are back. FLUSH_START and PAUSED->READY set this element's session there flushing
// (taking only `batch`): its windows are cancelled, which wakes the streaming thread, and
// runs are refused until FLUSH_STOP / READY->PAUSED; other elements' windows are untouched.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::audio_intake::{AudioIntake, FrameGrid, Input, Timeline};
use crate::audioclock::{BufferAudio, segment_start, stamp_frame};
use crate::enums;
use crate::events;
use crate::features::{self, FeatureStream, Step, StreamConfig};
use crate::inference::{
    self, Device, Input as ModelInput, InputData, SessionRequest, SharedSession, contract,
};
use crate::lipsync::batcher;
use crate::lipsync::encoder::{self, EncoderModel, EncoderWindow};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "whisperfeat",
        gst::DebugColorFlags::empty(),
        Some("Streaming whisper features for MuseTalk"),
    )
});

const DEFAULT_FPS: gst::Fraction = gst::Fraction::from_integer(25);
const DEFAULT_CONTEXT_LEFT_MS: u32 = 200;
/// Lookahead: 500 ms brings chunk windows to >= 0.97 cosine on every layer (README).
const DEFAULT_CONTEXT_RIGHT_MS: u32 = 500;
/// 16 frames (640 ms): chunk windows stay real time on one core even at a chunk's end.
const DEFAULT_BATCH_FRAMES: u32 = 16;
const DEFAULT_SILENCE_THRESHOLD_DB: f64 = -50.0;
const DEFAULT_PAD_30S: bool = false;
/// Windows shorter than 10 s are padded with silence to 10 s: close to MuseTalk's 30 s padding
/// on short utterances, at a third of its cost.
const DEFAULT_PAD_TO_MS: u32 = 10_000;
const DEFAULT_SHARED_BATCHING: bool = true;
const DEFAULT_MAX_BATCH: u32 = 8;
const DEFAULT_THREADS: u32 = 0;

const AUDIO_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";

/// How the encoder's windows are cut (property `window-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWhisperFeatWindowMode")]
pub enum WindowMode {
    #[enum_value(
        name = "Chunk: from the start of MuseTalk's 30 s chunk to the batch plus the right context (close to MuseTalk's features)",
        nick = "chunk"
    )]
    Chunk = 0,
    #[enum_value(
        name = "Short: the batch with left and right context (cheaper, far from MuseTalk's features)",
        nick = "short"
    )]
    Short = 1,
}

const DEFAULT_WINDOW_MODE: WindowMode = WindowMode::Chunk;

#[derive(Debug, Clone)]
struct Settings {
    window_mode: WindowMode,
    model: Option<PathBuf>,
    device: enums::Device,
    device_id: u32,
    ort_library: Option<PathBuf>,
    threads: u32,
    fps: gst::Fraction,
    context_left_ms: u32,
    context_right_ms: u32,
    batch_frames: u32,
    silence_threshold_db: f64,
    pad_30s: bool,
    pad_to_ms: u32,
    shared_batching: bool,
    max_batch: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window_mode: DEFAULT_WINDOW_MODE,
            model: None,
            device: enums::Device::Cpu,
            device_id: 0,
            ort_library: None,
            threads: DEFAULT_THREADS,
            fps: DEFAULT_FPS,
            context_left_ms: DEFAULT_CONTEXT_LEFT_MS,
            context_right_ms: DEFAULT_CONTEXT_RIGHT_MS,
            batch_frames: DEFAULT_BATCH_FRAMES,
            silence_threshold_db: DEFAULT_SILENCE_THRESHOLD_DB,
            pad_30s: DEFAULT_PAD_30S,
            pad_to_ms: DEFAULT_PAD_TO_MS,
            shared_batching: DEFAULT_SHARED_BATCHING,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

impl Settings {
    fn stream_config(&self) -> StreamConfig {
        StreamConfig {
            window: match self.window_mode {
                WindowMode::Chunk => features::WindowMode::Chunk,
                WindowMode::Short => features::WindowMode::Short,
            },
            fps_n: self.fps.numer() as u64,
            fps_d: self.fps.denom() as u64,
            context_left: features::ms_to_samples(self.context_left_ms as u64),
            context_right: features::ms_to_samples(self.context_right_ms as u64),
            batch_frames: self.batch_frames as usize,
            silence_power: features::db_to_power(self.silence_threshold_db),
            pad_to_30s: self.pad_30s,
            min_mel_frames: self.pad_to_ms as usize / 10,
        }
    }
}

struct State {
    stream: FeatureStream,
    /// Arrival, segments and timestamps of the audio.
    intake: AudioIntake,
}

impl State {
    fn new(cfg: StreamConfig) -> Self {
        let grid = FrameGrid::new(features::SAMPLE_RATE, cfg.fps_n, cfg.fps_d);
        Self {
            stream: FeatureStream::new(cfg),
            intake: AudioIntake::new(grid),
        }
    }

    /// Starts a new frame grid (the old one must have been drained).
    fn restart(&mut self) {
        let cfg = self.stream.config().clone();
        let stats = self.stream.stats.clone();
        self.stream = FeatureStream::new(cfg);
        self.stream.stats = stats;
    }
}

#[derive(Default)]
struct Counters {
    encoder_runs: u64,
    speech_frames: u64,
    silent_frames: u64,
    interrupted_frames: u64,
    encoder_ns: u64,
    encoder_steps: u64,
    /// Windows that ran in a batch with another element's (shared-batching).
    mixed_windows: u64,
}

pub struct WhisperFeat {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    session: Mutex<Option<Arc<SharedSession>>>,
    /// This element's session of the encoder's batching service (shared-batching).
    batch: Mutex<Option<Arc<batcher::Handle<EncoderModel>>>>,
    counters: Mutex<Counters>,
    warned_caps: Mutex<bool>,
}

impl WhisperFeat {
    fn src_caps(&self) -> gst::Caps {
        let fps = self.settings.lock().unwrap().fps;
        gst::Caps::builder(features::CAPS_NAME)
            .field("framerate", fps)
            .field("rows", features::ROWS as i32)
            .field("dims", features::DIM as i32)
            .build()
    }

    fn reset_state(&self) {
        let cfg = self.settings.lock().unwrap().stream_config();
        *self.state.lock().unwrap() = Some(State::new(cfg));
    }

    /// Runs the stream as far as it goes; returns the buffers to push, in order.
    fn drain(&self, state: &mut State, tl: &Timeline) -> Result<Vec<gst::Buffer>, gst::FlowError> {
        let mut out = Vec::new();
        while let Some(step) = state.stream.next_step() {
            match step {
                Step::Silent(i) => out.push(gap_buffer(tl, i)),
                Step::Encode(job) => {
                    let hidden = self.encode(&job)?;
                    for (i, feat) in state.stream.complete(&job, &hidden) {
                        out.push(feature_buffer(tl, i, &feat));
                    }
                }
            }
        }
        let s = &state.stream.stats;
        let mut c = self.counters.lock().unwrap();
        c.encoder_runs = s.encoder_runs;
        c.speech_frames = s.speech_frames;
        c.silent_frames = s.silent_frames;
        c.interrupted_frames = s.interrupted_frames;
        Ok(out)
    }

    /// Drains a grid that ended (segment, EOS, timestamp jump): its last frames, with
    /// silence after the end of its audio, stamped on its timeline.
    fn end_grid(
        &self,
        state: &mut State,
        tl: &Timeline,
    ) -> Result<Vec<gst::Buffer>, gst::FlowError> {
        state.stream.finish();
        let out = self.drain(state, tl);
        state.restart();
        out
    }

    /// Runs the encoder on every window of a job.
    fn encode(&self, job: &features::EncoderJob) -> Result<Vec<Vec<f32>>, gst::FlowError> {
        let handle = self.batch.lock().unwrap().clone();
        match handle {
            Some(h) => self.encode_shared(&h, job),
            None => job.windows.iter().map(|w| self.encode_window(w)).collect(),
        }
    }

    /// Runs a job's windows through the batching service; blocks until they are back or the
    /// element flushes (cancel).
    fn encode_shared(
        &self,
        handle: &batcher::Handle<EncoderModel>,
        job: &features::EncoderJob,
    ) -> Result<Vec<Vec<f32>>, gst::FlowError> {
        let start = std::time::Instant::now();
        let windows = job
            .windows
            .iter()
            .map(|w| {
                (
                    EncoderWindow {
                        mel: w.mel.clone(),
                        mel_frames: w.mel_frames,
                    },
                    None,
                )
            })
            .collect();
        let done = match handle.run(windows, None) {
            Ok(done) => done,
            Err(batcher::BatchError::Cancelled) => return Err(gst::FlowError::Flushing),
            Err(e) => {
                gst::element_imp_error!(
                    self,
                    gst::LibraryError::Failed,
                    ("Whisper encoder failed: {e}")
                );
                return Err(gst::FlowError::Error);
            }
        };
        let mut c = self.counters.lock().unwrap();
        c.encoder_ns += start.elapsed().as_nanos() as u64;
        c.encoder_steps += job.windows.iter().map(|w| w.steps as u64).sum::<u64>();
        c.mixed_windows += done
            .iter()
            .flatten()
            .filter(|d| d.batch.sessions > 1)
            .count() as u64;
        drop(c);
        let mut out = Vec::with_capacity(done.len());
        for (d, w) in done.into_iter().zip(&job.windows) {
            // (windows have no deadline: none is handed back unmade)
            let Some(d) = d else {
                return Err(gst::FlowError::Error);
            };
            if d.output.len() < w.steps * encoder::STEP_LEN {
                gst::element_imp_error!(
                    self,
                    gst::LibraryError::Failed,
                    (
                        "Whisper encoder gave {} values for {} mel frames",
                        d.output.len(),
                        w.mel_frames
                    )
                );
                return Err(gst::FlowError::Error);
            }
            out.push(d.output);
        }
        Ok(out)
    }

    /// Flushing on: cancels this element's windows in the batching service, and refuses new
    /// ones until flushing is set off. Called without lock (takes `batch` alone).
    fn set_flushing(&self, flushing: bool) {
        let handle = self.batch.lock().unwrap().clone();
        if let Some(h) = handle {
            h.set_flushing(flushing);
        }
    }

    fn encode_window(&self, window: &features::Window) -> Result<Vec<f32>, gst::FlowError> {
        let session = self.session.lock().unwrap().clone().ok_or_else(|| {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("No model loaded"));
            gst::FlowError::Error
        })?;
        let start = std::time::Instant::now();
        let out = session
            .run(&[ModelInput {
                name: "input_features",
                shape: &[1, 80, window.mel_frames],
                data: InputData::F32(&window.mel),
            }])
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::LibraryError::Failed,
                    ("Whisper encoder failed: {e}")
                );
                gst::FlowError::Error
            })?;
        let mut c = self.counters.lock().unwrap();
        c.encoder_ns += start.elapsed().as_nanos() as u64;
        c.encoder_steps += window.steps as u64;
        drop(c);
        let hidden = out.into_iter().next().expect("contract has one output");
        if hidden.shape.len() != 4 || hidden.shape[1] < window.steps {
            gst::element_imp_error!(
                self,
                gst::LibraryError::Failed,
                (
                    "Whisper encoder gave shape {:?} for {} mel frames",
                    hidden.shape,
                    window.mel_frames
                )
            );
            return Err(gst::FlowError::Error);
        }
        Ok(hidden.data)
    }

    fn push_all(&self, buffers: Vec<gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        for b in buffers {
            self.srcpad.push(b)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let audio = BufferAudio::read(&buffer, features::SAMPLE_RATE).ok_or_else(|| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Cannot map buffer"));
            gst::FlowError::Error
        })?;
        let mut out = Vec::new();
        {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            let intake = state.intake.push(audio.pts, audio.input());
            if let Some(tl) = intake.drain {
                gst::info!(CAT, imp = self, "timestamp jump: new frame grid");
                out.extend(self.end_grid(state, &tl)?);
            }
            if intake.fill > 0 {
                gst::debug!(
                    CAT,
                    imp = self,
                    "filling {} missing samples with silence",
                    intake.fill
                );
                state.stream.push_silence(intake.fill);
            }
            match intake.audio {
                Input::Samples(s) => state.stream.push(s),
                Input::Gap(n) => state.stream.push_silence(n),
            }
            let tl = state.intake.timeline();
            out.extend(self.drain(state, &tl)?);
        }
        self.push_all(out)
    }

    /// SEGMENT and EOS: the intake says whether a grid ends.
    fn end_stream(
        &self,
        end: impl FnOnce(&mut AudioIntake) -> Option<Timeline>,
    ) -> Result<(), gst::FlowError> {
        let out = {
            let mut guard = self.state.lock().unwrap();
            match guard.as_mut() {
                Some(state) => match end(&mut state.intake) {
                    Some(tl) => self.end_grid(state, &tl)?,
                    None => Vec::new(),
                },
                None => Vec::new(),
            }
        };
        self.push_all(out).map(|_| ())
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {:?}", event.type_());
        match event.view() {
            EventView::Caps(_) => {
                let caps = self.src_caps();
                return self.srcpad.push_event(gst::event::Caps::new(&caps));
            }
            EventView::Segment(e) => {
                if e.segment().format() != gst::Format::Time {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ("Only TIME segments are supported")
                    );
                    return false;
                }
                let start = segment_start(e);
                if self.end_stream(|intake| intake.segment(start)).is_err() {
                    return false;
                }
            }
            EventView::Eos(_) => {
                // Errors were posted by drain(); EOS still goes on.
                let _ = self.end_stream(AudioIntake::eos);
            }
            EventView::FlushStart(_) => self.set_flushing(true),
            EventView::FlushStop(_) => {
                self.set_flushing(false);
                self.reset_state();
            }
            EventView::CustomDownstream(_) if events::is_interrupt(&event) => {
                let out = {
                    let mut guard = self.state.lock().unwrap();
                    match guard.as_mut() {
                        Some(state) => {
                            state.stream.interrupt();
                            let tl = state.intake.timeline();
                            self.drain(state, &tl).unwrap_or_default()
                        }
                        None => Vec::new(),
                    }
                };
                gst::debug!(
                    CAT,
                    imp = self,
                    "interrupt: {} frames made silent",
                    out.len()
                );
                if self.push_all(out).is_err() {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "downstream refused frames during interrupt"
                    );
                }
            }
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::AcceptCaps(q) = query.view_mut() {
            let ok = q.caps().can_intersect(&pad.pad_template_caps());
            if !ok {
                let mut warned = self.warned_caps.lock().unwrap();
                if !*warned {
                    *warned = true;
                    gst::element_imp_warning!(
                        self,
                        gst::CoreError::Negotiation,
                        ("whisperfeat needs {AUDIO_CAPS}: put `audioconvert ! audioresample` before it"),
                        ["offered caps: {}", q.caps()]
                    );
                }
            }
            q.set_result(ok);
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            let ours = {
                let cfg = self
                    .settings
                    .lock()
                    .unwrap()
                    .stream_config()
                    .with_minimums();
                gst::ClockTime::from_nseconds(cfg.latency_samples() * 1_000_000_000 / 16_000)
            };
            gst::debug!(CAT, imp = self, "latency: upstream {min} ours {ours}");
            q.set(live, min + ours, max.map(|m| m + ours));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn load_model(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let device: Device = settings.device.with_id(settings.device_id);
        let model = settings
            .model
            .clone()
            .unwrap_or_else(crate::paths::default_whisper_encoder);
        let mut req = SessionRequest::new(&model, &contract::WHISPER_ENCODER);
        req.device = device;
        req.threads = settings.threads as usize;
        req.runtime_library = settings.ort_library.as_deref();
        let session = inference::load_for_element(&*self.obj(), &req, "whisper encoder")?;
        gst::info!(
            CAT,
            imp = self,
            "whisper encoder {} on {}",
            model.display(),
            session.device
        );
        if english_only(&session) {
            // MuseTalk's UNet learned from the multilingual whisper-tiny's features.
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                (
                    "The whisper encoder {} is English-only (tiny.en): MuseTalk was trained on \
                     the multilingual whisper-tiny's features, so lip sync is less accurate. \
                     Fix: convert openai/whisper-tiny with `models/convert_whisper.py --hf DIR -o \
                     encoder.onnx` and set whisperfeat's model to it",
                    model.display()
                )
            );
        }
        let batch = if settings.shared_batching {
            let service = encoder::shared_encoder(&session).map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ("Cannot start the encoder's batching service: {e}")
                )
            })?;
            Some(Arc::new(service.session(settings.max_batch as usize)))
        } else {
            None
        };
        *self.session.lock().unwrap() = Some(session);
        *self.batch.lock().unwrap() = batch;
        Ok(())
    }

    fn stats(&self) -> gst::Structure {
        let c = self.counters.lock().unwrap();
        gst::Structure::builder("whisperfeat-stats")
            .field("encoder-runs", c.encoder_runs)
            .field("speech-frames", c.speech_frames)
            .field("silent-frames", c.silent_frames)
            .field("interrupted-frames", c.interrupted_frames)
            .field("encoder-time", gst::ClockTime::from_nseconds(c.encoder_ns))
            .field("encoder-steps", c.encoder_steps)
            .field("mixed-windows", c.mixed_windows)
            .build()
    }
}

/// Whether the encoder is an English-only whisper: the converter's `english_only` metadata,
/// or for files converted before it wrote that, a `.en` model named in its `source`.
fn english_only(session: &SharedSession) -> bool {
    match session.metadata("english_only").as_deref() {
        Some(v) => v == "true",
        None => session
            .metadata("source")
            .is_some_and(|s| s.contains("tiny.en") || s.contains(".en)")),
    }
}

fn stamp(tl: &Timeline, buf: &mut gst::BufferRef, i: u64) {
    stamp_frame(buf, i, tl.frame_pts(i), tl.frame_duration(i));
}

fn gap_buffer(tl: &Timeline, i: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::new();
    {
        let b = buf.get_mut().unwrap();
        stamp(tl, b, i);
        b.set_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE);
    }
    buf
}

fn feature_buffer(tl: &Timeline, i: u64, feat: &[f32]) -> gst::Buffer {
    let bytes: Vec<u8> = feat.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    stamp(tl, buf.get_mut().unwrap(), i);
    buf
}

#[glib::object_subclass]
impl ObjectSubclass for WhisperFeat {
    const NAME: &'static str = "GstWhisperFeat";
    type Type = super::WhisperFeat;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").unwrap();
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                WhisperFeat::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                WhisperFeat::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                WhisperFeat::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_query(pad, query),
                )
            })
            .build();
        let templ = klass.pad_template("src").unwrap();
        let srcpad = gst::Pad::builder_from_template(&templ)
            .query_function(|pad, parent, query| {
                WhisperFeat::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            session: Mutex::new(None),
            batch: Mutex::new(None),
            counters: Mutex::new(Counters::default()),
            warned_caps: Mutex::new(false),
        }
    }
}

impl ObjectImpl for WhisperFeat {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let [device, device_id] = enums::device_properties("the whisper encoder");
            vec![
                device,
                device_id,
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Whisper encoder ONNX (input_features [B,80,T] -> hidden_states [B,T/2,5,384]); \
                            default: the set-up cache's whisper-tiny, else whisper-tiny.en")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so (default: ORT_DYLIB_PATH, the set-up cache, the system)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("Intra-op threads of the encoder on CPU (0: ONNX Runtime's default)")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                gst::ParamSpecFraction::builder("fps")
                    .nick("Frame rate")
                    .blurb("Video frames per second: one feature buffer per frame")
                    .minimum(gst::Fraction::new(1, 1))
                    .maximum(gst::Fraction::new(120, 1))
                    .default_value(DEFAULT_FPS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("window-mode", DEFAULT_WINDOW_MODE)
                    .nick("Window mode")
                    .blurb("chunk: encoder windows from the start of MuseTalk's 30 s chunk (positions as \
                            MuseTalk's, all past audio of the chunk) to the batch plus context-right-ms; \
                            short: the batch with context-left-ms and context-right-ms around it")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("context-left-ms")
                    .nick("Left context")
                    .blurb("Audio before a batch given to the encoder in short mode (at least 80 ms are always used)")
                    .minimum(0)
                    .maximum(10_000)
                    .default_value(DEFAULT_CONTEXT_LEFT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("context-right-ms")
                    .nick("Right context")
                    .blurb("Lookahead: audio after a batch given to the encoder (at least 80 ms); adds latency")
                    .minimum(0)
                    .maximum(10_000)
                    .default_value(DEFAULT_CONTEXT_RIGHT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-frames")
                    .nick("Batch frames")
                    .blurb("Frames per encoder run (more: cheaper per frame, more latency)")
                    .minimum(1)
                    .maximum(256)
                    .default_value(DEFAULT_BATCH_FRAMES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("silence-threshold-db")
                    .nick("Silence threshold")
                    .blurb("A frame whose audio window is below this level (dBFS RMS) is silent: GAP, no encoder run (-200: never)")
                    .minimum(-200.0)
                    .maximum(0.0)
                    .default_value(DEFAULT_SILENCE_THRESHOLD_DB)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("pad-30s")
                    .nick("Pad to 30 s")
                    .blurb("Pad every encoder window to whisper's 30 s with silence, as MuseTalk and \
                            LiveTalking do (closer to MuseTalk's training, much slower on CPU)")
                    .default_value(DEFAULT_PAD_30S)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pad-to-ms")
                    .nick("Pad windows to")
                    .blurb("Pad encoder windows shorter than this with silence (MuseTalk pads to 30 s; \
                            10 s comes close on short utterances at a third of the cost; 0: no padding)")
                    .maximum(30_000)
                    .default_value(DEFAULT_PAD_TO_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("shared-batching")
                    .nick("Shared batching")
                    .blurb("Run the encoder windows of every whisperfeat element of the process that loads the same \
                            encoder through one batching service (windows of the same length share a batch); \
                            false: this element runs its windows itself, one at a time")
                    .default_value(DEFAULT_SHARED_BATCHING)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-batch")
                    .nick("Maximum shared batch")
                    .blurb("Windows per encoder run at most in the shared batching service (the largest \
                            max-batch among its elements)")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_MAX_BATCH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("encoder-runs, speech-frames, silent-frames, interrupted-frames, encoder-time, encoder-steps, \
                            mixed-windows (windows that ran in a shared batch with another element's)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => {
                s.model = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|p| !p.is_empty())
                    .map(Into::into)
            }
            "device" => s.device = value.get().unwrap(),
            "device-id" => s.device_id = value.get().unwrap(),
            "ort-library" => {
                s.ort_library = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|p| !p.is_empty())
                    .map(Into::into)
            }
            "window-mode" => s.window_mode = value.get().unwrap(),
            "threads" => s.threads = value.get().unwrap(),
            "fps" => s.fps = value.get().unwrap(),
            "context-left-ms" => s.context_left_ms = value.get().unwrap(),
            "context-right-ms" => s.context_right_ms = value.get().unwrap(),
            "batch-frames" => s.batch_frames = value.get().unwrap(),
            "silence-threshold-db" => s.silence_threshold_db = value.get().unwrap(),
            "pad-30s" => s.pad_30s = value.get().unwrap(),
            "pad-to-ms" => s.pad_to_ms = value.get().unwrap(),
            "shared-batching" => s.shared_batching = value.get().unwrap(),
            "max-batch" => s.max_batch = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => s.model.as_ref().map(|p| p.display().to_string()).to_value(),
            "device" => s.device.to_value(),
            "device-id" => s.device_id.to_value(),
            "ort-library" => s
                .ort_library
                .as_ref()
                .map(|p| p.display().to_string())
                .to_value(),
            "window-mode" => s.window_mode.to_value(),
            "threads" => s.threads.to_value(),
            "fps" => s.fps.to_value(),
            "context-left-ms" => s.context_left_ms.to_value(),
            "context-right-ms" => s.context_right_ms.to_value(),
            "batch-frames" => s.batch_frames.to_value(),
            "silence-threshold-db" => s.silence_threshold_db.to_value(),
            "pad-30s" => s.pad_30s.to_value(),
            "pad-to-ms" => s.pad_to_ms.to_value(),
            "shared-batching" => s.shared_batching.to_value(),
            "max-batch" => s.max_batch.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for WhisperFeat {}

impl ElementImpl for WhisperFeat {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Whisper features",
                "Filter/Audio/Analyzer",
                "Streaming whisper encoder features for MuseTalk: one [50,384] buffer per video frame",
                "livetalk developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = AUDIO_CAPS.parse::<gst::Caps>().unwrap();
            let src_caps = gst::Caps::builder(features::CAPS_NAME)
                .field(
                    "framerate",
                    gst::FractionRange::new(gst::Fraction::new(1, 1), gst::Fraction::new(120, 1)),
                )
                .field("rows", features::ROWS as i32)
                .field("dims", features::DIM as i32)
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::trace!(CAT, imp = self, "changing state {transition:?}");
        match transition {
            gst::StateChange::NullToReady => {
                if let Err(msg) = self.load_model() {
                    self.post_error_message(msg);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::ReadyToPaused => {
                *self.warned_caps.lock().unwrap() = false;
                *self.counters.lock().unwrap() = Counters::default();
                self.reset_state();
                self.set_flushing(false);
            }
            // Wakes a streaming thread waiting for the batching service.
            gst::StateChange::PausedToReady => self.set_flushing(true),
            _ => {}
        }
        let ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::PausedToReady => *self.state.lock().unwrap() = None,
            gst::StateChange::ReadyToNull => {
                *self.batch.lock().unwrap() = None;
                *self.session.lock().unwrap() = None;
            }
            _ => {}
        }
        Ok(ret)
    }
}
