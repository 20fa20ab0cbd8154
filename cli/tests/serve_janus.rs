//! `livetalk serve --janus`: sessions publish once into a Janus VideoRoom (Debian's Janus on
//! loopback, generated configuration); viewers subscribe through Janus with GStreamer's
//! `janusvrwebrtcsrc` (gst-plugin-webrtc, independent of our serving code) and with the page's
//! viewer mode (janus.js) in headless Chromium. And the faults: Janus down when a session
//! starts, a wrong room secret, Janus restarted mid-session.

mod av;
mod support;

use std::time::{Duration, Instant};

use gst::prelude::*;
use serde_json::{Value, json};
use support::{Janus, Server, page};

/// Each test's bound (they take 10 to 60 s here); past it the test fails as hung. The tests
/// that watch media run in real time (encoding, decoding, a browser): one at a time
/// (support::serial), so that they do not starve each other of CPU on a small machine.
const LIMIT: Duration = Duration::from_secs(300);

fn janus_or_skip(test: &str) -> Option<Janus> {
    if !Janus::available() {
        support::skip(test, "Debian's janus is not installed (scripts/setup.sh)");
        return None;
    }
    Some(Janus::start())
}

/// A GStreamer viewer of one feed through Janus: `janusvrwebrtcsrc`, each stream decoded into
/// an appsink.
fn viewer(janus: &Janus, room: u64, feed: u64) -> av::Receiver {
    let src = gst::ElementFactory::make("janusvrwebrtcsrc")
        .build()
        .expect("janusvrwebrtcsrc (gst-plugin-webrtc, feature janus)");
    src.set_property("stun-server", None::<String>);
    let signaller = src.property::<gst::glib::Object>("signaller");
    signaller.set_property("janus-endpoint", janus.ws_url());
    signaller.set_property("room-id", room);
    signaller.set_property("producer-peer-id", feed);
    av::Receiver::start_on_any_address("a Janus viewer", &src)
}

/// Stops a viewer and returns what it received.
fn finish(viewer: av::Receiver) -> av::Received {
    let got = viewer.take();
    drop(viewer);
    got
}

/// RMS of the loudest 20 ms of a viewer's audio.
fn loudest(got: &av::Received) -> f64 {
    av::audio_windows(&got.audio)
        .iter()
        .map(|w| w.1)
        .fold(0.0, f64::max)
}

/// Whether the video timestamps advance (from frame to frame, for 9 in 10 at least).
fn timestamps_advance(got: &av::Received) -> bool {
    let n = got.frames.len();
    let advancing = got.frames.windows(2).filter(|w| w[1].1 > w[0].1).count();
    advancing + 1 >= n * 9 / 10
}

fn session_json(server: &Server, id: &str) -> Value {
    let (status, v) = server.request("GET", "/sessions", None);
    assert_eq!(status, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionid"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until Janus lists the session's feed as a publisher in the room.
fn wait_published(server: &Server, janus: &Janus, room: u64, feed: u64) {
    server.wait_for(
        "the feed published in Janus",
        Duration::from_secs(40),
        || janus.publishers(room).iter().any(|(id, _)| *id == feed),
    );
}

#[test]
fn one_encode_reaches_two_janus_viewers() {
    let _serial = support::serial("one_encode_reaches_two_janus_viewers", LIMIT);
    gst::init().unwrap();
    gstwebrtc::plugin_register_static().unwrap();
    let Some(janus) = janus_or_skip("one_encode_reaches_two_janus_viewers") else {
        return;
    };
    let room = 4321u64;
    let server = Server::start(&["--janus", &janus.ws_url(), "--janus-room", "4321"]);
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 200, "{v}");
    let id = v["sessionid"].as_str().unwrap().to_string();
    assert_eq!(v["data"]["output"], "janus", "{v}");
    assert_eq!(v["data"]["janus"]["room"], room, "{v}");
    let feed = v["data"]["janus"]["feed"].as_u64().unwrap();
    wait_published(&server, &janus, room, feed);
    // The feed is named after the session.
    let publishers = janus.publishers(room);
    assert_eq!(publishers, vec![(feed, id.clone())]);

    let viewers = [viewer(&janus, room, feed), viewer(&janus, room, feed)];
    server.wait_for("frames at both viewers", Duration::from_secs(40), || {
        viewers.iter().all(|v| v.frames() > 25)
    });
    let s = session_json(&server, &id);
    assert_eq!(s["janus"]["state"], "webrtc-up", "{s}");
    assert_eq!(
        s["consumers"], 1,
        "Janus is the session's one consumer: {s}"
    );
    assert_eq!(
        s["video_encoders"], 1,
        "one video encoder for two viewers: {s}"
    );

    std::thread::sleep(Duration::from_secs(1));
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Hello through Janus. One, two, three, four."}),
    );
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(Duration::from_secs(7));
    // Still one encoder while both viewers watch and the avatar talks.
    assert_eq!(session_json(&server, &id)["video_encoders"], 1);

    for (i, v) in viewers.into_iter().enumerate() {
        assert_saw_speech(i, finish(v));
    }
}

