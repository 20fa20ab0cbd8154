//! `livetalk bench sessions`: how many live sessions this machine sustains at 25 fps.
//!
//! Each session is the pipeline `livetalk serve` runs for a browser (the same media chain:
//! piperttssrc -> lipwarp -> avatarblend, and the same encoders with webrtcsink's VP8 settings
//! and RTP payloaders), ending in clock-synchronised fakesinks instead of webrtcsink, and
//! talking all the time. For 1, 2, ... sessions at once it reports the frames per second
//! each session encodes on time (within 100 ms of their due time at the sink), and the CPU
//! the process used, and the share of time each session's TTS was producing speech (when
//! synthesis cannot keep up, sentences start late and gaps open). It stops after the first
//! count where a session falls below 24 fps or below 90% of one session's speech share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use gst::prelude::*;

use std::path::{Path, PathBuf};

use crate::launch::AvatarChain;
use crate::serve::session::{AUDIO_OUT, VIDEO_OUT, media_chain};
use gstlivetalk::enums::Driver;

const TEXT: &str = "Good evening, and welcome to the show. Tonight we talk about the weather, \
    the markets and the news from around the world. It has been a busy week, with storms in \
    the north and sunshine in the south. Stay with us for the details after this short \
    introduction, and do not forget to send us your questions. ";

#[derive(Default)]
struct Counts {
    frames: AtomicU64,
    on_time: AtomicU64,
    /// Nanoseconds of speech (not GAP silence) the TTS produced.
    speech_ns: AtomicU64,
}

struct Running {
    pipeline: gst::Pipeline,
    counts: Arc<Counts>,
}

fn start_session(avatar: &Path) -> anyhow::Result<Running> {
    let chain = media_chain(
        "piperttssrc name=tts is-live=true",
        &AvatarChain {
            avatar: avatar.to_path_buf(),
            driver: Driver::Lipwarp,
            model_dir: None,
            device: gstlivetalk::inference::Device::Cpu,
            actions: None,
        },
    );
    let q = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000";
    let desc = format!("{chain} vt. ! {q} ! {VIDEO_OUT} at. ! {q} ! {AUDIO_OUT}");
    let pipeline = gst::parse::launch(&desc)
        .context("building the session pipeline")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let counts = Arc::new(Counts::default());
    // Encoded frames, one buffer each (after the payloader they come as lists of packets).
    let enc = pipeline.by_name("venc").context("no video encoder")?;
    let pad = enc.static_pad("src").context("no encoder pad")?;
    let (c, weak) = (counts.clone(), pipeline.downgrade());
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        c.frames.fetch_add(1, Ordering::Relaxed);
        if let (Some(b), Some(p)) = (info.buffer(), weak.upgrade())
            && on_time(pad, b, &p)
        {
            c.on_time.fetch_add(1, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    let tts = pipeline.by_name("tts").context("no tts")?;
    let c = counts.clone();
    tts.static_pad("src").context("no tts pad")?.add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            if let Some(b) = info.buffer()
                && !b.flags().contains(gst::BufferFlags::GAP)
            {
                let d = b.duration().map_or(0, |d| d.nseconds());
                c.speech_ns.fetch_add(d, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing)?;
    tts.emit_by_name::<bool>("speak", &[&TEXT.repeat(4)]);
    Ok(Running { pipeline, counts })
}

/// Whether a buffer passing `pad` is within 100 ms of its due time at a synced sink: its
/// running time plus the pipeline latency, against the pipeline clock now.
pub fn on_time(pad: &gst::Pad, buffer: &gst::BufferRef, pipeline: &gst::Pipeline) -> bool {
    on_time_with(
        pad,
        buffer,
        pipeline,
        pipeline.latency().unwrap_or(gst::ClockTime::ZERO),
    )
}

/// [`on_time`] with the pipeline latency given (as a latency query answers it).
fn on_time_with(
    pad: &gst::Pad,
    buffer: &gst::BufferRef,
    pipeline: &gst::Pipeline,
    latency: gst::ClockTime,
) -> bool {
    let due = buffer.pts().and_then(|pts| {
        let ev = pad.sticky_event::<gst::event::Segment>(0)?;
        let seg = ev.segment().downcast_ref::<gst::ClockTime>()?;
        seg.to_running_time(pts)
    });
    let now = pipeline
        .clock()
        .zip(pipeline.base_time())
        .map(|(clock, base)| clock.time().saturating_sub(base));
    match (due, now) {
        (Some(due), Some(now)) => {
            let deadline = due + latency;
            now <= deadline + gst::ClockTime::from_mseconds(100)
        }
        _ => false,
    }
}

/// User + system CPU seconds of this process.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64;
    ticks / 100.0
}

pub fn run(max: usize, seconds: f64) -> anyhow::Result<()> {
    let avatar = crate::render::default_avatar();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "sessions (lipwarp, VP8 + Opus as webrtcsink, always talking), {seconds:.0} s each \
         after 4 s of warm-up, {cores} cores:"
    );
    println!(
        "sessions  on-time fps per session (min / mean)  delivered fps (min)  speech (min)  CPU cores"
    );
    let mut baseline_speech = None;
    for n in 1..=max {
        let sessions: Vec<Running> = (0..n)
            .map(|_| start_session(&avatar))
            .collect::<anyhow::Result<_>>()?;
        std::thread::sleep(Duration::from_secs(4));
        let snap = |s: &Running| {
            (
                s.counts.frames.load(Ordering::Relaxed),
                s.counts.on_time.load(Ordering::Relaxed),
                s.counts.speech_ns.load(Ordering::Relaxed),
            )
        };
        let before: Vec<(u64, u64, u64)> = sessions.iter().map(snap).collect();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let wall = t0.elapsed().as_secs_f64();
        let cpu = (cpu_seconds() - c0) / wall;
        let after: Vec<(u64, u64, u64)> = sessions.iter().map(snap).collect();
        for s in &sessions {
            let _ = s.pipeline.set_state(gst::State::Null);
        }
        drop(sessions);
        // The TTS synthesis threads finish their sentence after the stop: let them, so that
        // they neither load the next round nor run into the process exit.
        std::thread::sleep(Duration::from_secs(2));
        let fps: Vec<(f64, f64, f64)> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| {
                (
                    (a.0 - b.0) as f64 / wall,
                    (a.1 - b.1) as f64 / wall,
                    (a.2 - b.2) as f64 / 1e9 / wall,
                )
            })
            .collect();
        let min_speech = fps.iter().map(|f| f.2).fold(f64::INFINITY, f64::min);
        let min_on = fps.iter().map(|f| f.1).fold(f64::INFINITY, f64::min);
        let mean_on = fps.iter().map(|f| f.1).sum::<f64>() / n as f64;
        let min_all = fps.iter().map(|f| f.0).fold(f64::INFINITY, f64::min);
        println!(
            "{n:>8}  {min_on:>14.1} / {mean_on:<14.1}          {min_all:>14.1}  {:>10.0}%  {cpu:>9.2}",
            min_speech * 100.0
        );
        if min_on < 24.0 || min_speech < 0.9 * baseline_speech.unwrap_or(min_speech) {
            break;
        }
        baseline_speech.get_or_insert(min_speech);
    }
    Ok(())
}

