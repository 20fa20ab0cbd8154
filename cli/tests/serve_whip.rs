//! WHIP egress: `livetalk serve --whip URL` and `pipelines/whip.sh` push to a WHIP server that
//! is independent of our code, gst-plugins-rs' `whipserversrc`, run here in the test process
//! on a free loopback port (ICE restricted to 127.0.0.1 on its side; the pushing side gets
//! only that candidate, and no STUN server). The test decodes what arrives and checks that
//! audio and video both come, that the mouth moves when the avatar speaks, and in time with
//! the speech.

mod av;
mod support;

use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use serde_json::json;
use support::Server;

/// Each test's bound (they take about 20 s here); past it the test fails as hung.
const LIMIT: Duration = Duration::from_secs(240);

/// A WHIP server: whipserversrc decoding into appsinks.
struct WhipServer {
    rx: av::Receiver,
    port: u16,
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
        let rx = av::Receiver::start("the WHIP server", &src, &signaller);
        // The endpoint listens once the source is playing.
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "whipserversrc does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        WhipServer { rx, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/whip/endpoint", self.port)
    }
}

#[test]
fn serve_pushes_a_talking_session_over_whip() {
    let _serial = support::serial("serve_pushes_a_talking_session_over_whip", LIMIT);
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
    whip.rx.wait_for_media(25, Duration::from_secs(30));
    // A few seconds for RTCP sender reports: the receiver aligns audio and video by them.
    std::thread::sleep(Duration::from_secs(4));
    let idle = whip.rx.frames();
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Hello over WHIP. One, two, three, four."}),
    );
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(Duration::from_secs(7));
    let got = whip.rx.take();
    av::assert_talks(&got, idle / 2..idle, "serve --whip", Some(200));
}

#[test]
fn whip_pipeline_script_pushes_a_talking_avatar() {
    let _serial = support::serial("whip_pipeline_script_pushes_a_talking_avatar", LIMIT);
    let whip = WhipServer::start();
    let mut command = support::webrtc_pipeline_script("whip.sh");
    command.env("WHIP_URL", whip.url()).env(
        "TEXT",
        "Hello from the WHIP pipeline. One, two, three, four, five.",
    );
    let script = support::Script::spawn(command);
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        whip.rx.wait_for_media(25, Duration::from_secs(40));
        std::thread::sleep(Duration::from_secs(8));
    }));
    let stderr = script.stop();
    if waited.is_err() {
        panic!("whip.sh: {stderr}");
    }
    let got = whip.rx.take();
    // The script speaks from its start, while the push is still connecting: the idle
    // reference is the rest pose at the end (the text is said by then), and the speech onset
    // may be cut, so the offset is reported, not judged (serve's push is judged above).
    let n = got.frames.len();
    av::assert_talks(&got, n.saturating_sub(25)..n, "pipelines/whip.sh", None);
}
