//! `livetalk bench`: speed against peers measured in the same run.
//!
//! `livetalk bench whisper`: our log-mel vs transformers' `WhisperFeatureExtractor` on the same
//! audio; our encoder (ONNX Runtime, 1 thread) vs CTranslate2 (1 thread) on the same 30 s
//! window; whisperfeat's real-time factor at default settings with a 1-thread encoder.
//! Run it under `taskset -c 0` for one core.
//!
//! `livetalk bench sessions`: live sessions at 25 fps on this machine (see bench_sessions.rs).
//!
//! `livetalk bench soak`: sessions held for minutes, memory, objects and A/V drift (see
//! bench_soak.rs).
//!
//! `livetalk bench parsing`: MuseTalk's face-parsing mask after the network (jaw region, back
//! to the crop, blur), ours vs MuseTalk's own steps in OpenCV + Pillow, one thread each.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use gst::prelude::*;
use gstlivetalk::inference::{self, Input, InputData, SessionRequest, contract};
use gstlivetalk::npy::NpyF32;

#[derive(clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_parser = ["whisper", "sessions", "parsing", "soak"])]
    what: String,
    /// soak: minutes to run.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// soak: live sessions at once.
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// soak: print the report as JSON.
    #[arg(long)]
    json: bool,
    /// soak: also count live GStreamer objects (runs under the leaks tracer, whose
    /// bookkeeping makes RSS grow: RSS is then reported, not judged).
    #[arg(long)]
    objects: bool,
    /// sessions: the most sessions to try.
    #[arg(long, default_value_t = 8)]
    max_sessions: usize,
    /// sessions: the driver (lipwarp: the whole serve chain; musetalk: features -> musetalk ->
    /// queue -> synchronised sink, with and without cross-session batching).
    #[arg(long, value_enum, default_value = "lipwarp")]
    driver: crate::launch::DriverArg,
    /// sessions --driver musetalk: folder with unet.onnx and vae_decoder.onnx (default: the
    /// set-up's models/musetalk, else its small test models).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// sessions --driver musetalk: cpu, cuda or tensorrt.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// sessions --driver musetalk: the session counts to measure (default 1,2,4,8).
    #[arg(long, value_delimiter = ',')]
    counts: Vec<usize>,
    /// sessions --driver musetalk: each element's batch-size.
    #[arg(long, default_value_t = 4)]
    batch_size: u32,
    /// sessions --driver musetalk: the shared service's max-batch.
    #[arg(long, default_value_t = 16)]
    max_batch: u32,
    /// sessions --driver musetalk: fp32, or fp16 (the model folder's *_fp16.onnx files, as the
    /// element's precision property loads them).
    #[arg(long, default_value = "fp32")]
    precision: String,
    /// sessions --driver musetalk: first time the models alone (UNet + VAE decoder, no
    /// pipeline) at these batch sizes, e.g. 1,4,8,16.
    #[arg(long, value_delimiter = ',')]
    batches: Vec<usize>,
    /// Seconds of speech for the mel and whole-element figures (whisper; default 60), or of
    /// measurement per session count (sessions; default 15).
    #[arg(long)]
    seconds: Option<f64>,
}

fn venv_python() -> anyhow::Result<PathBuf> {
    let p = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    if !p.exists() {
        bail!("{} not found: run scripts/setup.sh", p.display());
    }
    Ok(p)
}

fn script(name: &str) -> PathBuf {
    // The scripts live in the source tree's models/ folder.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
}

fn python(args: &[&str]) -> anyhow::Result<String> {
    python_script("bench_whisper.py", args)
}

