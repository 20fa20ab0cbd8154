//! `livetalk serve` HTTP API without a browser: sessions, speech events, interruption, chat
//! through a stub LLM, recording, and the bad-input / security cases.

mod support;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Server, StubLlm, raw_request};

const LONG_TEXT: &str = "This is a long answer. It goes on for quite a while, sentence after \
    sentence, so that there is plenty of time to interrupt it. Here is one more sentence. \
    And another one, to be sure that the speech is still going when we stop it.";

/// `/interrupt_talk`, then the sentence's end event, which must say it was interrupted.
fn interrupt(server: &Server, events: &support::Events, id: &str) {
    let (status, _) = server.post("/interrupt_talk", json!({"sessionid": id}));
    assert_eq!(status, 200);
    let end = events
        .wait(Duration::from_secs(5), |e| {
            e["type"] == "speech" && e["status"] == "end"
        })
        .expect("no speech end after the interrupt");
    assert_eq!(end["interrupted"], true, "{end}");
}

#[test]
fn echo_speaks_with_events_and_interrupt_stops_it() {
    let server = Server::start(&[]);
    let id = server.new_session();
    assert_eq!(server.session_ids(), vec![id.clone()]);
    let events = server.events(&id);
    // LiveTalking sends numeric session ids.
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id.parse::<u64>().unwrap(), "text": "Hello there. How are you?", "type": "echo"}),
    );
    assert_eq!((status, &v["code"]), (200, &json!(0)), "{v}");
    let start = events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "start"
        })
        .expect("no speech start event");
    assert_eq!(start["text"], "Hello there.");
    // Word boundaries, timed from the Piper voice's durations, as server-sent events.
    let word = events
        .wait(Duration::from_secs(10), |e| e["type"] == "word")
        .expect("no word event");
    assert_eq!(word["text"], "Hello", "{word}");
    assert!(
        word["offset_ms"].as_i64().unwrap() < 500,
        "the first word starts late: {word}"
    );
    assert!(word["duration_ms"].as_i64().unwrap() > 50, "{word}");
    assert!(
        word["running_time_ms"].as_i64().unwrap() >= start["running_time_ms"].as_i64().unwrap(),
        "{word} before {start}"
    );
    let (_, v) = server.post("/is_speaking", json!({"sessionid": id}));
    assert_eq!(v["data"], true, "{v}");
    let end = events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "end" && e["text"] == "How are you?"
        })
        .expect("no end of the second sentence");
    assert_eq!(end["interrupted"], false);
    server.wait_for("speaking false", Duration::from_secs(5), || {
        server.post("/is_speaking", json!({"sessionid": id})).1["data"] == false
    });

    // Interrupt a long text: the sentence playing ends, interrupted, and nothing follows.
    server.post("/human", json!({"sessionid": id, "text": LONG_TEXT}));
    events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "start"
        })
        .expect("no speech start");
    interrupt(&server, &events, &id);
    assert!(
        events
            .wait(Duration::from_secs(2), |e| e["type"] == "speech"
                && e["status"] == "start")
            .is_none(),
        "speech went on after the interrupt"
    );
    assert_eq!(
        server.post("/is_speaking", json!({"sessionid": id})).1["data"],
        false
    );

    // Closing through the API ends the event stream with session-end.
    let (status, _) = server.request("DELETE", &format!("/sessions/{id}"), None);
    assert_eq!(status, 200);
    let end = events
        .wait(Duration::from_secs(10), |e| e["type"] == "session-end")
        .expect("no session-end event");
    assert_eq!(end["reason"], "closed");
    server.wait_for("no sessions", Duration::from_secs(10), || {
        server.session_ids().is_empty()
    });
}

