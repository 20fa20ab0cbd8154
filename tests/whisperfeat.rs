//! whisperfeat: features against MuseTalk's own slicing, timestamps, silence, interruption,
//! latency, and bad input.

use std::process::Command;

mod common;

use common::{f32_buffer as buffer, init, noise};
use gst::glib;
use gst::prelude::*;
use gst_check::Harness;
use gstlivetalk::npy::NpyF32;

const AUDIO_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";
const FRAME_BYTES: usize = 50 * 384 * 4;

fn tiny_model() -> String {
    let p = gstlivetalk::paths::test_models_dir().join("whisper_encoder.onnx");
    assert!(p.is_file(), "run scripts/setup.sh");
    p.display().to_string()
}

fn real_model() -> String {
    let p = gstlivetalk::paths::models_dir().join("whisper-tiny.en/encoder.onnx");
    assert!(p.is_file(), "run scripts/setup.sh");
    p.display().to_string()
}

fn harness(props: &[(&str, &dyn ToValue)]) -> Harness {
    init();
    let values: Vec<(&str, glib::Value)> = props.iter().map(|(k, v)| (*k, v.to_value())).collect();
    let mut b = gst::ElementFactory::make("whisperfeat");
    for (k, v) in &values {
        // Strings also set enum properties, by nick.
        b = match v.get::<&str>() {
            Ok(s) => b.property_from_str(k, s),
            Err(_) => b.property(k, v.clone()),
        };
    }
    let element = b.build().unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.play();
    h.set_src_caps_str(AUDIO_CAPS);
    h
}

fn pts_of_sample(s: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(s * 62_500) // 1e9 / 16000
}

fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    let mut v = Vec::new();
    while let Some(b) = h.try_pull() {
        v.push(b);
    }
    v
}

fn stats(h: &Harness) -> gst::Structure {
    h.element().unwrap().property::<gst::Structure>("stats")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        1.0
    } else {
        dot / (na * nb)
    }
}

fn to_f32(buf: &gst::Buffer) -> Vec<f32> {
    let map = buf.map_readable().unwrap();
    map.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Real speech through the real whisper encoder, in one 30 s-padded window: the features must
/// equal MuseTalk v1.5's (transformers mel, whole-clip encoder run, its slicing and padding),
/// computed by models/features_reference.py.
#[test]
fn features_match_musetalk_reference_on_real_speech() {
    let dir = tempfile::tempdir().unwrap();
    let venv = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    let root = env!("CARGO_MANIFEST_DIR");
    let ok = Command::new(&venv)
        .args([
            &format!("{root}/models/mel_reference.py"),
            "--seconds",
            "4",
            "--out-dir",
        ])
        .arg(dir.path())
        .env("TRANSFORMERS_VERBOSITY", "error")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let audio = dir.path().join("audio.npy");
    let reference = dir.path().join("features.npy");
    let ok = Command::new(&venv)
        .args([
            &format!("{root}/models/features_reference.py"),
            "--encoder",
            &real_model(),
            "--audio",
        ])
        .arg(&audio)
        .arg("--out")
        .arg(&reference)
        .env("TRANSFORMERS_VERBOSITY", "error")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let audio = NpyF32::read(&audio).unwrap().data;
    let reference = NpyF32::read(&reference).unwrap();
    let frames = reference.shape[0];
    assert_eq!(frames, 100);

    // One batch holds the whole clip: one encoder window from sample 0, padded to 30 s.
    let mut h = harness(&[
        ("model", &real_model()),
        ("pad-30s", &true),
        ("batch-frames", &256u32),
        ("silence-threshold-db", &-200.0f64),
    ]);
    for (k, chunk) in audio.chunks(1000).enumerate() {
        h.push(buffer(chunk, Some(pts_of_sample(k as u64 * 1000))))
            .unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), frames);
    assert_eq!(stats(&h).get::<u64>("encoder-runs").unwrap(), 1);
    let mut worst = (1.0f64, 0);
    for (i, buf) in out.iter().enumerate() {
        assert_eq!(
            buf.pts(),
            Some(gst::ClockTime::from_mseconds(40 * i as u64))
        );
        assert_eq!(buf.size(), FRAME_BYTES);
        let ours = to_f32(buf);
        let theirs = &reference.data[i * 50 * 384..(i + 1) * 50 * 384];
        // Row by row: every (step, layer) row must agree, zero rows included.
        for r in 0..50 {
            let c = cosine(
                &ours[r * 384..(r + 1) * 384],
                &theirs[r * 384..(r + 1) * 384],
            );
            if c < worst.0 {
                worst = (c, i);
            }
        }
    }
    eprintln!("worst row cosine {:.6} (frame {})", worst.0, worst.1);
    // The last frames see the window's end: reflect padding (ours) vs zero audio (reference).
    assert!(
        worst.0 > 0.99,
        "worst row cosine {} at frame {}",
        worst.0,
        worst.1
    );
}