fn python_script(name: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(venv_python()?)
        .arg(script(name))
        .args(args)
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn best<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..n)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(f());
            s.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.what == "parsing" {
        return bench_parsing();
    }
    if a.what == "soak" {
        return crate::bench_soak::run(a.minutes, a.sessions, a.json, a.objects);
    }
    if a.what == "sessions" {
        gst::init()?;
        if a.driver == crate::launch::DriverArg::Musetalk {
            let models = gstlivetalk::paths::models_dir();
            let model_dir = a.model_dir.unwrap_or_else(|| {
                let full = models.join("musetalk");
                if full.join("unet.onnx").is_file() {
                    full
                } else {
                    gstlivetalk::paths::test_models_dir()
                }
            });
            let counts = if a.counts.is_empty() {
                vec![1, 2, 4, 8]
            } else {
                a.counts
            };
            return crate::bench_sessions::run_musetalk(&crate::bench_sessions::MuseBench {
                counts,
                seconds: a.seconds.unwrap_or(8.0),
                model_dir,
                device: a.device,
                batch_size: a.batch_size,
                max_batch: a.max_batch,
                batches: a.batches,
                precision: a.precision,
            });
        }
        return crate::bench_sessions::run(a.max_sessions, a.seconds.unwrap_or(15.0));
    }
    let seconds = a.seconds.unwrap_or(60.0);
    let dir = std::env::temp_dir().join(format!("livetalk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let audio_path = dir.join("audio.npy");
    let secs = format!("{seconds}");
    python(&[
        "audio",
        "--seconds",
        &secs,
        "--out",
        audio_path.to_str().unwrap(),
    ])?;
    let audio = NpyF32::read(&audio_path)?.data;
    println!(
        "audio: {:.1} s of espeak-ng speech (16 kHz)",
        audio.len() as f64 / 16000.0
    );

    // Log-mel.
    let mut mel = gstlivetalk::mel::LogMel::new();
    let ours = best(5, || mel.compute(&audio));
    let theirs: f64 = python(&["mel", "--audio", audio_path.to_str().unwrap()])?.parse()?;
    println!(
        "mel: ours {:.1} ms, WhisperFeatureExtractor {:.1} ms: {:.1}x faster",
        ours * 1e3,
        theirs * 1e3,
        theirs / ours
    );

    // Encoder, one 30 s window, 1 thread each.
    let model = gstlivetalk::paths::models_dir().join("whisper-tiny.en/encoder.onnx");
    let mut req = SessionRequest::new(&model, &contract::WHISPER_ENCODER);
    req.threads = 1;
    let session = inference::load_session(&req)?;
    let mut window = audio[..audio.len().min(480_000)].to_vec();
    window.resize(480_000, 0.0);
    let mel30 = mel.compute(&window);
    let run = || {
        session
            .run(&[Input {
                name: "input_features",
                shape: &[1, 80, 3000],
                data: InputData::F32(&mel30),
            }])
            .unwrap()
    };
    run();
    let ours = best(3, run);
    let theirs: f64 = python(&["ct2", "--audio", audio_path.to_str().unwrap()])?.parse()?;
    println!(
        "encoder (30 s window, 1 thread): ours {:.0} ms, CTranslate2 {:.0} ms: ratio {:.2} (>1: ours faster)",
        ours * 1e3,
        theirs * 1e3,
        theirs / ours
    );
    drop(session);

    // Whole element, default settings, 1-thread encoder.
    let start = Instant::now();
    let (frames, stats) = crate::features::whisper_features(&audio, |wf| {
        wf.set_property("threads", 1u32);
    })?;
    let wall = start.elapsed().as_secs_f64();
    let speech = frames.iter().filter(|f| f.is_some()).count();
    println!(
        "whisperfeat (defaults, 1 thread): {:.1} s of audio in {:.2} s: {:.1}x real time ({} frames, {} with speech; {})",
        audio.len() as f64 / 16000.0,
        wall,
        audio.len() as f64 / 16000.0 / wall,
        frames.len(),
        speech,
        stats
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The parsing map of the demo avatar's first frame by the tiny test parser: face-shaped
/// regions, as a real parser gives.
fn demo_parsing() -> anyhow::Result<Vec<u8>> {
    use gstlivetalk::avatar::{Avatar, parsing};
    let avatar = Avatar::load(&crate::render::default_avatar())?;
    let model = gstlivetalk::paths::test_models_dir().join("face_parsing.onnx");
    let session = inference::load_session(&SessionRequest::new(&model, &contract::FACE_PARSING))?;
    let info = avatar.manifest.frames[0];
    let input = parsing::network_input(avatar.frame(0), &info, &Default::default());
    let out = session.run(&[Input {
        name: "image",
        shape: &[1, 3, 512, 512],
        data: InputData::F32(&input),
    }])?;
    Ok(parsing::argmax(&out[0].data, parsing::CLASSES))
}

fn bench_parsing() -> anyhow::Result<()> {
    use gstlivetalk::avatar::parsing::{self, ParsingOptions};
    use gstlivetalk::avatar::{BBox, FrameInfo, prepare};
    let classes = demo_parsing()?;
    let dir = std::env::temp_dir().join(format!("livetalk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("parsing.npy");
    NpyF32::new(vec![512, 512], classes.iter().map(|&c| c as f32).collect()).write(&path)?;
    println!("face-parsing mask after the network, best of 20, one thread:");
    let po = ParsingOptions::default();
    let region = parsing::region(&classes, &po);
    let ours_region = best(20, || parsing::region(&classes, &po));
    for w in [170, 340] {
        let face = BBox::new(1000, 1000, 1000 + w, 1000 + w);
        let crop = prepare::crop_box(face, 1.5);
        let info = FrameInfo {
            face_box: face,
            blend_box: crop,
        };
        let ours_back = best(20, || {
            parsing::blend_mask(&region, &info, &prepare::PrepareOptions::default())
        });
        let rel = face.relative_to(&crop);
        let out = dir.join("t.npy");
        let arg = |v: i32| v.to_string();
        python_script(
            "parsing_reference.py",
            &[
                "--bench",
                "20",
                "--parsing",
                path.to_str().unwrap(),
                "--side",
                &arg(crop.width()),
                "--face-box",
                &arg(rel.x1),
                &arg(rel.y1),
                &arg(rel.x2),
                &arg(rel.y2),
                "--out",
                out.to_str().unwrap(),
            ],
        )?;
        let theirs = NpyF32::read(&out)?.data;
        println!(
            "  crop {s}x{s}: jaw region ours {:.1} ms, OpenCV {:.1} ms ({:.2}x); back to the \
             crop + blur ours {:.1} ms, Pillow + OpenCV {:.1} ms ({:.2}x)",
            ours_region * 1e3,
            theirs[0] as f64 * 1e3,
            theirs[0] as f64 / ours_region,
            ours_back * 1e3,
            theirs[1] as f64 * 1e3,
            theirs[1] as f64 / ours_back,
            s = crop.width(),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
