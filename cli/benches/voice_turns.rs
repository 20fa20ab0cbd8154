//! End of the user's speech -> first answer audio in the browser, over ten spoken turns.
//!
//! `cargo bench -p livetalk --bench voice_turns` (needs scripts/setup.sh: Chromium, espeak-ng,
//! the models). A `livetalk serve` with a stub LLM that answers at once; headless Chromium's
//! fake microphone plays ten questions, each followed by enough silence for the answer. The
//! page samples, every 20 ms, the RMS of its microphone and of the avatar's played audio; a
//! turn's latency is from the last loud microphone sample of the question to the first loud
//! played sample after it. Also reported: the server's own steps from its events (VAD end,
//! transcript, first speech).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Server, StubLlm, speech};

const QUESTIONS: [&str; 10] = [
    "What is the capital of France?",
    "How tall is the highest mountain?",
    "Tell me a short story.",
    "What time is it in Tokyo?",
    "Can you recommend a good book?",
    "What is the weather like today?",
    "How do I cook rice?",
    "Who wrote the first novel?",
    "Why is the sky blue?",
    "Thank you, goodbye.",
];

fn series(r: &Value, key: &str) -> Vec<(f64, f64)> {
    r["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["t"].as_f64()?, s[key].as_f64()?)))
        .collect()
}

fn stats(name: &str, v: &mut [f64]) {
    if v.is_empty() {
        println!("{name}: no turns");
        return;
    }
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: median {:.0} ms, min {:.0}, max {:.0} ({} turns)",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

fn main() {
    support::require_setup();
    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<(f64, &str)> = QUESTIONS
        .iter()
        .enumerate()
        .map(|(i, q)| (if i == 0 { 3.0 } else { 4.0 }, *q))
        .collect();
    let wav = speech::mic_file(dir.path(), &parts, 4.0);
    let seconds = speech::read_wav(&std::fs::read(&wav).unwrap());
    let seconds = seconds.0.len() as f64 / seconds.1 as f64 + 2.0;
    let llm = StubLlm::start(vec!["Here is my answer.".into()], Duration::ZERO);
    let url = format!("http://127.0.0.1:{}/v1", llm.port);
    let server = Server::start(&["--llm-url", &url]);
    let r = support::page_check(&server, &format!("voice:{}:{seconds:.0}", wav.display()));

    let mic = series(&r, "mic");
    let out = series(&r, "out");
    let events = r["events"].as_array().unwrap();
    let at = |e: &Value| e["t_page"].as_f64().unwrap();
    let transcripts: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "transcript" && e["final"] == true)
        .collect();
    println!("heard {} turns:", transcripts.len());
    for t in &transcripts {
        println!("  {}", t["text"]);
    }
    let (mut to_audio, mut vad_to_text, mut text_to_speech) = (vec![], vec![], vec![]);
    let mut prev = 0.0;
    for t in &transcripts {
        let t_text = at(t);
        // The question: loud microphone samples between the previous turn and this transcript.
        let Some(end) = mic
            .iter()
            .filter(|m| m.0 > prev && m.0 < t_text && m.1 > 0.01)
            .map(|m| m.0)
            .reduce(f64::max)
        else {
            continue;
        };
        if let Some(a) = out.iter().find(|s| s.0 > end && s.1 > 0.02) {
            to_audio.push(a.0 - end);
        }
        if let Some(v) = events
            .iter()
            .filter(|e| e["type"] == "vad" && e["status"] == "end" && at(e) < t_text)
            .map(at)
            .reduce(f64::max)
        {
            vad_to_text.push(t_text - v);
        }
        if let Some(s) = events
            .iter()
            .find(|e| e["type"] == "speech" && e["status"] == "start" && at(e) > t_text)
        {
            text_to_speech.push(at(s) - t_text);
        }
        prev = t_text;
    }
    stats(
        "end of speech at the microphone -> first answer audio played",
        &mut to_audio,
    );
    stats(
        "  VAD end event -> transcript event (whisper)",
        &mut vad_to_text,
    );
    stats(
        "  transcript -> speech start event (LLM, TTS)",
        &mut text_to_speech,
    );
}
