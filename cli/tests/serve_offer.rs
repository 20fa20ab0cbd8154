//! LiveTalking's `POST /offer` on `livetalk serve`: clients that make the offer.
//!
//! - A GStreamer `webrtcbin` client negotiating as LiveTalking's client.js does (recvonly
//!   video and audio transceivers, a complete offer after ICE gathering, POST /offer, the
//!   answer applied) receives video and audio; `/human` with the returned sessionid makes the
//!   avatar speak (loud audio, the mouth opens); the session ends when the client leaves.
//! - The same in headless Chromium with a page written like client.js.
//! - Bad bodies and offers are refused with 400 and a clear message, `--max-sessions` with
//!   503 + Retry-After; an offer whose client never connects ends after `--peer-timeout`.
//!
//! Everything stays on loopback: the server and the client allow only 127.0.0.1 as ICE
//! address.

mod av;
mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use serde_json::{Value, json};
use support::{Server, page};

/// Each test's bound (they take 10 to 20 s here); past it the test fails as hung. One test
/// runs at a time (support::serial): three servers with live sessions at once on a small
/// machine starve each other's encoders.
const LIMIT: Duration = Duration::from_secs(300);

/// A receiving client made like LiveTalking's client.js, out of webrtcbin.
struct Client {
    pipeline: gst::Pipeline,
    webrtcbin: gst::Element,
    got: av::Shared,
}

fn promise_reply(emit: impl FnOnce(&gst::Promise)) -> Option<gst::Structure> {
    let (tx, rx) = std::sync::mpsc::channel();
    let promise = gst::Promise::with_change_func(move |r| {
        let _ = tx.send(r.ok().flatten().map(|s| s.to_owned()));
    });
    emit(&promise);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("webrtcbin did not reply")
}

impl Client {
    fn new() -> Client {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let webrtcbin = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .unwrap();
        // Loopback only (FACTS): the agent offers 127.0.0.1 and nothing else.
        webrtcbin
            .property::<glib::Object>("ice-agent")
            .emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        pipeline.add(&webrtcbin).unwrap();
        let got = av::Shared::default();
        // pc.addTransceiver('video', {direction: 'recvonly'}), then audio.
        for caps in [
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,\
             encoding-params=(string)2",
        ] {
            webrtcbin.emit_by_name::<glib::Object>(
                "add-transceiver",
                &[
                    &gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly,
                    &caps.parse::<gst::Caps>().unwrap(),
                ],
            );
        }
        let (p, g) = (pipeline.clone(), got.clone());
        webrtcbin.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let media = caps
                .structure(0)
                .and_then(|s| s.get::<String>("media").ok())
                .unwrap_or_default();
            let (head, video) = if media == "video" {
                ("rtpvp8depay ! vp8dec ! ", true)
            } else {
                ("rtpopusdepay ! opusdec ! ", false)
            };
            av::decode_pad(&p, pad, head, video, &g);
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        Client {
            pipeline,
            webrtcbin,
            got,
        }
    }

    /// createOffer, setLocalDescription, wait for ICE gathering to complete: the offer SDP.
    fn offer(&self) -> String {
        let w = &self.webrtcbin;
        let reply = promise_reply(|p| {
            w.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, p]);
        })
        .unwrap();
        let offer = reply
            .get::<gst_webrtc::WebRTCSessionDescription>("offer")
            .unwrap();
        promise_reply(|p| w.emit_by_name::<()>("set-local-description", &[&offer, p]));
        let start = Instant::now();
        while w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            != gst_webrtc::WebRTCICEGatheringState::Complete
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the client's ICE gathering does not complete"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w.property::<gst_webrtc::WebRTCSessionDescription>("local-description")
            .sdp()
            .as_text()
            .unwrap()
    }

    fn answer(&self, sdp: &str) {
        let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()).unwrap();
        let answer =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
        let reply = promise_reply(|p| {
            self.webrtcbin
                .emit_by_name::<()>("set-remote-description", &[&answer, p])
        });
        if let Some(r) = reply {
            assert!(!r.has_field("error"), "the answer was refused: {r}");
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        support::stop_pipeline(&self.pipeline, "the offering client");
    }
}

/// A request that also returns the response head (for Retry-After).
fn request_with_head(port: u16, path: &str, body: &str) -> (u16, String, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status, head.to_ascii_lowercase(), v)
}

