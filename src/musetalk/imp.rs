// SPDX-License-Identifier: MPL-2.0
//
// Threads: upstream's streaming thread (sink_chain, sink_event) queues frames and events;
// the src pad's task (work) plans batches with lipsync::planner, waits on the pipeline
// clock, runs inference and pushes. Timed waits are single-shot clock ids, unscheduled
// when a frame or event arrives, on FLUSH_START and on PAUSED->READY.
// With shared-batching the task hands each planned run to the process's batching service
// (lipsync::batcher: one service thread per model pair runs batches of every element's
// frames) and blocks until its frames are back; FLUSH_START and PAUSED->READY cancel this
// element's frames there (cancel_shared), which wakes it. Other elements' frames are not
// touched; READY->NULL drops the element's session.
//
// The service hands back, unmade, the frames that cannot make their deadline (pushed as
// skipped, like the element's own late frames); with shared batching the element's planner
// prices frames with the service's model cost, never with the time its runs waited there.
//
// Lock order: `queue` before `timing`, then the object lock (clock, base time). `settings`,
// `loaded` and `counters` are taken alone (never while another of our locks is held). No
// lock is held while pushing, while running inference or while waiting on a clock id or
// for the batching service (whose own lock is taken with none of ours held; only its
// published cost model, a leaf lock, is read with `queue` held).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::avatar::{self, Avatar};
use crate::enums;
use crate::events;
use crate::features::{self, FRAME_LEN};
use crate::inference::{self, Device, Precision, SessionRequest, contract};
use crate::lipsync::batcher;
use crate::lipsync::planner::{self, CostModel, Decision};
use crate::lipsync::{self, FrameInput, IMAGE_LEN, MuseBatchModel, MuseFrame, MuseTalk};
use crate::meta::{self, AvatarFrame};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "musetalk",
        gst::DebugColorFlags::empty(),
        Some("MuseTalk v1.5 lip-sync inference"),
    )
});

const DEFAULT_BATCH_SIZE: u32 = 4;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_SHARED_BATCHING: bool = true;
const DEFAULT_MAX_BATCH: u32 = 16;
/// `inference-latency`: -1 measures it at READY.
const DEFAULT_INFERENCE_LATENCY: i32 = -1;
const DEFAULT_FPS: gst::Fraction = gst::Fraction::from_integer(25);
const FEATURE_BYTES: usize = FRAME_LEN * 4;

#[derive(Debug, Clone)]
struct Settings {
    avatar: Option<PathBuf>,
    unet: Option<PathBuf>,
    vae_decoder: Option<PathBuf>,
    model_dir: Option<PathBuf>,
    device: enums::Device,
    device_id: u32,
    precision: enums::Precision,
    batch_size: u32,
    threads: u32,
    ort_library: Option<PathBuf>,
    shared_batching: bool,
    max_batch: u32,
    inference_latency: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            avatar: None,
            unet: None,
            vae_decoder: None,
            model_dir: None,
            device: enums::Device::Cpu,
            device_id: 0,
            precision: enums::Precision::Fp32,
            batch_size: DEFAULT_BATCH_SIZE,
            threads: DEFAULT_THREADS,
            ort_library: None,
            shared_batching: DEFAULT_SHARED_BATCHING,
            max_batch: DEFAULT_MAX_BATCH,
            inference_latency: DEFAULT_INFERENCE_LATENCY,
        }
    }
}

impl Settings {
    /// The model file: the explicit property, else `<model-dir>/<name>[_fp16].onnx`.
    fn model_path(&self, explicit: &Option<PathBuf>, name: &str, fp16: bool) -> PathBuf {
        if let Some(p) = explicit {
            return p.clone();
        }
        let dir = self
            .model_dir
            .clone()
            .unwrap_or_else(|| crate::paths::models_dir().join("musetalk"));
        let half = dir.join(format!("{name}_fp16.onnx"));
        if fp16 && half.is_file() {
            half
        } else {
            dir.join(format!("{name}.onnx"))
        }
    }
}

/// What NULL->READY loads.
struct Loaded {
    muse: MuseTalk,
    avatar: Arc<Avatar>,
    /// This element's session of the process's batching service (shared-batching).
    batch: Option<batcher::Handle<MuseBatchModel>>,
    /// The batch size the model files fix, if they fix one.
    model_batch: Option<usize>,
}

/// One input frame waiting for the worker.
struct FrameIn {
    pts: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
    counter: u64,
    index: u64,
    /// `[50,384]`; `None` for an idle (GAP or interrupted) frame.
    features: Option<Vec<f32>>,
    discont: bool,
}

enum Item {
    Frame(FrameIn),
    Event(gst::Event),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    flushing: bool,
    /// The last flow return of the worker's pushes, given back to upstream.
    flow: Option<gst::FlowError>,
    /// Whether upstream is live (asked once per stream).
    live: Option<bool>,
    /// The worker's pending clock wait; whoever changes the queue unschedules it.
    clock_wait: Option<gst::SingleShotClockId>,
}

impl Queue {
    /// Wakes the worker: from waiting for frames (with `cond`) and from a clock wait.
    fn wake(&mut self, cond: &Condvar) {
        if let Some(id) = self.clock_wait.take() {
            id.unschedule();
        }
        cond.notify_all();
    }
}

/// What the worker knows about time.
struct Timing {
    segment: gst::FormattedSegment<gst::ClockTime>,
    fps: gst::Fraction,
    /// The pipeline latency (LATENCY event), else upstream's plus ours.
    latency: Option<gst::ClockTime>,
    upstream_latency: gst::ClockTime,
    /// Running time before which QoS says frames are late.
    qos_earliest: Option<gst::ClockTime>,
    /// Batch cost, learned from batch times measured on the pipeline clock.
    cost: CostModel,
    /// What `cost` starts from when the element starts (batches timed at READY).
    seed: CostModel,
    /// The time allowed for inference, added to our latency (`inference-latency`).
    inference: gst::ClockTime,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            segment: gst::FormattedSegment::new(),
            fps: DEFAULT_FPS,
            latency: None,
            upstream_latency: gst::ClockTime::ZERO,
            qos_earliest: None,
            cost: CostModel::new(),
            seed: CostModel::new(),
            inference: gst::ClockTime::ZERO,
        }
    }
}