/// A GStreamer viewer that watched from before a `/human` until after it: frames with
/// advancing timestamps, speech in the audio, the mouth moving far more than in its first
/// second (idle).
fn assert_saw_speech(i: usize, got: av::Received) {
    let n = got.frames.len();
    assert!(n > 150, "viewer {i}: {n} video frames");
    assert!(
        timestamps_advance(&got),
        "viewer {i}: timestamps do not advance"
    );
    let loud = loudest(&got);
    assert!(
        loud > 0.05,
        "viewer {i}: no speech in the audio ({loud:.3})"
    );
    let opening: Vec<f64> = av::mouth_opening(&got.frames).iter().map(|x| x.1).collect();
    let noise = opening[..25].iter().copied().fold(0.0, f64::max);
    let speaking = opening.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "viewer {i}: {n} frames, loudest {loud:.3}, mouth idle up to {noise:.2}, speaking up to {speaking:.2}"
    );
    assert!(
        speaking > 3.0 * noise.max(0.5),
        "viewer {i}: the mouth does not move"
    );
}

#[test]
fn the_page_views_through_janus_beside_two_gstreamer_viewers() {
    let _serial = support::serial(
        "the_page_views_through_janus_beside_two_gstreamer_viewers",
        LIMIT,
    );
    let test = "the_page_views_through_janus_beside_two_gstreamer_viewers";
    gst::init().unwrap();
    gstwebrtc::plugin_register_static().unwrap();
    if !["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|f| std::path::Path::new(f).exists())
    {
        support::skip(test, "Debian's chromium and chromedriver are not installed");
        return;
    }
    if !support::cache_dir()
        .join("web/node_modules/janus-gateway/src/janus.js")
        .is_file()
    {
        support::skip(
            test,
            "npm janus-gateway is not installed (scripts/setup.sh)",
        );
        return;
    }
    let Some(janus) = janus_or_skip(test) else {
        return;
    };
    let room = 4322u64;
    let server = Server::start(&["--janus", &janus.ws_url(), "--janus-room", "4322"]);
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 200, "{v}");
    let id = v["sessionid"].as_str().unwrap().to_string();
    let feed = v["data"]["janus"]["feed"].as_u64().unwrap();
    wait_published(&server, &janus, room, feed);
    let viewers = [viewer(&janus, room, feed), viewer(&janus, room, feed)];
    server.wait_for("frames at both viewers", Duration::from_secs(40), || {
        viewers.iter().all(|v| v.frames() > 25)
    });

    // The browser watches beside them; it says /human, then closes the session.
    let r = support::page_check(&server, &format!("janusview:{id}"));
    eprintln!(
        "browser: first frames after {:.2} s, {} frames in 1 s, {} in all, video {}x{}; ICE \
         pair {}; status '{}'",
        r["first_frames_s"],
        r["frames_in_1s"],
        r["frames_total"],
        r["video"]["w"],
        r["video"]["h"],
        r["ice_pair"],
        r["status"]
    );
    // The avatar's square picture (512x512), or smaller where webrtcsink's congestion
    // control scaled it down for Janus; a live audio track, and sound while the avatar speaks.
    page::assert_plays(&r, |w, h| w == h && (128..=512).contains(&w));
    page::assert_audio_live(&r);
    let talk = page::Talk::of(&r);
    talk.assert_sound();
    // Frames whose motion passes twice the idle mouth's largest: many for the mouth, few for
    // the eyes (the idle animation moves the whole face a little; speech moves the mouth).
    let threshold = talk.threshold();
    let above = |v: &[f64]| v.iter().filter(|&&x| x > threshold).count();
    let (mouth_moves, eyes_move) = (above(&talk.speech_mouth), above(&talk.speech_eyes));
    eprintln!(
        "browser: frames moving more than {threshold:.2}: mouth {mouth_moves}, eyes {eyes_move} \
         (of {})",
        talk.speech_mouth.len()
    );
    assert!(
        mouth_moves >= 5,
        "the mouth does not move at the browser on /human"
    );
    assert!(
        mouth_moves > 3 * eyes_move,
        "the whole face moves, not the mouth"
    );

    // Three viewers, Janus the one consumer: one video encoder on our host.
    let s = &r["session_while_speaking"];
    eprintln!("while speaking to three viewers: {s}");
    assert_eq!(s["janus"]["state"], "webrtc-up", "{s}");
    assert_eq!(s["consumers"], 1, "{s}");
    assert_eq!(s["video_encoders"], 1, "{s}");

    // The session was closed: the page says so.
    assert_eq!(r["close"]["code"], 0, "{r}");
    let ended = r["ended"].as_str().unwrap_or_default();
    eprintln!(
        "after closing the session the page says '{ended}' ({:.1} s)",
        r["ended_after_s"]
    );
    assert!(
        ended.contains("ended") || ended.contains("left"),
        "the page does not say the session is gone: {r}"
    );
    assert_eq!(r["status_after"], ended);

    for (i, v) in viewers.into_iter().enumerate() {
        assert_saw_speech(i, finish(v));
    }
}

