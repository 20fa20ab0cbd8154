//! musetalk's shared batching: two elements (two live pipelines, two avatars) in one process
//! make the same crops as each alone, their frames run in common batches, and one
//! pipeline's teardown leaves the other's frames intact. CPU, the small test models.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

mod common;

use common::{init, noise};
use gst::prelude::*;
use gstlivetalk::avatar::{self, Avatar, BBox, FrameInfo, Image, Manifest};
use gstlivetalk::meta;

const FEAT_LEN: usize = 50 * 384;
const FEATURE_CAPS: &str = "application/x-livetalk-features,framerate=25/1,rows=50,dims=384";
const FRAMES: u64 = 24;

/// One test at a time: the batching service is per process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn models() -> (PathBuf, PathBuf) {
    let d = gstlivetalk::paths::test_models_dir();
    let (u, v) = (d.join("unet.onnx"), d.join("vae_decoder.onnx"));
    assert!(u.is_file() && v.is_file(), "run scripts/setup.sh");
    (u, v)
}

/// An avatar of 3 frames whose latents come from `seed`.
fn write_avatar(dir: &Path, seed: u32) {
    let info = FrameInfo {
        face_box: BBox::new(8, 8, 24, 24),
        blend_box: BBox::new(4, 4, 28, 28),
    };
    let manifest = Manifest::new(25, 32, 32, "test", vec![info; 3]);
    let frames = vec![Image::new(32, 32, 3); 3];
    let masks = vec![Image::new(24, 24, 1); 3];
    let latents = noise(3 * avatar::LATENT_LEN, seed, 1.0);
    Avatar::write(dir, &manifest, &frames, &masks, Some(&latents)).unwrap();
}

fn features(n: u64) -> gst::Buffer {
    let f = noise(FEAT_LEN, n as u32 + 11, 1.0);
    let mut buf =
        gst::Buffer::from_mut_slice(f.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let b = buf.get_mut().unwrap();
    b.set_pts(gst::ClockTime::from_mseconds(40 * n));
    b.set_duration(gst::ClockTime::from_mseconds(40));
    b.set_offset(n);
    b.set_offset_end(n + 1);
    buf
}

struct Pipe {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    muse: gst::Element,
}

/// appsrc (live) ! musetalk ! appsink (not synchronised), playing, with a pipeline latency
/// of 10 s (and upstream's latency 10 s, for the frames before the LATENCY event) so that
/// no frame is late on a loaded machine.
fn start(avatar: &Path, shared: bool) -> Pipe {
    start_with(avatar, shared, &models().0)
}

/// [`start`] with another UNet file.
fn start_with(avatar: &Path, shared: bool, u: &Path) -> Pipe {
    init();
    let v = models().1;
    let muse = gst::ElementFactory::make("musetalk")
        .property("avatar", avatar.to_str().unwrap())
        .property("unet", u.to_str().unwrap())
        .property("vae-decoder", v.to_str().unwrap())
        .property("batch-size", 4u32)
        .property("max-batch", 8u32)
        .property("shared-batching", shared)
        .build()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.set_latency(gst::ClockTime::from_seconds(10));
    let src = gst_app::AppSrc::builder()
        .caps(&FEATURE_CAPS.parse::<gst::Caps>().unwrap())
        .format(gst::Format::Time)
        .is_live(true)
        .min_latency(10_000_000_000)
        .max_bytes(0)
        .build();
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([src.upcast_ref(), &muse, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &muse, sink.upcast_ref()]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    Pipe {
        pipeline,
        src,
        sink,
        muse,
    }
}

fn feed_src(src: &gst_app::AppSrc) {
    for n in 0..FRAMES {
        src.push_buffer(features(n)).unwrap();
    }
    src.end_of_stream().unwrap();
}

impl Pipe {
    fn feed(&self) {
        feed_src(&self.src);
    }

    /// Feeds `self` and `other` at once (`other` from a thread of its own), so that their
    /// frames meet in the service.
    fn feed_with(&self, other: &Pipe) {
        let src = other.src.clone();
        let feeder = std::thread::spawn(move || feed_src(&src));
        self.feed();
        feeder.join().unwrap();
    }

    /// The next `n` crops: (frame number, RGB).
    fn pull(&self, n: u64) -> Vec<(u64, Vec<u8>)> {
        (0..n)
            .map(|_| {
                let s = self
                    .sink
                    .try_pull_sample(gst::ClockTime::from_seconds(60))
                    .expect("a crop");
                let b = s.buffer().unwrap();
                assert!(
                    !b.flags().contains(gst::BufferFlags::GAP),
                    "a skipped frame"
                );
                let m = meta::get(b).unwrap();
                assert_eq!(b.pts(), Some(gst::ClockTime::from_mseconds(40 * m.frame)));
                (m.frame, b.map_readable().unwrap().to_vec())
            })
            .collect()
    }

    fn stats(&self) -> gst::Structure {
        self.muse.property::<gst::Structure>("stats")
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The crops of one session run alone (no shared batching).
fn alone(avatar: &Path) -> Vec<(u64, Vec<u8>)> {
    let p = start(avatar, false);
    p.feed();
    let out = p.pull(FRAMES);
    let s = p.stats();
    assert_eq!(s.get::<u64>("mixed-frames").unwrap(), 0);
    out
}

/// Largest difference per byte.
fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

fn mean_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y) as f64)
        .sum::<f64>()
        / a.len() as f64
}

fn avatars() -> (tempfile::TempDir, tempfile::TempDir) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_avatar(a.path(), 7);
    write_avatar(b.path(), 8);
    (a, b)
}

