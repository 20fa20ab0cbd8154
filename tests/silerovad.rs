//! silerovad against the silero-vad package's own `VADIterator` (run through the set-up venv
//! on the same audio): the same speech segments within one 32 ms window; the audio passes
//! unchanged; GAP is silence without inference; flush and READY start a fresh stream; a
//! missing or wrong model is refused at READY.

use std::path::Path;
use std::process::Command;

use gst::glib;
use gst::prelude::*;
use gst_check::Harness;

mod common;
use common::init;

const CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";
const WINDOW: i64 = 512;

/// The reference: silero_vad's OnnxWrapper and VADIterator, unchanged, on a raw f32 file.
/// torch (a multi-gigabyte download) is replaced by a numpy stand-in for the few calls they
/// make (zeros, cat, from_numpy, no_grad, tensor methods).
const REFERENCE: &str = r#"
import sys, types, json
import numpy as np

class Tensor(np.ndarray):
    def __new__(cls, data=()):
        return np.asarray(data, dtype=np.float32).view(cls)
    def float(self):
        return self.astype(np.float32)
    def numpy(self):
        return np.asarray(self)
    def dim(self):
        return self.ndim
    def unsqueeze(self, d):
        return np.expand_dims(self, d)

class no_grad:
    def __call__(self, f):
        return f
    def __enter__(self):
        return self
    def __exit__(self, *a):
        return False

def zeros(*shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return np.zeros(shape, np.float32).view(Tensor)

torch = types.ModuleType("torch")
torch.Tensor = Tensor
torch.zeros = zeros
torch.cat = lambda xs, dim=0: np.concatenate([np.asarray(x) for x in xs], axis=dim).view(Tensor)
torch.from_numpy = lambda a: np.asarray(a).view(Tensor)
torch.is_tensor = lambda x: isinstance(x, Tensor)
torch.no_grad = no_grad
torch.set_num_threads = lambda n: None
torch.device = lambda *a, **k: None
torch.jit = types.SimpleNamespace(load=None)
torch.hub = types.SimpleNamespace(download_url_to_file=None)
torch.nn = types.SimpleNamespace(functional=types.SimpleNamespace(pad=None))
sys.modules["torch"] = torch

import silero_vad
from silero_vad import load_silero_vad, VADIterator

audio = np.fromfile(sys.argv[1], dtype="<f4")
model = load_silero_vad(onnx=True)
it = VADIterator(model, threshold=0.5, sampling_rate=16000, min_silence_duration_ms=100,
                 speech_pad_ms=30)
events = []
for i in range(0, len(audio) - 511, 512):
    ev = it(audio[i:i + 512])
    if ev:
        events.append(ev)
print(json.dumps({"version": silero_vad.__version__, "events": events}))
"#;

fn model() -> std::path::PathBuf {
    let p = gstlivetalk::asr::default_silero_vad();
    assert!(
        p.is_file(),
        "run scripts/setup.sh (Silero VAD model missing)"
    );
    p
}

/// espeak-ng speech, as 16 kHz mono f32 (decoded and resampled by GStreamer).
fn espeak(dir: &Path, text: &str) -> Vec<f32> {
    let wav = dir.join("espeak.wav");
    let st = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng (scripts/setup.sh installs it)");
    assert!(st.success());
    decode_16k(&wav)
}

fn decode_16k(path: &Path) -> Vec<f32> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! audioconvert ! audioresample ! {CAPS} ! \
         appsink name=sink sync=false",
        path.display()
    ))
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

/// Speech with silences: silence, sentence, silence, ...
fn speech_with_silences(dir: &Path) -> Vec<f32> {
    let mut audio = vec![0.0f32; 11_200];
    for (text, pause) in [
        ("Hello there, how are you doing today?", 19_200),
        ("The weather is nice, let us go outside.", 12_800),
        ("Thank you very much.", 16_000),
    ] {
        audio.extend(espeak(dir, text));
        audio.extend(std::iter::repeat_n(0.0, pause));
    }
    audio
}

/// (status, sample position) of the reference's events.
fn reference(dir: &Path, audio: &[f32]) -> Vec<(String, i64)> {
    let raw = dir.join("audio.f32");
    let bytes: Vec<u8> = audio.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).unwrap();
    let script = dir.join("vad_reference.py");
    std::fs::write(&script, REFERENCE).unwrap();
    let py = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    assert!(py.is_file(), "run scripts/setup.sh (venv missing)");
    let out = Command::new(py).arg(&script).arg(&raw).output().unwrap();
    assert!(
        out.status.success(),
        "VADIterator reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("silero-vad {}", v["version"]);
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.as_object().unwrap().iter().next().unwrap();
            (k.clone(), v.as_i64().unwrap())
        })
        .collect()
}