#[test]
fn bad_input_gets_json_errors_and_the_server_keeps_serving() {
    let server = Server::start(&["--max-sessions", "1"]);
    let id = server.new_session();
    let raw = |body: &str| raw_request(server.port, "POST", "/human", Some(body), "").unwrap();

    let (status, v) = raw("{\"sessionid\": ");
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("bad_json")),
        "{v}"
    );
    assert_eq!(v["code"], 400);
    let (status, v) = raw("{\"text\": \"no session\"}");
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("bad_fields")),
        "{v}"
    );
    let (status, v) = raw_request(server.port, "POST", "/human", None, "").unwrap();
    assert!(status == 400 || status == 415, "{status} {v}");
    let (status, v) = server.post("/human", json!({"sessionid": "4242", "text": "hi"}));
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("unknown_session")),
        "{v}"
    );
    let (status, v) = server.post("/human", json!({"sessionid": id, "text": "  "}));
    assert_eq!((status, v["error"].as_str()), (400, Some("empty_text")));
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "hi", "type": "sing"}),
    );
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_type")));
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "hi", "type": "chat"}),
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("chat_unavailable"))
    );
    for bad in ["../astronaut", "..", "a/b", "/etc", ".hidden"] {
        let (status, v) = server.post("/session", json!({"avatar": bad}));
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("bad_avatar")),
            "{bad}: {v}"
        );
    }
    let (status, v) = server.request("GET", "/nowhere", None);
    assert_eq!((status, v["error"].as_str()), (404, Some("no_route")));

    // 10 MB body: refused with 413 before it is read into memory.
    let big = format!(
        "{{\"sessionid\": \"{id}\", \"text\": \"{}\"}}",
        "a".repeat(10 << 20)
    );
    let (status, v) = big_request(server.port, &big);
    assert_eq!(
        (status, v["error"].as_str()),
        (413, Some("body_too_large")),
        "{v}"
    );

    // --max-sessions 1: a second session is refused until the first one is closed.
    let (status, v) = server.post("/session", json!({}));
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("too_many_sessions"))
    );
    server.request("DELETE", &format!("/sessions/{id}"), None);
    server.wait_for("the session to end", Duration::from_secs(10), || {
        server.session_ids().is_empty()
    });
    let (status, v) = server.post("/session", json!({"avatar": "no-such-avatar"}));
    assert_eq!((status, v["error"].as_str()), (404, Some("unknown_avatar")));
    let id2 = server.new_session();
    // Still serving: speech works on the new session.
    let events = server.events(&id2);
    server.post("/human", json!({"sessionid": id2, "text": "Still here."}));
    assert!(
        events
            .wait(Duration::from_secs(20), |e| e["type"] == "speech")
            .is_some()
    );
}

/// Sends a large body, tolerating the server closing early; returns its answer.
fn big_request(port: u16, body: &str) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /human HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body.as_bytes());
    support::read_response(&mut s).expect("no answer to the 10 MB request")
}

#[test]
fn bearer_token_guards_the_api() {
    let server = Server::start(&["--token", "s3cret-token"]);
    let (status, _) = raw_request(server.port, "GET", "/health", None, "").unwrap();
    assert_eq!(status, 200, "health needs no token");
    let (status, v) = raw_request(server.port, "GET", "/sessions", None, "").unwrap();
    assert_eq!((status, v["error"].as_str()), (401, Some("needs_token")));
    let (status, v) = raw_request(
        server.port,
        "POST",
        "/session",
        Some("{}"),
        "Authorization: Bearer wrong\r\n",
    )
    .unwrap();
    assert_eq!((status, v["error"].as_str()), (401, Some("bad_token")));
    assert!(
        server.session_ids().is_empty(),
        "refused request made a session"
    );
    let (status, _) = server.request("GET", "/sessions", None);
    assert_eq!(status, 200);
}

#[test]
fn a_session_nobody_joins_ends() {
    let server = Server::start(&["--peer-timeout", "2"]);
    let id = server.new_session();
    let events = server.events(&id);
    let end = events
        .wait(Duration::from_secs(15), |e| e["type"] == "session-end")
        .expect("the session did not end");
    assert_eq!(end["reason"], "no-peer");
    assert!(server.session_ids().is_empty());
}

#[test]
fn chat_streams_llm_fragments_into_speech_and_interrupt_cancels_both() {
    // The stub answers in small pieces, a sentence every ~0.6 s, for ~20 s in all.
    let mut fragments = vec!["Hello".to_string(), " from".into(), " the stub.".into()];
    for i in 0..30 {
        fragments.push(format!(" Sentence number {i} is"));
        fragments.push(" here.".into());
    }
    let stub = StubLlm::start(fragments, Duration::from_millis(300));
    let url = format!("http://127.0.0.1:{}/v1", stub.port);
    let server = Server::start(&["--llm-url", &url, "--llm-model", "stub-model"]);
    let id = server.new_session();
    let events = server.events(&id);
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Say hello", "type": "chat"}),
    );
    assert_eq!(status, 200, "{v}");
    let start = events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "start"
        })
        .expect("the LLM answer was not spoken");
    assert_eq!(start["text"], "Hello from the stub.");
    {
        let reqs = stub.requests.lock().unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0]["model"], "stub-model");
        assert_eq!(reqs[0]["stream"], true);
        assert_eq!(reqs[0]["messages"][0]["content"], "Say hello");
    }
    interrupt(&server, &events, &id);
    // The LLM stream is cancelled too: the stub sees the client hang up, and no more
    // fragments are spoken.
    let t = Instant::now();
    while !stub.hung_up.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stub.hung_up.load(Ordering::SeqCst),
        "the LLM stream was not cancelled"
    );
    events.drain();
    assert!(
        events
            .wait(Duration::from_secs(2), |e| e["type"] == "chat"
                || e["type"] == "speech")
            .is_none(),
        "chat went on after the interrupt"
    );
}

