//! avatarblend: paste-back against MuseTalk's Python/OpenCV blending, idle frames without a
//! copy, crossfades, action clips, bad input.

use std::path::Path;
use std::process::Command;

mod common;

use common::init;
use gst::prelude::*;
use gst_check::Harness;
use gstlivetalk::avatar::{Avatar, BBox, FrameInfo, Image, Manifest};
use gstlivetalk::meta::{self, AvatarFrame};
use gstlivetalk::npy::NpyF32;

const W: u32 = 160;
const H: u32 = 120;
const N: usize = 3;
const CROP_CAPS: &str = "video/x-raw,format=RGB,width=256,height=256,framerate=25/1";

fn info(i: usize) -> FrameInfo {
    // Face boxes of different sizes: the crop is shrunk on one axis and grown on the other.
    let x = 50 + i as i32 * 3;
    FrameInfo {
        face_box: BBox::new(x, 30, x + 61 + i as i32 * 7, 30 + 300 / 3 - 23),
        blend_box: BBox::new(x - 20, 10, x + 61 + i as i32 * 7 + 18, 119),
    }
}

fn frame(i: usize) -> Image {
    Image::from_fn(W, H, 3, |x, y, c| {
        ((x * 7 + y * 3) ^ (c as u32 * 85 + i as u32 * 31)) as u8
    })
}

/// A feathered mask like MuseTalk's: zero in the upper half, a soft ramp, 255 inside.
fn mask(b: BBox) -> Image {
    let (w, h) = (b.width() as u32, b.height() as u32);
    Image::from_fn(w, h, 1, |x, y, _| {
        let top = h / 2;
        if y < top {
            return 0;
        }
        let dy = (y - top) as f32 / (h - top) as f32;
        let dx = 1.0 - ((x as f32 / w as f32) - 0.5).abs() * 2.0;
        ((dy * 3.0).min(1.0) * (dx * 2.5).min(1.0) * 255.0).round() as u8
    })
}

fn write_avatar(dir: &Path) {
    let infos: Vec<FrameInfo> = (0..N).map(info).collect();
    let manifest = Manifest::new(25, W, H, "test pattern", infos.clone());
    let frames: Vec<Image> = (0..N).map(frame).collect();
    let masks: Vec<Image> = infos.iter().map(|f| mask(f.blend_box)).collect();
    Avatar::write(dir, &manifest, &frames, &masks, None).unwrap();
}

fn crop(seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..256 * 256 * 3)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Smooth content plus noise, like a face.
            (((i / 3) % 256) as u32 / 2 + (x % 96)) as u8
        })
        .collect()
}

fn harness(dir: &Path, props: &[(&str, &dyn ToValue)]) -> (Harness, gst::Bus) {
    init();
    let mut b = gst::ElementFactory::make("avatarblend").property("avatar", dir.to_str().unwrap());
    for (k, v) in props {
        b = b.property(k, v.to_value());
    }
    let element = b.build().unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.play();
    h.set_src_caps_str(CROP_CAPS);
    (h, bus)
}

fn frame_time(n: u64) -> gst::ClockTime {
    gst::ClockTime::from_mseconds(40 * n)
}

fn speaking(data: Vec<u8>, index: u64, n: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::from_mut_slice(data);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(frame_time(n));
        b.set_duration(gst::ClockTime::from_mseconds(40));
        b.set_offset(n);
        meta::add(
            b,
            AvatarFrame {
                index,
                frame: n,
                speaking: true,
            },
        );
    }
    buf
}

fn idle(index: u64, n: u64, speaking: bool) -> gst::Buffer {
    let mut buf = gst::Buffer::new();
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(frame_time(n));
        b.set_duration(gst::ClockTime::from_mseconds(40));
        b.set_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE);
        meta::add(
            b,
            AvatarFrame {
                index,
                frame: n,
                speaking,
            },
        );
    }
    buf
}

fn bytes(buf: &gst::Buffer) -> Vec<u8> {
    buf.map_readable().unwrap().to_vec()
}

fn save_u8(path: &Path, shape: Vec<usize>, data: &[u8]) {
    NpyF32::new(shape, data.iter().map(|&v| v as f32).collect())
        .write(path)
        .unwrap();
}

