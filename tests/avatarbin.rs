//! avatarbin: the whole chain in one element. A/V sync on its two pads, the audio untouched,
//! interrupt, the driver choice and its report, errors at READY, LATENCY on both pads.

mod common;

use std::path::Path;

use common::{init, vowel, write_test_avatar};
use gst::prelude::*;
use gst_app::{AppSink, AppSrc};
use gstlivetalk::avatar::Avatar;

/// Syllables of irregular lengths and loudness, in 40 ms frames: (frames, amplitude).
const PATTERN: [(usize, f32); 11] = [
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

struct Run {
    video: Vec<gst::Sample>,
    audio: Vec<gst::Sample>,
    messages: Vec<gst::Structure>,
}

/// `appsrc (caps) ! avatarbin ! video appsink + audio appsink`, not live, to EOS.
fn run_bin(avatar: &Path, caps: &str, buffers: Vec<gst::Buffer>) -> Run {
    init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src caps=\"{caps}\" format=time ! avatarbin name=a avatar=\"{}\" \
         a.video ! appsink name=v sync=false  a.audio ! appsink name=au sync=false",
        avatar.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<AppSrc>()
        .unwrap();
    let sink = |n: &str| pipeline.by_name(n).unwrap().downcast::<AppSink>().unwrap();
    let (v, au) = (sink("v"), sink("au"));
    pipeline.set_state(gst::State::Playing).unwrap();
    for b in buffers {
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let collect = |s: &AppSink| std::iter::from_fn(|| s.pull_sample().ok()).collect::<Vec<_>>();
    let (video, audio) = std::thread::scope(|sc| {
        let hv = sc.spawn(|| collect(&v));
        let ha = sc.spawn(|| collect(&au));
        (hv.join().unwrap(), ha.join().unwrap())
    });
    let bus = pipeline.bus().unwrap();
    let mut messages = Vec::new();
    while let Some(m) = bus.pop() {
        match m.view() {
            gst::MessageView::Error(e) => panic!("error: {} {:?}", e.error(), e.debug()),
            gst::MessageView::Element(_) => messages.push(m.structure().unwrap().to_owned()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    Run {
        video,
        audio,
        messages,
    }
}

/// Interleaved S16LE at `rate` from f32 samples made at 16 kHz (resampled by repetition-free
/// linear interpolation so that the input really is another rate).
fn s16_at(samples16k: &[f32], rate: u32) -> Vec<i16> {
    let n = samples16k.len() as u64 * rate as u64 / 16_000;
    (0..n)
        .map(|i| {
            let t = i as f64 * 16_000.0 / rate as f64;
            let k = t.floor() as usize;
            let f = t - k as f64;
            let a = samples16k[k.min(samples16k.len() - 1)] as f64;
            let b = samples16k[(k + 1).min(samples16k.len() - 1)] as f64;
            ((a + (b - a) * f) * 32767.0).round() as i16
        })
        .collect()
}

fn s16_buffer(samples: &[i16], pts: gst::ClockTime, rate: u32) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(gst::ClockTime::from_nseconds(
            samples.len() as u64 * 1_000_000_000 / rate as u64,
        ));
    }
    buf
}

/// Mean absolute difference over the lower half of the face box between a frame and the
/// avatar's own frame.
fn mouth_motion(frame: &gst::Sample, avatar: &Avatar) -> f64 {
    let caps = frame.caps().unwrap();
    let info = gst_video::VideoInfo::from_caps(caps).unwrap();
    let buf = frame.buffer().unwrap();
    let map = buf.map_readable().unwrap();
    let stride = info.stride()[0] as usize;
    let fb = avatar.manifest.frames[0].face_box;
    let idle = avatar.frame(0);
    let (mut sum, mut n) = (0.0, 0usize);
    for y in (fb.y1 + fb.height() / 2)..fb.y2 {
        for x in fb.x1..fb.x2 {
            for c in 0..3 {
                let a = map[y as usize * stride + x as usize * 3 + c] as f64;
                let b = idle.data[(y as usize * idle.width as usize + x as usize) * 3 + c] as f64;
                sum += (a - b).abs();
                n += 1;
            }
        }
    }
    sum / n as f64
}

#[test]
fn video_and_audio_pads_stay_in_sync_and_the_audio_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 1, 160, 120, false);
    let mut audio = Vec::new();
    let mut energy = Vec::new();
    for (frames, amp) in PATTERN {
        for _ in 0..frames {
            audio.extend(vowel(640, 150.0, amp, audio.len()));
            energy.push(amp as f64);
        }
    }
    // "Any raw audio": S16LE at 22.05 kHz, in 20 ms buffers, as a TTS source sends it.
    let rate = 22_050;
    let samples = s16_at(&audio, rate);
    let per = rate as usize / 50;
    let buffers: Vec<gst::Buffer> = samples
        .chunks(per)
        .enumerate()
        .map(|(k, c)| {
            s16_buffer(
                c,
                gst::ClockTime::from_nseconds((k * per) as u64 * 1_000_000_000 / rate as u64),
                rate,
            )
        })
        .collect();
    let caps = format!("audio/x-raw,format=S16LE,rate={rate},channels=1,layout=interleaved");
    let run = run_bin(dir.path(), &caps, buffers.clone());

    // The audio pad gives back exactly what went in: same samples, same timestamps.
    assert_eq!(run.audio.len(), buffers.len());
    for (got, sent) in run.audio.iter().zip(&buffers) {
        let b = got.buffer().unwrap();
        assert_eq!(b.pts(), sent.pts());
        assert_eq!(
            b.map_readable().unwrap().as_slice(),
            sent.map_readable().unwrap().as_slice()
        );
    }
    // One full frame per 40 ms of audio, from time zero.
    assert_eq!(run.video.len(), energy.len());
    for (i, s) in run.video.iter().enumerate() {
        assert_eq!(
            s.buffer().unwrap().pts(),
            Some(gst::ClockTime::from_mseconds(40 * i as u64))
        );
        let st = s.caps().unwrap().structure(0).unwrap().to_owned();
        assert_eq!(
            (
                st.get::<i32>("width").unwrap(),
                st.get::<i32>("height").unwrap()
            ),
            (160, 120)
        );
    }
    // The mouth moves with the audio energy, with no offset.
    let avatar = Avatar::load(dir.path()).unwrap();
    let motion: Vec<f64> = run.video.iter().map(|s| mouth_motion(s, &avatar)).collect();
    assert!(
        motion.iter().cloned().fold(0.0, f64::max) > 1.0,
        "{motion:?}"
    );
    let corr = |lag: i64| -> f64 {
        (0..energy.len() as i64)
            .filter_map(|i| {
                let j = i + lag;
                (j >= 0 && (j as usize) < motion.len())
                    .then(|| energy[i as usize] * motion[j as usize])
            })
            .sum()
    };
    let best = (-5..=5i64)
        .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
        .unwrap();
    assert_eq!(best, 0, "audio/mouth offset {best} frames");

    // auto, with no MuseTalk models next to it, picked lipwarp and said why.
    let driver = run
        .messages
        .iter()
        .find(|s| s.name() == gstlivetalk::events::DRIVER)
        .expect("a livetalk-driver message");
    assert_eq!(driver.get::<String>("driver").unwrap(), "lipwarp");
    assert!(
        driver.get::<String>("reason").unwrap().contains("latents")
            || driver
                .get::<String>("reason")
                .unwrap()
                .contains("no MuseTalk models"),
        "{driver:?}"
    );
}

/// The bin with a harness on `video`, its `audio` pad into a fakesink.
fn video_harness(avatar: &Path) -> (gst_check::Harness, gst::Element) {
    init();
    let bin = gst::ElementFactory::make("avatarbin")
        .property("avatar", avatar.display().to_string())
        .build()
        .unwrap();
    let fake = gst::ElementFactory::make("fakesink")
        .property("async", false)
        .property("sync", false)
        .build()
        .unwrap();
    bin.static_pad("audio")
        .unwrap()
        .link(&fake.static_pad("sink").unwrap())
        .unwrap();
    fake.set_state(gst::State::Playing).unwrap();
    let mut h = gst_check::Harness::with_element(&bin, Some("sink"), Some("video"));
    h.play();
    h.set_src_caps_str("audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved");
    (h, fake)
}

fn speaking(b: &gst::Buffer) -> bool {
    gstlivetalk::meta::get(b).unwrap().speaking
}

#[test]
fn interrupt_reaches_the_lip_driver_from_upstream_and_from_the_application() {
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 2, 160, 120, false);
    for from_app in [false, true] {
        let (mut h, fake) = video_harness(dir.path());
        // Six frames and a bit of loud vowel.
        h.push(common::f32_buffer(
            &vowel(6400 + 300, 150.0, 0.4, 0),
            Some(gst::ClockTime::ZERO),
        ))
        .unwrap();
        let before: Vec<gst::Buffer> = (0..10).map(|_| h.pull().unwrap()).collect();
        assert!(speaking(before.last().unwrap()));
        let interrupt = gstlivetalk::events::interrupt_event();
        if from_app {
            assert!(h.element().unwrap().send_event(interrupt));
        } else {
            assert!(h.push_event(interrupt));
        }
        // The rest of the interrupted frame, as the TTS sends it after a flush: silence.
        h.push(common::f32_buffer(
            &vec![0.0; 340],
            Some(gst::ClockTime::from_nseconds(6700 * 62_500)),
        ))
        .unwrap();
        let after = h.pull().unwrap();
        assert_eq!(after.pts(), Some(gst::ClockTime::from_mseconds(400)));
        assert!(!speaking(&after), "from_app={from_app}");
        drop(h);
        fake.set_state(gst::State::Null).unwrap();
    }
}