impl Timing {
    fn frame_duration(&self) -> gst::ClockTime {
        gst::ClockTime::SECOND
            .mul_div_round(self.fps.denom() as u64, self.fps.numer().max(1) as u64)
            .unwrap_or(gst::ClockTime::from_mseconds(40))
    }

    /// What we add to the latency when live: a batch of frames, and the time allowed for
    /// their inference.
    fn our_latency(&self, batch_size: usize) -> gst::ClockTime {
        self.frame_duration() * batch_size as u64 + self.inference
    }

    /// When a frame must leave this element, as a clock time: its running time plus the
    /// pipeline latency, less half a frame for what comes downstream. A frame that QoS
    /// already declared late gets a deadline at time zero. `None` without a base time or
    /// outside the segment.
    fn deadline(
        &self,
        base: Option<gst::ClockTime>,
        pts: Option<gst::ClockTime>,
        batch_size: usize,
    ) -> Option<Duration> {
        let rt = self.segment.to_running_time(pts?)?;
        let base = base?;
        if self.qos_earliest.is_some_and(|e| rt < e) {
            return Some(Duration::ZERO);
        }
        let latency = self
            .latency
            .unwrap_or_else(|| self.upstream_latency + self.our_latency(batch_size));
        Some(planner::deadline(
            dur(base),
            dur(rt),
            dur(latency),
            dur(self.frame_duration() / 2),
        ))
    }
}

/// A run of frames being pushed: how many went, the crops of its made frames that are in
/// and not pushed yet, and how many were skipped.
struct Pushing<'a> {
    frames: &'a [(FrameIn, bool)],
    pushed: usize,
    crops: VecDeque<Option<Vec<u8>>>,
    skipped: usize,
}

/// A generated face (planar float RGB) as packed 8-bit RGB.
fn to_rgb(image: &[f32]) -> Vec<u8> {
    let mut rgb = vec![0u8; lipsync::RGB_LEN];
    lipsync::image_to_rgb(image, &mut rgb, lipsync::IMAGE_SIDE * 3);
    rgb
}

fn dur(t: gst::ClockTime) -> Duration {
    Duration::from_nanos(t.nseconds())
}

/// What the worker does next.
enum Job {
    /// An event or an idle frame, alone.
    Single(Item),
    /// A run of speech frames: each made (`false`) or skipped as late (`true`).
    Batch(Vec<(FrameIn, bool)>),
}

#[derive(Default)]
struct Counters {
    frames: u64,
    speech: u64,
    idle: u64,
    inferred: u64,
    skipped: u64,
    interrupted: u64,
    /// Batches this element's frames ran in.
    batches: u64,
    /// Frames in those batches, all sessions'.
    batch_frames: u64,
    /// This element's frames that ran in a batch with another session's frames.
    mixed: u64,
    inference_ns: u64,
}

pub struct MuseTalkElement {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    loaded: Mutex<Option<Arc<Loaded>>>,
    queue: Mutex<Queue>,
    cond: Condvar,
    timing: Mutex<Timing>,
    counters: Mutex<Counters>,
}