#[test]
fn a_dead_llm_endpoint_is_a_502_and_echo_still_works() {
    let dead = support::free_port(); // nothing listens there
    let url = format!("http://127.0.0.1:{dead}/v1");
    let server = Server::start(&["--llm-url", &url]);
    let id = server.new_session();
    let (status, v) = server.post(
        "/human",
        json!({"sessionid": id, "text": "Anyone there?", "type": "chat"}),
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (502, Some("llm_unreachable")),
        "{v}"
    );
    let events = server.events(&id);
    server.post(
        "/human",
        json!({"sessionid": id, "text": "Echo still works."}),
    );
    assert!(
        events
            .wait(Duration::from_secs(20), |e| e["type"] == "speech")
            .is_some()
    );
}

#[test]
fn record_writes_an_mp4_of_the_session() {
    let server = Server::start(&[]);
    let id = server.new_session();
    let (status, v) = server.post("/record", json!({"sessionid": id, "type": "start_record"}));
    assert_eq!(status, 200, "{v}");
    let (status, v2) = server.post("/record", json!({"sessionid": id, "type": "start_record"}));
    assert_eq!((status, v2["error"].as_str()), (409, Some("record_failed")));
    let events = server.events(&id);
    server.post(
        "/human",
        json!({"sessionid": id, "text": "Recording this."}),
    );
    events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "end"
        })
        .expect("no speech");
    let (status, v) = server.post("/record", json!({"sessionid": id, "type": "end_record"}));
    assert_eq!(status, 200, "{v}");
    let file = std::path::PathBuf::from(v["data"]["file"].as_str().unwrap());
    assert!(file.is_file());
    let (video, audio, duration) = support::probe_mp4(&file);
    assert!(video && audio, "video {video}, audio {audio}");
    assert!(
        duration > Duration::from_millis(800),
        "recording lasts {duration:?}"
    );
    let (status, v) = server.post("/record", json!({"sessionid": id, "type": "end_record"}));
    assert_eq!((status, v["error"].as_str()), (409, Some("record_failed")));
}

#[test]
fn set_audiotype_maps_names_and_numbers_to_action_clips() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("wave")).unwrap();
    let avatar =
        gstlivetalk::avatar::Avatar::load(&support::cache_dir().join("avatars/astronaut")).unwrap();
    for i in 0..3 {
        avatar
            .frame(i)
            .to_image()
            .write_png(&dir.path().join(format!("wave/{i:02}.png")))
            .unwrap();
    }
    let actions = dir.path().join("actions.json");
    std::fs::write(
        &actions,
        r#"{"clips": [{"name": "wave", "frames": "wave/", "mode": "loop"}]}"#,
    )
    .unwrap();
    let server = Server::start(&["--actions", actions.to_str().unwrap()]);
    let id = server.new_session();

    for audiotype in [json!("wave"), json!(1), json!("idle"), json!(0)] {
        let (status, v) = server.post(
            "/set_audiotype",
            json!({"sessionid": id, "audiotype": audiotype}),
        );
        assert_eq!((status, &v["code"]), (200, &json!(0)), "{audiotype}: {v}");
    }
    for (audiotype, status, code) in [
        (json!("dance"), 404, "unknown_action"),
        (json!(2), 404, "unknown_action"),
        (json!(true), 400, "bad_fields"),
    ] {
        let (s, v) = server.post(
            "/set_audiotype",
            json!({"sessionid": id, "audiotype": audiotype}),
        );
        assert_eq!(
            (s, v["error"].as_str().unwrap()),
            (status, code),
            "{audiotype}: {v}"
        );
    }
    let (s, v) = server.post(
        "/set_audiotype",
        json!({"sessionid": "nope", "audiotype": "wave"}),
    );
    assert_eq!(s, 404, "{v}");
    // (A clip waits for the idle cycle and speech stops it: avatarblend's, tested in
    // tests/avatarblend.rs.)
}

