//! Talking to the avatar: headless Chromium's fake microphone plays a WAV made at test time
//! with espeak-ng (a question, a pause, a second utterance); the page publishes it, the server
//! hears it (silerovad ! whisperasr), a stub LLM answers, the avatar speaks the answer (the
//! mouth moves in the browser), and the second utterance during the answer barges in (the
//! answer's audio goes quiet in the browser's played samples). Also: the page without
//! microphone permission, and its layout on a 1280x800 screen.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{Server, StubLlm, speech};

/// Each test's bound (they take 10 to 40 s here); past it the test fails as hung. These
/// tests run in real time (a live microphone, speech, a browser): one at a time
/// (support::serial), so that they do not starve each other of CPU on a small machine.
const LIMIT: Duration = Duration::from_secs(300);

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

fn events<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// The first time at or after `from` where the played audio stays below `quiet` for 300 ms.
fn lasting_silence(trace: &[(f64, f64)], from: f64, quiet: f64) -> Option<f64> {
    (0..trace.len())
        .filter(|&i| trace[i].0 >= from)
        .find(|&i| {
            trace[i..]
                .iter()
                .take_while(|r| r.0 - trace[i].0 <= 300.0)
                .all(|r| r.1 < quiet)
        })
        .map(|i| trace[i].0)
}