/// Runs models/blend_reference.py (OpenCV) on the same frame, crop, mask and boxes.
fn reference(dir: &Path, i: usize, crop: &[u8], variant: &str) -> Vec<u8> {
    let f = frame(i);
    let fi = info(i);
    let m = mask(fi.blend_box);
    save_u8(
        &dir.join("frame.npy"),
        vec![H as usize, W as usize, 3],
        &f.data,
    );
    save_u8(&dir.join("crop.npy"), vec![256, 256, 3], crop);
    save_u8(
        &dir.join("mask.npy"),
        vec![m.height as usize, m.width as usize],
        &m.data,
    );
    let py = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    let root = env!("CARGO_MANIFEST_DIR");
    let b = |b: BBox| [b.x1, b.y1, b.x2, b.y2].map(|v| v.to_string());
    let out = Command::new(&py)
        .arg(format!("{root}/models/blend_reference.py"))
        .args(["--frame", &dir.join("frame.npy").display().to_string()])
        .args(["--crop", &dir.join("crop.npy").display().to_string()])
        .args(["--mask", &dir.join("mask.npy").display().to_string()])
        .arg("--face-box")
        .args(b(fi.face_box))
        .arg("--blend-box")
        .args(b(fi.blend_box))
        .args(["--variant", variant])
        .args([
            "--out",
            &dir.join("out.npy").display().to_string(),
            "--f32-out",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "blend_reference.py failed (needs opencv-python-headless in the venv: scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arr = NpyF32::read(&dir.join("out.npy")).unwrap();
    assert_eq!(arr.shape, [H as usize, W as usize, 3]);
    arr.data.iter().map(|&v| v as u8).collect()
}

fn max_diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len());
    let mut worst = (0u8, 0usize);
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        let d = x.abs_diff(*y);
        if d > worst.0 {
            worst = (d, k);
        }
    }
    worst
}

#[test]
fn speaking_frames_match_musetalk_opencv_blending_within_one_level() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let (mut h, _bus) = harness(dir.path(), &[("transition-ms", &0u32)]);
    for i in 0..N {
        let c = crop(i as u32 + 1);
        h.push(speaking(c.clone(), i as u64, i as u64)).unwrap();
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), Some(frame_time(i as u64)));
        assert_eq!(meta::get(&out).unwrap().index, i as u64);
        let got = bytes(&out);
        assert_eq!(got.len(), (W * H * 3) as usize);
        let changed = got
            .iter()
            .zip(&frame(i).data)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            changed > 1000,
            "the face was not pasted ({changed} bytes changed)"
        );
        for variant in ["cv", "pil"] {
            let want = reference(dir.path(), i, &c, variant);
            let (d, at) = max_diff(&got, &want);
            eprintln!("frame {i} vs MuseTalk {variant} blending: max diff {d}");
            assert!(
                d <= 1,
                "frame {i} ({variant}): differs by {d} at pixel {} channel {}",
                at / 3,
                at % 3
            );
        }
    }
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("width").unwrap(), W as i32);
    assert_eq!(s.get::<i32>("height").unwrap(), H as i32);
    assert_eq!(s.get::<&str>("format").unwrap(), "RGB");
    assert_eq!(
        s.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(25, 1)
    );
}

#[test]
fn idle_frames_are_the_avatar_frames_without_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let (mut h, _bus) = harness(dir.path(), &[]);
    let mut ptrs = Vec::new();
    for (n, index) in [0u64, 1, 2, 2, 1, 0].into_iter().enumerate() {
        h.push(idle(index, n as u64, false)).unwrap();
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), Some(frame_time(n as u64)));
        assert_eq!(out.duration(), Some(gst::ClockTime::from_mseconds(40)));
        assert!(!out.flags().contains(gst::BufferFlags::GAP));
        assert_eq!(bytes(&out), frame(index as usize).data, "frame {n}");
        let map = out.map_readable().unwrap();
        ptrs.push((index, map.as_ptr() as usize));
    }
    // Same avatar frame, same memory: nothing was copied.
    assert_eq!(ptrs[1].1, ptrs[4].1);
    assert_eq!(ptrs[0].1, ptrs[5].1);
    assert_ne!(ptrs[0].1, ptrs[1].1);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("idle-frames").unwrap(), 6);
    assert_eq!(stats.get::<u64>("speaking-frames").unwrap(), 0);
}

/// Pixel (x, y) of a face box where the mask is 255.
fn solid_pixel(i: usize) -> usize {
    let fi = info(i);
    let m = mask(fi.blend_box);
    for y in fi.face_box.y1..fi.face_box.y2 {
        for x in fi.face_box.x1..fi.face_box.x2 {
            let mv =
                m.data[((y - fi.blend_box.y1) * m.width as i32 + (x - fi.blend_box.x1)) as usize];
            if mv == 255 {
                return (y as usize * W as usize + x as usize) * 3;
            }
        }
    }
    panic!("no solid mask pixel");
}

#[test]
fn transitions_crossfade_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    // 100 ms at 25 fps: 0.4 of the way per frame.
    let (mut h, _bus) = harness(dir.path(), &[("transition-ms", &100u32)]);
    let flat = vec![250u8; 256 * 256 * 3];
    let p = solid_pixel(0);
    let base = frame(0).data[p] as f64;
    let expect = |level: f64| base + (250.0 - base) * level;
    let mut got = Vec::new();
    let mut n = 0;
    for _ in 0..3 {
        h.push(speaking(flat.clone(), 0, n)).unwrap();
        n += 1;
        got.push(bytes(&h.pull().unwrap())[p] as f64);
    }
    for _ in 0..3 {
        h.push(idle(0, n, false)).unwrap();
        n += 1;
        got.push(bytes(&h.pull().unwrap())[p] as f64);
    }
    let levels = [0.4, 0.8, 1.0, 0.6, 0.2, 0.0];
    for (k, (g, l)) in got.iter().zip(levels).enumerate() {
        assert!(
            (g - expect(l)).abs() <= 2.0,
            "frame {k}: {g}, expected {} (level {l}); all {got:?}",
            expect(l)
        );
    }
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("fading-frames").unwrap(), 2);
    assert_eq!(stats.get::<u64>("idle-frames").unwrap(), 1);
}