#[test]
fn silence_gives_gap_without_encoder_runs() {
    let mut h = harness(&[("model", &tiny_model())]);
    // GAP buffers without data, and digital silence with data.
    let mut s = 0u64;
    for _ in 0..50 {
        let mut b = gst::Buffer::new();
        {
            let b = b.get_mut().unwrap();
            b.set_pts(pts_of_sample(s));
            b.set_duration(gst::ClockTime::from_mseconds(20));
            b.set_flags(gst::BufferFlags::GAP);
        }
        h.push(b).unwrap();
        s += 320;
    }
    for _ in 0..50 {
        h.push(buffer(&[0.0; 320], Some(pts_of_sample(s)))).unwrap();
        s += 320;
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 50); // 2 s at 25 fps
    assert!(
        out.iter()
            .all(|b| b.flags().contains(gst::BufferFlags::GAP) && b.size() == 0)
    );
    let st = stats(&h);
    assert_eq!(st.get::<u64>("encoder-runs").unwrap(), 0);
    assert_eq!(st.get::<u64>("silent-frames").unwrap(), 50);
}

#[test]
fn speech_frames_are_batched_and_timestamped() {
    let mut h = harness(&[("model", &tiny_model()), ("batch-frames", &5u32)]);
    let mut audio = vec![0.0; 16_000];
    audio.extend(noise(16_000, 7, 0.3));
    audio.extend(vec![0.0; 16_000]);
    for (k, c) in audio.chunks(160).enumerate() {
        h.push(buffer(c, Some(pts_of_sample(k as u64 * 160))))
            .unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 75);
    let speech: Vec<usize> = (0..75)
        .filter(|&i| !out[i].flags().contains(gst::BufferFlags::GAP))
        .collect();
    // Frame i hears [320(2i-4), 320(2i+6)): frames 23..=51 overlap speech [16000, 32000).
    assert_eq!(speech, (23..52).collect::<Vec<_>>());
    let st = stats(&h);
    assert_eq!(st.get::<u64>("encoder-runs").unwrap(), 6); // 29 frames in batches of 5
    assert_eq!(st.get::<u64>("speech-frames").unwrap(), 29);
    for (i, b) in out.iter().enumerate() {
        assert_eq!(b.pts(), Some(gst::ClockTime::from_mseconds(40 * i as u64)));
        assert_eq!(b.duration(), Some(gst::ClockTime::from_mseconds(40)));
        assert_eq!(b.offset(), i as u64);
    }
    assert!(out[0].flags().contains(gst::BufferFlags::DISCONT));
}

