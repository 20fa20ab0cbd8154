//! musetalk: crops against MuseTalk's inference in Python, batching, GAP, timestamps, live
//! skipping and batch waits on a test clock, flushing, interruption, latency, shared
//! sessions, bad input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

mod common;

use common::{init, noise};
use gst::prelude::*;
use gst_check::Harness;
use gstlivetalk::avatar::{self, Avatar, BBox, FrameInfo, Image, Manifest};
use gstlivetalk::meta;
use gstlivetalk::npy::NpyF32;

const N: usize = 3;
const FEAT_LEN: usize = 50 * 384;
const FEATURE_CAPS: &str = "application/x-livetalk-features,framerate=25/1,rows=50,dims=384";

/// Tests that count sessions must not overlap with tests that load models.
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

fn write_avatar(dir: &Path, latents: Option<Vec<f32>>) -> Vec<f32> {
    let info = FrameInfo {
        face_box: BBox::new(8, 8, 24, 24),
        blend_box: BBox::new(4, 4, 28, 28),
    };
    let manifest = Manifest::new(25, 32, 32, "test", vec![info; N]);
    let frames = vec![Image::new(32, 32, 3); N];
    let masks = vec![Image::new(24, 24, 1); N];
    let latents = latents.unwrap_or_else(|| noise(N * avatar::LATENT_LEN, 7, 1.0));
    Avatar::write(dir, &manifest, &frames, &masks, Some(&latents)).unwrap();
    latents
}

fn element(avatar: &Path, props: &[(&str, &dyn ToValue)]) -> gst::Element {
    init();
    let (u, v) = models();
    let mut b = gst::ElementFactory::make("musetalk")
        .property("avatar", avatar.to_str().unwrap())
        .property("unet", u.to_str().unwrap())
        .property("vae-decoder", v.to_str().unwrap());
    for (k, val) in props {
        b = b.property(k, val.to_value());
    }
    b.build().unwrap()
}

fn frame_time(n: u64) -> gst::ClockTime {
    gst::ClockTime::from_mseconds(40 * n)
}

/// A features buffer for frame `n` (`None`: silent, GAP).
fn features(n: u64, feat: Option<&[f32]>, pts: gst::ClockTime) -> gst::Buffer {
    let mut buf = match feat {
        Some(f) => {
            gst::Buffer::from_mut_slice(f.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
        }
        None => gst::Buffer::new(),
    };
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(gst::ClockTime::from_mseconds(40));
        b.set_offset(n);
        b.set_offset_end(n + 1);
        if feat.is_none() {
            b.set_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE);
        }
    }
    buf
}

struct Pipe {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    muse: gst::Element,
}

fn pipeline(muse: gst::Element, live: bool) -> Pipe {
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&FEATURE_CAPS.parse::<gst::Caps>().unwrap())
        .format(gst::Format::Time)
        .is_live(live)
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

impl Pipe {
    fn finish(&self) -> Vec<gst::Sample> {
        self.src.end_of_stream().unwrap();
        let mut out = Vec::new();
        while let Some(s) = self.sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
            out.push(s);
        }
        let bus = self.pipeline.bus().unwrap();
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            panic!("{msg:?}");
        }
        out
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

/// MuseTalk's inference in Python (models/musetalk_reference.py) on the same inputs.
fn reference(dir: &Path, latents: &[f32], feats: &[Vec<f32>], index: &[usize]) -> Vec<Vec<u8>> {
    let (u, v) = models();
    reference_with(dir, &u, &v, latents, feats, index)
}

