//! `livetalk serve --rtmp`: the session pushes to Debian's nginx with libnginx-mod-rtmp on
//! loopback; the test pulls the stream back with rtmp2src and checks that audio and video
//! arrive, and arrive in sync (speech onset in the audio vs the first moving mouth frame).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use gstlivetalk::avatar::{Avatar, Image};
use serde_json::json;
use support::{Nginx, Server};

#[derive(Default)]
struct Pulled {
    frames: Vec<(gst::ClockTime, Image)>,
    audio: Vec<(gst::ClockTime, Vec<f32>)>,
}

#[test]
fn rtmp_push_arrives_with_audio_and_video_in_sync() {
    gst::init().unwrap();
    let nginx = Nginx::start();
    let url = format!("rtmp://127.0.0.1:{}/live/avatar", nginx.port);
    let server = Server::start(&["--rtmp", &url]);
    let (_, v) = server.request("GET", "/sessions", None);
    let rtmp = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["output"] == "rtmp")
        .expect("no RTMP session")
        .clone();
    let id = rtmp["sessionid"].as_str().unwrap().to_string();

    // Pull it back.
    let pull = gst::parse::launch(&support::rtmp_pull(
        &url,
        "videoconvert ! video/x-raw,format=RGB ! appsink name=v sync=false",
        "audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! \
         appsink name=a sync=false",
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let pulled = Arc::new(Mutex::new(Pulled::default()));
    let sink = |n: &str| {
        pull.by_name(n)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap()
    };
    let p = pulled.clone();
    sink("v").set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
                let (w, h) = (
                    caps.get::<i32>("width").unwrap() as u32,
                    caps.get::<i32>("height").unwrap() as u32,
                );
                let buf = sample.buffer().unwrap();
                let map = buf.map_readable().unwrap();
                let stride = map.len() / h as usize;
                let mut data = Vec::with_capacity((w * h * 3) as usize);
                for row in map.chunks(stride).take(h as usize) {
                    data.extend_from_slice(&row[..(w * 3) as usize]);
                }
                p.lock().unwrap().frames.push((
                    buf.pts().unwrap(),
                    Image {
                        width: w,
                        height: h,
                        channels: 3,
                        data,
                    },
                ));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let p = pulled.clone();
    sink("a").set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buf = sample.buffer().unwrap();
                let map = buf.map_readable().unwrap();
                let pcm = map
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                p.lock().unwrap().audio.push((buf.pts().unwrap(), pcm));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pull.set_state(gst::State::Playing).unwrap();
    server.wait_for("pulled frames", Duration::from_secs(30), || {
        pulled.lock().unwrap().frames.len() > 25
    });
    std::thread::sleep(Duration::from_secs(1));
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Hello over RTMP. One, two, three, four."}),
    );
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(Duration::from_secs(7));
    pull.set_state(gst::State::Null).unwrap();
    let pulled = std::mem::take(&mut *pulled.lock().unwrap());
    assert!(
        pulled.frames.len() > 150,
        "{} video frames",
        pulled.frames.len()
    );
    assert!(!pulled.audio.is_empty(), "no audio came back");

    // Mouth opening per frame: each frame against the avatar frame it shows (the one whose
    // upper face matches best), in the lower face.
    let avatar = Avatar::load(&support::cache_dir().join("avatars/astronaut")).unwrap();
    let fb = avatar.manifest.frames[0].face_box;
    let (x0, x1) = (
        (fb.x1 + fb.width() / 4) as u32,
        (fb.x2 - fb.width() / 4) as u32,
    );
    let upper = (fb.y1 as u32, (fb.y1 + fb.height() * 2 / 5) as u32);
    let lower = ((fb.y1 + fb.height() * 3 / 5) as u32, fb.y2 as u32);
    let opening: Vec<(gst::ClockTime, f64)> = pulled
        .frames
        .iter()
        .map(|(pts, f)| {
            let k = (0..avatar.len())
                .min_by(|&a, &b| {
                    let d = |k: usize| {
                        gstlivetalk::mouth::region_difference(
                            f,
                            &avatar.frames[k],
                            x0,
                            upper.0,
                            x1,
                            upper.1,
                        )
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            let m = gstlivetalk::mouth::region_difference(
                f,
                &avatar.frames[k],
                x0,
                lower.0,
                x1,
                lower.1,
            );
            (*pts, m)
        })
        .collect();
    let noise = opening[..25].iter().map(|x| x.1).fold(0.0, f64::max);
    let speaking = opening.iter().map(|x| x.1).fold(0.0, f64::max);
    eprintln!("mouth: idle up to {noise:.2}, speaking up to {speaking:.2}");
    assert!(speaking > 3.0 * noise.max(0.5), "the mouth does not move");
    let first_mouth = opening
        .iter()
        .find(|x| x.1 > 0.5 * speaking)
        .map(|x| x.0)
        .unwrap();

    // Speech onset in the audio: first 20 ms with RMS above a quarter of the loudest.
    let windows: Vec<(gst::ClockTime, f64)> = pulled
        .audio
        .iter()
        .flat_map(|(pts, pcm)| {
            pcm.chunks(320).enumerate().map(move |(i, c)| {
                let rms =
                    (c.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
                (*pts + gst::ClockTime::from_mseconds(20 * i as u64), rms)
            })
        })
        .collect();
    let loudest = windows.iter().map(|w| w.1).fold(0.0, f64::max);
    assert!(loudest > 0.05, "no speech in the pulled audio");
    let onset = windows.iter().find(|w| w.1 > 0.25 * loudest).unwrap().0;
    let offset_ms = first_mouth.mseconds() as i64 - onset.mseconds() as i64;
    eprintln!("RTMP A/V: speech onset {onset}, first open mouth {first_mouth}: {offset_ms} ms");
    assert!(
        offset_ms.abs() <= 160,
        "audio and video out of sync by {offset_ms} ms"
    );
}

/// Pulls `url` for up to `within` and says whether video frames arrive.
fn pull_gets_video(url: &str, within: Duration) -> bool {
    let pull = gst::parse::launch(&support::rtmp_pull(
        url,
        "fakesink name=v signal-handoffs=true sync=false",
        "fakesink sync=false",
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = frames.clone();
    pull.by_name("v")
        .unwrap()
        .connect("handoff", false, move |_| {
            f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            None
        });
    let _ = pull.set_state(gst::State::Playing);
    let start = std::time::Instant::now();
    while start.elapsed() < within && frames.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = pull.set_state(gst::State::Null);
    frames.load(std::sync::atomic::Ordering::SeqCst) >= 10
}

#[test]
fn rtmp_server_killed_and_restarted_the_push_comes_back_and_others_go_on() {
    gst::init().unwrap();
    let nginx = Nginx::start();
    let port = nginx.port;
    let url = format!("rtmp://127.0.0.1:{port}/live/avatar");
    let server = Server::start(&["--rtmp", &url, "--peer-timeout", "300"]);
    let other = server.new_session();
    assert!(
        pull_gets_video(&url, Duration::from_secs(20)),
        "no push at first"
    );
    let rtmp_id = |server: &Server| -> Option<String> {
        let (_, v) = server.request("GET", "/sessions", None);
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["output"] == "rtmp")
            .map(|s| s["sessionid"].as_str().unwrap().to_string())
    };
    let first = rtmp_id(&server).unwrap();

    // The RTMP server goes away: the push session ends with the error, the other stays.
    drop(nginx);
    server.wait_for("the push to notice", Duration::from_secs(30), || {
        server.log_text().contains("starting it again")
    });
    assert!(
        server.session_ids().contains(&other),
        "{}",
        server.log_text()
    );
    let (s, _) = server.post("/human", json!({"sessionid": other, "text": "Still here."}));
    assert_eq!(s, 200);

    // It comes back on the same port: a new push session, and the stream plays again.
    let _nginx = Nginx::start_on(port);
    server.wait_for("the push to come back", Duration::from_secs(60), || {
        rtmp_id(&server).is_some_and(|id| id != first) && server.log_text().contains("(again)")
    });
    assert!(
        pull_gets_video(&url, Duration::from_secs(30)),
        "no push after the restart:\n{}",
        server.log_text()
    );
    assert!(server.session_ids().contains(&other));
    eprintln!(
        "{}",
        server
            .log_text()
            .lines()
            .filter(|l| l.contains("RTMP") || l.contains("rtmp"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