/// A multipart form POST to `/humanaudio`: (status, JSON body).
fn post_audio(
    server: &Server,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> (u16, serde_json::Value) {
    let boundary = "livetalk-test-boundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .bytes(),
        );
    }
    if let Some((name, data)) = file {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .bytes(),
        );
        body.extend_from_slice(data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /humanaudio HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = s.write_all(&body);
    support::read_response(&mut s).unwrap_or((0, serde_json::Value::Null))
}

/// espeak-ng speech as a WAV file's bytes, and the same as MP3 (GStreamer's lamemp3enc).
fn speech_files(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let wav = dir.join("s.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args([
            "-w",
            wav.to_str().unwrap(),
            "This was uploaded as a recording.",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "espeak-ng failed");
    let mp3 = dir.join("s.mp3");
    let ok = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "filesrc",
            &format!("location={}", wav.display()),
            "!",
            "wavparse",
            "!",
            "audioconvert",
            "!",
            "lamemp3enc",
            "!",
            "filesink",
            &format!("location={}", mp3.display()),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mp3 encoding failed");
    (std::fs::read(&wav).unwrap(), std::fs::read(&mp3).unwrap())
}

#[test]
fn humanaudio_says_wav_and_mp3_uploads_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, mp3) = speech_files(dir.path());
    let server = Server::start(&["--max-upload", "200000"]);
    let id = server.new_session();
    let events = server.events(&id);
    for (name, data) in [("speech.wav", &wav), ("speech.mp3", &mp3)] {
        let (status, v) = post_audio(&server, &[("sessionid", &id)], Some((name, data)));
        assert_eq!(status, 200, "{name}: {v}");
        let secs = v["data"]["seconds"].as_f64().unwrap();
        assert!((1.0..6.0).contains(&secs), "{name}: {secs} s");
        // Played as a sentence: start and end events carry the file name.
        let start = events
            .wait(Duration::from_secs(20), |e| {
                e["type"] == "speech" && e["status"] == "start"
            })
            .expect("no speech start for the upload");
        assert_eq!(start["text"], name);
        let end = events
            .wait(Duration::from_secs(20), |e| {
                e["type"] == "speech" && e["status"] == "end"
            })
            .expect("no speech end for the upload");
        let ms =
            end["running_time_ms"].as_u64().unwrap() - start["running_time_ms"].as_u64().unwrap();
        assert!(
            (ms as f64 - secs * 1000.0).abs() < 100.0,
            "{name}: played {ms} ms of {secs} s"
        );
    }
    // Queued behind speech unless interrupt is asked for.
    server.post("/human", json!({"sessionid": id, "text": LONG_TEXT}));
    events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "start"
        })
        .expect("no speech");
    let (status, _) = post_audio(
        &server,
        &[("sessionid", &id), ("interrupt", "true")],
        Some(("cut.wav", &wav)),
    );
    assert_eq!(status, 200);
    let end = events
        .wait(Duration::from_secs(10), |e| {
            e["type"] == "speech" && e["status"] == "end"
        })
        .expect("the long text did not end");
    assert_eq!(end["interrupted"], true, "{end}");
    assert!(
        events
            .wait(Duration::from_secs(10), |e| e["type"] == "speech"
                && e["status"] == "start"
                && e["text"] == "cut.wav")
            .is_some()
    );
    // Bad input: not audio, too big, no session, unknown session, no file.
    let (status, v) = post_audio(
        &server,
        &[("sessionid", &id)],
        Some(("notes.txt", b"just some text, not audio")),
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("not_audio")),
        "{v}"
    );
    let big = vec![7u8; 300_000];
    let (status, _) = post_audio(&server, &[("sessionid", &id)], Some(("big.wav", &big)));
    assert_eq!(status, 413);
    let (status, v) = post_audio(&server, &[], Some(("speech.wav", &wav)));
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("bad_fields")),
        "{v}"
    );
    let (status, v) = post_audio(
        &server,
        &[("sessionid", "nope")],
        Some(("speech.wav", &wav)),
    );
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("unknown_session")),
        "{v}"
    );
    let (status, v) = post_audio(&server, &[("sessionid", &id)], None);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("bad_fields")),
        "{v}"
    );
    // The session goes on.
    let (status, _) = server.post("/human", json!({"sessionid": id, "text": "Still here."}));
    assert_eq!(status, 200);
}