fn reference_with(
    dir: &Path,
    u: &Path,
    v: &Path,
    latents: &[f32],
    feats: &[Vec<f32>],
    index: &[usize],
) -> Vec<Vec<u8>> {
    NpyF32::new(vec![N, 8, 32, 32], latents.to_vec())
        .write(&dir.join("latents_ref.npy"))
        .unwrap();
    NpyF32::new(
        vec![feats.len(), 50, 384],
        feats.iter().flatten().copied().collect(),
    )
    .write(&dir.join("feats.npy"))
    .unwrap();
    let py = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(py)
        .arg(format!("{root}/models/musetalk_reference.py"))
        .arg("--unet")
        .arg(u)
        .arg("--vae")
        .arg(v)
        .arg("--latents")
        .arg(dir.join("latents_ref.npy"))
        .arg("--features")
        .arg(dir.join("feats.npy"))
        .arg("--out")
        .arg(dir.join("ref.npy"))
        .arg("--index")
        .args(index.iter().map(|i| i.to_string()))
        .output()
        .expect("run scripts/setup.sh (venv)");
    assert!(
        out.status.success(),
        "musetalk_reference.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arr = NpyF32::read(&dir.join("ref.npy")).unwrap();
    assert_eq!(arr.shape, [feats.len(), 256, 256, 3]);
    arr.data
        .chunks_exact(256 * 256 * 3)
        .map(|c| c.iter().map(|&v| v as u8).collect())
        .collect()
}

#[test]
fn offline_crops_match_musetalk_reference_in_batches() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let latents = write_avatar(dir.path(), None);
    let muse = element(dir.path(), &[("batch-size", &3u32)]);
    let p = pipeline(muse, false);
    // Frames 0..4 speak, 5 is silent, 6 speaks.
    let speaking = [true, true, true, true, true, false, true];
    let mut feats = Vec::new();
    for (n, &s) in speaking.iter().enumerate() {
        let f = noise(FEAT_LEN, n as u32 + 11, 2.0);
        p.src
            .push_buffer(features(
                n as u64,
                s.then_some(&f[..]),
                frame_time(n as u64),
            ))
            .unwrap();
        if s {
            feats.push((n, f));
        }
    }
    let out = p.finish();
    assert_eq!(out.len(), speaking.len());
    let caps = out[0].caps().unwrap().to_owned();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "video/x-raw");
    assert_eq!(s.get::<&str>("format").unwrap(), "RGB");
    assert_eq!(s.get::<i32>("width").unwrap(), 256);
    assert_eq!(
        s.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(25, 1)
    );

    let index: Vec<usize> = feats
        .iter()
        .map(|(n, _)| avatar::mirror_index(N, *n as u64))
        .collect();
    let feat_vals: Vec<Vec<f32>> = feats.iter().map(|(_, f)| f.clone()).collect();
    let want = reference(dir.path(), &latents, &feat_vals, &index);
    let mut k = 0;
    for (n, sample) in out.iter().enumerate() {
        let buf = sample.buffer().unwrap();
        assert_eq!(buf.pts(), Some(frame_time(n as u64)), "frame {n}");
        assert_eq!(buf.offset(), n as u64);
        let m = meta::get(buf).unwrap();
        assert_eq!(
            m.index,
            avatar::mirror_index(N, n as u64) as u64,
            "frame {n}"
        );
        assert_eq!(m.frame, n as u64);
        assert_eq!(m.speaking, speaking[n]);
        if speaking[n] {
            assert!(!buf.flags().contains(gst::BufferFlags::GAP));
            let got = buf.map_readable().unwrap();
            assert_eq!(got.len(), 256 * 256 * 3);
            let worst = got
                .iter()
                .zip(&want[k])
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 1, "frame {n}: differs from MuseTalk's by {worst}");
            eprintln!("frame {n}: max diff to MuseTalk's reference {worst}");
            let (lo, hi) = (got.iter().min().unwrap(), got.iter().max().unwrap());
            assert!(hi - lo > 50, "a flat crop ({lo}..{hi}) proves nothing");
            if k > 0 {
                assert_ne!(
                    want[k],
                    want[k - 1],
                    "crops must differ with audio and latent"
                );
            }
            k += 1;
        } else {
            assert!(buf.flags().contains(gst::BufferFlags::GAP));
            assert_eq!(buf.size(), 0);
        }
    }
    let stats = p.stats();
    assert_eq!(stats.get::<u64>("inferred-frames").unwrap(), 6);
    // [0,1,2] full, [3,4] cut by the silent frame, [6] cut by EOS.
    assert_eq!(stats.get::<u64>("batches").unwrap(), 3);
    assert_eq!(stats.get::<u64>("idle-frames").unwrap(), 1);
    assert_eq!(stats.get::<u64>("skipped-frames").unwrap(), 0);
}