/// An hour of audio in buffers of odd sizes, timestamps rounded to the nanosecond as a real
/// source would: frame i is exactly at i * 40 ms, no drift.
#[test]
fn an_hour_of_odd_sized_buffers_does_not_drift() {
    let mut h = harness(&[("model", &tiny_model())]);
    let sizes = [1usize, 157, 4099, 333, 2048, 17, 960];
    let hour = 16_000u64 * 3600;
    let zeros = vec![0.0f32; 4099];
    let speech = noise(4099, 3, 0.2);
    let (mut s, mut k) = (0u64, 0usize);
    let mut frames = 0usize;
    let mut speech_frames = 0usize;
    while s < hour {
        let n = (sizes[k % sizes.len()] as u64).min(hour - s) as usize;
        // A burst of sound every 10 minutes.
        let loud = (s % (16_000 * 600)) < 16_000;
        let data = if loud { &speech[..n] } else { &zeros[..n] };
        let pts = gst::ClockTime::from_nseconds((s as u128 * 1_000_000_000 / 16_000) as u64);
        h.push(buffer(data, Some(pts))).unwrap();
        s += n as u64;
        k += 1;
        for b in pull_all(&mut h) {
            assert_eq!(
                b.pts(),
                Some(gst::ClockTime::from_mseconds(40 * frames as u64)),
                "frame {frames}"
            );
            if !b.flags().contains(gst::BufferFlags::GAP) {
                speech_frames += 1;
            }
            frames += 1;
        }
    }
    h.push_event(gst::event::Eos::new());
    frames += pull_all(&mut h).len();
    assert_eq!(frames, 90_000);
    assert!(speech_frames > 6 * 25, "{speech_frames} speech frames");
}

#[test]
fn buffers_without_timestamps_follow_segment_and_sample_count() {
    init();
    let element = gst::ElementFactory::make("whisperfeat")
        .property("model", tiny_model())
        .build()
        .unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.play();
    h.push_event(gst::event::StreamStart::new("s"));
    h.push_event(gst::event::Caps::new(
        &AUDIO_CAPS.parse::<gst::Caps>().unwrap(),
    ));
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_start(gst::ClockTime::from_seconds(5));
    seg.set_time(gst::ClockTime::from_seconds(5));
    h.push_event(gst::event::Segment::new(&seg));
    for _ in 0..100 {
        h.push(buffer(&[0.0; 333], None)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 53); // 33300 samples -> ceil(52.03)
    for (i, b) in out.iter().enumerate() {
        assert_eq!(
            b.pts(),
            Some(gst::ClockTime::from_seconds(5) + gst::ClockTime::from_mseconds(40 * i as u64))
        );
    }
}

#[test]
fn a_hole_in_the_timestamps_is_silence_and_keeps_the_grid() {
    let mut h = harness(&[("model", &tiny_model())]);
    h.push(buffer(&noise(16_000, 1, 0.3), Some(gst::ClockTime::ZERO)))
        .unwrap();
    // 500 ms missing.
    h.push(buffer(
        &noise(16_000, 2, 0.3),
        Some(gst::ClockTime::from_mseconds(1500)),
    ))
    .unwrap();
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 63); // 2.5 s
    for (i, b) in out.iter().enumerate() {
        assert_eq!(b.pts(), Some(gst::ClockTime::from_mseconds(40 * i as u64)));
    }
    // Frames well inside the hole are silent.
    assert!(
        out[30..33]
            .iter()
            .all(|b| b.flags().contains(gst::BufferFlags::GAP))
    );
    assert!(!out[10].flags().contains(gst::BufferFlags::GAP));
    assert!(!out[50].flags().contains(gst::BufferFlags::GAP));
}