#[test]
fn skipped_speech_frames_hold_the_last_mouth() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let (mut h, _bus) = harness(dir.path(), &[("transition-ms", &0u32)]);
    let flat = vec![250u8; 256 * 256 * 3];
    h.push(speaking(flat, 0, 0)).unwrap();
    let _ = h.pull().unwrap();
    // musetalk skipped frame 1 (QoS): GAP with speaking = true.
    h.push(idle(1, 1, true)).unwrap();
    let out = bytes(&h.pull().unwrap());
    assert_eq!(out[solid_pixel(1)], 250);
    h.push(idle(2, 2, false)).unwrap();
    assert_eq!(bytes(&h.pull().unwrap()), frame(2).data);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("held-frames").unwrap(), 1);
}

#[test]
fn action_clips_play_in_place_of_the_idle_cycle() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let clip_dir = dir.path().join("wave");
    std::fs::create_dir_all(&clip_dir).unwrap();
    let clip_frame = |k: u32| Image::from_fn(W, H, 3, |_, _, c| (k * 40 + c as u32) as u8);
    for k in 0..2 {
        clip_frame(k)
            .write_png(&clip_dir.join(format!("{k:03}.png")))
            .unwrap();
    }
    let actions = dir.path().join("actions.json");
    std::fs::write(
        &actions,
        r#"{"clips":[{"name":"wave","frames":"wave","mode":"once"}]}"#,
    )
    .unwrap();
    let (mut h, bus) = harness(dir.path(), &[("actions", &actions.to_str().unwrap())]);
    let element = h.element().unwrap();
    assert!(!element.emit_by_name::<bool>("play-action", &[&"dance"]));
    let warn = bus.pop_filtered(&[gst::MessageType::Warning]).unwrap();
    let gst::MessageView::Warning(w) = warn.view() else {
        unreachable!()
    };
    assert!(
        w.error()
            .to_string()
            .contains("No action clip named 'dance'"),
        "{}",
        w.error()
    );
    assert!(element.emit_by_name::<bool>("play-action", &[&"wave"]));
    let mut outs = Vec::new();
    for n in 0..4u64 {
        h.push(idle(n % 3, n, false)).unwrap();
        outs.push(bytes(&h.pull().unwrap()));
    }
    assert_eq!(outs[0], clip_frame(0).data);
    assert_eq!(outs[1], clip_frame(1).data);
    assert_eq!(outs[2], frame(2).data);
    assert_eq!(outs[3], frame(0).data);
    // Speech interrupts an action.
    assert!(element.emit_by_name::<bool>("play-action", &[&"wave"]));
    h.push(speaking(vec![9u8; 256 * 256 * 3], 1, 4)).unwrap();
    let out = bytes(&h.pull().unwrap());
    assert_ne!(out, clip_frame(0).data);
    let stats = element.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("action-frames").unwrap(), 2);
}

fn expect_error(bus: &gst::Bus, needle: &str) {
    let msg = bus
        .pop_filtered(&[gst::MessageType::Error])
        .expect("an error message on the bus");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert!(e.error().to_string().contains(needle), "{}", e.error());
}

#[test]
fn bad_input_gives_element_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    // No meta.
    let (mut h, bus) = harness(dir.path(), &[]);
    assert_eq!(
        h.push(gst::Buffer::from_mut_slice(vec![0u8; 256 * 256 * 3])),
        Err(gst::FlowError::Error)
    );
    expect_error(&bus, "without avatar frame meta");
    // Index past the avatar (a different avatar upstream).
    let (mut h, bus) = harness(dir.path(), &[]);
    assert_eq!(h.push(idle(7, 0, false)), Err(gst::FlowError::Error));
    expect_error(&bus, "index 7 out of range: the avatar has 3 frames");
    // A crop that is too small.
    let (mut h, bus) = harness(dir.path(), &[]);
    assert_eq!(
        h.push(speaking(vec![0u8; 1000], 0, 0)),
        Err(gst::FlowError::Error)
    );
    expect_error(&bus, "has 1000 bytes");
    // Missing avatar, missing mask: the state change fails with a message.
    init();
    for (setup, needle) in [(None, "No avatar"), (Some("mask"), "mask")] {
        let d = tempfile::tempdir().unwrap();
        if setup.is_some() {
            write_avatar(d.path());
            std::fs::remove_file(gstlivetalk::avatar::mask_path(d.path(), 1)).unwrap();
        }
        let mut b = gst::ElementFactory::make("avatarblend");
        if setup.is_some() {
            b = b.property("avatar", d.path().to_str().unwrap());
        }
        let e = b.build().unwrap();
        let bus = gst::Bus::new();
        e.set_bus(Some(&bus));
        assert!(e.set_state(gst::State::Ready).is_err());
        expect_error(&bus, needle);
    }
}
