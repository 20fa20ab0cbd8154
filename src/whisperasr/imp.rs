// SPDX-License-Identifier: MPL-2.0
//
// Locks: `settings`, `model`, `state`, `worker` and the worker's `Shared` mutex are never held
// two at a time: the streaming thread collects jobs under `state`, lets go, then queues them
// under `Shared`. The worker thread only takes `Shared` (and posts messages without it).
// Nothing is pushed or posted with a lock held.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::Segmentation;
use crate::asr::segment::{self, Collector, Job, Mode};
use crate::asr::whisper::{self, Whisper, WhisperOptions};
use crate::audio_intake::Input;
use crate::enums;
use crate::events::{self, Transcript, VadStatus};
use crate::inference::Device;
use crate::mel::LogMel;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "whisperasr",
        gst::DebugColorFlags::empty(),
        Some("Whisper speech recognition"),
    )
});

const DEFAULT_LANGUAGE: &str = "en";
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_MAX_WINDOW_MS: u32 = 30_000;
const DEFAULT_NO_SPEECH_THRESHOLD: f64 = 0.6;
const DEFAULT_LOGPROB_THRESHOLD: f64 = -1.0;
const DEFAULT_SILENCE_THRESHOLD_DB: f64 = -60.0;
const DEFAULT_SEGMENTATION: Segmentation = Segmentation::Auto;

const RATE: u64 = 16_000;
const AUDIO_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";

#[derive(Debug, Clone)]
struct Settings {
    model_dir: Option<PathBuf>,
    device: enums::Device,
    device_id: u32,
    ort_library: Option<PathBuf>,
    threads: u32,
    language: String,
    segmentation: Segmentation,
    max_window_ms: u32,
    no_speech_threshold: f64,
    logprob_threshold: f64,
    silence_threshold_db: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model_dir: None,
            device: enums::Device::Cpu,
            device_id: 0,
            ort_library: None,
            threads: DEFAULT_THREADS,
            language: DEFAULT_LANGUAGE.into(),
            segmentation: DEFAULT_SEGMENTATION,
            max_window_ms: DEFAULT_MAX_WINDOW_MS,
            no_speech_threshold: DEFAULT_NO_SPEECH_THRESHOLD,
            logprob_threshold: DEFAULT_LOGPROB_THRESHOLD,
            silence_threshold_db: DEFAULT_SILENCE_THRESHOLD_DB,
        }
    }
}

fn to_pos(rt: gst::ClockTime) -> u64 {
    (rt.nseconds() as u128 * RATE as u128 / 1_000_000_000) as u64
}

fn to_time(pos: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds((pos as u128 * 1_000_000_000 / RATE as u128) as u64)
}

#[derive(Debug, Default, Clone)]
struct Counters {
    transcribed: u64,
    silent: u64,
    no_speech: u64,
    repetitions: u64,
    audio_ns: u64,
    inference_ns: u64,
}

/// What the streaming thread and the worker share.
#[derive(Default)]
struct Shared {
    queue: VecDeque<(u64, Job)>,
    results: Vec<Transcript>,
    busy: bool,
    shutdown: bool,
    counters: Counters,
}