#[test]
fn interrupt_silences_pending_speech_at_once() {
    let mut h = harness(&[
        ("model", &tiny_model()),
        ("batch-frames", &8u32),
        ("context-right-ms", &200u32),
    ]);
    // 600 ms of speech: with 8-frame batches and 200 ms right context, frames 0..8 are made
    // (they need audio up to 8 * 40 + 200 ms), frames 8..15 are still pending.
    h.push(buffer(&noise(9600, 9, 0.3), Some(gst::ClockTime::ZERO)))
        .unwrap();
    let before = pull_all(&mut h);
    assert!(
        before
            .iter()
            .all(|b| !b.flags().contains(gst::BufferFlags::GAP))
    );
    let made = before.len();
    assert_eq!(made, 8);
    while h.try_pull_event().is_some() {}
    h.push_event(gstlivetalk::events::interrupt_event());
    // Every started frame comes out at once, silent, before the event itself.
    let after = pull_all(&mut h);
    assert_eq!(made + after.len(), 15); // 9600 samples = 15 frames started
    assert!(
        after
            .iter()
            .all(|b| b.flags().contains(gst::BufferFlags::GAP))
    );
    let ev = h.pull_event().unwrap();
    assert!(gstlivetalk::events::is_interrupt(&ev), "{ev:?}");
    // The speech that was already pushed does not come back.
    h.push(buffer(&[0.0; 16_000], Some(pts_of_sample(9600))))
        .unwrap();
    h.push_event(gst::event::Eos::new());
    assert!(
        pull_all(&mut h)
            .iter()
            .all(|b| b.flags().contains(gst::BufferFlags::GAP))
    );
    assert_eq!(
        stats(&h).get::<u64>("interrupted-frames").unwrap(),
        after.len() as u64
    );
}

#[test]
fn latency_is_right_context_plus_batch() {
    let mut h = harness(&[
        ("model", &tiny_model()),
        ("batch-frames", &4u32),
        ("context-right-ms", &300u32),
    ]);
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    let lat = h.query_latency().unwrap();
    assert_eq!(lat, gst::ClockTime::from_mseconds(10 + 4 * 40 + 300));
}