/// The real UNet and VAE architectures (tiny widths, random weights, made by
/// models/export_musetalk.py --random-tiny) through the element, against the reference.
#[test]
fn real_architecture_fixtures_match_musetalk_reference() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let latents = write_avatar(dir.path(), None);
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/musetalk-tiny");
    let muse = element(
        dir.path(),
        &[("batch-size", &2u32), ("model-dir", &fx.to_str().unwrap())],
    );
    // model-dir is used when unet / vae-decoder are not set.
    muse.set_property("unet", None::<String>);
    muse.set_property("vae-decoder", None::<String>);
    let p = pipeline(muse, false);
    let feats: Vec<Vec<f32>> = (0..3).map(|n| noise(FEAT_LEN, n + 40, 1.5)).collect();
    for (n, f) in feats.iter().enumerate() {
        p.src
            .push_buffer(features(n as u64 + 5, Some(f), frame_time(n as u64 + 5)))
            .unwrap();
    }
    let out = p.finish();
    assert_eq!(out.len(), 3);
    let index: Vec<usize> = (5..8).map(|n| avatar::mirror_index(N, n)).collect();
    let (u, v) = (fx.join("unet.onnx"), fx.join("vae_decoder.onnx"));
    let want = reference_with(dir.path(), &u, &v, &latents, &feats, &index);
    for (k, s) in out.iter().enumerate() {
        let b = s.buffer().unwrap();
        assert_eq!(meta::get(b).unwrap().index, index[k] as u64);
        let got = b.map_readable().unwrap();
        let worst = got
            .iter()
            .zip(&want[k])
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "frame {k}: differs from MuseTalk's by {worst}");
    }
    assert_ne!(want[0], want[1]);
    // The encoder export meets its contract too.
    init();
    let enc = gstlivetalk::inference::load_session(&gstlivetalk::inference::SessionRequest::new(
        &fx.join("vae_encoder.onnx"),
        &gstlivetalk::inference::contract::VAE_ENCODER,
    ));
    assert!(enc.is_ok(), "{:?}", enc.err());
}

#[test]
fn interrupt_turns_pending_speech_into_idle_frames() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path(), None);
    let p = pipeline(element(dir.path(), &[("batch-size", &8u32)]), false);
    let f = noise(FEAT_LEN, 3, 1.0);
    for n in 0..5 {
        p.src
            .push_buffer(features(n, Some(&f), frame_time(n)))
            .unwrap();
    }
    // Offline, the batch of 8 is still filling: these 5 are pending.
    assert!(p.src.send_event(gstlivetalk::events::interrupt_event()));
    for n in 5..7 {
        p.src
            .push_buffer(features(n, Some(&f), frame_time(n)))
            .unwrap();
    }
    let out = p.finish();
    assert_eq!(out.len(), 7);
    for (n, s) in out.iter().enumerate() {
        let b = s.buffer().unwrap();
        assert_eq!(b.pts(), Some(frame_time(n as u64)));
        let m = meta::get(b).unwrap();
        assert_eq!(m.speaking, n >= 5, "frame {n}");
        assert_eq!(b.flags().contains(gst::BufferFlags::GAP), n < 5);
    }
    assert_eq!(p.stats().get::<u64>("interrupted-frames").unwrap(), 5);
    assert_eq!(p.stats().get::<u64>("inferred-frames").unwrap(), 2);
}

/// musetalk in a harness (a live upstream with 100 ms of latency) on a test clock at 0, base
/// time 0, with the pipeline latency a sink would send (upstream's 100 ms + batch-size
/// frames of 40 ms): frame `n` (PTS 40n ms) must leave by `deadline(n)`.
fn live_harness(avatar: &Path, batch: u32) -> (Harness, gst::Element) {
    // The element's own batches: their cost is measured on the pipeline clock (the test
    // clock), where the shared service measures its own on the system's.
    let muse = element(
        avatar,
        &[
            ("batch-size", &batch),
            ("inference-latency", &0i32),
            ("shared-batching", &false),
        ],
    );
    let mut h = Harness::with_element(&muse, Some("sink"), Some("src"));
    h.use_testclock();
    h.set_upstream_latency(gst::ClockTime::from_mseconds(100));
    h.play();
    h.set_src_caps_str(FEATURE_CAPS);
    let latency = gst::ClockTime::from_mseconds(100 + 40 * batch as u64);
    assert!(h.push_upstream_event(gst::event::Latency::new(latency)));
    (h, muse)
}