fn ready_error(bin: &gst::Element) -> String {
    let bus = gst::Bus::new();
    bin.set_bus(Some(&bus));
    assert!(bin.set_state(gst::State::Ready).is_err());
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    bin.set_state(gst::State::Null).unwrap();
    err.error().to_string()
}

#[test]
fn a_broken_avatar_or_a_driver_that_cannot_run_fails_at_ready() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bin = gst::ElementFactory::make("avatarbin").build().unwrap();
    let e = ready_error(&bin);
    assert!(e.contains("no avatar"), "{e}");
    bin.set_property("avatar", dir.path().join("nope").display().to_string());
    assert!(ready_error(&bin).contains("not a directory"));
    // A directory without avatar.json.
    bin.set_property("avatar", dir.path().display().to_string());
    assert!(ready_error(&bin).contains("avatar.json"));
    // musetalk without its models, and musetalk on an avatar without latents.
    let av = dir.path().join("av");
    write_test_avatar(&av, 1, 160, 120, false);
    bin.set_property("avatar", av.display().to_string());
    bin.set_property_from_str("driver", "musetalk");
    bin.set_property("model-dir", dir.path().display().to_string());
    let e = ready_error(&bin);
    assert!(e.contains("no unet.onnx and vae_decoder.onnx"), "{e}");
    bin.set_property(
        "model-dir",
        gstlivetalk::paths::test_models_dir().display().to_string(),
    );
    let e = ready_error(&bin);
    assert!(e.contains("no latents"), "{e}");
}