/// Every candidate address in an SDP.
fn candidate_addresses(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .filter_map(|c| c.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

#[test]
fn a_gstreamer_client_offers_plays_and_the_avatar_talks() {
    let _serial = support::serial(
        "a_gstreamer_client_offers_plays_and_the_avatar_talks",
        LIMIT,
    );
    let server = Server::start(&[]);
    let client = Client::new();
    let offer = client.offer();
    assert!(!candidate_addresses(&offer).is_empty(), "{offer}");

    let t_post = Instant::now();
    let (status, v) = server.post("/offer", json!({"sdp": offer, "type": "offer"}));
    let answer_ms = t_post.elapsed().as_millis();
    assert_eq!(status, 200, "{v}");
    // Exactly LiveTalking's answer: {sdp, type, sessionid}.
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["sdp", "sessionid", "type"], "{v}");
    assert_eq!(v["type"], "answer");
    let id = v["sessionid"].as_str().unwrap().to_string();
    // Older LiveTalking pages parseInt() the id: it is a number in a string.
    let numeric: u64 = id.parse().expect("the session id is digits");
    let sdp = v["sdp"].as_str().unwrap();
    // A complete answer: its candidates are inside, and they are loopback only.
    let addrs = candidate_addresses(sdp);
    assert!(!addrs.is_empty(), "no candidates in the answer:\n{sdp}");
    assert!(addrs.iter().all(|a| a == "127.0.0.1"), "{addrs:?}");
    assert!(sdp.contains("VP8/90000") && sdp.to_ascii_lowercase().contains("opus/48000"));
    client.answer(sdp);

    server.wait_for("video and audio", Duration::from_secs(30), || {
        let g = client.got.lock().unwrap();
        g.frames.len() > 25 && !g.audio.is_empty()
    });
    let first_frame = client.got.lock().unwrap().frames[0].0;
    eprintln!(
        "POST /offer -> answer {answer_ms} ms, -> first decoded video frame {} ms",
        first_frame.duration_since(t_post).as_millis()
    );
    let (_, list) = server.request("GET", "/sessions", None);
    let s = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionid"] == id.as_str())
        .unwrap_or_else(|| panic!("session {id} not listed: {list}"))
        .clone();
    assert_eq!(
        (s["output"].as_str(), s["consumers"].as_u64()),
        (Some("offer"), Some(1))
    );

    std::thread::sleep(Duration::from_secs(1));
    let idle_frames = client.got.lock().unwrap().frames.len();
    let events = server.events(&id);
    // The id as a number (old LiveTalking pages), then /is_speaking as a string (new ones).
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": numeric, "type": "echo",
               "text": "Hello over an offer. One, two, three, four."}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(
        events
            .wait(Duration::from_secs(10), |e| e["type"] == "speech"
                && e["status"] == "start")
            .is_some(),
        "no speech start event"
    );
    let (_, v) = server.post("/is_speaking", json!({"sessionid": id}));
    assert_eq!(v["data"], true, "{v}");
    std::thread::sleep(Duration::from_secs(6));

    let got = std::mem::take(&mut *client.got.lock().unwrap());
    assert!(got.frames.len() > 150, "{} video frames", got.frames.len());
    let (w, h) = (got.frames[0].2.width, got.frames[0].2.height);
    assert_eq!((w, h), (512, 512));
    // Idle: the second half of what came before /human (the first frames after a key frame
    // are coarser while the encoder's rate control settles).
    let sync = av::speech_sync(&got, idle_frames / 2..idle_frames);
    // Idle audio before /human is silence; speech after it.
    let windows = av::audio_windows(&got.audio);
    let idle_audio_end = got.frames[idle_frames.saturating_sub(1)].1;
    let idle_loud = windows
        .iter()
        .filter(|w| w.0 < idle_audio_end)
        .map(|w| w.1)
        .fold(0.0, f64::max);
    eprintln!(
        "audio RMS idle up to {idle_loud:.3}, speaking up to {:.3}; mouth idle up to {:.2}, \
         speaking up to {:.2}; speech onset -> open mouth {} ms (PTS at the client)",
        sync.loudest, sync.idle_mouth, sync.widest_mouth, sync.offset_ms
    );
    assert!(sync.loudest > 0.05, "no speech in the received audio");
    assert!(
        sync.loudest > 5.0 * idle_loud.max(0.002),
        "audio does not rise"
    );
    assert!(
        sync.widest_mouth > 3.0 * sync.idle_mouth.max(0.5),
        "the mouth does not move"
    );

    // The client leaves (its pipeline stops without a word): the session ends.
    drop(client);
    let t_left = Instant::now();
    let end = events
        .wait(Duration::from_secs(30), |e| e["type"] == "session-end")
        .unwrap_or_else(|| panic!("the session did not end: {}", server.log_text()));
    eprintln!(
        "client gone -> session end in {} ms ({})",
        t_left.elapsed().as_millis(),
        end["reason"]
    );
    assert_eq!(end["reason"], "peer-left");
    server.wait_for("the session to go", Duration::from_secs(10), || {
        server.session_ids().is_empty()
    });
}