#[test]
fn janus_down_fails_that_session_only() {
    // (one at a time: a Janus another test starts meanwhile could take the dead port)
    let _serial = support::serial("janus_down_fails_that_session_only", LIMIT);
    gst::init().unwrap();
    if !Janus::available() {
        support::skip(
            "janus_down_fails_that_session_only",
            "Debian's janus is not installed (scripts/setup.sh)",
        );
        return;
    }
    // Nothing listens there.
    let dead = format!("ws://127.0.0.1:{}", support::free_port());
    let server = Server::start(&["--janus", &dead, "--peer-timeout", "120"]);
    let (status, v) = server.post("/session", json!({"output": "webrtc"}));
    assert_eq!(status, 200, "{v}");
    let other = v["sessionid"].as_str().unwrap().to_string();

    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"], "janus_unreachable", "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains("cannot reach Janus") && msg.contains(&dead),
        "{msg}"
    );
    // The server and its other session go on.
    assert_eq!(server.session_ids(), vec![other.clone()]);
    let (status, v) = server.post("/human", json!({"sessionid": other, "text": "Still here."}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(server.request("GET", "/health", None).0, 200);
}

#[test]
fn wrong_room_secret_is_refused() {
    let _serial = support::serial("wrong_room_secret_is_refused", LIMIT);
    gst::init().unwrap();
    let Some(janus) = janus_or_skip("wrong_room_secret_is_refused") else {
        return;
    };
    let created = janus.videoroom(json!({"request": "create", "room": 99, "secret": "right"}));
    assert_eq!(created["videoroom"], "created", "{created}");
    let url = janus.ws_url();
    let server = Server::start(&[
        "--janus",
        &url,
        "--janus-room",
        "99",
        "--janus-secret",
        "wrong",
    ]);
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"], "janus_wrong_secret", "{v}");
    assert!(v["msg"].as_str().unwrap().contains("secret"), "{v}");
    assert!(server.session_ids().is_empty());
    drop(server);

    // The right secret publishes.
    let server = Server::start(&[
        "--janus",
        &url,
        "--janus-room",
        "99",
        "--janus-secret",
        "right",
    ]);
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 200, "{v}");
    let feed = v["data"]["janus"]["feed"].as_u64().unwrap();
    wait_published(&server, &janus, 99, feed);
}