struct Worker {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// Bumped on flush: jobs of an older generation are dropped, running ones cancelled.
    generation: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn stop(&mut self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        {
            let (lock, cv) = &*self.shared;
            let mut s = lock.lock().unwrap();
            s.shutdown = true;
            s.queue.clear();
            cv.notify_all();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct State {
    collector: Collector,
}

pub struct WhisperAsr {
    settings: Mutex<Settings>,
    model: Mutex<Option<Arc<Whisper>>>,
    state: Mutex<Option<State>>,
    worker: Mutex<Option<Worker>>,
}

struct JobContext {
    element: glib::WeakRef<super::WhisperAsr>,
    model: Arc<Whisper>,
    silence_db: f64,
}

fn worker_loop(ctx: JobContext, shared: Arc<(Mutex<Shared>, Condvar)>, generation: Arc<AtomicU64>) {
    let mut mel = LogMel::new();
    let (lock, cv) = &*shared;
    loop {
        let (job_gen, job) = {
            let mut s = lock.lock().unwrap();
            loop {
                if s.shutdown {
                    return;
                }
                if let Some(j) = s.queue.pop_front() {
                    s.busy = true;
                    break j;
                }
                s = cv.wait(s).unwrap();
            }
        };
        let result = transcribe_job(&ctx, &mut mel, &job, job_gen, &generation);
        let mut s = lock.lock().unwrap();
        s.busy = false;
        let audio_ns = to_time(job.samples.len() as u64).nseconds();
        match result {
            JobResult::Silent => {
                s.counters.silent += 1;
            }
            JobResult::Done {
                transcript,
                no_speech,
                repetition,
                ns,
            } => {
                s.counters.transcribed += 1;
                s.counters.no_speech += no_speech as u64;
                s.counters.repetitions += repetition as u64;
                s.counters.audio_ns += audio_ns;
                s.counters.inference_ns += ns;
                if generation.load(Ordering::SeqCst) == job_gen
                    && let Some(t) = transcript
                {
                    s.results.push(t.clone());
                    drop(s);
                    if let Some(el) = ctx.element.upgrade() {
                        let _ = el.post_message(events::transcript_message(&el, &t));
                    }
                    s = lock.lock().unwrap();
                }
            }
            JobResult::Cancelled => {}
            JobResult::Failed(e) => {
                drop(s);
                if let Some(el) = ctx.element.upgrade() {
                    gst::element_error!(
                        el,
                        gst::LibraryError::Failed,
                        ("Whisper transcription failed: {e}")
                    );
                }
                s = lock.lock().unwrap();
            }
        }
        cv.notify_all();
        drop(s);
    }
}

enum JobResult {
    Silent,
    Cancelled,
    Failed(String),
    Done {
        transcript: Option<Transcript>,
        no_speech: bool,
        repetition: bool,
        ns: u64,
    },
}

fn transcribe_job(
    ctx: &JobContext,
    mel: &mut LogMel,
    job: &Job,
    job_gen: u64,
    generation: &AtomicU64,
) -> JobResult {
    if generation.load(Ordering::SeqCst) != job_gen {
        return JobResult::Cancelled;
    }
    if segment::level_db(&job.samples) < ctx.silence_db {
        gst::debug!(
            CAT,
            "{} samples of silence: not transcribed",
            job.samples.len()
        );
        return JobResult::Silent;
    }
    let started = std::time::Instant::now();
    let cancelled = || generation.load(Ordering::SeqCst) != job_gen;
    match ctx.model.transcribe(mel, &job.samples, &cancelled) {
        Ok(t) => {
            if t.decoded.stop == crate::asr::decode::Stop::Cancelled {
                return JobResult::Cancelled;
            }
            gst::debug!(
                CAT,
                "{:?}: avg logprob {:.3}, no-speech {:.3}, stop {:?}",
                t.text,
                t.decoded.avg_logprob,
                t.decoded.no_speech_prob,
                t.decoded.stop
            );
            let transcript = (!t.text.is_empty()).then(|| Transcript {
                text: t.text.clone(),
                is_final: job.is_final,
                start: to_time(job.start),
                end: to_time(job.end),
            });
            JobResult::Done {
                transcript,
                no_speech: t.decoded.no_speech,
                repetition: t.decoded.stop == crate::asr::decode::Stop::Repetition,
                ns: started.elapsed().as_nanos() as u64,
            }
        }
        Err(e) => JobResult::Failed(e),
    }
}

impl WhisperAsr {
    fn load_model(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let device: Device = s.device.with_id(s.device_id);
        let dir = s
            .model_dir
            .clone()
            .unwrap_or_else(whisper::default_model_dir);
        let opts = WhisperOptions {
            device,
            threads: s.threads as usize,
            runtime_library: s.ort_library.clone(),
            language: s.language.clone(),
            no_speech_threshold: s.no_speech_threshold,
            logprob_threshold: s.logprob_threshold,
        };
        let model = Whisper::load(&dir, &opts).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("Cannot load the whisper model in {}: {e}", dir.display())
            )
        })?;
        let (dev, fallback) = model.device();
        if let Some(why) = fallback {
            gst::element_imp_warning!(self, gst::ResourceError::Settings, ("{why}"));
        }
        gst::info!(CAT, imp = self, "whisper {} on {dev}", dir.display());
        *self.model.lock().unwrap() = Some(Arc::new(model));
        Ok(())
    }

