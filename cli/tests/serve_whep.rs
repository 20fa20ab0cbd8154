//! WHEP egress: `livetalk serve --whep` and `pipelines/whep.sh` are watched by a WHEP player
//! that is independent of our code, gst-plugins-rs' `whepclientsrc`, run here in the test
//! process (ICE: 127.0.0.1 added on its side; no STUN server). The test decodes what arrives
//! and checks that audio and video both come, that the mouth moves when the avatar speaks,
//! and in time with the speech; two viewers watch at once, leave, and the session goes on.

mod av;
mod support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use serde_json::{Value, json};
use support::Server;

/// One test at a time (each runs live sessions; two at once starve a small machine).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A WHEP player: whepclientsrc decoding into appsinks.
struct Viewer {
    pipeline: gst::Pipeline,
    got: av::Shared,
}

impl Viewer {
    fn watch(url: &str) -> Viewer {
        gst::init().unwrap();
        gstwebrtc::plugin_register_static().unwrap();
        let src = gst::ElementFactory::make("whepclientsrc")
            .build()
            .expect("whepclientsrc (gst-plugin-webrtc's whep feature)");
        src.set_property("stun-server", None::<String>);
        let signaller = src.property::<glib::Object>("signaller");
        signaller.set_property("whep-endpoint", url);
        let (pipeline, got) = av::receive(&src, &signaller);
        Viewer { pipeline, got }
    }