impl MuseTalkElement {
    fn load(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let device: Device = s.device.with_id(s.device_id);
        let precision: Precision = s.precision.into();
        let Some(dir) = s.avatar.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("No avatar: set the 'avatar' property to an avatar directory")
            ));
        };
        let avatar = Avatar::load_shared(&dir)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{e}")))?;
        if !avatar.has_latents() {
            return Err(gst::error_msg!(
                gst::ResourceError::OpenRead,
                (
                    "Avatar {} has no MuseTalk latents (latents.npy): prepare it with the VAE encoder",
                    dir.display()
                )
            ));
        }
        let fp16 = precision == Precision::Fp16;
        let unet_path = s.model_path(&s.unet, "unet", fp16);
        let vae_path = s.model_path(&s.vae_decoder, "vae_decoder", fp16);
        let load = |path: &PathBuf, c: &'static inference::ModelContract| {
            let mut req = SessionRequest::new(path, c);
            req.device = device;
            req.precision = precision;
            req.threads = s.threads as usize;
            req.runtime_library = s.ort_library.as_deref();
            // (TensorRT's profile: every batch this element or the service may run)
            req.max_batch = Some(s.max_batch.max(s.batch_size) as usize);
            inference::load_for_element(&*self.obj(), &req, &format!("MuseTalk {}", c.name))
        };
        let unet = load(&unet_path, &contract::UNET)?;
        let vae_decoder = load(&vae_path, &contract::VAE_DECODER)?;
        gst::info!(
            CAT,
            imp = self,
            "UNet {} + VAE decoder {} on {}, avatar {} ({} frames)",
            unet_path.display(),
            vae_path.display(),
            unet.device,
            dir.display(),
            avatar.len()
        );
        let muse = MuseTalk { unet, vae_decoder };
        let model_batch = muse.max_batch();
        // The largest batch this element's frames run in, as the settings ask for it.
        let wanted = if s.shared_batching {
            s.max_batch.max(s.batch_size)
        } else {
            s.batch_size
        } as usize;
        if let Some(n) = model_batch
            && n < wanted
        {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "The MuseTalk models {} and {} fix the batch size to {n}: batching falls back to {n} frame(s) per run \
                         (export them with a dynamic batch dimension for batches of up to {wanted})",
                    unet_path.display(),
                    vae_path.display()
                )
            );
        }
        // ... and as the model allows it.
        let largest = model_batch.map_or(wanted, |n| n.min(wanted)).max(1);
        // -1: batches of one and of the largest size are timed; the inference latency is
        // taken from the largest, and the cost models start from both. Given: nothing is
        // timed (no model run at READY), the cost models learn from the live batches alone.
        let (inference, timed) = match u64::try_from(s.inference_latency) {
            Ok(ms) => (gst::ClockTime::from_mseconds(ms), Vec::new()),
            Err(_) => {
                let timed = self.time_batches(&muse, &avatar, largest)?;
                let &(frames, took) = timed.last().expect("a batch was timed");
                let allowed =
                    gst::ClockTime::from_mseconds((took.as_secs_f64() * 1.25 * 1e3).ceil() as u64);
                gst::info!(
                    CAT,
                    imp = self,
                    "inference latency {allowed} (a batch of {frames} frames took {took:?})"
                );
                (allowed, timed)
            }
        };
        let mut seed = CostModel::new();
        for &(frames, took) in &timed {
            seed.observe(frames, took);
        }
        {
            let mut t = self.timing.lock().unwrap();
            t.inference = inference;
            t.seed = seed;
        }
        let batch =
            if s.shared_batching {
                let service = lipsync::shared_batcher(&muse).map_err(|e| {
                    gst::error_msg!(
                        gst::CoreError::Thread,
                        ("Cannot start the batching service: {e}")
                    )
                })?;
                service.seed_cost(&timed);
                Some(service.session(
                    model_batch.map_or(s.max_batch as usize, |n| n.min(s.max_batch as usize)),
                ))
            } else {
                None
            };
        *self.loaded.lock().unwrap() = Some(Arc::new(Loaded {
            muse,
            avatar,
            batch,
            model_batch,
        }));
        Ok(())
    }

    /// Times a batch of one frame and one of `largest` frames (the largest this element's
    /// frames run in), each after an untimed run of each (a first run pays set-up: a GPU's
    /// per-shape work); returns (frames, time) per size, ascending.
    ///
    /// `inference-latency` -1 is the largest batch's time plus a quarter for the variation
    /// between runs: a live frame then has, past its batch's wait, the time its inference
    /// takes. Without it every frame would be due when its batch starts, and a model slower
    /// than a frame (a GPU's fixed cost per batch) would make every frame late.
    ///
    /// The cost models (the element's, the batching service's) start from both sizes. From
    /// one size alone a batch's cost is taken as proportional to its frames: on a GPU, whose
    /// batch costs little more than its first frame, frames would run alone, and be lost,
    /// until two happened to wait together and their batch measured a second size (on the
    /// CPU with a model of that shape, 57 ms a batch and 8 ms a frame, two sessions of their
    /// own batches held 8.9 of 25 fps in batches of one; timed at start-up, 25 in batches
    /// of 4).
    ///
    /// Timed once per pair of loaded models and batch size in the process: the elements
    /// that start later, maybe while others keep the device busy, take the first figures
    /// (timed under their load they would count their waits as well).
    fn time_batches(
        &self,
        muse: &MuseTalk,
        avatar: &Avatar,
        largest: usize,
    ) -> Result<Vec<(usize, Duration)>, gst::ErrorMessage> {
        type Timed = Vec<(
            std::sync::Weak<inference::SharedSession>,
            std::sync::Weak<inference::SharedSession>,
            usize,
            Vec<(usize, Duration)>,
        )>;
        static TIMED: LazyLock<Mutex<Timed>> = LazyLock::new(|| Mutex::new(Vec::new()));
        // Held while timing: two elements starting together time once.
        let mut timed = TIMED.lock().unwrap_or_else(|e| e.into_inner());
        timed.retain(|(u, v, _, _)| u.strong_count() > 0 && v.strong_count() > 0);
        let same = |w: &std::sync::Weak<inference::SharedSession>,
                    a: &Arc<inference::SharedSession>| {
            std::ptr::eq(w.as_ptr(), Arc::as_ptr(a))
        };
        if let Some((_, _, _, t)) = timed
            .iter()
            .find(|(u, v, n, _)| *n == largest && same(u, &muse.unet) && same(v, &muse.vae_decoder))
        {
            gst::info!(
                CAT,
                imp = self,
                "batch times {t:?} (timed before for these models)"
            );
            return Ok(t.clone());
        }
        let audio = vec![0f32; FRAME_LEN];
        let mut sizes = vec![1, largest.max(1)];
        sizes.dedup();
        let batches: Vec<Vec<FrameInput<'_>>> = sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|k| FrameInput {
                        latent: avatar.latent(k % avatar.len()),
                        audio: &audio,
                    })
                    .collect()
            })
            .collect();
        let run = |inputs: &[FrameInput<'_>]| {
            muse.run(inputs).map_err(|e| {
                gst::error_msg!(
                    gst::LibraryError::Failed,
                    (
                        "MuseTalk inference failed on a batch of {} frames: {e}",
                        inputs.len()
                    )
                )
            })
        };
        for inputs in &batches {
            run(inputs)?;
        }
        let mut times = Vec::with_capacity(batches.len());
        for inputs in &batches {
            let start = Instant::now();
            run(inputs)?;
            times.push((inputs.len(), start.elapsed()));
        }
        gst::info!(CAT, imp = self, "batch times {times:?}");
        timed.push((
            Arc::downgrade(&muse.unet),
            Arc::downgrade(&muse.vae_decoder),
            largest,
            times.clone(),
        ));
        Ok(times)
    }

    fn src_caps(fps: gst::Fraction) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", lipsync::IMAGE_SIDE as i32)
            .field("height", lipsync::IMAGE_SIDE as i32)
            .field("framerate", fps)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build()
    }

    /// Frame counter of a features buffer: its offset (whisperfeat's frame number), else its
    /// timestamp on the frame grid.
    fn counter(&self, buffer: &gst::BufferRef) -> u64 {
        if let Some(off) = Some(buffer.offset()).filter(|o| *o != gst::ffi::GST_BUFFER_OFFSET_NONE)
        {
            return off;
        }
        let fps = self.timing.lock().unwrap().fps;
        let (n, d) = (fps.numer() as u128, fps.denom() as u128 * 1_000_000_000);
        buffer
            .pts()
            .map(|p| ((p.nseconds() as u128 * n + d / 2) / d) as u64)
            .unwrap_or(0)
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let loaded = self
            .loaded
            .lock()
            .unwrap()
            .clone()
            .ok_or(gst::FlowError::Flushing)?;
        let gap = buffer.flags().contains(gst::BufferFlags::GAP) || buffer.size() == 0;
        let features = if gap {
            None
        } else {
            if buffer.size() != FEATURE_BYTES {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "Features buffer has {} bytes, expected {FEATURE_BYTES} ([{},{}] f32): musetalk takes whisperfeat's output",
                        buffer.size(),
                        features::ROWS,
                        features::DIM
                    )
                );
                return Err(gst::FlowError::Error);
            }
            let map = buffer.map_readable().map_err(|_| {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("Cannot map buffer"));
                gst::FlowError::Error
            })?;
            let v: Vec<f32> = map
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("Features buffer contains NaN or infinity")
                );
                return Err(gst::FlowError::Error);
            }
            Some(v)
        };
        let counter = self.counter(&buffer);
        let frame = FrameIn {
            pts: buffer.pts(),
            duration: buffer.duration(),
            counter,
            index: avatar::mirror_index(loaded.avatar.len(), counter) as u64,
            features,
            discont: buffer.flags().contains(gst::BufferFlags::DISCONT),
        };

        if self.queue.lock().unwrap().live.is_none() {
            let mut q = gst::query::Latency::new();
            let answered = self.sinkpad.peer_query(&mut q);
            let (live, min, _) = q.result();
            let live = answered && live;
            if live {
                // Deadlines before the pipeline's LATENCY event count upstream's latency.
                self.timing.lock().unwrap().upstream_latency = min;
            }
            self.queue.lock().unwrap().live = Some(live);
        }
        let max = self.settings.lock().unwrap().batch_size as usize * 2 + 8;
        let mut q = self.queue.lock().unwrap();
        loop {
            if q.flushing {
                return Err(gst::FlowError::Flushing);
            }
            if let Some(err) = q.flow {
                return Err(err);
            }
            if q.items.len() < max {
                break;
            }
            q = self.cond.wait(q).unwrap();
        }
        q.items.push_back(Item::Frame(frame));
        q.wake(&self.cond);
        Ok(gst::FlowSuccess::Ok)
    }

    fn enqueue_event(&self, event: gst::Event) -> bool {
        let mut q = self.queue.lock().unwrap();
        if q.flushing {
            return false;
        }
        q.items.push_back(Item::Event(event));
        q.wake(&self.cond);
        true
    }

    fn start_task(&self) {
        let weak = self.obj().downgrade();
        let res = self.srcpad.start_task(move || {
            if let Some(obj) = weak.upgrade() {
                obj.imp().work();
            }
        });
        if let Err(e) = res {
            gst::element_imp_error!(
                self,
                gst::CoreError::Thread,
                ("Cannot start the inference thread: {e}")
            );
        }
    }

    /// Called without lock: waits for the worker's current turn to end.
    fn stop_task(&self) {
        {
            let mut q = self.queue.lock().unwrap();
            q.flushing = true;
            q.wake(&self.cond);
        }
        self.cancel_shared();
        let _ = self.srcpad.stop_task();
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "event {:?}", event.type_());
        match event.view() {
            EventView::FlushStart(_) => {
                {
                    let mut q = self.queue.lock().unwrap();
                    q.flushing = true;
                    q.wake(&self.cond);
                }
                self.cancel_shared();
                // Called without lock: pausing waits for the worker's turn to end.
                let ret = self.srcpad.push_event(event);
                let _ = self.srcpad.pause_task();
                return ret;
            }
            EventView::FlushStop(_) => {
                {
                    let mut q = self.queue.lock().unwrap();
                    q.items.clear();
                    q.flushing = false;
                    q.flow = None;
                    q.live = None;
                    q.clock_wait = None;
                }
                self.timing.lock().unwrap().qos_earliest = None;
                let ret = self.srcpad.push_event(event);
                self.start_task();
                return ret;
            }
            EventView::Caps(e) => {
                let fps = e
                    .caps()
                    .structure(0)
                    .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
                    .filter(|f| f.numer() > 0)
                    .unwrap_or(DEFAULT_FPS);
                self.timing.lock().unwrap().fps = fps;
                return self.enqueue_event(gst::event::Caps::new(&Self::src_caps(fps)));
            }
            EventView::CustomDownstream(_) if events::is_interrupt(&event) => {
                let mut n = 0;
                {
                    let mut q = self.queue.lock().unwrap();
                    for item in q.items.iter_mut() {
                        if let Item::Frame(f) = item
                            && f.features.take().is_some()
                        {
                            n += 1;
                        }
                    }
                    // (enqueue_event below wakes the worker: these are idle frames now)
                }
                self.counters.lock().unwrap().interrupted += n;
                gst::debug!(
                    CAT,
                    imp = self,
                    "interrupt: {n} pending speech frames dropped"
                );
                return self.enqueue_event(event);
            }
            _ => {}
        }
        if event.is_serialized() {
            self.enqueue_event(event)
        } else {
            gst::Pad::event_default(pad, Some(&*self.obj()), event)
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::Latency(e) => {
                self.timing.lock().unwrap().latency = Some(e.latency());
            }
            EventView::Qos(e) => {
                let (_, _, diff, ts) = e.get();
                let mut t = self.timing.lock().unwrap();
                t.qos_earliest = match ts {
                    Some(ts) if diff > 0 => Some(ts + gst::ClockTime::from_nseconds(diff as u64)),
                    _ => None,
                };
            }
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn our_latency(&self) -> gst::ClockTime {
        let b = self.settings.lock().unwrap().batch_size as usize;
        self.timing.lock().unwrap().our_latency(b)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            let ours = if live {
                self.our_latency()
            } else {
                gst::ClockTime::ZERO
            };
            self.timing.lock().unwrap().upstream_latency = min;
            gst::debug!(CAT, imp = self, "latency: upstream {min} ours {ours}");
            q.set(live, min + ours, max.map(|m| m + ours));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// The planner's view of the queue's leading run of speech frames: their deadlines and,
    /// when nothing follows the run (more frames may join it), the frames still to come up
    /// to a full batch, with deadlines a frame apart. Returns the run's length too.
    /// Called with the queue lock; takes `timing` (queue -> timing).
    fn plan_input(
        &self,
        q: &Queue,
        base: Option<gst::ClockTime>,
        batch_size: usize,
        open: bool,
    ) -> (usize, Vec<planner::Frame>) {
        let t = self.timing.lock().unwrap();
        let mut frames: Vec<planner::Frame> = q
            .items
            .iter()
            .map_while(|i| match i {
                Item::Frame(f) if f.features.is_some() => Some(f),
                _ => None,
            })
            .map(|f| planner::Frame::ready(0, t.deadline(base, f.pts, batch_size)))
            .collect();
        let run = frames.len();
        if open && run == q.items.len() && run < batch_size {
            let step = dur(t.frame_duration());
            let last = frames.last().and_then(|f| f.deadline);
            for k in 1..=(batch_size - run) as u32 {
                frames.push(planner::Frame::awaited(0, last.map(|d| d + step * k)));
            }
        }
        (run, frames)
    }

    /// Waits until there is something to do and says what; `None` when flushing.
    fn next_job(&self) -> Option<Job> {
        let loaded = self.loaded.lock().unwrap().clone();
        // A model with a fixed batch dimension bounds the batches (warned at load).
        let batch_size = loaded
            .as_ref()
            .and_then(|l| l.model_batch)
            .unwrap_or(usize::MAX)
            .min(self.settings.lock().unwrap().batch_size.max(1) as usize);
        // With shared batching the planner's cost is the service's model cost per batch
        // (its cost lock is a leaf: read below with the queue lock held). The time a run
        // spends waiting in the service is not a cost of the frames: counting it would make
        // every frame look late under load, and a session that skips everything never
        // measures again.
        let shared = loaded.filter(|l| l.batch.is_some());
        // After a failed clock wait, plan once without waiting for more frames.
        let mut open = true;
        let mut q = self.queue.lock().unwrap();
        loop {
            if q.flushing {
                return None;
            }
            // (the object lock, taken last; both may change while we wait)
            let (clock, base) = {
                let obj = self.obj();
                (obj.clock(), obj.base_time())
            };
            let live = q.live.unwrap_or(false);
            match q.items.front() {
                None => {
                    q = self.cond.wait(q).unwrap();
                    continue;
                }
                Some(Item::Event(_) | Item::Frame(FrameIn { features: None, .. })) => {
                    let item = q.items.pop_front().unwrap();
                    q.wake(&self.cond);
                    return Some(Job::Single(item));
                }
                Some(Item::Frame(_)) => {}
            }
            let now = clock.as_ref().filter(|_| live).map(|c| dur(c.time()));
            let (run, frames) = self.plan_input(&q, base, batch_size, open);
            let decision = match shared.as_ref().and_then(|l| l.batch.as_ref()) {
                Some(handle) => planner::plan(now, &frames, &handle.cost(), batch_size, live),
                None => {
                    let t = self.timing.lock().unwrap();
                    planner::plan(now, &frames, &t.cost, batch_size, live)
                }
            };
            open = true;
            let (take, late) = match decision {
                Decision::Run { take, late } => {
                    // Frames skipped on the estimate alone make it doubted, so that a
                    // too-high estimate cannot skip everything from then on.
                    let doubted = planner::skipped_on_estimate(now, &frames, &late);
                    if doubted > 0 {
                        match shared.as_ref().and_then(|l| l.batch.as_ref()) {
                            Some(handle) => {
                                // (the service's lock is taken with none of ours held)
                                drop(q);
                                handle.doubt(doubted);
                                q = self.queue.lock().unwrap();
                                if q.flushing {
                                    return None;
                                }
                                // An interrupt may have silenced the run meanwhile: plan
                                // again (the doubt stays).
                                let intact = q.items.len() >= run
                                    && q.items.iter().take(run).all(
                                        |i| matches!(i, Item::Frame(f) if f.features.is_some()),
                                    );
                                if !intact {
                                    continue;
                                }
                            }
                            None => {
                                let now = now.expect("frames skipped on the estimate are live");
                                self.timing.lock().unwrap().cost.doubt_skipped(doubted, now);
                            }
                        }
                    }
                    (take, late)
                }
                Decision::Idle | Decision::Wait { until: None } => {
                    q = self.cond.wait(q).unwrap();
                    continue;
                }
                Decision::Wait { until: Some(until) } => {
                    let Some(clock) = clock.as_ref() else {
                        open = false;
                        continue;
                    };
                    let id = clock
                        .new_single_shot_id(gst::ClockTime::from_nseconds(until.as_nanos() as u64));
                    q.clock_wait = Some(id.clone());
                    drop(q);
                    gst::trace!(
                        CAT,
                        imp = self,
                        "waiting until {until:?} for a fuller batch"
                    );
                    // Called without lock: arrivals, flushes and stops unschedule it.
                    let (res, _) = id.wait();
                    q = self.queue.lock().unwrap();
                    q.clock_wait = None;
                    match res {
                        Ok(_) | Err(gst::ClockError::Early | gst::ClockError::Unscheduled) => {}
                        Err(err) => {
                            gst::warning!(CAT, imp = self, "clock wait failed: {err:?}");
                            open = false;
                        }
                    }
                    continue;
                }
            };
            // The planner keeps one queue's order: what runs and what is skipped is a prefix
            // of the run. Should it not be, the frames after the first gap wait for the next
            // turn (and an empty prefix makes the first frame alone).
            let n = (0..run)
                .take_while(|i| take.contains(i) || late.contains(i))
                .count()
                .max(1);
            debug_assert_eq!(n, take.len() + late.len());
            let batch = q
                .items
                .drain(..n)
                .enumerate()
                .map(|(i, item)| match item {
                    Item::Frame(f) => (f, late.contains(&i)),
                    Item::Event(_) => unreachable!("the run holds frames only"),
                })
                .collect();
            q.wake(&self.cond);
            return Some(Job::Batch(batch));
        }
    }

    /// One turn of the worker: waits for something to do, does it.
    fn work(&self) {
        let Some(job) = self.next_job() else {
            let _ = self.srcpad.pause_task();
            return;
        };
        if matches!(job, Job::Single(_)) {
            self.not_expected();
        }
        let res = match job {
            Job::Single(Item::Event(event)) => {
                if let gst::EventView::Segment(e) = event.view()
                    && let Ok(seg) = e.segment().clone().downcast::<gst::ClockTime>()
                {
                    self.timing.lock().unwrap().segment = seg;
                }
                self.srcpad.push_event(event);
                Ok(())
            }
            Job::Single(Item::Frame(f)) => self.process(vec![(f, false)]),
            Job::Batch(frames) => self.process(frames),
        };
        if let Err(err) = res {
            let mut q = self.queue.lock().unwrap();
            if err != gst::FlowError::Flushing {
                gst::debug!(CAT, imp = self, "pausing: {err:?}");
                q.flow = Some(err);
            }
            self.cond.notify_all();
            drop(q);
            if matches!(
                err,
                gst::FlowError::Error | gst::FlowError::NotNegotiated | gst::FlowError::NotLinked
            ) {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error"),
                    ["streaming stopped, reason {err:?}"]
                );
            }
            let _ = self.srcpad.pause_task();
        }
    }

    fn meta_buffer(&self, f: &FrameIn, data: Option<Vec<u8>>, speaking: bool) -> gst::Buffer {
        let gap = data.is_none();
        let mut buf = match data {
            Some(d) => gst::Buffer::from_mut_slice(d),
            None => gst::Buffer::new(),
        };
        let b = buf.get_mut().unwrap();
        b.set_pts(f.pts);
        b.set_duration(f.duration);
        b.set_offset(f.counter);
        b.set_offset_end(f.counter + 1);
        if gap {
            b.set_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE);
        }
        if f.discont {
            b.set_flags(gst::BufferFlags::DISCONT);
        }
        meta::add(
            b,
            AvatarFrame {
                index: f.index,
                frame: f.counter,
                speaking,
            },
        );
        buf
    }

    /// Makes and pushes a run of frames: one idle frame, or a batch of speech frames, each
    /// made or (`true`) skipped as late: pushed as GAP with the meta, speaking. With shared
    /// batching each frame is pushed as soon as the service hands it back (a run may be
    /// split across its batches). Called without lock.
    fn process(&self, frames: Vec<(FrameIn, bool)>) -> Result<(), gst::FlowError> {
        let loaded = self
            .loaded
            .lock()
            .unwrap()
            .clone()
            .ok_or(gst::FlowError::Flushing)?;
        let made: Vec<&FrameIn> = frames
            .iter()
            .filter(|(f, late)| f.features.is_some() && !late)
            .map(|(f, _)| f)
            .collect();
        let mut out = Pushing {
            frames: &frames,
            pushed: 0,
            crops: VecDeque::new(),
            skipped: 0,
        };
        if !made.is_empty() {
            match &loaded.batch {
                Some(handle) => self.infer_shared(&loaded, handle, &made, |images| {
                    out.crops
                        .extend(images.iter().map(|i| i.as_deref().map(to_rgb)));
                    self.push_ready(&mut out)
                })?,
                None => {
                    let images = self.infer_alone(&loaded, &made)?;
                    out.crops
                        .extend(images.iter().map(|i| i.as_deref().map(to_rgb)));
                }
            }
        }
        self.push_ready(&mut out)?;
        debug_assert_eq!(out.pushed, frames.len(), "every frame of the run pushed");
        if out.skipped > 0 {
            gst::debug!(
                CAT,
                imp = self,
                "behind real time: skipped {} of {} frames",
                out.skipped,
                frames.len()
            );
        }
        Ok(())
    }

    /// Pushes the run's frames that can go now, in order: idle and late frames, and made
    /// ones whose crops are in. Called without lock.
    fn push_ready(&self, out: &mut Pushing<'_>) -> Result<(), gst::FlowError> {
        while let Some((f, late)) = out.frames.get(out.pushed) {
            let buf = {
                let mut c = self.counters.lock().unwrap();
                match (&f.features, late) {
                    (None, _) => {
                        c.frames += 1;
                        c.idle += 1;
                        self.meta_buffer(f, None, false)
                    }
                    (Some(_), true) => {
                        c.frames += 1;
                        c.speech += 1;
                        c.skipped += 1;
                        out.skipped += 1;
                        self.meta_buffer(f, None, true)
                    }
                    (Some(_), false) => {
                        let Some(crop) = out.crops.pop_front() else {
                            // (still in the batching service)
                            return Ok(());
                        };
                        c.frames += 1;
                        c.speech += 1;
                        // `None`: the batching service found it late and did not make it.
                        if crop.is_none() {
                            c.skipped += 1;
                            out.skipped += 1;
                        }
                        self.meta_buffer(f, crop, true)
                    }
                }
            };
            out.pushed += 1;
            self.srcpad.push(buf)?;
        }
        Ok(())
    }

    /// Runs the frames as one batch on this element's own. Called without lock.
    fn infer_alone(
        &self,
        loaded: &Loaded,
        made: &[&FrameIn],
    ) -> Result<Vec<Option<Vec<f32>>>, gst::FlowError> {
        let inputs: Vec<FrameInput<'_>> = made
            .iter()
            .map(|f| FrameInput {
                latent: loaded.avatar.latent(f.index as usize),
                audio: f.features.as_deref().unwrap_or_default(),
            })
            .collect();
        // The cost model learns on the clock the deadlines are on.
        let clock = self.obj().clock();
        let clock_start = clock.as_ref().map(|c| c.time());
        let start = Instant::now();
        let images = loaded.muse.run(&inputs).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::LibraryError::Failed,
                ("MuseTalk inference failed: {e}")
            );
            gst::FlowError::Error
        })?;
        let took = start.elapsed();
        {
            let mut t = self.timing.lock().unwrap();
            match (clock, clock_start) {
                (Some(c), Some(t0)) => {
                    let end = c.time();
                    t.cost
                        .observe_at(made.len(), dur(end.saturating_sub(t0)), dur(end));
                }
                _ => t.cost.observe(made.len(), took),
            }
        }
        let mut c = self.counters.lock().unwrap();
        c.batches += 1;
        c.batch_frames += made.len() as u64;
        c.inferred += made.len() as u64;
        c.inference_ns += took.as_nanos() as u64;
        drop(c);
        Ok(images
            .chunks_exact(IMAGE_LEN)
            .map(|i| Some(i.to_vec()))
            .collect())
    }

    /// Runs the frames through the process's batching service, with their deadlines on the
    /// service's clock, and gives their outputs to `ready` as they come back, in order
    /// (`None`: the service found the frame late); returns when all are back, or when the
    /// element flushes (cancel). The service measures its model time itself.
    /// Called without lock; takes `timing`, then `queue`, then `counters`, one at a time.
    fn infer_shared(
        &self,
        loaded: &Loaded,
        handle: &batcher::Handle<MuseBatchModel>,
        made: &[&FrameIn],
        mut ready: impl FnMut(Vec<Option<Vec<f32>>>) -> Result<(), gst::FlowError>,
    ) -> Result<(), gst::FlowError> {
        let batch_size = self.settings.lock().unwrap().batch_size as usize;
        let (clock, base) = {
            let obj = self.obj();
            (obj.clock(), obj.base_time())
        };
        let live = self.queue.lock().unwrap().live.unwrap_or(false);
        let (deadlines, step): (Vec<Option<Duration>>, Duration) = {
            let t = self.timing.lock().unwrap();
            let clock_now = clock.as_ref().map(|c| dur(c.time()));
            let svc_now = handle.now();
            let to_service = |d: Duration| {
                let now = clock_now?;
                Some(if d >= now {
                    svc_now + (d - now)
                } else {
                    svc_now.saturating_sub(now - d)
                })
            };
            let d = made
                .iter()
                .map(|f| {
                    live.then(|| t.deadline(base, f.pts, batch_size))
                        .flatten()
                        .and_then(to_service)
                })
                .collect();
            (d, dur(t.frame_duration()))
        };
        // More speech follows when the queue holds speech next or (live) nothing yet.
        let more = {
            let q = self.queue.lock().unwrap();
            live && match q.items.front() {
                None => true,
                Some(Item::Frame(f)) => f.features.is_some(),
                Some(Item::Event(_)) => false,
            }
        };
        let frames = made
            .iter()
            .zip(deadlines)
            .map(|(f, d)| {
                (
                    MuseFrame {
                        avatar: loaded.avatar.clone(),
                        index: f.index as usize,
                        audio: f.features.clone().unwrap_or_default(),
                    },
                    d,
                )
            })
            .collect();
        let failed = |e| {
            match e {
                batcher::BatchError::Cancelled => return gst::FlowError::Flushing,
                batcher::BatchError::Model(e) => gst::element_imp_error!(
                    self,
                    gst::LibraryError::Failed,
                    ("MuseTalk inference failed: {e}")
                ),
                batcher::BatchError::Refused(e) => gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("The MuseTalk batching service refused this element's frames: {e}")
                ),
            }
            gst::FlowError::Error
        };
        let mut start = Instant::now();
        let mut run = handle
            .submit(frames, more.then_some(step))
            .map_err(failed)?;
        let mut last = None;
        while !run.is_done() {
            let done = handle.next(&mut run).map_err(failed)?;
            let mut c = self.counters.lock().unwrap();
            for d in done.iter().flatten() {
                if last != Some(d.batch.id) {
                    last = Some(d.batch.id);
                    c.batches += 1;
                    c.batch_frames += d.batch.size as u64;
                }
                if d.batch.sessions > 1 {
                    c.mixed += 1;
                }
            }
            c.inferred += done.iter().flatten().count() as u64;
            // (the time waited for the service, not that spent pushing)
            c.inference_ns += start.elapsed().as_nanos() as u64;
            drop(c);
            if let Err(e) = ready(done.into_iter().map(|d| d.map(|d| d.output)).collect()) {
                // Pushing failed (flushing, not linked, ...): the rest of the run is not
                // wanted; its results are dropped as they come.
                handle.cancel();
                return Err(e);
            }
            start = Instant::now();
        }
        Ok(())
    }

    /// Cancels this element's frames in the batching service, waking a worker that waits
    /// for them. Called without lock.
    fn cancel_shared(&self) {
        let loaded = self.loaded.lock().unwrap().clone();
        if let Some(handle) = loaded.as_ref().and_then(|l| l.batch.as_ref()) {
            handle.cancel();
        }
    }

    /// The worker will not submit soon. Called without lock.
    fn not_expected(&self) {
        let loaded = self.loaded.lock().unwrap().clone();
        if let Some(handle) = loaded.as_ref().and_then(|l| l.batch.as_ref()) {
            handle.not_expected();
        }
    }

    fn stats(&self) -> gst::Structure {
        // The cost model the planner prices batches with: the service's when shared (read
        // with none of our locks held).
        let loaded = self.loaded.lock().unwrap().clone();
        let shared = loaded.and_then(|l| l.batch.as_ref().map(|h| h.cost()));
        let (inference, own) = {
            let t = self.timing.lock().unwrap();
            (t.inference, t.cost.clone())
        };
        let (fixed, per) = shared.unwrap_or(own).parts().map_or((-1, -1), |(f, p)| {
            (f.as_micros() as i64, p.as_micros() as i64)
        });
        let c = self.counters.lock().unwrap();
        gst::Structure::builder("musetalk-stats")
            .field("inference-latency-ms", inference.mseconds())
            .field("batch-cost-fixed-us", fixed)
            .field("batch-cost-per-frame-us", per)
            .field("frames", c.frames)
            .field("speech-frames", c.speech)
            .field("idle-frames", c.idle)
            .field("inferred-frames", c.inferred)
            .field("skipped-frames", c.skipped)
            .field("interrupted-frames", c.interrupted)
            .field("batches", c.batches)
            .field(
                "mean-batch",
                if c.batches > 0 {
                    c.batch_frames as f64 / c.batches as f64
                } else {
                    0.0
                },
            )
            .field("mixed-frames", c.mixed)
            .field(
                "inference-time",
                gst::ClockTime::from_nseconds(c.inference_ns),
            )
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MuseTalkElement {
    const NAME: &'static str = "GstMuseTalk";
    type Type = super::MuseTalk;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").unwrap();
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                MuseTalkElement::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                MuseTalkElement::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .build();
        let templ = klass.pad_template("src").unwrap();
        let srcpad = gst::Pad::builder_from_template(&templ)
            .event_function(|pad, parent, event| {
                MuseTalkElement::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                MuseTalkElement::catch_panic_pad_function(
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
            loaded: Mutex::new(None),
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            timing: Mutex::new(Timing::default()),
            counters: Mutex::new(Counters::default()),
        }
    }
}

impl ObjectImpl for MuseTalkElement {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let [device, device_id] = enums::device_properties("the UNet and the VAE decoder");
            vec![
                device,
                device_id,
                enums::precision_property(
                    "fp16: the *_fp16.onnx files of model-dir where present, and TensorRT's fp16 kernels",
                ),
                glib::ParamSpecString::builder("avatar")
                    .nick("Avatar")
                    .blurb("Avatar directory (format v1) with MuseTalk latents (latents.npy [N,8,32,32])")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model-dir")
                    .nick("Model directory")
                    .blurb("Folder with unet.onnx and vae_decoder.onnx (and *_fp16.onnx, used when precision=fp16), \
                            as models/export_musetalk.py writes them; default: <set-up cache>/models/musetalk")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("unet")
                    .nick("UNet")
                    .blurb("MuseTalk UNet ONNX (sample [B,8,32,32], timestep [B], encoder_hidden_states [B,50,384] -> latent [B,4,32,32]); overrides model-dir")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("vae-decoder")
                    .nick("VAE decoder")
                    .blurb("sd-vae-ft-mse decoder ONNX (latent [B,4,32,32] -> image [B,3,256,256]); overrides model-dir")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Speech frames per inference run at most; a live pipeline never waits past a frame's deadline \
                            to fill a batch (adds batch-size frames of latency when live)")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_BATCH_SIZE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("shared-batching")
                    .nick("Shared batching")
                    .blurb("Batch speech frames across every musetalk element of the process that loads the same models \
                            (one batching service per model pair: earliest deadline first, a fair share per element); \
                            false: this element runs its own batches")
                    .default_value(DEFAULT_SHARED_BATCHING)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-batch")
                    .nick("Maximum shared batch")
                    .blurb("Frames per batch at most in the shared batching service (the largest max-batch among \
                            its elements); batch-size still bounds what this element submits at once")
                    .minimum(1)
                    .maximum(256)
                    .default_value(DEFAULT_MAX_BATCH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("inference-latency")
                    .nick("Inference latency")
                    .blurb("Milliseconds allowed for a batch's inference, added to the latency this element reports \
                            when live (besides batch-size frames); -1: measured at READY on one batch of the \
                            largest size this element's frames run in (max-batch when shared, else batch-size), \
                            plus a quarter; a batch of one is timed too, and the batch cost model starts from \
                            both (given: nothing runs at READY, the cost model learns from the live batches)")
                    .minimum(-1)
                    .maximum(60_000)
                    .default_value(DEFAULT_INFERENCE_LATENCY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("Intra-op threads on CPU (0: ONNX Runtime's default)")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so (default: ORT_DYLIB_PATH, the set-up cache, the system)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("inference-latency-ms (the time allowed for inference), batch-cost-fixed-us and \
                            batch-cost-per-frame-us (the batch cost the planner prices with, -1 while unknown), frames, speech-frames, idle-frames, inferred-frames, skipped-frames (late, QoS), \
                            interrupted-frames, batches (that this element's frames ran in), mean-batch (their mean size, \
                            all elements' frames), mixed-frames (frames that ran with another element's), inference-time")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let path = |v: &glib::Value| -> Option<PathBuf> {
            v.get::<Option<String>>()
                .unwrap()
                .filter(|p| !p.is_empty())
                .map(Into::into)
        };
        match pspec.name() {
            "avatar" => s.avatar = path(value),
            "model-dir" => s.model_dir = path(value),
            "unet" => s.unet = path(value),
            "vae-decoder" => s.vae_decoder = path(value),
            "device" => s.device = value.get().unwrap(),
            "device-id" => s.device_id = value.get().unwrap(),
            "precision" => s.precision = value.get().unwrap(),
            "batch-size" => s.batch_size = value.get().unwrap(),
            "threads" => s.threads = value.get().unwrap(),
            "shared-batching" => s.shared_batching = value.get().unwrap(),
            "max-batch" => s.max_batch = value.get().unwrap(),
            "inference-latency" => s.inference_latency = value.get().unwrap(),
            "ort-library" => s.ort_library = path(value),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let show = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match pspec.name() {
            "avatar" => show(&s.avatar).to_value(),
            "model-dir" => show(&s.model_dir).to_value(),
            "unet" => show(&s.unet).to_value(),
            "vae-decoder" => show(&s.vae_decoder).to_value(),
            "device" => s.device.to_value(),
            "device-id" => s.device_id.to_value(),
            "precision" => s.precision.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "threads" => s.threads.to_value(),
            "shared-batching" => s.shared_batching.to_value(),
            "max-batch" => s.max_batch.to_value(),
            "inference-latency" => s.inference_latency.to_value(),
            "ort-library" => show(&s.ort_library).to_value(),
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

impl GstObjectImpl for MuseTalkElement {}

impl ElementImpl for MuseTalkElement {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "MuseTalk lip-sync",
                "Filter/Converter/Video",
                "MuseTalk v1.5: whisper features + avatar latents -> 256x256 RGB face crops (UNet + VAE decoder)",
                "livetalk developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let fps = gst::FractionRange::new(gst::Fraction::new(1, 1), gst::Fraction::new(120, 1));
            let sink_caps = gst::Caps::builder(features::CAPS_NAME)
                .field("framerate", fps)
                .field("rows", features::ROWS as i32)
                .field("dims", features::DIM as i32)
                .build();
            let src_caps = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", lipsync::IMAGE_SIDE as i32)
                .field("height", lipsync::IMAGE_SIDE as i32)
                .field("framerate", fps)
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
                if let Err(msg) = self.load() {
                    self.post_error_message(msg);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::ReadyToPaused => {
                *self.counters.lock().unwrap() = Counters::default();
                *self.queue.lock().unwrap() = Queue::default();
                // (the inference latency and the batch times were taken at READY: they stay)
                let mut t = self.timing.lock().unwrap();
                *t = Timing {
                    inference: t.inference,
                    cost: t.seed.clone(),
                    seed: std::mem::take(&mut t.seed),
                    ..Timing::default()
                };
            }
            gst::StateChange::PausedToReady => self.stop_task(),
            _ => {}
        }
        let ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => self.start_task(),
            gst::StateChange::PausedToReady => {
                *self.queue.lock().unwrap() = Queue::default();
            }
            gst::StateChange::ReadyToNull => *self.loaded.lock().unwrap() = None,
            _ => {}
        }
        Ok(ret)
    }
}
