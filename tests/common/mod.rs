//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Once;

use gstlivetalk::avatar::{Avatar, BBox, FrameInfo, Image, Manifest, prepare};

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstlivetalk::plugin_register_static().unwrap();
    });
}

/// A new pipeline `src ! fakesink sync=<sync>`; returns it and the sink.
pub fn src_to_fakesink(src: &gst::Element, sync: bool) -> (gst::Pipeline, gst::Element) {
    use gst::prelude::*;
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", sync)
        .build()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([src, &sink]).unwrap();
    src.link(&sink).unwrap();
    (pipeline, sink)
}

/// Runs a playing pipeline's bus to EOS (panicking on an error or after `timeout`): the
/// element messages' structures and the warnings' texts, in order.
pub fn run_to_eos(
    pipeline: &gst::Pipeline,
    timeout: std::time::Duration,
) -> (Vec<gst::Structure>, Vec<String>) {
    use gst::prelude::*;
    let bus = pipeline.bus().unwrap();
    let (mut messages, mut warnings) = (Vec::new(), Vec::new());
    let deadline = std::time::Instant::now() + timeout;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no EOS in {timeout:?}"
        );
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("error: {} ({:?})", e.error(), e.debug()),
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Element(_) => messages.push(msg.structure().unwrap().to_owned()),
            _ => {}
        }
    }
    (messages, warnings)
}

/// How many threads of this process carry the name `name` (Linux: `/proc/self/task/*/comm`,
/// which keeps the first 15 bytes of a name).
pub fn threads_named(name: &str) -> usize {
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Waits up to `within` for exactly `count` threads named `name`; returns the last count
/// seen. (A new thread names itself once it runs; a joined one leaves `/proc` a moment after
/// its join returns.)
pub fn wait_threads_named(name: &str, count: usize, within: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + within;
    loop {
        let n = threads_named(name);
        if n == count || std::time::Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The samples of an interleaved S16LE buffer.
pub fn s16_samples(buffer: &gst::BufferRef) -> Vec<i16> {
    let map = buffer.map_readable().unwrap();
    map.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A small synthetic avatar (textured frames, a face box, MuseTalk geometry and masks);
/// `latents` adds deterministic [N,8,32,32] latents.
pub fn write_test_avatar(dir: &Path, frames: usize, width: u32, height: u32, latents: bool) {
    let face = BBox::new(
        width as i32 / 4,
        height as i32 / 5,
        width as i32 * 3 / 4,
        height as i32 * 7 / 10,
    );
    let opts = prepare::PrepareOptions::default();
    let infos: Vec<FrameInfo> = (0..frames)
        .map(|_| prepare::frame_info(face, width, height, &opts).unwrap())
        .collect();
    let imgs: Vec<Image> = (0..frames)
        .map(|i| {
            Image::from_fn(width, height, 3, |x, y, c| {
                ((x * 5 + y * 3 + c as u32 * 70 + i as u32 * 9) % 251) as u8
            })
        })
        .collect();
    let masks: Vec<Image> = infos
        .iter()
        .map(|i| prepare::geometric_mask(i, &opts))
        .collect();
    let lat: Option<Vec<f32>> = latents.then(|| {
        (0..frames * gstlivetalk::avatar::LATENT_LEN)
            .map(|k| ((k % 113) as f32 - 56.0) / 40.0)
            .collect()
    });
    Avatar::write(
        dir,
        &Manifest::new(25, width, height, "synthetic", infos),
        &imgs,
        &masks,
        lat.as_deref(),
    )
    .unwrap();
}

pub fn f32_buffer(samples: &[f32], pts: Option<gst::ClockTime>) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(gst::ClockTime::from_nseconds(samples.len() as u64 * 62_500));
    }
    buf
}

/// A vowel-like sound: a few harmonics of `f0` with amplitude `amp`.
pub fn vowel(n: usize, f0: f32, amp: f32, phase0: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = (i + phase0) as f32 / 16000.0;
            let w = 2.0 * std::f32::consts::PI * f0 * t;
            amp * (0.6 * w.sin() + 0.3 * (2.0 * w).sin() + 0.2 * (3.0 * w).sin())
        })
        .collect()
}

/// Deterministic white noise (xorshift) in [-amp, amp].
pub fn noise(n: usize, seed: u32, amp: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 - 0.5) * 2.0 * amp
        })
        .collect()
}