    fn start_worker(&self) -> Result<(), gst::ErrorMessage> {
        let model = self.model.lock().unwrap().clone().ok_or_else(|| {
            gst::error_msg!(gst::CoreError::StateChange, ("No whisper model loaded"))
        })?;
        let silence_db = self.settings.lock().unwrap().silence_threshold_db;
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let generation = Arc::new(AtomicU64::new(0));
        let ctx = JobContext {
            element: self.obj().downgrade(),
            model,
            silence_db,
        };
        let (s2, g2) = (shared.clone(), generation.clone());
        let handle = std::thread::Builder::new()
            .name("whisperasr".into())
            .spawn(move || worker_loop(ctx, s2, g2))
            .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ("Cannot start a thread: {e}")))?;
        *self.worker.lock().unwrap() = Some(Worker {
            shared,
            generation,
            handle: Some(handle),
        });
        Ok(())
    }

    fn new_state(&self) -> State {
        let s = self.settings.lock().unwrap();
        let mode = match s.segmentation {
            Segmentation::Auto => Mode::Auto,
            Segmentation::Vad => Mode::Vad,
            Segmentation::Windows => Mode::Windows,
        };
        let max_len = (s.max_window_ms as u64 * RATE / 1000) as usize;
        State {
            collector: Collector::new(mode, max_len.min(whisper::WINDOW_SAMPLES)),
        }
    }

    #[allow(clippy::type_complexity)]
    fn shared(&self) -> Option<(Arc<(Mutex<Shared>, Condvar)>, Arc<AtomicU64>)> {
        self.worker
            .lock()
            .unwrap()
            .as_ref()
            .map(|w| (w.shared.clone(), w.generation.clone()))
    }

    fn enqueue(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let Some((shared, generation)) = self.shared() else {
            return;
        };
        let generation = generation.load(Ordering::SeqCst);
        let (lock, cv) = &*shared;
        let mut s = lock.lock().unwrap();
        for job in jobs {
            gst::debug!(
                CAT,
                imp = self,
                "transcribing {} .. {} (final {})",
                to_time(job.start),
                to_time(job.end),
                job.is_final
            );
            s.queue.push_back((generation, job));
        }
        cv.notify_all();
    }

    /// Sends the transcripts that are ready downstream (called without lock).
    fn push_results(&self) {
        let Some((shared, _)) = self.shared() else {
            return;
        };
        let results = std::mem::take(&mut shared.0.lock().unwrap().results);
        for t in results {
            self.obj()
                .src_pad()
                .push_event(events::transcript_event(&t));
        }
    }

    /// Waits until every queued job is done (EOS); a flush ends the wait.
    fn wait_idle(&self) {
        let Some((shared, generation)) = self.shared() else {
            return;
        };
        let started = generation.load(Ordering::SeqCst);
        let (lock, cv) = &*shared;
        let mut s = lock.lock().unwrap();
        while (s.busy || !s.queue.is_empty())
            && !s.shutdown
            && generation.load(Ordering::SeqCst) == started
        {
            s = cv.wait(s).unwrap();
        }
    }

    /// Drops queued work and cancels what runs (flush).
    fn cancel_pending(&self) {
        let Some((shared, generation)) = self.shared() else {
            return;
        };
        generation.fetch_add(1, Ordering::SeqCst);
        let (lock, cv) = &*shared;
        let mut s = lock.lock().unwrap();
        s.queue.clear();
        s.results.clear();
        cv.notify_all();
    }

    fn segment(&self) -> gst::FormattedSegment<gst::ClockTime> {
        self.obj()
            .segment()
            .downcast::<gst::ClockTime>()
            .unwrap_or_else(|_| gst::FormattedSegment::new())
    }

    /// The running time (ns) of `pts` in the current segment.
    fn running_time_of(&self, pts: Option<gst::ClockTime>) -> Option<u64> {
        let segment = self.segment();
        pts.and_then(|p| segment.to_running_time(p))
            .map(gst::ClockTime::nseconds)
    }

    fn with_collector(&self, f: impl FnOnce(&mut Collector) -> Vec<Job>) {
        let jobs = {
            let mut guard = self.state.lock().unwrap();
            match guard.as_mut() {
                Some(state) => f(&mut state.collector),
                None => Vec::new(),
            }
        };
        self.enqueue(jobs);
    }

    fn stats(&self) -> gst::Structure {
        let c = self
            .shared()
            .map(|(s, _)| s.0.lock().unwrap().counters.clone())
            .unwrap_or_default();
        let rtf = if c.audio_ns > 0 {
            c.inference_ns as f64 / c.audio_ns as f64
        } else {
            0.0
        };
        gst::Structure::builder("whisperasr-stats")
            .field("transcribed", c.transcribed)
            .field("silent", c.silent)
            .field("no-speech", c.no_speech)
            .field("repetitions", c.repetitions)
            .field("audio-time", gst::ClockTime::from_nseconds(c.audio_ns))
            .field(
                "inference-time",
                gst::ClockTime::from_nseconds(c.inference_ns),
            )
            .field("real-time-factor", rtf)
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WhisperAsr {
    const NAME: &'static str = "GstWhisperAsr";
    type Type = super::WhisperAsr;
    type ParentType = gst_base::BaseTransform;

    fn new() -> Self {
        Self {
            settings: Mutex::new(Settings::default()),
            model: Mutex::new(None),
            state: Mutex::new(None),
            worker: Mutex::new(None),
        }
    }
}

impl ObjectImpl for WhisperAsr {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let [device, device_id] = enums::device_properties("the whisper encoder and decoder");
            vec![
                device,
                device_id,
                glib::ParamSpecString::builder("model-dir")
                    .nick("Model directory")
                    .blurb("Directory with encoder.onnx, cross_kv.onnx, decoder.onnx, tokenizer.json, \
                            asr.json (models/convert_whisper.py --decoder); default: the set-up \
                            cache's whisper-tiny.en")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so (default: ORT_DYLIB_PATH, the set-up cache, the system)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("Intra-op threads on CPU (0: ONNX Runtime's default)")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("language")
                    .nick("Language")
                    .blurb("Language code for a multilingual model (en, de, fr, ...); English-only models ignore it")
                    .default_value(Some(DEFAULT_LANGUAGE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("segmentation", DEFAULT_SEGMENTATION)
                    .nick("Segmentation")
                    .blurb("What is transcribed: utterances between livetalk-vad events, or windows")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-window-ms")
                    .nick("Maximum window")
                    .blurb("Longest audio transcribed at once: the window without VAD, the piece of a long utterance")
                    .minimum(1_000)
                    .maximum(30_000)
                    .default_value(DEFAULT_MAX_WINDOW_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("no-speech-threshold")
                    .nick("No-speech threshold")
                    .blurb("With an average log-probability below logprob-threshold, a no-speech \
                            probability above this means silence (whisper's rule)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_NO_SPEECH_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("logprob-threshold")
                    .nick("Log-probability threshold")
                    .blurb("See no-speech-threshold")
                    .minimum(-100.0)
                    .maximum(0.0)
                    .default_value(DEFAULT_LOGPROB_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("silence-threshold-db")
                    .nick("Silence threshold")
                    .blurb("Audio below this level (dBFS RMS) is silence and is not transcribed (-200: never)")
                    .minimum(-200.0)
                    .maximum(0.0)
                    .default_value(DEFAULT_SILENCE_THRESHOLD_DB)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("transcribed, silent, no-speech, repetitions, audio-time, inference-time, real-time-factor")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let path = |v: &glib::Value| {
            v.get::<Option<String>>()
                .unwrap()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        match pspec.name() {
            "model-dir" => s.model_dir = path(value),
            "device" => s.device = value.get().unwrap(),
            "device-id" => s.device_id = value.get().unwrap(),
            "ort-library" => s.ort_library = path(value),
            "threads" => s.threads = value.get().unwrap(),
            "language" => {
                let l: Option<String> = value.get().unwrap();
                s.language = l.unwrap_or_else(|| DEFAULT_LANGUAGE.into());
            }
            "segmentation" => s.segmentation = value.get().unwrap(),
            "max-window-ms" => s.max_window_ms = value.get().unwrap(),
            "no-speech-threshold" => s.no_speech_threshold = value.get().unwrap(),
            "logprob-threshold" => s.logprob_threshold = value.get().unwrap(),
            "silence-threshold-db" => s.silence_threshold_db = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).to_value();
        match pspec.name() {
            "model-dir" => path(&s.model_dir),
            "device" => s.device.to_value(),
            "device-id" => s.device_id.to_value(),
            "ort-library" => path(&s.ort_library),
            "threads" => s.threads.to_value(),
            "language" => s.language.to_value(),
            "segmentation" => s.segmentation.to_value(),
            "max-window-ms" => s.max_window_ms.to_value(),
            "no-speech-threshold" => s.no_speech_threshold.to_value(),
            "logprob-threshold" => s.logprob_threshold.to_value(),
            "silence-threshold-db" => s.silence_threshold_db.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_passthrough(true);
    }
}

impl GstObjectImpl for WhisperAsr {}

impl ElementImpl for WhisperAsr {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Whisper speech recognition",
                "Filter/Audio/Analyzer",
                "Transcribes utterances (between livetalk-vad events) or windows with whisper: \
                 livetalk-transcript messages and events, audio unchanged",
                "livetalk developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = AUDIO_CAPS.parse::<gst::Caps>().unwrap();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
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
        if transition == gst::StateChange::NullToReady
            && let Err(msg) = self.load_model()
        {
            self.post_error_message(msg);
            return Err(gst::StateChangeError);
        }
        if transition == gst::StateChange::PausedToReady {
            // unblock a streaming thread waiting at EOS
            self.cancel_pending();
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::ReadyToNull {
            *self.model.lock().unwrap() = None;
        }
        Ok(ret)
    }
}

impl BaseTransformImpl for WhisperAsr {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let state = self.new_state();
        *self.state.lock().unwrap() = Some(state);
        self.start_worker()
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let worker = self.worker.lock().unwrap().take();
        if let Some(mut w) = worker {
            w.stop();
        }
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.push_results();
        let at = self.running_time_of(buf.pts());
        if buf.flags().contains(gst::BufferFlags::GAP) {
            let n = (buf.size() / 4) as u64;
            self.with_collector(|c| c.push(at, Input::Gap(n)));
            return Ok(gst::FlowSuccess::Ok);
        }
        let map = buf.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Cannot map buffer"));
            gst::FlowError::Error
        })?;
        let samples: Vec<f32> = map
            .as_slice()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        drop(map);
        self.with_collector(|c| c.push(at, Input::Samples(&samples)));
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::CustomDownstream(_) => {
                if let Some((status, rt)) = event.structure().and_then(events::parse_vad) {
                    let pos = to_pos(rt);
                    self.with_collector(|c| match status {
                        VadStatus::Start => c.vad_start(pos),
                        VadStatus::End => c.vad_end(pos),
                    });
                }
                self.push_results();
            }
            EventView::Gap(gap) => {
                let (pts, duration) = gap.get();
                let at = self.running_time_of(Some(pts));
                let n = duration.unwrap_or_default().nseconds() / segment::NS_PER_SAMPLE;
                self.with_collector(|c| c.push(at, Input::Gap(n)));
                self.push_results();
            }
            // The intake's rule: a new segment ends the grid, like EOS (what is open is
            // transcribed; the next buffer starts anew).
            EventView::Segment(_) => {
                self.with_collector(Collector::finish);
                self.push_results();
            }
            EventView::Eos(_) => {
                self.with_collector(Collector::finish);
                self.wait_idle();
                self.push_results();
            }
            EventView::FlushStart(_) => self.cancel_pending(),
            EventView::FlushStop(_) | EventView::StreamStart(_) => {
                self.cancel_pending();
                let mut guard = self.state.lock().unwrap();
                if let Some(state) = guard.as_mut() {
                    state.collector.reset();
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }
}
