//! lipwarp: mouth follows the audio, idle frames are GAP with meta, timestamps, sync.

mod common;

use common::{f32_buffer, init, vowel, write_test_avatar};
use gst::prelude::*;
use gst_check::Harness;
use gstlivetalk::avatar::{Image, mirror_index};
use gstlivetalk::meta;

const AUDIO_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";

fn harness(avatar: &std::path::Path) -> Harness {
    init();
    let e = gst::ElementFactory::make("lipwarp")
        .property("avatar", avatar.display().to_string())
        .build()
        .unwrap();
    let mut h = Harness::with_element(&e, Some("sink"), Some("src"));
    h.play();
    h.set_src_caps_str(AUDIO_CAPS);
    h
}

fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    std::iter::from_fn(|| h.try_pull()).collect()
}

fn as_image(b: &gst::Buffer) -> Image {
    Image {
        width: 256,
        height: 256,
        channels: 3,
        data: b.map_readable().unwrap().to_vec(),
    }
}

#[test]
fn mouth_opens_with_speech_and_idles_in_silence() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 4, 160, 120, false);
    let mut h = harness(dir.path());
    // 1 s silence, 1 s vowel, 1 s silence.
    let mut audio = vec![0.0f32; 16000];
    audio.extend(vowel(16000, 180.0, 0.3, 0));
    audio.extend(vec![0.0f32; 16000]);
    for (k, c) in audio.chunks(333).enumerate() {
        h.push(f32_buffer(
            c,
            Some(gst::ClockTime::from_nseconds(k as u64 * 333 * 62_500)),
        ))
        .unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 75);
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps.structure(0).unwrap().get::<i32>("width").unwrap(), 256);
    for (i, b) in out.iter().enumerate() {
        assert_eq!(b.pts(), Some(gst::ClockTime::from_mseconds(40 * i as u64)));
        let m = meta::get(b).expect("every buffer has the meta");
        assert_eq!(m.frame, i as u64);
        assert_eq!(m.index, mirror_index(4, i as u64) as u64);
        assert_eq!(m.speaking, !b.flags().contains(gst::BufferFlags::GAP));
    }
    let speaking: Vec<usize> = (0..75)
        .filter(|&i| meta::get(&out[i]).unwrap().speaking)
        .collect();
    // Speech is frames 25..50; the release tail may keep the mouth open a few frames more.
    assert!(
        speaking.iter().all(|&i| (25..56).contains(&i)),
        "{speaking:?}"
    );
    assert!((26..49).all(|i| speaking.contains(&i)), "{speaking:?}");
    assert!(
        out[..25]
            .iter()
            .all(|b| b.flags().contains(gst::BufferFlags::GAP) && b.size() == 0)
    );
    assert!(
        out[60..]
            .iter()
            .all(|b| b.flags().contains(gst::BufferFlags::GAP))
    );
    assert_eq!(out[30].size(), 256 * 256 * 3);
}

/// The mouth's motion is a known function of the audio: cross-correlating the audio energy
/// per frame with the mouth region's change per frame peaks at lag 0.
#[test]
fn mouth_motion_is_in_sync_with_audio_energy() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 1, 160, 120, false);
    let mut h = harness(dir.path());
    // Syllables of irregular lengths and loudness.
    let pattern = [
        (3, 0.0),
        (4, 0.3),
        (2, 0.0),
        (6, 0.15),
        (3, 0.0),
        (2, 0.4),
        (5, 0.0),
        (3, 0.25),
        (4, 0.0),
        (7, 0.35),
        (6, 0.0),
    ];
    let mut audio = Vec::new();
    let mut energy = Vec::new();
    for (frames, amp) in pattern {
        for _ in 0..frames {
            audio.extend(vowel(640, 150.0, amp, audio.len()));
            energy.push(amp as f64);
        }
    }
    h.push(f32_buffer(&audio, Some(gst::ClockTime::ZERO)))
        .unwrap();
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), energy.len());
    // Idle reference: the avatar's own crop (what a GAP frame means).
    let reference = {
        let a = gstlivetalk::avatar::Avatar::load(dir.path()).unwrap();
        gstlivetalk::avatar::prepare::face_crop(a.frame(0), a.manifest.frames[0].face_box)
    };
    let motion: Vec<f64> = out
        .iter()
        .map(|b| {
            if b.size() == 0 {
                0.0
            } else {
                gstlivetalk::mouth::region_difference(&as_image(b), &reference, 90, 170, 166, 215)
            }
        })
        .collect();
    let corr = |lag: i64| -> f64 {
        (0..energy.len() as i64)
            .filter_map(|i| {
                let j = i + lag;
                (j >= 0 && (j as usize) < motion.len())
                    .then(|| energy[i as usize] * motion[j as usize])
            })
            .sum()
    };
    let best = (-5..=5)
        .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
        .unwrap();
    assert_eq!(best, 0, "audio/mouth offset {best} frames");
}

