//! `livetalk serve` under bursts and faults: bounded sessions and event streams, an LLM that
//! accepts and then hangs, a recording folder that cannot be made, SIGTERM with a recording
//! running. Everything on loopback; each case checks that the session (or server) goes on.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::{Server, StubLlm};

/// One raw request: (status, headers, body).
fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn a_burst_of_50_session_requests_gets_exactly_max_sessions() {
    let server = Server::start(&["--max-sessions", "4"]);
    let port = server.port;
    let replies: Vec<(u16, String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| s.spawn(move || request(port, "POST", "/session", "")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = replies.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(
        accepted,
        4,
        "{:?}",
        replies.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 46);
    for (_, head, body) in &refused {
        assert!(head.contains("retry-after:"), "{head}");
        assert!(body.contains("too_many_sessions"), "{body}");
    }
    // Exactly the accepted sessions exist; once they are closed, slots are free again.
    let ids = server.session_ids();
    assert_eq!(ids.len(), 4);
    for id in &ids {
        let (status, _) = server.request("DELETE", &format!("/sessions/{id}"), None);
        assert_eq!(status, 200);
    }
    server.wait_for("sessions to end", Duration::from_secs(20), || {
        server.session_ids().is_empty()
    });
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(status, 200, "{v}");
}

#[test]
fn event_streams_per_session_are_bounded() {
    let server = Server::start(&[]);
    let id = server.new_session();
    // (each returns once the server holds it)
    let open: Vec<support::Events> = (0..16).map(|_| server.events(&id)).collect();
    let (status, head, body) = request(server.port, "GET", &format!("/events?sessionid={id}"), "");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_listeners") && head.contains("retry-after:"));
    drop(open);
    // The session goes on.
    let (status, _) = server.post("/human", json!({"sessionid": id, "text": "Still here."}));
    assert_eq!(status, 200);
}

#[test]
fn an_llm_that_stops_sending_is_abandoned_and_the_session_goes_on() {
    // The first fragment at once, the next only after a minute.
    let llm = StubLlm::start(
        vec!["Hello there. ".into(), "This never comes.".into()],
        Duration::from_secs(60),
    );
    let url = format!("http://127.0.0.1:{}/v1", llm.port);
    let server = Server::start(&["--llm-url", &url, "--llm-idle-timeout", "1"]);
    let id = server.new_session();
    let events = server.events(&id);
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Hi?", "type": "chat"}),
    );
    assert_eq!(status, 200, "{v}");
    let err = events
        .wait(Duration::from_secs(15), |e| e["type"] == "chat-error")
        .expect("no chat-error after the stream stalled");
    assert!(err["msg"].as_str().unwrap().contains("stalled"), "{err}");
    // What came before the stall is spoken, and the session takes new text.
    events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "end"
        })
        .expect("the fragment before the stall was not spoken");
    let (status, _) = server.post("/human", json!({"sessionid": id, "text": "Echo works."}));
    assert_eq!(status, 200);
    assert!(
        events
            .wait(Duration::from_secs(20), |e| e["type"] == "speech"
                && e["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Echo works")))
            .is_some()
    );
}

#[test]
fn a_recording_folder_that_cannot_be_made_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let bad = file.join("recordings");
    let server = Server::start(&["--record-dir", bad.to_str().unwrap()]);
    let id = server.new_session();
    let (status, v) = server.post("/record", json!({"sessionid": id, "type": "start_record"}));
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("record_failed")),
        "{v}"
    );
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("cannot create the recording folder"),
        "{v}"
    );
    let events = server.events(&id);
    let (status, _) = server.post("/human", json!({"sessionid": id, "text": "Still talking."}));
    assert_eq!(status, 200);
    assert!(
        events
            .wait(Duration::from_secs(20), |e| e["type"] == "speech")
            .is_some()
    );
}

#[test]
fn sigterm_finishes_running_recordings_into_playable_files() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let mut server = Server::start(&["--record-dir", rec.to_str().unwrap()]);
    let id = server.new_session();
    let events = server.events(&id);
    let (status, v) = server.post("/record", json!({"sessionid": id, "type": "start_record"}));
    assert_eq!(status, 200, "{v}");
    server.post(
        "/human",
        json!({"sessionid": id, "text": "Recording, then stopping."}),
    );
    events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "end"
        })
        .expect("no speech");
    support::unsafe_kill(server.pid(), 15);
    let t = std::time::Instant::now();
    let code = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        code.success(),
        "serve exited with {code}: {}",
        server.log_text()
    );
    let files: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (video, audio, duration) = support::probe_mp4(&files[0]);
    assert!(video && audio, "video {video}, audio {audio}");
    assert!(duration > Duration::from_millis(800), "{duration:?}");
}

#[test]
fn a_flood_of_text_is_refused_past_the_queue_bound_and_interrupt_makes_room() {
    let server = Server::start(&[]);
    let id = server.new_session();
    // 1200 short sentences a request (under the 64 KB body limit); 4096 may wait.
    let text: String = (0..1200)
        .map(|i| format!("This is line number {i} of the text. "))
        .collect();
    assert!(text.len() < 60_000);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, v) = server.post("/human", json!({"sessionid": id, "text": text}));
        if status != 200 {
            assert_eq!(
                (status, v["error"].as_str()),
                (429, Some("queue_full")),
                "{v}"
            );
        }
        statuses.push(status);
    }
    // Three fit (3600 pieces); a fourth would pass 4096, whole texts are refused, not cut.
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let (status, _) = server.post("/interrupt_talk", json!({"sessionid": id}));
    assert_eq!(status, 200);
    let (status, v) = server.post("/human", json!({"sessionid": id, "text": "Room again."}));
    assert_eq!(status, 200, "{v}");
}

#[path = "../../tests/common/edge_stub.rs"]
mod edge_stub;

#[test]
fn tts_failure_mid_sentence_skips_that_sentence_and_the_session_goes_on() {
    // The Edge voice (a local stub of its protocol) drops the connection in the middle of the
    // second sentence, and again on the retry: that sentence is skipped, the others are said.
    use edge_stub::Behavior::{DisconnectMidway, Normal};
    let edge = edge_stub::Server::start(&[Normal, DisconnectMidway, DisconnectMidway, Normal]);
    let endpoint = edge.endpoint();
    let server = Server::start(&["--tts", "edge", "--edge-endpoint", &endpoint]);
    let id = server.new_session();
    let events = server.events(&id);
    let (s, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "First sentence here. The second one fails. Third one is fine."}),
    );
    assert_eq!(s, 200, "{v}");
    let mut said = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while said.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(e) = events.wait(Duration::from_secs(1), |e| {
            e["type"] == "speech" && e["status"] == "start"
        }) {
            said.push(e["text"].as_str().unwrap().to_string());
        }
    }
    eprintln!("said: {said:?}; the stub saw {:?}", edge.texts());
    assert_eq!(said, ["First sentence here.", "Third one is fine."]);
    assert_eq!(edge.texts().len(), 4, "the failed sentence is tried twice");
    // The session goes on and speaks again.
    assert!(server.session_ids().contains(&id));
    let (s, _) = server.post("/human", json!({"sessionid": id, "text": "Still talking."}));
    assert_eq!(s, 200);
    assert!(
        events
            .wait(Duration::from_secs(20), |e| e["type"] == "speech"
                && e["status"] == "start"
                && e["text"] == "Still talking.")
            .is_some()
    );
}