    fn wait_for_media(&self, what: &str, frames: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            {
                let g = self.got.lock().unwrap();
                if g.frames.len() >= frames && !g.audio.is_empty() {
                    return;
                }
                assert!(
                    start.elapsed() < timeout,
                    "{what}: {} frames, {} audio buffers after {timeout:?}{}",
                    g.frames.len(),
                    g.audio.len(),
                    self.bus_error()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn bus_error(&self) -> String {
        let bus = self.pipeline.bus().unwrap();
        while let Some(msg) = bus.pop() {
            if let gst::MessageView::Error(e) = msg.view() {
                return format!("; the viewer's error: {} ({:?})", e.error(), e.debug());
            }
        }
        String::new()
    }

    fn frames(&self) -> usize {
        self.got.lock().unwrap().frames.len()
    }

    /// Stops watching: whepclientsrc DELETEs its resource as it stops.
    fn leave(self) {}
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Checks speech in what arrived: loud audio, a moving mouth, and (`sync_ms`) the mouth
/// opening within that many ms of the speech onset.
fn assert_talks(
    got: &av::Received,
    idle: std::ops::Range<usize>,
    what: &str,
    sync_ms: Option<i64>,
) {
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
         onset -> open mouth {} ms (PTS at the WHEP player)",
        sync.loudest, sync.idle_mouth, sync.widest_mouth, sync.offset_ms
    );
    assert!(sync.loudest > 0.05, "{what}: no speech in the audio");
    assert!(
        sync.widest_mouth > 3.0 * sync.idle_mouth.max(0.5),
        "{what}: the mouth does not move"
    );
    assert!(
        sync_ms.is_none_or(|ms| sync.offset_ms.abs() <= ms),
        "{what}: audio and video out of sync by {} ms",
        sync.offset_ms
    );
}

/// The WHEP session's entry in `GET /sessions`.
fn whep_session(server: &Server) -> Value {
    let (status, v) = server.request("GET", "/sessions", None);
    assert_eq!(status, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["output"] == "whep")
        .unwrap_or_else(|| panic!("no WHEP session: {v}"))
        .clone()
}

#[test]
fn serve_is_watched_over_whep_by_two_players() {
    let _serial = serial();
    let server = Server::start(&["--whep"]);
    let s = whep_session(&server);
    let id = s["sessionid"].as_str().unwrap().to_string();
    let url = s["whep"]["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("http://127.0.0.1:{}/whep/{id}", server.port));
    assert_eq!(s["whep"]["viewers"], 0, "{s}");

    // One player at the session's URL, one at the server's plain /whep (the --whep session).
    let a = Viewer::watch(&url);
    let b = Viewer::watch(&format!("http://127.0.0.1:{}/whep", server.port));
    a.wait_for_media("WHEP player A", 25, Duration::from_secs(40));
    b.wait_for_media("WHEP player B", 25, Duration::from_secs(40));
    let s = whep_session(&server);
    assert_eq!(s["whep"]["viewers"], 2, "{s}");
    assert_eq!(s["consumers"], 2, "{s}");
    assert_eq!(s["video_encoders"], 2, "one encoder per player: {s}");

    // A few seconds for RTCP sender reports: the player aligns audio and video by them.
    std::thread::sleep(Duration::from_secs(4));
    let idle_a = a.frames();
    let idle_b = b.frames();
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Hello over WHEP. One, two, three, four."}),
    );
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(Duration::from_secs(7));
    let got_a = std::mem::take(&mut *a.got.lock().unwrap());
    let got_b = std::mem::take(&mut *b.got.lock().unwrap());
    // Two players decoding and two encoders on a small shared machine: the lip sync each
    // player sees was measured between -205 and +363 ms over runs here (serve_whip's one
    // receiver is held to 200 ms).
    assert_talks(
        &got_a,
        idle_a / 2..idle_a,
        "serve --whep, player A",
        Some(400),
    );
    assert_talks(
        &got_b,
        idle_b / 2..idle_b,
        "serve --whep, player B",
        Some(400),
    );

    // A leaves (its DELETE frees its consumer and encoder); B still watches.
    a.leave();
    server.wait_for("player A's consumer to go", Duration::from_secs(15), || {
        let s = whep_session(&server);
        s["whep"]["viewers"] == 1 && s["video_encoders"] == 1
    });
    let before = b.frames();
    std::thread::sleep(Duration::from_secs(2));
    assert!(b.frames() > before + 10, "player B stopped getting frames");

    // B leaves too: the session goes on, and a new player watches it.
    b.leave();
    server.wait_for("player B's consumer to go", Duration::from_secs(15), || {
        let s = whep_session(&server);
        s["whep"]["viewers"] == 0 && s["consumers"] == 0 && s["video_encoders"] == 0
    });
    assert_eq!(whep_session(&server)["sessionid"], id.as_str());
    let c = Viewer::watch(&url);
    c.wait_for_media(
        "WHEP player C, after A and B left",
        25,
        Duration::from_secs(40),
    );
}

/// An HTTP request with an SDP (or other) body; returns the status, the head and the body.
fn http(port: u16, method: &str, path: &str, ct: &str, body: &str) -> (u16, String, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, head.to_string(), v)
}

#[test]
fn whep_requests_that_cannot_be_served_get_clear_errors() {
    let _serial = serial();
    let server = Server::start(&[]);
    let port = server.port;
    let sdp = "application/sdp";
    // No WHEP session yet.
    let (status, _, v) = http(port, "POST", "/whep", sdp, "v=0\r\n");
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("no_whep_session"))
    );
    let (status, _, v) = http(port, "POST", "/whep/nope", sdp, "v=0\r\n");
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("unknown_session"))
    );

    // A session made through the API with output "whep" reports its endpoint.
    let (status, v) = server.post("/session", json!({"output": "whep"}));
    assert_eq!(status, 200, "{v}");
    let id = v["sessionid"].as_str().unwrap().to_string();
    assert_eq!(v["data"]["output"], "whep", "{v}");
    assert_eq!(
        v["data"]["whep"]["url"],
        format!("http://127.0.0.1:{port}/whep/{id}"),
        "{v}"
    );
    let path = format!("/whep/{id}");
    let (status, _, v) = http(port, "POST", &path, "application/json", "{}");
    assert_eq!(
        (status, v["error"].as_str()),
        (415, Some("needs_sdp")),
        "{v}"
    );
    let (status, _, v) = http(port, "POST", &path, sdp, "this is not SDP");
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_sdp")), "{v}");
    let (status, _, v) = http(port, "DELETE", &format!("{path}/no-such-viewer"), sdp, "");
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("unknown_viewer")),
        "{v}"
    );
    // No trickle ICE: PATCH is refused as WHEP allows.
    let (status, _, _) = http(
        port,
        "PATCH",
        &format!("{path}/x"),
        "application/trickle-ice-sdpfrag",
        "a=x\r\n",
    );
    assert_eq!(status, 405);

    // Another kind of session has no WHEP endpoint.
    let (status, v) = server.post("/session", json!({"output": "webrtc"}));
    assert_eq!(status, 200, "{v}");
    let other = v["sessionid"].as_str().unwrap();
    let (status, _, v) = http(port, "POST", &format!("/whep/{other}"), sdp, "v=0\r\n");
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("not_whep")),
        "{v}"
    );

    // None of this hurt the WHEP session: a player watches it.
    let viewer = Viewer::watch(&format!("http://127.0.0.1:{port}/whep"));
    viewer.wait_for_media(
        "a WHEP player after the refused requests",
        25,
        Duration::from_secs(40),
    );
    let s = whep_session(&server);
    assert_eq!(s["sessionid"], id.as_str(), "{s}");
}

#[test]
fn whep_pipeline_script_is_watched_by_a_player() {
    let _serial = serial();
    let port = support::free_port();
    let mut child = support::webrtc_pipeline_script("whep.sh")
        .env("WHEP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "TEXT",
            "Hello from the WHEP pipeline. One, two, three, four, five. Six, seven, eight.",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "whep.sh does not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let viewer = Viewer::watch(&format!("http://127.0.0.1:{port}/whep/endpoint"));
        viewer.wait_for_media("whep.sh", 25, Duration::from_secs(40));
        std::thread::sleep(Duration::from_secs(8));
        std::mem::take(&mut *viewer.got.lock().unwrap())
    }));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let got =
        watched.unwrap_or_else(|_| panic!("whep.sh: {}", String::from_utf8_lossy(&out.stderr)));
    // The script speaks from its start, before the player connects: the idle reference is
    // the rest pose at the end (the text is said by then), and the speech onset may be cut,
    // so the offset is reported, not judged (serve's WHEP output is judged above).
    let n = got.frames.len();
    assert_talks(&got, n.saturating_sub(25)..n, "pipelines/whep.sh", None);
}
