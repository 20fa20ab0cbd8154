//! `livetalk serve --rtmp`: the session pushes to Debian's nginx with libnginx-mod-rtmp on
//! loopback; the test pulls the stream back with rtmp2src and checks that audio and video
//! arrive, and arrive in sync (speech onset in the audio vs the first moving mouth frame).

mod av;
mod support;

use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use serde_json::json;
use support::{Nginx, Server};

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
    let pull = gst::parse::launch(&support::rtmp_pull(&url, av::VIDEO_TAIL, av::AUDIO_TAIL))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let pulled = av::Shared::default();
    av::collect_video(&pull.by_name("v").unwrap(), &pulled);
    av::collect_audio(&pull.by_name("a").unwrap(), &pulled);
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

    // The first 25 frames show the avatar idle; speech onset against the first open mouth.
    let sync = av::speech_sync(&pulled, 0..25);
    eprintln!(
        "mouth: idle up to {:.2}, speaking up to {:.2}; RTMP A/V: {} ms (video minus audio)",
        sync.idle_mouth, sync.widest_mouth, sync.offset_ms
    );
    assert!(
        sync.widest_mouth > 3.0 * sync.idle_mouth.max(0.5),
        "the mouth does not move"
    );
    assert!(sync.loudest > 0.05, "no speech in the pulled audio");
    assert!(
        sync.offset_ms.abs() <= 160,
        "audio and video out of sync by {} ms",
        sync.offset_ms
    );
}

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