#[test]
fn the_avatar_hears_answers_and_is_interrupted_by_voice() {
    support::require_setup();
    let _serial = support::serial(
        "the_avatar_hears_answers_and_is_interrupted_by_voice",
        LIMIT,
    );
    let dir = tempfile::tempdir().unwrap();
    // 3 s for the microphone's connection to settle, the question, then the second utterance
    // while the (long) answer plays.
    let wav = speech::mic_file(
        dir.path(),
        &[
            (3.0, "What is the capital of France?"),
            (4.5, "Please stop and tell me about Germany instead."),
        ],
        8.0,
    );
    let answer = [
        "Paris is the capital of France. ",
        "It is a large city on the river Seine, famous for its museums and its cafes. ",
        "Many people visit it every year to walk in its old streets and to see the tower.",
    ];
    let llm = StubLlm::start(
        answer.iter().map(|s| s.to_string()).collect(),
        Duration::from_millis(20),
    );
    let url = format!("http://127.0.0.1:{}/v1", llm.port);
    let server = Server::start(&["--llm-url", &url, "--barge-in-min-ms", "300"]);
    let r = support::page_check(&server, &format!("voice:{}:26", wav.display()));

    // The page published its microphone and the server listened.
    assert_eq!(r["mic_error"], Value::Null, "{}", r["mic_status"]);
    assert!(
        !events(&r, "mic").is_empty() && events(&r, "mic")[0]["status"] == "listening",
        "{:?}",
        events(&r, "mic")
    );
    assert!(events(&r, "vad").len() >= 4, "{:?}", events(&r, "vad"));

    // What was said was heard: the words, as final transcripts.
    let finals: Vec<String> = events(&r, "transcript")
        .iter()
        .filter(|t| t["final"] == true)
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect();
    eprintln!("heard: {finals:?}");
    assert!(finals.len() >= 2, "{finals:?}");
    let first = words(&finals[0]);
    for w in ["capital", "france"] {
        assert!(first.contains(&w.to_string()), "{finals:?}");
    }
    // The second utterance starts over the answer (double talk: the browser's echo canceller
    // works on it, and it is cut by the barge-in), so its words are not checked, only that
    // it was heard as an utterance of its own.
    assert!(words(&finals[1..].join(" ")).len() >= 3, "{finals:?}");
    // ... and went to the LLM as the user's words.
    let asked = llm.requests.lock().unwrap().clone();
    assert!(asked.len() >= 2, "{asked:?}");
    assert!(
        asked[0].to_string().to_lowercase().contains("france"),
        "{}",
        asked[0]
    );

    // The answer was spoken: speech starts after the first transcript, and the mouth moved.
    let t_first = events(&r, "transcript")
        .iter()
        .find(|t| t["final"] == true)
        .unwrap()["t_page"]
        .as_f64()
        .unwrap();
    let starts: Vec<&Value> = events(&r, "speech")
        .into_iter()
        .filter(|e| e["status"] == "start")
        .collect();
    assert!(
        starts
            .iter()
            .any(|e| e["t_page"].as_f64().unwrap() >= t_first),
        "no answer spoken"
    );
    let motion: Vec<(f64, f64)> = r["motion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["t"].as_f64().unwrap(), m["mouth"].as_f64().unwrap()))
        .collect();
    let before = motion
        .iter()
        .filter(|m| m.0 < t_first)
        .map(|m| m.1)
        .fold(0.0, f64::max);
    let after = motion
        .iter()
        .filter(|m| m.0 > t_first)
        .map(|m| m.1)
        .fold(0.0, f64::max);
    eprintln!("mouth motion: max {before:.2} before the answer, {after:.2} during it");
    assert!(after > 2.0 * before.max(0.5), "the mouth does not move");

    // Barge-in: the second utterance interrupted the answer, whose audio went quiet.
    let barge = events(&r, "barge-in");
    assert!(!barge.is_empty(), "{:?}", r["events"]);
    let t_barge = barge[0]["t_page"].as_f64().unwrap();
    assert!(
        events(&r, "speech")
            .iter()
            .any(|e| e["status"] == "end" && e["interrupted"] == true),
        "the answer did not end interrupted"
    );
    let out: Vec<(f64, f64)> = r["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["t"].as_f64()?, s["out"].as_f64()?)))
        .collect();
    let loud_before = out
        .iter()
        .filter(|s| s.0 < t_barge && s.0 > t_barge - 1000.0)
        .any(|s| s.1 > 0.02);
    assert!(
        loud_before,
        "the answer was not audible before the barge-in"
    );
    let silent = lasting_silence(&out, t_barge, 0.003);
    eprintln!(
        "barge-in event at the page -> lasting silence: {:?} ms",
        silent.map(|t| t - t_barge)
    );
    assert!(
        silent.is_some_and(|t| t - t_barge < 1500.0),
        "the answer's audio did not go quiet after the barge-in"
    );

    // Figure: end of the user's question (the microphone's RMS at the page falls for good)
    // -> first answer audio played at the page.
    let mic: Vec<(f64, f64)> = r["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["t"].as_f64()?, s["mic"].as_f64()?)))
        .collect();
    if let Some(end) = mic
        .iter()
        .filter(|m| m.1 > 0.01 && m.0 < t_first)
        .map(|m| m.0)
        .reduce(f64::max)
        && let Some(first_audio) = out.iter().find(|s| s.0 > end && s.1 > 0.02)
    {
        eprintln!(
            "end of the question at the microphone -> first answer audio: {:.0} ms",
            first_audio.0 - end
        );
    }

    // The page fits a 1280x800 screen: video, subtitles, text box, microphone and interrupt
    // visible without scrolling.
    let l = &r["layout"];
    eprintln!("layout: {l}");
    assert_eq!(l["inner"], serde_json::json!([1280, 800]));
    let inner_h = l["inner"][1].as_f64().unwrap();
    let inner_w = l["inner"][0].as_f64().unwrap();
    for part in ["video", "subtitles", "text", "mic", "interrupt", "start"] {
        let b = &l[part];
        assert!(
            b["top"].as_f64().unwrap() >= 0.0
                && b["bottom"].as_f64().unwrap() <= inner_h
                && b["right"].as_f64().unwrap() <= inner_w
                && (part == "subtitles" || b["height"].as_f64().unwrap() > 0.0),
            "{part} is not fully visible at 1280x800: {b}"
        );
    }
    assert!(l["video"]["height"].as_f64().unwrap() >= 400.0, "{l}");
    assert!(
        l["scroll"][1].as_f64().unwrap() <= inner_h,
        "the page scrolls: {l}"
    );
}

#[test]
fn without_microphone_permission_the_page_says_so_and_plays_on() {
    support::require_setup();
    let _serial = support::serial(
        "without_microphone_permission_the_page_says_so_and_plays_on",
        LIMIT,
    );
    let server = Server::start(&[]);
    let r = support::page_check(&server, "nomic");
    eprintln!("{r}");
    assert_eq!(r["mic_error"], "microphone permission denied", "{r}");
    assert_eq!(r["mic_status"], "microphone permission denied");
    assert_eq!(r["connected"], true);
}

/// A microphone without a browser: a webrtcsink producer on the server's signalling server
/// that plays `source` (a GStreamer description ending in raw audio). Returns the pipeline
/// (stopped on drop by the caller) and its producer id.
fn publish_mic(server: &Server, source: &str) -> (gst::Pipeline, String) {
    use gst::prelude::*;
    gst::init().unwrap();
    gstwebrtc::plugin_register_static().unwrap();
    gstrsrtp::plugin_register_static().unwrap();
    let p = gst::parse::launch(&format!(
        "{source} ! audioconvert ! audioresample ! queue ! webrtcsink name=ws \
         audio-caps=audio/x-opus"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let ws = p.by_name("ws").unwrap();
    ws.set_property("stun-server", None::<String>);
    let signaller = ws.property::<gst::glib::Object>("signaller");
    signaller.set_property("uri", format!("ws://127.0.0.1:{}", server.signalling_port));
    ws.connect("consumer-added", false, |args| {
        let webrtcbin = args[2].get::<gst::Element>().unwrap();
        let agent = webrtcbin.property::<gst::glib::Object>("ice-agent");
        agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        None
    });
    p.set_state(gst::State::Playing).unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(id) = signaller.property::<Option<String>>("client-id") {
            return (p, id);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the test microphone did not register"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A WAV of `parts` (see mic_file) as 44.1 kHz stereo, played live.
fn mic_source(dir: &Path, parts: &[(f64, &str)], tail: f64) -> String {
    let wav = speech::mic_file(dir, parts, tail);
    format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         audio/x-raw,rate=44100,channels=2 ! identity sync=true",
        wav.display()
    )
}

fn stop(p: gst::Pipeline) {
    support::stop_pipeline(&p, "the test microphone");
}

#[test]
fn mic_requests_are_checked_and_what_is_heard_is_said_back_without_an_llm() {
    support::require_setup();
    let _serial = support::serial(
        "mic_requests_are_checked_and_what_is_heard_is_said_back_without_an_llm",
        LIMIT,
    );
    let server = Server::start(&["--peer-timeout", "120"]);
    let id = server.new_session();
    let events = server.events(&id);

    let (s, v) = server.post("/mic", serde_json::json!({"sessionid": id}));
    assert_eq!(s, 400, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("peer_id"), "{v}");
    let (s, _) = server.post(
        "/mic",
        serde_json::json!({"sessionid": "nope", "peer_id": "x"}),
    );
    assert_eq!(s, 404);
    let (s, v) = server.post("/mic", serde_json::json!({"sessionid": id, "stop": true}));
    assert_eq!(
        (s, &v["data"]["was_listening"]),
        (200, &Value::Bool(false)),
        "{v}"
    );

    // A producer that does not exist: listening starts, then ends with a message.
    let (s, v) = server.post(
        "/mic",
        serde_json::json!({"sessionid": id, "peer_id": "no-such-peer"}),
    );
    assert_eq!(s, 200, "{v}");
    let ended = events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "mic" && e["status"] == "ended"
        })
        .expect("no mic end for a producer that does not exist");
    eprintln!("unknown producer: {ended}");

    // A real microphone, 44.1 kHz stereo: heard, and said back (no --llm-url).
    let dir = tempfile::tempdir().unwrap();
    let (mic, peer) = publish_mic(
        &server,
        &mic_source(dir.path(), &[(3.0, "Good morning to all of you.")], 3.0),
    );
    let (s, v) = server.post(
        "/mic",
        serde_json::json!({"sessionid": id, "peer_id": peer}),
    );
    assert_eq!(s, 200, "{v}");
    let listed = server.request("GET", "/sessions", None).1;
    assert_eq!(listed["data"][0]["listening"], true, "{listed}");
    let t = events
        .wait(Duration::from_secs(30), |e| {
            e["type"] == "transcript" && e["final"] == true
        })
        .expect("nothing heard");
    eprintln!("heard: {t}");
    let heard = words(t["text"].as_str().unwrap());
    for w in ["good", "morning"] {
        assert!(heard.contains(&w.to_string()), "{t}");
    }
    let said = events
        .wait(Duration::from_secs(20), |e| {
            e["type"] == "speech" && e["status"] == "start"
        })
        .expect("the transcript was not said back");
    assert_eq!(said["text"], t["text"]);
    let (s, v) = server.post("/mic", serde_json::json!({"sessionid": id, "stop": true}));
    assert_eq!(
        (s, &v["data"]["was_listening"]),
        (200, &Value::Bool(true)),
        "{v}"
    );
    stop(mic);
}

#[test]
fn a_dead_llm_in_a_voice_turn_and_a_silent_microphone_are_reported() {
    support::require_setup();
    let _serial = support::serial(
        "a_dead_llm_in_a_voice_turn_and_a_silent_microphone_are_reported",
        LIMIT,
    );
    let dead = support::free_port(); // nothing listens there
    let url = format!("http://127.0.0.1:{dead}/v1");
    let server = Server::start(&["--peer-timeout", "120", "--llm-url", &url]);
    let id = server.new_session();
    let events = server.events(&id);
    let dir = tempfile::tempdir().unwrap();
    let (mic, peer) = publish_mic(
        &server,
        &mic_source(dir.path(), &[(3.0, "What time is it now?")], 3.0),
    );
    let (s, v) = server.post(
        "/mic",
        serde_json::json!({"sessionid": id, "peer_id": peer}),
    );
    assert_eq!(s, 200, "{v}");
    let err = events
        .wait(Duration::from_secs(40), |e| e["type"] == "chat-error")
        .expect("no chat-error for a voice turn with a dead LLM");
    eprintln!("dead LLM: {err}");
    assert!(!err["msg"].as_str().unwrap().is_empty());
    stop(mic);
    // The session goes on: it still speaks.
    let (s, _) = server.post(
        "/human",
        serde_json::json!({"sessionid": id, "text": "Still here."}),
    );
    assert_eq!(s, 200);
    assert!(
        events
            .wait(Duration::from_secs(20), |e| e["type"] == "speech"
                && e["status"] == "start")
            .is_some()
    );

    // A microphone that sends only digital silence.
    let (mic, peer) = publish_mic(&server, "audiotestsrc wave=silence is-live=true");
    let (s, v) = server.post(
        "/mic",
        serde_json::json!({"sessionid": id, "peer_id": peer}),
    );
    assert_eq!(s, 200, "{v}");
    let silent = events
        .wait(Duration::from_secs(30), |e| {
            e["type"] == "mic" && e["status"] == "silent"
        })
        .expect("a silent microphone was not reported");
    eprintln!("silent: {silent}");
    stop(mic);
}
