//! whisperfeat's window modes: encoder time per second of audio and fidelity to MuseTalk.
//!
//! cargo bench --bench whisperfeat -- AUDIO.npy REFERENCE.npy [ENCODER.onnx]
//!
//! AUDIO.npy: 16 kHz speech (models/features_reference.py --make-speech); REFERENCE.npy: its
//! MuseTalk features (models/features_reference.py --audio ... --out ...). For each window
//! configuration: the latency it adds, encoder time per second of audio (one intra-op thread;
//! run under `taskset -c 0` for one core), and the mean cosine per hidden-state layer against
//! the reference (frame by frame, the 10 steps of one layer as one vector).

use std::time::Instant;

use gstlivetalk::features::{self, FeatureStream, Step, StreamConfig, WindowMode};
use gstlivetalk::inference::{self, Input, InputData, SessionRequest, contract};
use gstlivetalk::npy::NpyF32;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.len() < 2 {
        eprintln!("usage: whisperfeat AUDIO.npy REFERENCE.npy [ENCODER.onnx]");
        return;
    }
    let audio = NpyF32::read(std::path::Path::new(&args[0])).unwrap().data;
    let reference = NpyF32::read(std::path::Path::new(&args[1])).unwrap();
    let model = args
        .get(2)
        .map(Into::into)
        .unwrap_or_else(|| gstlivetalk::paths::models_dir().join("whisper-tiny.en/encoder.onnx"));
    let mut req = SessionRequest::new(&model, &contract::WHISPER_ENCODER);
    req.threads = 1;
    let session = inference::load_session(&req).unwrap();
    let seconds = audio.len() as f64 / 16_000.0;
    println!(
        "{:.2} s of audio, {} reference frames, encoder {}",
        seconds,
        reference.shape[0],
        model.display()
    );
    println!(
        "| mode | batch ms | lookahead ms | padded | latency ms | encoder s per s (wall) | CPU s per s (all) | layer 0 | 1 | 2 | 3 | 4 | layer 4 p5 |"
    );
    // (mode, batch frames, lookahead ms, pad windows to at least this many seconds)
    let all = [
        (WindowMode::Short, 8, 200, 0), // before chunk windows: the old defaults
        (WindowMode::Short, 8, 200, 30), // ... with pad-30s
        (WindowMode::Chunk, 8, 500, 0), // chunk, unpadded
        (WindowMode::Chunk, 8, 500, 10), // chunk, 320 ms batches
        (WindowMode::Chunk, 16, 500, 10), // the defaults
        (WindowMode::Chunk, 16, 500, 30), // chunk padded to 30 s as MuseTalk
        (WindowMode::Chunk, 16, 1000, 10),
        (WindowMode::Chunk, 8, 200, 10),
    ];
    // BENCH_CONFIGS=i,j,...: only those rows.
    let pick: Option<Vec<usize>> = std::env::var("BENCH_CONFIGS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect());
    let configs: Vec<_> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| pick.as_ref().is_none_or(|p| p.contains(i)))
        .map(|(_, c)| *c)
        .collect();
    for (mode, batch, ahead, pad_s) in configs {
        let cfg = StreamConfig {
            window: mode,
            batch_frames: batch,
            context_right: features::ms_to_samples(ahead),
            min_mel_frames: pad_s * 100,
            silence_power: 0.0,
            ..Default::default()
        };
        let latency_ms = cfg.clone().with_minimums().latency_samples() / 16;
        let mut stream = FeatureStream::new(cfg);
        let mut encoder = 0.0f64;
        let cpu = cpu_seconds();
        let mut out = Vec::new();
        for chunk in audio.chunks(320) {
            stream.push(chunk);
            run(&mut stream, &session, &mut encoder, &mut out);
        }
        stream.finish();
        run(&mut stream, &session, &mut encoder, &mut out);
        let cpu = cpu_seconds() - cpu;
        let layers = per_layer_cosine(&out, &reference);
        let mut l4 = layers[4].clone();
        l4.sort_by(f64::total_cmp);
        let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "| {:?} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            mode,
            batch * 40,
            ahead,
            if pad_s == 0 {
                "no".to_string()
            } else {
                format!("to {pad_s} s")
            },
            latency_ms,
            encoder / seconds,
            cpu / seconds,
            mean(&layers[0]),
            mean(&layers[1]),
            mean(&layers[2]),
            mean(&layers[3]),
            mean(&layers[4]),
            l4[l4.len() / 20],
        );
    }
}

/// CPU time of this process (user + system), in seconds: what one core spends, whatever else
/// runs on the machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // After the command name: state, ppid, pgrp, session, tty, tpgid, flags, minflt,
    // cminflt, majflt, cmajflt, utime, stime (clock ticks of 10 ms).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn run(
    stream: &mut FeatureStream,
    session: &inference::SharedSession,
    encoder: &mut f64,
    out: &mut Vec<Vec<f32>>,
) {
    while let Some(step) = stream.next_step() {
        match step {
            Step::Silent(_) => out.push(vec![0.0; features::FRAME_LEN]),
            Step::Encode(job) => {
                let start = Instant::now();
                let hidden: Vec<Vec<f32>> = job
                    .windows
                    .iter()
                    .map(|w| {
                        session
                            .run(&[Input {
                                name: "input_features",
                                shape: &[1, 80, w.mel_frames],
                                data: InputData::F32(&w.mel),
                            }])
                            .unwrap()
                            .remove(0)
                            .data
                    })
                    .collect();
                *encoder += start.elapsed().as_secs_f64();
                out.extend(stream.complete(&job, &hidden).into_iter().map(|(_, f)| f));
            }
        }
    }
}

/// Cosine per frame and layer: the 10 steps of one layer as one vector.
fn per_layer_cosine(ours: &[Vec<f32>], reference: &NpyF32) -> Vec<Vec<f64>> {
    let frames = reference.shape[0].min(ours.len());
    let mut layers = vec![Vec::new(); features::LAYERS];
    for (i, f) in ours.iter().enumerate().take(frames) {
        let r = &reference.data[i * features::FRAME_LEN..(i + 1) * features::FRAME_LEN];
        for (l, layer) in layers.iter_mut().enumerate() {
            let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
            for s in 0..features::STEPS_PER_FRAME {
                let o = (s * features::LAYERS + l) * features::DIM;
                for d in 0..features::DIM {
                    let (a, b) = (f[o + d] as f64, r[o + d] as f64);
                    dot += a * b;
                    na += a * a;
                    nb += b * b;
                }
            }
            layer.push(if na == 0.0 && nb == 0.0 {
                1.0
            } else {
                dot / (na * nb).sqrt().max(1e-30)
            });
        }
    }
    layers
}