#[test]
fn two_sessions_make_the_same_crops_as_alone_in_common_batches() {
    let _g = serial();
    let (da, db) = avatars();
    let (ref_a, ref_b) = (alone(da.path()), alone(db.path()));
    // The same features on two avatars give clearly different crops.
    for ((_, a), (_, b)) in ref_a.iter().zip(&ref_b) {
        assert!(mean_diff(a, b) > 2.0, "avatars indistinguishable");
    }

    let (a, b) = (start(da.path(), true), start(db.path(), true));
    a.feed_with(&b);
    let (out_a, out_b) = (a.pull(FRAMES), b.pull(FRAMES));
    for (out, want, name) in [(&out_a, &ref_a, "A"), (&out_b, &ref_b, "B")] {
        for (k, ((n, got), (m, exp))) in out.iter().zip(want.iter()).enumerate() {
            assert_eq!((*n, *m), (k as u64, k as u64), "{name}: order");
            assert!(
                max_diff(got, exp) <= 1,
                "{name} frame {n}: differs from alone by {}",
                max_diff(got, exp)
            );
        }
    }
    // Frames of both ran in common batches, larger than one element's batch-size.
    for (p, name) in [(&a, "A"), (&b, "B")] {
        let s = p.stats();
        let mixed = s.get::<u64>("mixed-frames").unwrap();
        let mean = s.get::<f64>("mean-batch").unwrap();
        eprintln!("{name}: {s}");
        assert!(mixed > 0, "{name}: no frame ran with the other session's");
        assert!(mean > 4.0, "{name}: mean batch {mean}");
        assert_eq!(s.get::<u64>("inferred-frames").unwrap(), FRAMES);
    }
}

#[test]
fn one_session_torn_down_mid_stream_leaves_the_other_intact() {
    let _g = serial();
    let (da, db) = avatars();
    let ref_b = alone(db.path());
    let (a, b) = (start(da.path(), true), start(db.path(), true));
    // A runs part of its stream, then is flushed and torn down while B's frames are queued.
    let src_a = a.src.clone();
    let feed_a = std::thread::spawn(move || {
        for n in 0..FRAMES {
            if src_a.push_buffer(features(n)).is_err() {
                break;
            }
        }
    });
    let first = a.pull(6);
    assert_eq!(first.len(), 6);
    b.feed();
    let got = b.pull(2);
    assert!(a.src.send_event(gst::event::FlushStart::new()));
    assert!(a.src.send_event(gst::event::FlushStop::new(true)));
    a.pipeline.set_state(gst::State::Null).unwrap();
    feed_a.join().unwrap();
    drop(a);
    let rest = b.pull(FRAMES - 2);
    for (k, (n, crop)) in got.iter().chain(&rest).enumerate() {
        assert_eq!(*n, k as u64);
        assert!(max_diff(crop, &ref_b[k].1) <= 1, "B frame {n} disturbed");
    }
}

#[test]
fn a_model_fixed_to_batch_1_runs_one_frame_per_batch_with_a_warning() {
    let _g = serial();
    // The test UNet with its batch dimension fixed to 1 (same weights).
    let fixed = gstlivetalk::paths::test_models_dir().join("unet_batch1.onnx");
    assert!(
        fixed.is_file(),
        "run scripts/setup.sh (models/make_test_models.py)"
    );
    let (da, db) = avatars();
    let (ref_a, ref_b) = (alone(da.path()), alone(db.path()));
    for shared in [false, true] {
        let (a, b) = (
            start_with(da.path(), shared, &fixed),
            start_with(db.path(), shared, &fixed),
        );
        a.feed_with(&b);
        let (out_a, out_b) = (a.pull(FRAMES), b.pull(FRAMES));
        for (out, want, p) in [(&out_a, &ref_a, &a), (&out_b, &ref_b, &b)] {
            for (k, ((n, got), (_, exp))) in out.iter().zip(want.iter()).enumerate() {
                assert_eq!(*n, k as u64);
                assert!(
                    max_diff(got, exp) <= 1,
                    "frame {n} differs (shared {shared})"
                );
            }
            let s = p.stats();
            assert_eq!(s.get::<u64>("inferred-frames").unwrap(), FRAMES);
            assert_eq!(s.get::<u64>("batches").unwrap(), FRAMES, "{s}");
            assert_eq!(s.get::<f64>("mean-batch").unwrap(), 1.0, "{s}");
            // One warning on the bus, naming the fixed batch; no error.
            let bus = p.pipeline.bus().unwrap();
            let warnings: Vec<String> = std::iter::from_fn(|| {
                bus.pop_filtered(&[gst::MessageType::Warning, gst::MessageType::Error])
            })
            .map(|m| match m.view() {
                gst::MessageView::Warning(w) => w.error().to_string(),
                gst::MessageView::Error(e) => panic!("error: {}", e.error()),
                _ => unreachable!(),
            })
            .collect();
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].contains("fix the batch size to 1"),
                "{}",
                warnings[0]
            );
        }
    }
}