/// Base time (0) + running time + pipeline latency - half a frame.
fn deadline(n: u64, batch: u64) -> gst::ClockTime {
    frame_time(n) + gst::ClockTime::from_mseconds(100 + 40 * batch)
        - gst::ClockTime::from_mseconds(20)
}

fn push_speech(h: &mut Harness, n: u64) {
    let f = noise(FEAT_LEN, n as u32 + 5, 1.0);
    h.push(features(n, Some(&f), frame_time(n))).unwrap();
}

fn assert_made(b: &gst::Buffer, n: u64) {
    assert_eq!(b.pts(), Some(frame_time(n)), "frame {n}");
    assert!(
        !b.flags().contains(gst::BufferFlags::GAP),
        "frame {n} skipped"
    );
    assert_eq!(b.size(), 256 * 256 * 3);
    assert!(meta::get(b).unwrap().speaking);
}

fn assert_skipped(b: &gst::Buffer, n: u64) {
    assert_eq!(b.pts(), Some(frame_time(n)), "frame {n}");
    assert!(b.flags().contains(gst::BufferFlags::GAP), "frame {n} made");
    assert_eq!(b.size(), 0);
    let m = meta::get(b).unwrap();
    assert!(m.speaking, "a skipped speech frame still says speaking");
    assert_eq!(m.frame, n);
}

/// Runs `f` on another thread. If it does not return within a generous bound (it would
/// hang forever if the element never left its clock wait) the test process fails: a panic
/// would hang too, in the harness's own shutdown.
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| {
            eprintln!("{what} did not return: the clock wait was not unscheduled");
            std::process::exit(101)
        })
}

/// The latency musetalk adds when live: batch-size frames plus the inference latency, given
/// or (-1, the default) measured at READY and reported in the stats.
#[test]
fn inference_latency_is_given_or_measured_and_added_to_the_latency() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path(), None);
    let latency = |props: &[(&str, &dyn ToValue)]| {
        let muse = element(dir.path(), props);
        let mut h = Harness::with_element(&muse, Some("sink"), Some("src"));
        h.set_upstream_latency(gst::ClockTime::from_mseconds(100));
        h.play();
        let mut q = gst::query::Latency::new();
        assert!(muse.static_pad("src").unwrap().query(&mut q));
        let stats = muse.property::<gst::Structure>("stats");
        // The batch cost the planner starts from, before any frame came.
        let cost = (
            stats.get::<i64>("batch-cost-fixed-us").unwrap(),
            stats.get::<i64>("batch-cost-per-frame-us").unwrap(),
        );
        (
            q.result(),
            stats.get::<u64>("inference-latency-ms").unwrap(),
            cost,
        )
    };
    let given = [
        ("batch-size", &2u32 as &dyn ToValue),
        ("inference-latency", &30i32),
        ("shared-batching", &false),
    ];
    let ((live, min, _), ms, cost) = latency(&given);
    assert!(live);
    assert_eq!(ms, 30);
    assert_eq!(min, gst::ClockTime::from_mseconds(100 + 2 * 40 + 30));
    // Given: nothing ran at READY, so no batch cost is known yet.
    assert_eq!(cost, (-1, -1));
    // Measured: some time (whole ms, at least 1) for the largest batch, and reported; the
    // batches of one and of two timed at READY give the cost model both parts, for the
    // element's own batches and for the batching service's.
    for shared in [false, true] {
        let ((_, min, _), ms, (fixed, per)) = latency(&[
            ("batch-size", &2u32 as &dyn ToValue),
            ("shared-batching", &shared),
        ]);
        assert!(ms >= 1, "{ms}");
        let largest = if shared { 16 } else { 2 };
        let batch = (fixed + per * largest) as f64 / 1e3;
        assert!(
            fixed >= 0 && per >= 0 && batch > 0.0 && batch <= ms as f64 / 1.25 + 1.0,
            "shared {shared}: {fixed} us + {per} us a frame, {ms} ms allowed"
        );
        if !shared {
            assert_eq!(min, gst::ClockTime::from_mseconds(100 + 2 * 40 + ms));
        }
    }
}