/// One MuseTalk session of the `--driver musetalk` bench: live features at 25 fps into
/// musetalk, through a queue into a clock-synchronised fakesink.
struct MuseSession {
    pipeline: gst::Pipeline,
    muse: gst::Element,
    counts: Arc<Counts>,
    feeder: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl MuseSession {
    /// A field of the musetalk element's `stats`.
    fn stat<T: for<'a> gst::glib::value::FromValue<'a> + 'static>(&self, key: &str) -> Option<T> {
        self.muse
            .property::<gst::Structure>("stats")
            .get::<T>(key)
            .ok()
    }
}

impl Drop for MuseSession {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
    }
}

/// Options of `livetalk bench sessions --driver musetalk`.
pub struct MuseBench {
    pub counts: Vec<usize>,
    pub seconds: f64,
    pub model_dir: PathBuf,
    pub device: String,
    pub batch_size: u32,
    pub max_batch: u32,
    /// Batch sizes to time the models alone at first (none: skip).
    pub batches: Vec<usize>,
    /// `fp32` or `fp16`.
    pub precision: String,
}

impl MuseBench {
    fn fp16(&self) -> anyhow::Result<bool> {
        match self.precision.as_str() {
            "fp32" => Ok(false),
            "fp16" => Ok(true),
            p => anyhow::bail!("unknown precision '{p}': expected fp32 or fp16"),
        }
    }

    /// The model file, as the element picks it: `<name>_fp16.onnx` for fp16.
    fn model(&self, name: &str) -> anyhow::Result<PathBuf> {
        let file = if self.fp16()? {
            format!("{name}_fp16.onnx")
        } else {
            format!("{name}.onnx")
        };
        let path = self.model_dir.join(file);
        anyhow::ensure!(path.is_file(), "{} not found", path.display());
        Ok(path)
    }
}