fn harness(props: &[(&str, glib::Value)]) -> (Harness, gst::Bus) {
    init();
    let el = gst::ElementFactory::make("silerovad")
        .property("model", model().to_str().unwrap())
        .build()
        .unwrap();
    for (k, v) in props {
        el.set_property_from_value(k, v);
    }
    let mut h = Harness::with_element(&el, Some("sink"), Some("src"));
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    h.set_src_caps_str(CAPS);
    (h, bus)
}

fn buffer(samples: &[f32], at: u64) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut b = gst::Buffer::from_mut_slice(bytes);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(at * 1_000_000_000 / 16_000));
        b.set_duration(gst::ClockTime::from_nseconds(
            samples.len() as u64 * 1_000_000_000 / 16_000,
        ));
    }
    b
}

/// Pushes audio from sample `at` in 10 ms buffers; checks each comes out unchanged.
fn push_audio(h: &mut Harness, audio: &[f32], at: u64) {
    for (i, chunk) in audio.chunks(160).enumerate() {
        let inb = buffer(chunk, at + i as u64 * 160);
        let (pts, bytes) = (inb.pts(), inb.map_readable().unwrap().to_vec());
        h.push(inb).unwrap();
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), pts);
        assert_eq!(out.map_readable().unwrap().as_slice(), bytes.as_slice());
    }
}

/// The livetalk-vad events that came out so far, as (status, sample position).
fn vad_events(h: &mut Harness) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        if let Some((status, rt)) = ev.structure().and_then(gstlivetalk::events::parse_vad) {
            out.push((
                status.as_str().to_string(),
                (rt.nseconds() as u128 * 16_000 / 1_000_000_000) as i64,
            ));
        }
    }
    out
}

fn vad_messages(bus: &gst::Bus) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Element]) {
        if let Some((status, rt)) = msg.structure().and_then(gstlivetalk::events::parse_vad) {
            out.push((
                status.as_str().to_string(),
                (rt.nseconds() as u128 * 16_000 / 1_000_000_000) as i64,
            ));
        }
    }
    out
}

fn assert_same_segments(ours: &[(String, i64)], reference: &[(String, i64)], tolerance: i64) {
    assert_eq!(
        ours.len(),
        reference.len(),
        "ours {ours:?}\nreference {reference:?}"
    );
    for (o, r) in ours.iter().zip(reference) {
        assert_eq!(o.0, r.0, "ours {ours:?}\nreference {reference:?}");
        assert!(
            (o.1 - r.1).abs() <= tolerance,
            "{} at {} vs the reference's {} (more than {tolerance} samples apart)\nours {ours:?}\nreference {reference:?}",
            o.0,
            o.1,
            r.1
        );
    }
}

#[test]
fn segments_match_the_packages_vaditerator() {
    model();
    let dir = tempfile::tempdir().unwrap();
    let audio = speech_with_silences(dir.path());
    let reference = reference(dir.path(), &audio);
    // three sentences (a comma may split one): at least three starts, each one ended
    let starts = reference.iter().filter(|e| e.0 == "start").count();
    assert!(starts >= 3, "{reference:?}");
    assert_eq!(reference.len(), 2 * starts, "{reference:?}");

    let (mut h, bus) = harness(&[]);
    push_audio(&mut h, &audio, 0);
    let ours = vad_events(&mut h);
    eprintln!("reference {reference:?}\nours      {ours:?}");
    assert_same_segments(&ours, &reference, WINDOW);
    // the bus got the same
    assert_eq!(vad_messages(&bus), ours);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(
        stats.get::<u64>("windows-run").unwrap(),
        audio.len() as u64 / 512
    );
}

#[test]
fn segments_follow_the_hysteresis_properties() {
    model();
    let dir = tempfile::tempdir().unwrap();
    let audio = speech_with_silences(dir.path());
    // a longer minimum silence only joins segments: its starts are some of the default's
    let (mut h, _bus) = harness(&[("min-silence-ms", 600u32.to_value())]);
    push_audio(&mut h, &audio, 0);
    let long = vad_events(&mut h);
    let (mut h, _bus) = harness(&[]);
    push_audio(&mut h, &audio, 0);
    let default = vad_events(&mut h);
    eprintln!("min-silence 600 ms {long:?}\ndefault {default:?}");
    assert!(long.len() < default.len(), "{long:?} vs {default:?}");
    assert_eq!(long[0], default[0]);
    for l in long.iter().filter(|e| e.0 == "start") {
        assert!(default.contains(l), "{l:?} is not a default start");
    }
    // without the pad, every start is 30 ms (480 samples) later and every end earlier
    let (mut h, _bus) = harness(&[("speech-pad-ms", 0u32.to_value())]);
    push_audio(&mut h, &audio, 0);
    let unpadded = vad_events(&mut h);
    assert_eq!(unpadded.len(), default.len());
    for (u, d) in unpadded.iter().zip(&default) {
        let shift = if d.0 == "start" { 480 } else { -480 };
        assert_eq!((u.0.as_str(), u.1), (d.0.as_str(), d.1 + shift));
    }
}