#[test]
fn live_on_a_test_clock_skips_frames_past_their_deadline_keeping_timestamps() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path(), None);
    let (mut h, muse) = live_harness(dir.path(), 2);
    // Latency: upstream's 100 ms plus batch-size (2) frames of 40 ms.
    let mut q = gst::query::Latency::new();
    assert!(muse.static_pad("src").unwrap().query(&mut q));
    assert_eq!(q.result(), (true, gst::ClockTime::from_mseconds(180), None));
    // The clock is at frame 16's deadline: 16 is just in time, 15 is 40 ms late.
    let now = deadline(16, 2);
    assert_eq!(now, gst::ClockTime::from_mseconds(800));
    h.set_time(now).unwrap();
    let frames = [0u64, 1, 2, 3, 15, 16, 60, 61];
    for n in frames {
        push_speech(&mut h, n);
    }
    h.push_event(gst::event::Eos::new());
    for n in frames {
        let b = h.pull().unwrap();
        if deadline(n, 2) < now {
            assert_skipped(&b, n);
        } else {
            assert_made(&b, n);
        }
    }
    let stats = muse.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("skipped-frames").unwrap(), 5);
    assert_eq!(stats.get::<u64>("inferred-frames").unwrap(), 3);
    assert_eq!(stats.get::<u64>("speech-frames").unwrap(), 8);
    // Nothing moved the clock.
    assert_eq!(h.testclock().unwrap().time(), now);
}

#[test]
fn live_batch_waits_on_the_clock_until_its_deadline_allows_and_arrivals_wake_it() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path(), None);
    let (mut h, muse) = live_harness(dir.path(), 2);
    let clock = h.testclock().unwrap();
    let stat = |k: &str| {
        muse.property::<gst::Structure>("stats")
            .get::<u64>(k)
            .unwrap()
    };
    // No batch cost measured yet: the first frame runs at once.
    push_speech(&mut h, 0);
    assert_made(&h.pull().unwrap(), 0);
    // The cost is measured on the pipeline clock, which stood still: 0. Frame 1 waits for
    // a second frame, until the batch of 2 must start to make frame 1's deadline.
    push_speech(&mut h, 1);
    let id = clock.wait_for_next_pending_id();
    assert_eq!(id.time(), deadline(1, 2));
    assert!(h.try_pull().is_none(), "frame 1 waits");
    // Frame 2 arrives: the wait is unscheduled and the full batch runs, with no clock
    // advance.
    push_speech(&mut h, 2);
    assert_made(&h.pull().unwrap(), 1);
    assert_made(&h.pull().unwrap(), 2);
    assert_eq!(stat("batches"), 2);
    assert_eq!(clock.time(), gst::ClockTime::ZERO);
    // Frame 3 waits; nothing else comes; at its deadline it runs alone, in time.
    push_speech(&mut h, 3);
    assert_eq!(clock.wait_for_next_pending_id().time(), deadline(3, 2));
    h.crank_single_clock_wait().unwrap();
    assert_eq!(clock.time(), deadline(3, 2));
    assert_made(&h.pull().unwrap(), 3);
    assert_eq!(stat("batches"), 3);
    // A frame already past its deadline at arrival is skipped without waiting.
    h.set_time(deadline(5, 2) + gst::ClockTime::NSECOND)
        .unwrap();
    push_speech(&mut h, 5);
    assert_skipped(&h.pull().unwrap(), 5);
    assert_eq!(stat("skipped-frames"), 1);
    assert_eq!(stat("inferred-frames"), 4);
}

#[test]
fn flush_and_stop_unblock_a_pending_clock_wait() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path(), None);
    let (mut h, muse) = live_harness(dir.path(), 4);
    let clock = h.testclock().unwrap();
    push_speech(&mut h, 0);
    assert_made(&h.pull().unwrap(), 0);
    push_speech(&mut h, 1);
    assert_eq!(clock.wait_for_next_pending_id().time(), deadline(1, 4));
    // FLUSH_START pauses the worker, which waits for its turn to end: it returns only if
    // the clock wait was unscheduled (the clock does not move).
    let sink = muse.static_pad("sink").unwrap();
    assert!(returns("FLUSH_START", move || sink
        .send_event(gst::event::FlushStart::new())));
    assert!(clock.peek_next_pending_id().is_none());
    assert_eq!(clock.time(), gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    // Frame 1 was flushed; the element works on.
    push_speech(&mut h, 2);
    assert_eq!(clock.wait_for_next_pending_id().time(), deadline(2, 4));
    h.push_event(gst::event::Eos::new());
    assert_made(&h.pull().unwrap(), 2);
    assert!(h.try_pull().is_none(), "frame 1 was flushed");

    // PAUSED -> READY with a wait pending (after a flush that clears the EOS).
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    push_speech(&mut h, 3);
    assert_eq!(clock.wait_for_next_pending_id().time(), deadline(3, 4));
    let m = muse.clone();
    let r = returns("PAUSED->READY", move || m.set_state(gst::State::Ready));
    assert!(r.is_ok());
    assert!(clock.peek_next_pending_id().is_none());
    assert_eq!(clock.time(), gst::ClockTime::ZERO);
}