#[test]
fn bad_offers_are_refused_with_clear_messages() {
    let _serial = support::serial("bad_offers_are_refused_with_clear_messages", LIMIT);
    let server = Server::start(&["--max-sessions", "1", "--peer-timeout", "3"]);
    let post = |body: &str| {
        let (status, _, v) = request_with_head(server.port, "/offer", body);
        (status, v)
    };
    let expect = |body: &str, status: u16, code: &str, words: &str| {
        let (s, v) = post(body);
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(code)),
            "{body:.80}: {v}"
        );
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(words), "{code}: '{msg}' lacks '{words}'");
        // LiveTalking's pages show `msg` when `code` is not 0.
        assert_ne!(v["code"], 0);
    };
    expect("this is not json", 400, "bad_json", "JSON");
    expect("{}", 400, "bad_fields", "sdp");
    expect(r#"{"sdp": 5, "type": "offer"}"#, 400, "bad_fields", "sdp");
    expect(
        &json!({"sdp": "v=0\r\n", "type": "answer"}).to_string(),
        400,
        "not_offer",
        "offer",
    );
    expect(
        &json!({"sdp": "hello", "type": "offer"}).to_string(),
        400,
        "bad_sdp",
        "v=0",
    );
    let head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    expect(
        &json!({"sdp": head, "type": "offer"}).to_string(),
        400,
        "bad_sdp",
        "recvonly",
    );
    // A real client's offer stripped of its ICE credentials: webrtcbin's own words.
    let client = Client::new();
    let offer = client.offer();
    let no_ice: String = offer
        .lines()
        .filter(|l| !l.starts_with("a=ice-ufrag") && !l.starts_with("a=ice-pwd"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    expect(
        &json!({"sdp": no_ice, "type": "offer"}).to_string(),
        400,
        "bad_offer",
        "ice-ufrag",
    );
    assert!(
        server.session_ids().is_empty(),
        "a refused offer left a session"
    );
    expect(
        &json!({"sdp": offer, "type": "offer", "avatar": "nobody"}).to_string(),
        404,
        "unknown_avatar",
        "nobody",
    );

    // An answered offer whose client never connects ends: its ICE checks fail, or at the
    // latest --peer-timeout (3 s here) passes.
    let (s, v) = post(&json!({"sdp": offer, "type": "offer"}).to_string());
    assert_eq!(s, 200, "{v}");
    let id = v["sessionid"].as_str().unwrap().to_string();
    let events = server.events(&id);
    let end = events
        .wait(Duration::from_secs(20), |e| e["type"] == "session-end")
        .expect("the unconnected session did not end");
    assert_eq!(end["reason"], "no-peer");
    server.wait_for("the session to go", Duration::from_secs(10), || {
        server.session_ids().is_empty()
    });

    // --max-sessions 1: with a session open, an offer gets 503 and Retry-After.
    let other = server.new_session();
    let (s, head, v) = request_with_head(
        server.port,
        "/offer",
        &json!({"sdp": client.offer(), "type": "offer"}).to_string(),
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("too_many_sessions")),
        "{v}"
    );
    assert!(head.contains("retry-after: 5"), "{head}");
    assert_eq!(server.session_ids(), vec![other]);
}

#[test]
fn a_page_written_like_livetalkings_client_plays_and_the_mouth_moves() {
    let _serial = support::serial(
        "a_page_written_like_livetalkings_client_plays_and_the_mouth_moves",
        LIMIT,
    );
    for f in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(f).exists(),
            "{f} missing: run scripts/setup.sh"
        );
    }
    let server = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/offer_check.py");
    let out = Command::new(support::cache_dir().join("venv/bin/python"))
        .arg(script)
        .arg(format!("http://127.0.0.1:{}", server.port))
        .output()
        .expect("running the venv's python (scripts/setup.sh installs selenium)");
    assert!(
        out.status.success(),
        "offer page check failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "browser: POST /offer -> answer {:.0} ms, -> first video frame {:.0} ms; {} frames in 1 s; \
         session gone {:.1} s after the page left",
        r["post_to_answer_ms"].as_f64().unwrap(),
        r["post_to_first_frame_ms"].as_f64().unwrap(),
        r["frames_in_1s"],
        r["session_gone_s"].as_f64().unwrap()
    );
    assert_eq!(r["answer"]["type"], "answer");
    let sid = r["sessionid"].as_str().unwrap();
    assert!(
        r["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["sessionid"] == sid && s["output"] == "offer"),
        "{}",
        r["sessions"]
    );
    page::assert_plays(&r, |w, h| (w, h) == (512, 512));
    assert_eq!(r["human"]["code"], 0, "{}", r["human"]);
    let talk = page::Talk::of(&r);
    talk.assert_mouth_moves();
    talk.assert_sound();
    // The page closed its connection and left: the session ended.
    assert_eq!(r["sessions_after"], json!([]));
}