/// Loads the models (the same shared sessions the elements then get, as long as the result
/// is kept), runs each batch size the sessions can form (1..=max-batch) once, so that no
/// session pays a first run (a GPU's per-shape set-up: cuDNN's algorithm search), and, if
/// `o.batches` is given, times the models alone (UNet + VAE decoder, as the batching service
/// runs them) at those sizes: mean time per batch over at least `o.seconds / 2` (at least 2
/// runs after the warm-up run) and frames per second.
fn warm_models(o: &MuseBench) -> anyhow::Result<gstlivetalk::lipsync::MuseTalk> {
    use gstlivetalk::inference::{self, SessionRequest, contract};
    use gstlivetalk::lipsync::{FrameInput, MuseTalk};
    let device = crate::launch::parse_device(&o.device).map_err(anyhow::Error::msg)?;
    let precision = if o.fp16()? {
        inference::Precision::Fp16
    } else {
        inference::Precision::Fp32
    };
    let load = |name: &str, c: &'static inference::ModelContract| -> anyhow::Result<_> {
        let path = o.model(name)?;
        let mut req = SessionRequest::new(&path, c);
        req.device = device;
        req.precision = precision;
        // (as the elements ask: on TensorRT they then get these sessions)
        req.max_batch = Some(o.max_batch.max(o.batch_size) as usize);
        inference::load_session(&req).with_context(|| format!("loading {}", path.display()))
    };
    let t0 = Instant::now();
    let muse = MuseTalk {
        unet: load("unet", &contract::UNET)?,
        vae_decoder: load("vae_decoder", &contract::VAE_DECODER)?,
    };
    let loaded = t0.elapsed().as_secs_f64();
    let latents = noise(16 * gstlivetalk::avatar::LATENT_LEN, 5);
    let audio = noise(50 * 384, 6);
    let frames = |b: usize| -> Vec<FrameInput<'_>> {
        (0..b)
            .map(|k| FrameInput {
                latent: &latents[(k % 16) * gstlivetalk::avatar::LATENT_LEN
                    ..(k % 16 + 1) * gstlivetalk::avatar::LATENT_LEN],
                audio: &audio,
            })
            .collect()
    };
    if device != gstlivetalk::inference::Device::Cpu {
        println!(
            "cuDNN convolution search: {} ({})",
            std::env::var(inference::CUDNN_CONV_SEARCH_ENV).unwrap_or_else(|_| "heuristic".into()),
            inference::CUDNN_CONV_SEARCH_ENV
        );
    }
    let t1 = Instant::now();
    let largest =
        (o.max_batch.max(o.batch_size) as usize).max(o.batches.iter().copied().max().unwrap_or(1));
    for b in 1..=largest {
        muse.run(&frames(b))?;
    }
    println!(
        "models {} + {} on {} ({}): loaded in {:.1} s; first run of each batch size 1..={largest} in {:.1} s",
        muse.unet.key.model.display(),
        muse.vae_decoder.key.model.display(),
        muse.unet.device,
        o.precision,
        loaded,
        t1.elapsed().as_secs_f64()
    );
    if let Some(why) = muse.unet.fallback.as_ref() {
        // Figures taken on the CPU would be reported as the device's.
        anyhow::bail!("device {} asked for, not used: {why}", o.device);
    }
    if o.batches.is_empty() {
        return Ok(muse);
    }
    println!("models alone:");
    println!("   batch  ms per batch  frames/s");
    let mut back_to_back = Vec::new();
    for &b in &o.batches {
        let frames = frames(b);
        let (start, mut runs) = (Instant::now(), 0u32);
        while runs < 2 || start.elapsed().as_secs_f64() < o.seconds / 2.0 {
            muse.run(&frames)?;
            runs += 1;
        }
        let per = start.elapsed().as_secs_f64() / runs as f64;
        println!("{b:>8}  {:>12.1}  {:>8.1}", per * 1e3, b as f64 / per);
        back_to_back.push(per);
    }
    // What a live service does that the table does not: the batch size changes from one
    // run to the next, and the device idles between runs.
    let (start, mut runs, mut made) = (Instant::now(), 0u32, 0usize);
    while runs < 2 * o.batches.len() as u32 || start.elapsed().as_secs_f64() < o.seconds / 2.0 {
        let b = o.batches[runs as usize % o.batches.len()];
        muse.run(&frames(b))?;
        made += b;
        runs += 1;
    }
    let took = start.elapsed().as_secs_f64();
    let expected: f64 = (0..runs as usize)
        .map(|r| back_to_back[r % back_to_back.len()])
        .sum();
    println!(
        "  sizes {} in turn: {:.1} frames/s, {:.2}x the time of the same runs back to back by size",
        o.batches
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(","),
        made as f64 / took,
        took / expected
    );
    let one = frames(1);
    let mut spent = 0.0;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(40));
        let t = Instant::now();
        muse.run(&one)?;
        spent += t.elapsed().as_secs_f64();
    }
    println!(
        "  batch 1 after 40 ms idle each time: {:.1} ms per run ({:.2}x back to back)",
        spent / 10.0 * 1e3,
        spent / 10.0 / back_to_back[0].max(1e-9)
    );
    Ok(muse)
}

