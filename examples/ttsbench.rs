//! Timing figures of piperttssrc (benchmark, not a test):
//!
//! 1. `speak()` to the first non-silent sample, live, CPU: wall-clock time until the buffer
//!    holding it reaches the sink, and the running-time distance inside the stream.
//! 2. Real-time factor of Piper on one core (`threads=1`; pin the process with
//!    `taskset -c 0` for one core): offline rendering wall time / audio duration.
//! 3. `flush()` to silence: wall-clock time until the first GAP buffer reaches the sink.
//! 4. `stop` while synthesizing: wall-clock time of PLAYING -> NULL 100 ms after `speak()`
//!    of a long piece (the synthesis thread is joined: it includes the end of the inference
//!    run in flight).
//!
//! cargo run --release --example ttsbench [-- ROUNDS]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "../tests/common/mod.rs"]
mod common;

const SENTENCES: &[&str] = &[
    "Hello, I am your digital assistant.",
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to bring your umbrella tomorrow.",
    "Our meeting starts at ten thirty in the main conference room.",
    "Thank you for your patience while I look that up.",
];

#[derive(Default)]
struct Probe {
    first_voice: Option<(Instant, gst::ClockTime)>,
    first_gap_after: Option<Instant>,
    flushed_at: Option<Instant>,
    speaking_seen: bool,
}

fn live_pipeline(threads: u32) -> (gst::Pipeline, gst::Element, Arc<Mutex<Probe>>) {
    let src = gst::ElementFactory::make("piperttssrc")
        .property("threads", threads)
        .build()
        .unwrap();
    let (pipeline, sink) = common::src_to_fakesink(&src, true);
    let probe = Arc::new(Mutex::new(Probe::default()));
    let p = probe.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(gst::PadProbeData::Buffer(b)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let now = Instant::now();
            let mut p = p.lock().unwrap();
            let gap = b.flags().contains(gst::BufferFlags::GAP);
            if !gap && p.first_voice.is_none() {
                let samples = common::s16_samples(b);
                if let Some(i) = samples.iter().position(|s| s.unsigned_abs() > 300) {
                    let t = b.pts().unwrap()
                        + gst::ClockTime::from_nseconds(i as u64 * 1_000_000_000 / 22050);
                    p.first_voice = Some((now, t));
                }
            }
            if !gap {
                p.speaking_seen = true;
            }
            if gap && p.flushed_at.is_some() && p.first_gap_after.is_none() {
                p.first_gap_after = Some(now);
            }
            gst::PadProbeReturn::Ok
        });
    (pipeline, src, probe)
}

fn running_time(e: &gst::Element) -> gst::ClockTime {
    let clock = e.clock().unwrap();
    clock.time().saturating_sub(e.base_time().unwrap())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(v: &mut [f64], digits: usize) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!(
        "median {:.d$}, mean {:.d$}, min {:.d$}, max {:.d$} (n={})",
        v[v.len() / 2],
        mean,
        v[0],
        v[v.len() - 1],
        v.len(),
        d = digits
    )
}

fn main() {
    gst::init().unwrap();
    gstlivetalk::plugin_register_static().unwrap();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    println!(
        "voice: {}",
        gstlivetalk::paths::default_piper_voice().display()
    );

    // 1 and 3: live pipeline, system clock.
    let (pipeline, src, probe) = live_pipeline(0);
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // model loaded, idle GAP flowing
    let mut first_wall = Vec::new();
    let mut first_stream = Vec::new();
    let mut flush_ms = Vec::new();
    for r in 0..rounds {
        *probe.lock().unwrap() = Probe::default();
        let text = SENTENCES[r % SENTENCES.len()];
        let t0 = Instant::now();
        let rt0 = running_time(&src);
        src.emit_by_name::<bool>("speak", &[&text]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let (wall, at) = loop {
            if let Some(v) = probe.lock().unwrap().first_voice {
                break v;
            }
            assert!(Instant::now() < deadline, "no speech");
            std::thread::sleep(Duration::from_millis(1));
        };
        first_wall.push(ms(wall - t0));
        first_stream.push(ms(Duration::from_nanos(at.saturating_sub(rt0).nseconds())));
        std::thread::sleep(Duration::from_millis(300));
        let tf = Instant::now();
        probe.lock().unwrap().flushed_at = Some(tf);
        src.emit_by_name::<()>("flush", &[]);
        let gap_at = loop {
            if let Some(t) = probe.lock().unwrap().first_gap_after {
                break t;
            }
            assert!(Instant::now() < deadline, "no silence after flush");
            std::thread::sleep(Duration::from_micros(200));
        };
        flush_ms.push(ms(gap_at - tf));
        std::thread::sleep(Duration::from_millis(200));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "speak() -> first non-silent sample at the sink (wall, ms): {}",
        stats(&mut first_wall, 1)
    );
    println!(
        "speak() -> first non-silent sample (stream running time, ms): {}",
        stats(&mut first_stream, 1)
    );
    println!(
        "flush() -> first silent (GAP) buffer at the sink (wall, ms): {}",
        stats(&mut flush_ms, 1)
    );

    // 2: real-time factor, one intra-op thread, offline rendering.
    let text = SENTENCES.join(" ");
    let mut rtfs = Vec::new();
    for _ in 0..rounds.clamp(1, 3) {
        let src = gst::ElementFactory::make("piperttssrc")
            .property("is-live", false)
            .property("threads", 1u32)
            .property("text", &text)
            .build()
            .unwrap();
        let (pipeline, sink) = common::src_to_fakesink(&src, false);
        let samples = Arc::new(Mutex::new(0u64));
        let s = samples.clone();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                    *s.lock().unwrap() += b.size() as u64 / 2;
                }
                gst::PadProbeReturn::Ok
            });
        // Load the model first: the factor is about synthesis, not loading.
        pipeline.set_state(gst::State::Paused).unwrap();
        let t0 = Instant::now();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        bus.timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos])
            .unwrap();
        let wall = t0.elapsed().as_secs_f64();
        pipeline.set_state(gst::State::Null).unwrap();
        let audio = *samples.lock().unwrap() as f64 / 22050.0;
        rtfs.push(wall / audio);
        println!(
            "  rendered {audio:.2} s of audio in {wall:.2} s (real-time factor {:.3})",
            wall / audio
        );
    }
    println!(
        "Piper real-time factor, threads=1 (wall / audio): {}",
        stats(&mut rtfs, 3)
    );

    // 4: stop while synthesizing.
    let long = "many words follow one another here without any pause at all ".repeat(4);
    let mut stop_ms = Vec::new();
    for _ in 0..rounds {
        let (pipeline, src, _probe) = live_pipeline(0);
        pipeline.set_state(gst::State::Playing).unwrap();
        src.emit_by_name::<bool>("speak", &[&long]);
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        pipeline.set_state(gst::State::Null).unwrap();
        stop_ms.push(ms(t0.elapsed()));
    }
    println!(
        "stop (PLAYING -> NULL) while synthesizing (wall, ms): {}",
        stats(&mut stop_ms, 1)
    );
}
