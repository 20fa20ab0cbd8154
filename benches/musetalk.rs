//! musetalk's per-frame work on the CPU (UNet + VAE decoder + u8 conversion, what the element
//! runs for each speech frame), frames per second at several batch sizes, with the tiny test
//! models (models/make_test_models.py) and the tiny real-architecture fixtures
//! (tests/fixtures/musetalk-tiny). Each row's batch times also feed the live planner's cost
//! model (lipsync::planner::CostModel); its fitted fixed and per-frame parts follow each set.
//!
//! `cargo bench --bench musetalk` (after scripts/setup.sh).

use std::path::Path;
use std::time::Instant;

use gstlivetalk::avatar::LATENT_LEN;
use gstlivetalk::features::FRAME_LEN;
use gstlivetalk::inference::{SessionRequest, contract, load_session};
use gstlivetalk::lipsync::planner::CostModel;
use gstlivetalk::lipsync::{self, FrameInput, IMAGE_LEN, MuseTalk};

fn main() {
    let sets = [
        ("make_test_models", gstlivetalk::paths::test_models_dir()),
        (
            "fixtures/musetalk-tiny",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/musetalk-tiny"),
        ),
    ];
    let latent: Vec<f32> = (0..LATENT_LEN)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
        .collect();
    let audio: Vec<f32> = (0..FRAME_LEN)
        .map(|i| ((i % 13) as f32 - 6.0) * 0.05)
        .collect();
    println!(
        "{:<24} {:>7} {:>6} {:>10} {:>9}",
        "models", "threads", "batch", "ms/frame", "frames/s"
    );
    for (name, dir) in &sets {
        for threads in [1usize, 2] {
            let load = |file: &str, c| {
                let p = dir.join(file);
                let mut r = SessionRequest::new(&p, c);
                r.threads = threads;
                load_session(&r).unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh)"))
            };
            let muse = MuseTalk {
                unet: load("unet.onnx", &contract::UNET),
                vae_decoder: load("vae_decoder.onnx", &contract::VAE_DECODER),
            };
            let mut cost = CostModel::new();
            for batch in [1usize, 4, 8] {
                let frames = vec![
                    FrameInput {
                        latent: &latent,
                        audio: &audio,
                    };
                    batch
                ];
                let mut rgb = vec![0u8; lipsync::RGB_LEN];
                let run = |rgb: &mut Vec<u8>| {
                    let img = muse.run(&frames).unwrap();
                    for k in 0..batch {
                        lipsync::image_to_rgb(&img[k * IMAGE_LEN..(k + 1) * IMAGE_LEN], rgb, 768);
                    }
                };
                run(&mut rgb);
                let rounds = (48 / batch).max(3);
                let t = Instant::now();
                for _ in 0..rounds {
                    let one = Instant::now();
                    run(&mut rgb);
                    cost.observe(batch, one.elapsed());
                }
                let per = t.elapsed().as_secs_f64() / (rounds * batch) as f64;
                println!(
                    "{:<24} {:>7} {:>6} {:>10.2} {:>9.1}",
                    name,
                    threads,
                    batch,
                    per * 1e3,
                    1.0 / per
                );
            }
            if let Some((fixed, per)) = cost.parts() {
                println!(
                    "{:<24} {:>7}  cost model: {:.2} ms + {:.2} ms/frame",
                    name,
                    threads,
                    fixed.as_secs_f64() * 1e3,
                    per.as_secs_f64() * 1e3
                );
            }
        }
    }
}