#[test]
fn janus_restart_ends_the_session_with_a_message() {
    let _serial = support::serial("janus_restart_ends_the_session_with_a_message", LIMIT);
    gst::init().unwrap();
    let Some(mut janus) = janus_or_skip("janus_restart_ends_the_session_with_a_message") else {
        return;
    };
    let server = Server::start(&["--janus", &janus.ws_url(), "--janus-room", "7"]);
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 200, "{v}");
    let id = v["sessionid"].as_str().unwrap().to_string();
    let feed = v["data"]["janus"]["feed"].as_u64().unwrap();
    wait_published(&server, &janus, 7, feed);
    let events = server.events(&id);

    let restarted = Instant::now();
    janus.restart();
    let err = events
        .wait(Duration::from_secs(20), |e| e["type"] == "janus-error")
        .unwrap_or_else(|| panic!("no janus-error event; log:\n{}", server.log_text()));
    eprintln!("after {:?}: {err}", restarted.elapsed());
    assert!(err["msg"].as_str().unwrap().contains("Janus"), "{err}");
    let end = events
        .wait(Duration::from_secs(10), |e| e["type"] == "session-end")
        .expect("no session-end event");
    assert_eq!(end["reason"], "janus-lost", "{end}");
    server.wait_for("the session gone", Duration::from_secs(10), || {
        server.session_ids().is_empty()
    });

    // A new session publishes into the restarted Janus (the room is made again).
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 200, "{v}");
    let feed = v["data"]["janus"]["feed"].as_u64().unwrap();
    wait_published(&server, &janus, 7, feed);
}

/// A folder holding both plugin libraries (the livetalk plugin and gst-plugins-rs' webrtc
/// plugin that set-up builds): cargo's target dir or meson's build/ beside it.
fn plugin_dir() -> Option<std::path::PathBuf> {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_livetalk"));
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    [exe.parent()?.to_path_buf(), repo.join("build")]
        .into_iter()
        .find(|d| d.join("libgstlivetalk.so").is_file() && d.join("libgstrswebrtc.so").is_file())
}

#[test]
fn janus_pipeline_script_publishes_to_a_viewer() {
    let _serial = support::serial("janus_pipeline_script_publishes_to_a_viewer", LIMIT);
    gst::init().unwrap();
    gstwebrtc::plugin_register_static().unwrap();
    let test = "janus_pipeline_script_publishes_to_a_viewer";
    let Some(plugins) = plugin_dir() else {
        support::skip(
            test,
            "no libgstrswebrtc.so next to libgstlivetalk.so (scripts/setup.sh builds it)",
        );
        return;
    };
    let Some(janus) = janus_or_skip(test) else {
        return;
    };
    support::require_setup();
    let (room, feed) = (55u64, 424242u64);
    let created = janus.videoroom(json!({"request": "create", "room": room}));
    assert_eq!(created["videoroom"], "created", "{created}");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut script = std::process::Command::new("bash")
        .arg(repo.join("pipelines/janus.sh"))
        .env("GST_PLUGIN_PATH", &plugins)
        .env("AVATAR", support::cache_dir().join("avatars/astronaut"))
        .env("JANUS", janus.ws_url())
        .env("ROOM", room.to_string())
        .env("FEED", feed.to_string())
        .env("NAME", "pipeline")
        .env(
            "TEXT",
            "Hello from a pipeline through Janus. I keep talking for a while, so that a viewer \
             who joins late still hears me say one, two, three, four, five, six, seven.",
        )
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let published = {
        let start = Instant::now();
        loop {
            if janus.publishers(room) == vec![(feed, "pipeline".to_string())] {
                break true;
            }
            if start.elapsed() > Duration::from_secs(40) || script.try_wait().unwrap().is_some() {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let script_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
    if !published {
        let _ = script.kill();
        let _ = script.wait();
        panic!("janus.sh did not publish: {}", script_log());
    }
    let viewer = viewer(&janus, room, feed);
    let start = Instant::now();
    while viewer.frames() < 100 && start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let got = finish(viewer);
    let _ = script.kill();
    let _ = script.wait();
    let n = got.frames.len();
    assert!(n >= 100, "{n} frames from janus.sh: {}", script_log());
    assert!(timestamps_advance(&got), "timestamps do not advance");
    let loud = loudest(&got);
    eprintln!("janus.sh viewer: {n} frames, loudest {loud:.3}");
    assert!(loud > 0.05, "no speech from janus.sh ({loud:.3})");
}