#[test]
fn interrupt_closes_the_mouth_on_the_next_frame() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 2, 160, 120, false);
    let mut h = harness(dir.path());
    h.push(f32_buffer(
        &vowel(6400 + 300, 150.0, 0.4, 0),
        Some(gst::ClockTime::ZERO),
    ))
    .unwrap();
    let before = pull_all(&mut h);
    assert!(meta::get(before.last().unwrap()).unwrap().speaking);
    h.push_event(gstlivetalk::events::interrupt_event());
    // The rest of the interrupted frame arrives as silence from the source.
    h.push(f32_buffer(
        &vec![0.0; 340],
        Some(gst::ClockTime::from_nseconds(6700 * 62_500)),
    ))
    .unwrap();
    let after = pull_all(&mut h);
    assert_eq!(after.len(), 1);
    assert!(!meta::get(&after[0]).unwrap().speaking);
}

#[test]
fn latency_is_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 1, 160, 120, false);
    let mut h = harness(dir.path());
    h.set_upstream_latency(gst::ClockTime::from_mseconds(20));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(60)));
}

#[test]
fn missing_or_broken_avatar_is_an_error_at_ready() {
    init();
    let dir = tempfile::tempdir().unwrap();
    for (avatar, expected) in [
        (None, "No avatar set".to_string()),
        (Some(dir.path().join("nope")), "not a directory".to_string()),
        (
            Some(dir.path().to_path_buf()),
            "avatar.json: cannot read".to_string(),
        ),
    ] {
        let e = gst::ElementFactory::make("lipwarp").build().unwrap();
        if let Some(a) = &avatar {
            e.set_property("avatar", a.display().to_string());
        }
        let bus = gst::Bus::new();
        e.set_bus(Some(&bus));
        assert!(e.set_state(gst::State::Ready).is_err());
        let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
        let gst::MessageView::Error(err) = msg.view() else {
            unreachable!()
        };
        assert!(
            err.error().to_string().contains(&expected),
            "{}",
            err.error()
        );
        e.set_state(gst::State::Null).unwrap();
    }
}

/// The audio intake's SEGMENT and EOS rules, as in tests/whisperfeat.rs: a new segment
/// mid-stream drains the partial frame, stamped on the old grid; buffers without PTS then
/// start a new grid at the segment's start; EOS drains the partial last frame.
#[test]
fn segment_mid_stream_and_eos_drain_then_reanchor() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 3, 160, 120, false);
    let mut h = harness(dir.path());
    // 25 frames and 360 samples, timestamped from 0.
    let audio = vowel(16_360, 150.0, 0.3, 0);
    for (k, c) in audio.chunks(1000).enumerate() {
        h.push(f32_buffer(
            c,
            Some(gst::ClockTime::from_nseconds(k as u64 * 1000 * 62_500)),
        ))
        .unwrap();
    }
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_start(gst::ClockTime::from_seconds(10));
    seg.set_time(gst::ClockTime::from_seconds(10));
    h.push_event(gst::event::Segment::new(&seg));
    // 5 frames and 100 samples without timestamps.
    for c in vowel(3300, 150.0, 0.3, 0).chunks(330) {
        h.push(f32_buffer(c, None)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);

    let ms = gst::ClockTime::from_mseconds;
    let expected: Vec<(u64, gst::ClockTime)> = (0..26)
        .map(|i| (i, ms(40 * i)))
        .chain((0..6).map(|i| (i, ms(10_000 + 40 * i))))
        .collect();
    let got: Vec<(u64, gst::ClockTime)> = out
        .iter()
        .map(|b| (meta::get(b).unwrap().frame, b.pts().unwrap()))
        .collect();
    assert_eq!(got, expected);
    for b in &out {
        assert_eq!(b.duration(), Some(ms(40)));
        assert_eq!(b.offset(), meta::get(b).unwrap().frame);
        assert_eq!(
            b.flags().contains(gst::BufferFlags::DISCONT),
            b.offset() == 0
        );
    }
}

#[test]
fn two_sessions_share_one_avatar_and_its_face_crops() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 4, 160, 120, false);
    let mut a = harness(dir.path());
    let mut b = harness(dir.path());
    let shared = gstlivetalk::avatar::Avatar::load_shared(dir.path()).unwrap();
    // This test's handle and one per element: neither element holds crops of its own (they
    // live in the avatar and are made there once).
    assert_eq!(std::sync::Arc::strong_count(&shared), 3);
    let audio = vowel(16000 / 5, 180.0, 0.3, 0);
    for h in [&mut a, &mut b] {
        h.push(f32_buffer(&audio, Some(gst::ClockTime::ZERO)))
            .unwrap();
        h.push_event(gst::event::Eos::new());
    }
    let (out_a, out_b) = (pull_all(&mut a), pull_all(&mut b));
    assert_eq!(out_a.len(), 5);
    assert!(out_a.iter().any(|x| x.size() > 0), "no speaking frame");
    for (x, y) in out_a.iter().zip(&out_b) {
        assert_eq!(
            *x.map_readable().unwrap(),
            *y.map_readable().unwrap(),
            "both sessions warp the same crops"
        );
    }
    drop((a, b));
    assert_eq!(std::sync::Arc::strong_count(&shared), 1);
}