#[test]
fn two_elements_on_the_same_model_share_one_session() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path(), None);
    init();
    let before = gstlivetalk::inference::live_sessions();
    let a = element(dir.path(), &[]);
    let b = element(dir.path(), &[]);
    a.set_state(gst::State::Ready).unwrap();
    assert_eq!(
        gstlivetalk::inference::live_sessions(),
        before + 2,
        "UNet + VAE decoder"
    );
    b.set_state(gst::State::Ready).unwrap();
    assert_eq!(
        gstlivetalk::inference::live_sessions(),
        before + 2,
        "shared, not loaded again"
    );
    // A different session key (threads) is a different session.
    let c = element(dir.path(), &[("threads", &1u32)]);
    c.set_state(gst::State::Ready).unwrap();
    assert_eq!(gstlivetalk::inference::live_sessions(), before + 4);
    for e in [&a, &b, &c] {
        e.set_state(gst::State::Null).unwrap();
    }
    assert_eq!(gstlivetalk::inference::live_sessions(), before);
}

fn ready_error(e: &gst::Element) -> String {
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    assert!(e.set_state(gst::State::Ready).is_err());
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    err.error().to_string()
}

#[test]
fn bad_input_gives_element_errors() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path(), None);
    // A features buffer of the wrong size.
    let e = element(dir.path(), &[]);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let mut h = Harness::with_element(&e, Some("sink"), Some("src"));
    h.play();
    h.set_src_caps_str(FEATURE_CAPS);
    let mut buf = gst::Buffer::from_mut_slice(vec![0u8; 1000]);
    buf.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    assert_eq!(h.push(buf), Err(gst::FlowError::Error));
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert!(
        err.error()
            .to_string()
            .contains("has 1000 bytes, expected 76800"),
        "{}",
        err.error()
    );
    drop(h);

    // An avatar without latents.
    let d = tempfile::tempdir().unwrap();
    let info = FrameInfo {
        face_box: BBox::new(8, 8, 24, 24),
        blend_box: BBox::new(4, 4, 28, 28),
    };
    Avatar::write(
        d.path(),
        &Manifest::new(25, 32, 32, "t", vec![info; 2]),
        &[Image::new(32, 32, 3), Image::new(32, 32, 3)],
        &[Image::new(24, 24, 1), Image::new(24, 24, 1)],
        None,
    )
    .unwrap();
    let msg = ready_error(&element(d.path(), &[]));
    assert!(msg.contains("has no MuseTalk latents"), "{msg}");

    // Latent count does not match the frame count.
    let d = tempfile::tempdir().unwrap();
    write_avatar(d.path(), None);
    NpyF32::new(
        vec![N + 1, 8, 32, 32],
        vec![0.0; (N + 1) * avatar::LATENT_LEN],
    )
    .write(&d.path().join("latents.npy"))
    .unwrap();
    let msg = ready_error(&element(d.path(), &[]));
    assert!(
        msg.contains("latents have shape [4, 8, 32, 32], expected [3, 8, 32, 32]"),
        "{msg}"
    );

    // A missing model; a model with the wrong contract.
    let msg = ready_error(&element(dir.path(), &[("unet", &"/nonexistent/unet.onnx")]));
    assert!(msg.contains("not found"), "{msg}");
    let (_, vae) = models();
    let msg = ready_error(&element(dir.path(), &[("unet", &vae.to_str().unwrap())]));
    assert!(msg.contains("UNet"), "{msg}");
}