#[test]
fn auto_chooses_musetalk_when_models_and_latents_are_there() {
    init();
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 2, 160, 120, true);
    let bin = gst::ElementFactory::make("avatarbin")
        .property("avatar", dir.path().display().to_string())
        .property(
            "model-dir",
            gstlivetalk::paths::test_models_dir().display().to_string(),
        )
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    bin.set_bus(Some(&bus));
    let driver = |b: &gst::Element| {
        b.property_value("active-driver")
            .get::<gstlivetalk::enums::Driver>()
            .unwrap()
    };
    assert_eq!(driver(&bin), gstlivetalk::enums::Driver::Auto);
    bin.set_state(gst::State::Ready).unwrap();
    assert_eq!(driver(&bin), gstlivetalk::enums::Driver::Musetalk);
    let msg = bus
        .iter()
        .find(|m| {
            m.structure()
                .is_some_and(|s| s.name() == gstlivetalk::events::DRIVER)
        })
        .expect("a livetalk-driver message");
    let s = msg.structure().unwrap();
    assert_eq!(s.get::<String>("driver").unwrap(), "musetalk");
    assert!(
        s.get::<String>("reason")
            .unwrap()
            .contains("MuseTalk models found")
    );
    let bin_ = bin.clone().downcast::<gst::Bin>().unwrap();
    assert!(bin_.by_name("musetalk").is_some() && bin_.by_name("whisperfeat").is_some());
    // The driver's thread only makes frames: a queue takes them to avatarblend.
    let downstream = |name: &str| {
        let e = bin_.by_name(name).unwrap();
        let peer = e.static_pad("src").unwrap().peer().unwrap();
        peer.parent_element().unwrap()
    };
    let after = downstream("musetalk");
    assert_eq!(after.factory().unwrap().name(), "queue");
    assert_eq!(downstream(&after.name()).name(), "avatarblend");
    // The next run asks for lipwarp: the chain is rebuilt.
    bin.set_state(gst::State::Null).unwrap();
    bin.set_property_from_str("driver", "lipwarp");
    bin.set_state(gst::State::Ready).unwrap();
    assert_eq!(driver(&bin), gstlivetalk::enums::Driver::Lipwarp);
    assert!(bin_.by_name("musetalk").is_none() && bin_.by_name("lipwarp").is_some());
    assert_eq!(downstream("lipwarp").factory().unwrap().name(), "queue");
    bin.set_state(gst::State::Null).unwrap();
}

#[test]
fn latency_is_answered_on_both_pads_of_a_live_pipeline() {
    init();
    let dir = tempfile::tempdir().unwrap();
    write_test_avatar(dir.path(), 1, 160, 120, false);
    // The gst-launch form of the README, with fakesinks.
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=silence samplesperbuffer=320 ! \
         audio/x-raw,rate=16000,channels=1 ! avatarbin avatar=\"{}\" name=a \
         a.video ! videoconvert ! fakesink name=vs  a.audio ! audioconvert ! fakesink name=as",
        dir.path().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    res.unwrap();
    let bin = pipeline.by_name("a").unwrap();
    let latency = |pad: &str| {
        let mut q = gst::query::Latency::new();
        assert!(bin.static_pad(pad).unwrap().query(&mut q));
        q.result()
    };
    let (vlive, vmin, _) = latency("video");
    let (alive, amin, _) = latency("audio");
    assert!(vlive && alive);
    // audiotestsrc's 20 ms buffer, plus one 40 ms frame on the video pad (lipwarp).
    assert_eq!(amin, gst::ClockTime::from_mseconds(20));
    assert_eq!(vmin, gst::ClockTime::from_mseconds(60));
    pipeline.set_state(gst::State::Null).unwrap();
}
