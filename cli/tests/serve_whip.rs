//! WHIP egress: `livetalk serve --whip URL` and `pipelines/whip.sh` push to a WHIP server that
//! is independent of our code, gst-plugins-rs' `whipserversrc`, run here in the test process
//! on a free loopback port (ICE restricted to 127.0.0.1 on its side; the pushing side gets
//! only that candidate, and no STUN server). The test decodes what arrives and checks that
//! audio and video both come, that the mouth moves when the avatar speaks, and in time with
//! the speech.

mod av;
mod support;

use std::process::Stdio;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use serde_json::json;
use support::Server;

/// One test at a time (each runs live sessions; two at once starve a small machine).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A WHIP server: whipserversrc decoding into appsinks.
struct WhipServer {
    pipeline: gst::Pipeline,
    port: u16,
    got: av::Shared,
}

impl WhipServer {
    fn start() -> WhipServer {
        gst::init().unwrap();
        gstwebrtc::plugin_register_static().unwrap();
        let port = support::free_port();
        let src = gst::ElementFactory::make("whipserversrc")
            .build()
            .expect("whipserversrc (gst-plugin-webrtc's whip feature)");
        src.set_property("stun-server", None::<String>);
        let signaller = src.property::<glib::Object>("signaller");
        signaller.set_property("host-addr", format!("http://127.0.0.1:{port}"));
        let (pipeline, got) = av::receive(&src, &signaller);
        // The endpoint listens once the source is playing.
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "whipserversrc does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        WhipServer {
            pipeline,
            port,
            got,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/whip/endpoint", self.port)
    }

    fn wait_for_media(&self, what: &str, frames: usize, timeout: Duration) {
        let start = std::time::Instant::now();
        loop {
            {
                let g = self.got.lock().unwrap();
                if g.frames.len() >= frames && !g.audio.is_empty() {
                    return;
                }
                assert!(
                    start.elapsed() < timeout,
                    "{what}: {} frames, {} audio buffers after {timeout:?}",
                    g.frames.len(),
                    g.audio.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WhipServer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Checks speech in what arrived: loud audio, a moving mouth, and (`in_sync`) the mouth
/// opening within 200 ms of the speech onset.
fn assert_talks(got: &av::Received, idle: std::ops::Range<usize>, what: &str, in_sync: bool) {
    assert!(
        got.frames.len() > 100,
        "{what}: {} frames",
        got.frames.len()
    );
    let (w, h) = (got.frames[0].2.width, got.frames[0].2.height);
    assert_eq!((w, h), (512, 512), "{what}");
    let sync = av::speech_sync(got, idle);
    eprintln!(
        "{what}: audio RMS up to {:.3}; mouth idle up to {:.2}, speaking up to {:.2}; speech \
         onset -> open mouth {} ms (PTS at the WHIP server)",
        sync.loudest, sync.idle_mouth, sync.widest_mouth, sync.offset_ms
    );
    assert!(sync.loudest > 0.05, "{what}: no speech in the audio");
    assert!(
        sync.widest_mouth > 3.0 * sync.idle_mouth.max(0.5),
        "{what}: the mouth does not move"
    );
    assert!(
        !in_sync || sync.offset_ms.abs() <= 200,
        "{what}: audio and video out of sync by {} ms",
        sync.offset_ms
    );
}

#[test]
fn serve_pushes_a_talking_session_over_whip() {
    let _serial = serial();
    let whip = WhipServer::start();
    let server = Server::start(&["--whip", &whip.url()]);
    let (_, v) = server.request("GET", "/sessions", None);
    let s = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["output"] == "whip")
        .unwrap_or_else(|| panic!("no WHIP session: {v}"))
        .clone();
    let id = s["sessionid"].as_str().unwrap().to_string();
    whip.wait_for_media("the WHIP push", 25, Duration::from_secs(30));
    // A few seconds for RTCP sender reports: the receiver aligns audio and video by them.
    std::thread::sleep(Duration::from_secs(4));
    let idle = whip.got.lock().unwrap().frames.len();
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Hello over WHIP. One, two, three, four."}),
    );
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(Duration::from_secs(7));
    let got = std::mem::take(&mut *whip.got.lock().unwrap());
    assert_talks(&got, idle / 2..idle, "serve --whip", true);
}

#[test]
fn whip_pipeline_script_pushes_a_talking_avatar() {
    let _serial = serial();
    let whip = WhipServer::start();
    let mut child = support::webrtc_pipeline_script("whip.sh")
        .env("WHIP_URL", whip.url())
        .env(
            "TEXT",
            "Hello from the WHIP pipeline. One, two, three, four, five.",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        whip.wait_for_media("whip.sh", 25, Duration::from_secs(40));
        std::thread::sleep(Duration::from_secs(8));
    }));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    if waited.is_err() {
        panic!("whip.sh: {}", String::from_utf8_lossy(&out.stderr));
    }
    let got = std::mem::take(&mut *whip.got.lock().unwrap());
    // The script speaks from its start, while the push is still connecting: the idle
    // reference is the rest pose at the end (the text is said by then), and the speech onset
    // may be cut, so the offset is reported, not judged (serve's push is judged above).
    let n = got.frames.len();
    assert_talks(&got, n.saturating_sub(25)..n, "pipelines/whip.sh", false);
}