#[test]
fn gap_is_silence_without_inference() {
    model();
    let dir = tempfile::tempdir().unwrap();
    let speech = espeak(dir.path(), "Hello there, how are you doing today?");
    let mut lead = vec![0.0f32; 8_000];
    lead.extend(&speech);
    // reference: the same speech followed by 2 s of digital silence
    let mut with_zeros = lead.clone();
    with_zeros.extend(vec![0.0; 32_000]);
    let reference = reference(dir.path(), &with_zeros);
    assert!(reference.len() >= 2, "{reference:?}");

    let (mut h, _bus) = harness(&[]);
    push_audio(&mut h, &lead, 0);
    let at = lead.len() as u64;
    let gap = gst::event::Gap::builder(gst::ClockTime::from_nseconds(at * 1_000_000_000 / 16_000))
        .duration(gst::ClockTime::from_seconds(2))
        .build();
    assert!(h.push_event(gap));
    let mut got_gap = false;
    let mut ours = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        got_gap |= ev.type_() == gst::EventType::Gap;
        if let Some((s, rt)) = ev.structure().and_then(gstlivetalk::events::parse_vad) {
            ours.push((
                s.as_str().to_string(),
                (rt.nseconds() as u128 * 16_000 / 1_000_000_000) as i64,
            ));
        }
    }
    assert!(got_gap, "the GAP event was not forwarded");
    eprintln!("reference {reference:?}\nours      {ours:?}");
    // GAP ends speech as silence would (probability 0 from the first silent window, where
    // the model may need a window or two to fall below the end threshold)
    assert_same_segments(&ours, &reference, 3 * WINDOW);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(
        stats.get::<u64>("windows-run").unwrap(),
        lead.len().div_ceil(512) as u64,
        "inference ran on GAP"
    );
    assert!(stats.get::<u64>("windows-gap").unwrap() >= 60);
}

#[test]
fn flush_and_ready_start_a_fresh_stream() {
    model();
    let dir = tempfile::tempdir().unwrap();
    let speech = espeak(dir.path(), "Good morning.");
    let mut audio = vec![0.0f32; 8_000];
    audio.extend(&speech[..speech.len() / 2]);
    let (mut h, _bus) = harness(&[]);
    push_audio(&mut h, &audio, 0);
    let first = vad_events(&mut h);
    // the speech is cut in the middle: a start and no end
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, "start");

    // after a flush, the same audio from 0 starts speech at the same place again (a stale
    // state would still be in speech and say nothing)
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    push_audio(&mut h, &audio, 0);
    assert_eq!(vad_events(&mut h), first);

    // the same after READY
    let el = h.element().unwrap();
    el.set_state(gst::State::Ready).unwrap();
    el.set_state(gst::State::Playing).unwrap();
    h.set_src_caps_str(CAPS);
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    push_audio(&mut h, &audio, 0);
    assert_eq!(vad_events(&mut h), first);

    // EOS closes the open speech at the last full window
    assert!(h.push_event(gst::event::Eos::new()));
    let end = vad_events(&mut h);
    assert_eq!(end.len(), 1, "{end:?}");
    assert_eq!(end[0].0, "end");
    assert_eq!(end[0].1, audio.len() as i64 / 512 * 512);
}

#[test]
fn missing_or_wrong_model_is_refused_at_ready() {
    init();
    let el = gst::ElementFactory::make("silerovad")
        .property("model", "/nonexistent/silero_vad.onnx")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    assert!(el.set_state(gst::State::Ready).is_err());
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert!(
        e.error().to_string().contains("silero_vad.onnx"),
        "{}",
        e.error()
    );

    let encoder = gstlivetalk::paths::default_whisper_encoder();
    assert!(
        encoder.is_file(),
        "run scripts/setup.sh (whisper encoder missing)"
    );
    let el = gst::ElementFactory::make("silerovad")
        .property("model", encoder.to_str().unwrap())
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    assert!(el.set_state(gst::State::Ready).is_err());
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    let text = e.error().to_string();
    assert!(
        text.contains("Silero VAD model has no input 'input'"),
        "{text}"
    );
}
