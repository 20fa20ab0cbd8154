//! `livetalk bench`: speed against peers measured in the same run.
//!
//! `livetalk bench whisper`: our log-mel vs transformers' `WhisperFeatureExtractor` on the same
//! audio; our encoder (ONNX Runtime, 1 thread) vs CTranslate2 (1 thread) on the same 30 s
//! window; whisperfeat's real-time factor at default settings with a 1-thread encoder.
//! Run it under `taskset -c 0` for one core.
//!
//! `livetalk bench sessions`: live sessions at 25 fps on this machine (see bench_sessions.rs).

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
    #[arg(value_parser = ["whisper", "sessions"])]
    what: String,
    /// sessions: the most sessions to try.
    #[arg(long, default_value_t = 8)]
    max_sessions: usize,
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
    let out = Command::new(venv_python()?)
        .arg(script("bench_whisper.py"))
        .args(args)
        .env("TRANSFORMERS_VERBOSITY", "error")
        .output()
        .context("running bench_whisper.py")?;
    if !out.status.success() {
        bail!(
            "bench_whisper.py {args:?} failed: {}",
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
    if a.what == "sessions" {
        gst::init()?;
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
