//! The `pipelines/` scripts under gst-launch-1.0, with the livetalk plugin on GST_PLUGIN_PATH:
//! file output always, RTMP against nginx-rtmp on loopback; WebRTC and v4l2loopback only where
//! their element / device exist (they say so when they cannot run).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// A folder holding the plugin library: meson's build/ or cargo's target dir.
fn plugin_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_livetalk"));
    let candidates = [exe.parent().unwrap().to_path_buf(), repo().join("build")];
    candidates
        .iter()
        .find(|d| d.join("libgstlivetalk.so").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("no libgstlivetalk.so in {candidates:?}: cargo build --release -p gst-plugin-livetalk")
        })
}

fn script(name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo().join("pipelines").join(name))
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("AVATAR", support::cache_dir().join("avatars/astronaut"));
    c
}

fn has_element(name: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(name)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn file_pipeline_writes_a_talking_mp4() {
    support::require_setup();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let o = script("file.sh")
        .env("OUT", &out)
        .env("TEXT", "Hello from a pipeline.")
        .arg("-q")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! qtdemux name=d d.video_0 ! queue ! fakesink name=v d.audio_0 ! queue ! fakesink name=a",
        out.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Paused).unwrap();
    let _ = p.state(gst::ClockTime::from_seconds(10));
    let dur = p.query_duration::<gst::ClockTime>().unwrap();
    let linked = |n: &str| {
        p.by_name(n)
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .is_linked()
    };
    assert!(linked("v") && linked("a"), "the MP4 lacks a stream");
    assert!(dur > gst::ClockTime::from_mseconds(800), "duration {dur}");
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn rtmp_pipeline_pushes_to_nginx() {
    support::require_setup();
    let nginx = support::Nginx::start();
    let url = format!("rtmp://127.0.0.1:{}/live/p", nginx.port);
    let mut push = script("rtmp.sh")
        .env("RTMP_URL", &url)
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Pull: both streams must come back with frames.
    gst::init().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let pull = gst::parse::launch(&support::rtmp_pull(
        &url,
        "fakesink name=v signal-handoffs=true",
        "fakesink name=a signal-handoffs=true",
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let counts = std::sync::Arc::new([
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    ]);
    for (i, n) in ["v", "a"].iter().enumerate() {
        let c = counts.clone();
        pull.by_name(n)
            .unwrap()
            .connect("handoff", false, move |_| {
                c[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                None
            });
    }
    pull.set_state(gst::State::Playing).unwrap();
    let t = Instant::now();
    while (counts[0].load(std::sync::atomic::Ordering::SeqCst) < 25
        || counts[1].load(std::sync::atomic::Ordering::SeqCst) < 10)
        && t.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    pull.set_state(gst::State::Null).unwrap();
    let _ = push.kill();
    let _ = push.wait();
    let (v, a) = (
        counts[0].load(std::sync::atomic::Ordering::SeqCst),
        counts[1].load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(v >= 25 && a >= 10, "pulled {v} video and {a} audio buffers");
}

#[test]
fn webrtc_pipeline_parses_where_webrtcsink_is_installed() {
    support::require_setup();
    if !has_element("webrtcsink") {
        eprintln!(
            "SKIPPED: no webrtcsink plugin installed (gst-plugins-rs net/webrtc); `livetalk serve` embeds it"
        );
        return;
    }
    assert_keeps_running(script("webrtc.sh"));
}

#[test]
fn v4l2loopback_pipeline_where_a_loopback_device_exists() {
    support::require_setup();
    let dev = std::env::var("DEVICE").unwrap_or_else(|_| "/dev/video10".into());
    let is_loopback = std::fs::read_to_string(format!(
        "/sys/class/video4linux/{}/name",
        Path::new(&dev).file_name().unwrap().to_string_lossy()
    ))
    .is_ok_and(|n| n.to_lowercase().contains("loopback") || n.to_lowercase().contains("dummy"));
    if !is_loopback {
        eprintln!("SKIPPED: no v4l2loopback device at {dev} (modprobe v4l2loopback)");
        return;
    }
    let mut c = script("v4l2loopback.sh");
    c.env("DEVICE", &dev)
        .env("AUDIO_SINK", "fakesink sync=true");
    assert_keeps_running(c);
}

/// A live pipeline script is still running after 5 s (its stderr is shown if not).
fn assert_keeps_running(mut c: Command) {
    let mut c = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let running = c.try_wait().unwrap().is_none();
    let _ = c.kill();
    let out = c.wait_with_output().unwrap();
    assert!(running, "{}", String::from_utf8_lossy(&out.stderr));
}