#[test]
fn model_with_the_wrong_contract_is_refused_at_ready() {
    init();
    let unet = gstlivetalk::paths::test_models_dir().join("unet.onnx");
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=1 ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! whisperfeat model={} ! fakesink",
        unet.display()
    ))
    .unwrap();
    assert!(pipeline.set_state(gst::State::Ready).is_err());
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .unwrap();
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    let text = e.error().to_string();
    assert!(
        text.contains("whisper encoder model has no input 'input_features'"),
        "{text}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn missing_model_and_bad_device_are_errors() {
    init();
    // device is an enum: a value outside it cannot even be set.
    assert!(
        gst::parse::launch(
            "audiotestsrc num-buffers=1 ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! whisperfeat device=npu ! fakesink"
        )
        .is_err()
    );
    {
        let (props, expected) = ("model=/nonexistent/encoder.onnx", "not found");
        let pipeline = gst::parse::launch(&format!(
            "audiotestsrc num-buffers=1 ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! whisperfeat {props} ! fakesink"
        ))
        .unwrap();
        assert!(pipeline.set_state(gst::State::Ready).is_err());
        let msg = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
            .unwrap();
        let gst::MessageView::Error(e) = msg.view() else {
            unreachable!()
        };
        assert!(e.error().to_string().contains(expected), "{}", e.error());
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn unavailable_gpu_warns_on_the_bus_and_runs_on_cpu() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=20 samplesperbuffer=1600 ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! \
         whisperfeat device=cuda model={} ! fakesink",
        tiny_model()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warned = false;
    let mut eos = false;
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(20)) {
        match msg.view() {
            gst::MessageView::Warning(w) => {
                let t = w.error().to_string();
                assert!(
                    t.contains("cuda:0") && t.contains("running on the CPU"),
                    "{t}"
                );
                warned = true;
            }
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            gst::MessageView::Eos(_) => {
                eos = true;
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(warned && eos);
}

#[test]
fn wrong_caps_do_not_link_and_say_what_to_add() {
    init();
    // Linked statically to a source that can only make S16 stereo: the link itself fails.
    let err = gst::parse::launch(
        "audiotestsrc ! audio/x-raw,format=S16LE,rate=44100,channels=2 ! whisperfeat ! fakesink",
    )
    .unwrap_err();
    assert!(err.to_string().contains("can't handle caps"), "{err}");

    // Caps decided at run time (a parser, an appsrc): the negotiation fails, and a warning on
    // the bus says what to add.
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=audio/x-raw,format=S16LE,rate=44100,channels=2,layout=interleaved ! \
         whisperfeat model={} ! fakesink",
        tiny_model()
    ))
    .unwrap()
    .downcast::<gst::Bin>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let _ = src.push_buffer(gst::Buffer::from_mut_slice(vec![0u8; 1764]));
    let bus = pipeline.bus().unwrap();
    let (mut hint, mut error) = (false, false);
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(5)) {
        match msg.view() {
            gst::MessageView::Warning(w) => {
                hint |= w
                    .error()
                    .to_string()
                    .contains("audioconvert ! audioresample");
            }
            gst::MessageView::Error(_) => {
                error = true;
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(hint && error, "hint {hint} error {error}");
}

/// The audio intake's SEGMENT and EOS rules (the same test is in tests/lipwarp.rs): a new
/// segment mid-stream drains the partial frame, stamped on the old grid; buffers without PTS
/// then start a new grid at the segment's start; EOS drains the partial last frame.
#[test]
fn segment_mid_stream_and_eos_drain_then_reanchor() {
    let mut h = harness(&[
        ("model", &tiny_model()),
        ("silence-threshold-db", &-200.0f64),
    ]);
    let out = push_segment_scenario(&mut h);
    check_segment_scenario(&out);
}

fn push_segment_scenario(h: &mut Harness) -> Vec<gst::Buffer> {
    // 25 frames and 360 samples, timestamped from 0.
    let audio = noise(16_360, 5, 0.3);
    for (k, c) in audio.chunks(1000).enumerate() {
        h.push(buffer(c, Some(pts_of_sample(k as u64 * 1000))))
            .unwrap();
    }
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_start(gst::ClockTime::from_seconds(10));
    seg.set_time(gst::ClockTime::from_seconds(10));
    h.push_event(gst::event::Segment::new(&seg));
    // 5 frames and 100 samples without timestamps.
    for c in noise(3300, 6, 0.3).chunks(330) {
        h.push(buffer(c, None)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    pull_all(h)
}

fn check_segment_scenario(out: &[gst::Buffer]) {
    let ms = gst::ClockTime::from_mseconds;
    let expected: Vec<(u64, gst::ClockTime)> = (0..26)
        .map(|i| (i, ms(40 * i)))
        .chain((0..6).map(|i| (i, ms(10_000 + 40 * i))))
        .collect();
    let got: Vec<(u64, gst::ClockTime)> =
        out.iter().map(|b| (b.offset(), b.pts().unwrap())).collect();
    assert_eq!(got, expected);
    for b in out {
        assert_eq!(b.duration(), Some(ms(40)));
        assert_eq!(
            b.flags().contains(gst::BufferFlags::DISCONT),
            b.offset() == 0
        );
    }
}

/// Per hidden-state layer, the mean over frames of the cosine between our feature and the
/// reference's (the 10 steps of one layer as one vector).
fn layer_cosines(ours: &[gst::Buffer], reference: &NpyF32) -> [f64; 5] {
    let frames = reference.shape[0];
    let mut sums = [0.0f64; 5];
    for (i, buf) in ours.iter().take(frames).enumerate() {
        let f = to_f32(buf);
        let r = &reference.data[i * 50 * 384..(i + 1) * 50 * 384];
        for (l, sum) in sums.iter_mut().enumerate() {
            let pick = |v: &[f32]| -> Vec<f32> {
                (0..10)
                    .flat_map(|s| v[(s * 5 + l) * 384..(s * 5 + l + 1) * 384].to_vec())
                    .collect()
            };
            *sum += cosine(&pick(&f), &pick(r));
        }
    }
    sums.map(|s| s / frames as f64)
}

/// Runs whisperfeat on `audio` (20 ms buffers, then EOS) with the real encoder.
fn features_of(audio: &[f32], props: &[(&str, &dyn ToValue)]) -> Vec<gst::Buffer> {
    let mut all: Vec<(&str, &dyn ToValue)> = vec![("silence-threshold-db", &-200.0f64)];
    let model = real_model();
    all.push(("model", &model));
    all.extend_from_slice(props);
    let mut h = harness(&all);
    for (k, chunk) in audio.chunks(320).enumerate() {
        h.push(buffer(chunk, Some(pts_of_sample(k as u64 * 320))))
            .unwrap();
    }
    h.push_event(gst::event::Eos::new());
    pull_all(&mut h)
}

/// The default (chunk-aligned) windows against MuseTalk's own features, computed by
/// models/features_reference.py exactly as MuseTalk's audio_processor does, on continuous
/// espeak-ng speech of several lengths (one crossing the 30 s chunk boundary, one not a whole
/// number of frames): mean cosine >= 0.97 on every layer. Short windows are reported only.
#[test]
fn default_windows_match_musetalk_at_several_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let venv = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    let script = format!(
        "{}/models/features_reference.py",
        env!("CARGO_MANIFEST_DIR")
    );
    for seconds in [1.3, 3.37, 4.0, 11.7, 21.0, 33.0] {
        let audio_path = dir.path().join(format!("a{seconds}.npy"));
        let ref_path = dir.path().join(format!("r{seconds}.npy"));
        let ok = Command::new(&venv)
            .arg(&script)
            .args(["--make-speech", &seconds.to_string(), "--audio-out"])
            .arg(&audio_path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let ok = Command::new(&venv)
            .arg(&script)
            .args(["--encoder", &real_model(), "--audio"])
            .arg(&audio_path)
            .arg("--out")
            .arg(&ref_path)
            .env("TRANSFORMERS_VERBOSITY", "error")
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let audio = NpyF32::read(&audio_path).unwrap().data;
        let reference = NpyF32::read(&ref_path).unwrap();
        // MuseTalk makes floor(seconds * 25) frames; the stream makes every frame that has
        // audio (the last one partly).
        let samples = audio.len() as u64;
        assert_eq!(reference.shape[0] as u64, samples * 25 / 16_000);
        let ours = features_of(&audio, &[]);
        assert_eq!(ours.len() as u64, (samples * 25).div_ceil(16_000));
        let chunk = layer_cosines(&ours, &reference);
        // The windows before chunk mode: short, 8-frame batches, 200 ms around, unpadded.
        let short = features_of(
            &audio,
            &[
                ("window-mode", &"short"),
                ("batch-frames", &8u32),
                ("context-right-ms", &200u32),
                ("pad-to-ms", &0u32),
            ],
        );
        let short = layer_cosines(&short, &reference);
        eprintln!(
            "{seconds:>5} s: chunk (default) {:.3?}; short {:.3?}",
            chunk, short
        );
        assert!(
            chunk.iter().all(|&c| c >= 0.97),
            "{seconds} s: per-layer mean cosine {chunk:?}"
        );
    }
}

/// An English-only encoder (the set-up's tiny.en) gets one warning naming the fix; the test
/// encoder (no such metadata) none.
#[test]
fn english_only_encoder_warns_once_naming_the_fix() {
    init();
    for (model, expect) in [(real_model(), true), (tiny_model(), false)] {
        let pipeline = gst::parse::launch(&format!(
            "audiotestsrc num-buffers=5 samplesperbuffer=1600 ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! \
             whisperfeat model={model} ! fakesink"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let (_, warnings) = common::run_to_eos(&pipeline, std::time::Duration::from_secs(60));
        pipeline.set_state(gst::State::Null).unwrap();
        let english: Vec<&String> = warnings
            .iter()
            .filter(|w| w.contains("English-only"))
            .collect();
        if expect {
            assert_eq!(english.len(), 1, "{warnings:?}");
            assert!(english[0].contains("openai/whisper-tiny"), "{}", english[0]);
            assert!(
                english[0].contains("models/convert_whisper.py"),
                "{}",
                english[0]
            );
        } else {
            assert!(english.is_empty(), "{warnings:?}");
        }
    }
}

/// Features of `audio` (20 ms buffers) through the tiny encoder, as f32 vectors; with
/// `flush_at`, the element is flushed and torn down after that many buffers. Returns the
/// features and the element's mixed-windows count.
fn tiny_features(audio: &[f32], shared: bool, flush_at: Option<usize>) -> (Vec<Vec<f32>>, u64) {
    let model = tiny_model();
    let mut h = harness(&[
        ("model", &model),
        ("silence-threshold-db", &-200.0f64),
        ("batch-frames", &4u32),
        ("shared-batching", &shared),
    ]);
    let mut out = Vec::new();
    for (k, chunk) in audio.chunks(320).enumerate() {
        if flush_at == Some(k) {
            assert!(h.push_event(gst::event::FlushStart::new()));
            assert!(h.push_event(gst::event::FlushStop::new(true)));
            let mixed = stats(&h).get::<u64>("mixed-windows").unwrap();
            // Torn down (dropping the harness sets the element to NULL).
            return (out, mixed);
        }
        h.push(buffer(chunk, Some(pts_of_sample(k as u64 * 320))))
            .unwrap();
        out.extend(
            pull_all(&mut h)
                .iter()
                .filter(|b| !b.flags().contains(gst::BufferFlags::GAP))
                .map(to_f32),
        );
    }
    h.push_event(gst::event::Eos::new());
    out.extend(
        pull_all(&mut h)
            .iter()
            .filter(|b| !b.flags().contains(gst::BufferFlags::GAP))
            .map(to_f32),
    );
    let mixed = stats(&h).get::<u64>("mixed-windows").unwrap();
    (out, mixed)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "frame counts differ");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// Two whisperfeat elements in one process (two streaming threads) share the encoder's
/// batching service: each gets the features it gets alone (float tolerance: batched runs may
/// round differently), and one element's flush and teardown mid-stream leaves the other's
/// features intact.
#[test]
fn two_elements_share_encoder_batches_and_get_their_own_features() {
    let (a, b) = (noise(16_000 * 6, 21, 0.3), noise(16_000 * 6, 22, 0.3));
    let (ref_a, _) = tiny_features(&a, false, None);
    let (ref_b, _) = tiny_features(&b, false, None);
    assert_eq!(ref_a.len(), 150);
    // Different audio, different features.
    assert!(max_abs_diff(&ref_a, &ref_b) > 0.1);

    let run = |audio: Vec<f32>, flush_at: Option<usize>| {
        std::thread::spawn(move || tiny_features(&audio, true, flush_at))
    };
    let (ta, tb) = (run(a.clone(), None), run(b.clone(), None));
    let ((got_a, mixed_a), (got_b, mixed_b)) = (ta.join().unwrap(), tb.join().unwrap());
    let scale = ref_a
        .iter()
        .chain(&ref_b)
        .flatten()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = 1e-4 * scale.max(1.0);
    assert!(max_abs_diff(&got_a, &ref_a) <= tol, "A differs from alone");
    assert!(max_abs_diff(&got_b, &ref_b) <= tol, "B differs from alone");
    // Whether windows met in a batch depends on the threads' schedule (on a loaded machine
    // they may take turns): reported, not asserted. What the test asserts holds either way.
    eprintln!("windows that ran with the other element's: A {mixed_a}, B {mixed_b}");

    // A is flushed and torn down a third of the way in while B runs: B is intact.
    let (ta, tb) = (run(a, Some(100)), run(b, None));
    let (part_a, _) = ta.join().unwrap();
    let (got_b, _) = tb.join().unwrap();
    assert!(
        max_abs_diff(&got_b, &ref_b) <= tol,
        "B disturbed by A's teardown"
    );
    // A's frames before its flush were its own.
    assert!(max_abs_diff(&part_a, &ref_a[..part_a.len()]) <= tol);
}