/// A 3-frame avatar (32x32 frames: musetalk reads only the latents) with seeded random
/// latents, so that every session has its own avatar.
fn bench_avatar(dir: &Path, seed: u64) -> anyhow::Result<()> {
    use gstlivetalk::avatar::{Avatar, BBox, FrameInfo, Image, LATENT_LEN, Manifest};
    let info = FrameInfo {
        face_box: BBox::new(8, 8, 24, 24),
        blend_box: BBox::new(4, 4, 28, 28),
    };
    let manifest = Manifest::new(25, 32, 32, "bench", vec![info; 3]);
    let latents = noise(3 * LATENT_LEN, seed);
    Avatar::write(
        dir,
        &manifest,
        &vec![Image::new(32, 32, 3); 3],
        &vec![Image::new(24, 24, 1); 3],
        Some(&latents),
    )?;
    Ok(())
}

/// Uniform noise in [-1, 1) from a seeded xorshift.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn start_muse_session(
    o: &MuseBench,
    avatar: &Path,
    shared: bool,
    seed: u64,
) -> anyhow::Result<MuseSession> {
    let caps = "application/x-livetalk-features,framerate=25/1,rows=50,dims=384";
    let desc = format!(
        // The queue as in avatarbin: musetalk's thread makes frames and does not wait in
        // the synchronised sink until each one's time.
        "appsrc name=src is-live=true format=time caps={caps} ! musetalk name=muse \
         ! queue ! fakesink name=sink sync=true"
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let muse = pipeline.by_name("muse").context("no musetalk")?;
    muse.set_property("avatar", avatar.to_str().context("avatar path")?);
    muse.set_property("model-dir", o.model_dir.to_str().context("model path")?);
    muse.set_property_from_str("device", &o.device);
    muse.set_property("batch-size", o.batch_size);
    muse.set_property("max-batch", o.max_batch);
    muse.set_property_from_str("precision", &o.precision);
    muse.set_property("shared-batching", shared);
    let counts = Arc::new(Counts::default());
    let sinkpad = pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .context("no sink pad")?;
    let (c, weak) = (counts.clone(), pipeline.downgrade());
    // The pipeline latency (u64::MAX: not asked yet).
    let latency = Arc::new(AtomicU64::new(u64::MAX));
    let l = latency.clone();
    sinkpad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        if let (Some(b), Some(p)) = (info.buffer(), weak.upgrade())
            && !b.flags().contains(gst::BufferFlags::GAP)
        {
            c.frames.fetch_add(1, Ordering::Relaxed);
            // The first time, upstream's answer (the sink adds none): the pipeline's
            // latency query is not answered until the sink has its latency.
            if l.load(Ordering::Relaxed) == u64::MAX {
                let mut q = gst::query::Latency::new();
                if pad.peer_query(&mut q) {
                    l.store(q.result().1.nseconds(), Ordering::Relaxed);
                }
            }
            let lat = gst::ClockTime::from_nseconds(l.load(Ordering::Relaxed) % u64::MAX);
            if on_time_with(pad, b, &p, lat) {
                c.on_time.fetch_add(1, Ordering::Relaxed);
            }
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing)?;
    let src = pipeline
        .by_name("src")
        .context("no appsrc")?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| anyhow::anyhow!("not an appsrc"))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let feats: Vec<Vec<u8>> = (0..8)
        .map(|k| {
            noise(50 * 384, seed * 100 + k)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    // Frames at 25 fps of the pipeline's running time, always talking.
    let feeder = std::thread::spawn(move || {
        // The clock and base time come with PLAYING.
        while src.current_state() != gst::State::Playing && !stop2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (Some(clock), Some(base)) = (src.clock(), src.base_time()) else {
            return;
        };
        for n in 0u64.. {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            let pts = gst::ClockTime::from_mseconds(40 * n);
            let id = clock.new_single_shot_id(base + pts);
            let _ = id.wait();
            let mut buf = gst::Buffer::from_slice(feats[n as usize % feats.len()].clone());
            {
                let b = buf.get_mut().unwrap();
                b.set_pts(pts);
                b.set_duration(gst::ClockTime::from_mseconds(40));
                b.set_offset(n);
                b.set_offset_end(n + 1);
            }
            if src.push_buffer(buf).is_err() {
                break;
            }
        }
    });
    Ok(MuseSession {
        pipeline,
        muse,
        counts,
        feeder: Some(feeder),
        stop,
    })
}

/// `livetalk bench sessions --driver musetalk`: per session count, with the process's
/// batching service (shared) and without (each element its own batches), in the same run.
pub fn run_musetalk(o: &MuseBench) -> anyhow::Result<()> {
    // Kept to the end: the elements get these sessions, warmed.
    let _models = warm_models(o)?;
    let tmp = std::env::temp_dir().join(format!("livetalk-bench-muse-{}", std::process::id()));
    let max = o.counts.iter().copied().max().unwrap_or(1);
    let avatars: Vec<PathBuf> = (0..max)
        .map(|i| {
            let d = tmp.join(format!("avatar{i}"));
            bench_avatar(&d, i as u64 + 1).map(|_| d)
        })
        .collect::<anyhow::Result<_>>()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "musetalk sessions (live features at 25 fps, each its own avatar, a queue and a synchronised sink), \
         models {}, device {}, batch-size {}, max-batch {}, {:.0} s each after 3 s of warm-up, \
         {cores} cores:",
        o.model_dir.display(),
        o.device,
        o.batch_size,
        o.max_batch,
        o.seconds
    );
    println!(
        "sessions  batching  on-time fps per session (min / mean)  mean batch  inferred frames/s  CPU cores  inference latency ms"
    );
    for &n in &o.counts {
        for shared in [false, true] {
            let sessions: Vec<MuseSession> = (0..n)
                .map(|i| start_muse_session(o, &avatars[i], shared, i as u64 + 1))
                .collect::<anyhow::Result<_>>()?;
            std::thread::sleep(Duration::from_secs(3));
            let inferred = |s: &MuseSession| s.stat::<u64>("inferred-frames").unwrap_or(0);
            let snap = |s: &MuseSession| (s.counts.on_time.load(Ordering::Relaxed), inferred(s));
            let before: Vec<(u64, u64)> = sessions.iter().map(snap).collect();
            let (t0, c0) = (Instant::now(), cpu_seconds());
            std::thread::sleep(Duration::from_secs_f64(o.seconds));
            let wall = t0.elapsed().as_secs_f64();
            let cpu = (cpu_seconds() - c0) / wall;
            let after: Vec<(u64, u64)> = sessions.iter().map(snap).collect();
            let mean_batch = sessions
                .iter()
                .map(|s| s.stat::<f64>("mean-batch").unwrap_or(0.0))
                .sum::<f64>()
                / n as f64;
            // The time each element allowed for inference (measured at READY).
            let inference_ms = sessions
                .iter()
                .map(|s| s.stat::<u64>("inference-latency-ms").unwrap_or(0))
                .max()
                .unwrap_or(0);
            let errors: Vec<String> = sessions
                .iter()
                .filter_map(|s| {
                    let bus = s.pipeline.bus()?;
                    let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
                    match msg.view() {
                        gst::MessageView::Error(e) => Some(e.error().to_string()),
                        _ => None,
                    }
                })
                .collect();
            drop(sessions);
            if let Some(e) = errors.first() {
                anyhow::bail!("a session failed: {e}");
            }
            let on: Vec<f64> = before
                .iter()
                .zip(&after)
                .map(|(b, a)| (a.0 - b.0) as f64 / wall)
                .collect();
            let total: f64 = before
                .iter()
                .zip(&after)
                .map(|(b, a)| (a.1 - b.1) as f64)
                .sum::<f64>()
                / wall;
            let min_on = on.iter().copied().fold(f64::INFINITY, f64::min);
            let mean_on = on.iter().sum::<f64>() / n as f64;
            println!(
                "{n:>8}  {:>8}  {min_on:>14.1} / {mean_on:<14.1}          {mean_batch:>10.2}  {total:>17.1}  {cpu:>9.2}  {inference_ms:>20}",
                if shared { "shared" } else { "session" }
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
