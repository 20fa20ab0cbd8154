//! piperttssrc (and the shared TTS source base): caps, timestamps, sentence events on the bus
//! and downstream, GAP silence while idle, flush, streamed fragments, bad input, and that
//! what it says is understood by a speech recogniser.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_check::Harness;

mod common;
use common::init;
#[path = "common/wav.rs"]
mod wav;
use wav::write_wav;

fn voice() -> std::path::PathBuf {
    let p = gstlivetalk::paths::default_piper_voice();
    assert!(p.is_file(), "run scripts/setup.sh (Piper voice missing)");
    p
}

/// What reached the sink pad, in order.
#[derive(Debug, Clone)]
enum Item {
    Buffer {
        pts: gst::ClockTime,
        duration: gst::ClockTime,
        offset: u64,
        gap: bool,
        samples: Vec<i16>,
    },
    Event(gst::Structure),
}

use common::s16_samples as samples_of;

struct Offline {
    items: Vec<Item>,
    messages: Vec<gst::Structure>,
    warnings: Vec<String>,
    caps: Option<gst::Caps>,
}

impl Offline {
    fn buffers(
        &self,
    ) -> impl Iterator<Item = (&gst::ClockTime, &gst::ClockTime, u64, bool, &Vec<i16>)> {
        self.items.iter().filter_map(|i| match i {
            Item::Buffer {
                pts,
                duration,
                offset,
                gap,
                samples,
            } => Some((pts, duration, *offset, *gap, samples)),
            _ => None,
        })
    }

    fn all_samples(&self) -> Vec<i16> {
        self.buffers().flat_map(|b| b.4.iter().copied()).collect()
    }

    fn speech(&self, status: &str) -> Vec<(String, gst::ClockTime)> {
        self.messages
            .iter()
            .filter(|s| s.name() == "livetalk-speech" && s.get::<&str>("status").unwrap() == status)
            .map(|s| {
                (
                    s.get::<String>("text").unwrap(),
                    s.get::<gst::ClockTime>("running-time").unwrap(),
                )
            })
            .collect()
    }
}

/// Runs `piperttssrc is-live=false ... ! fakesink` to EOS; `before` is called in READY.
fn run_offline(props: &[(&str, &dyn ToValue)], before: impl FnOnce(&gst::Element)) -> Offline {
    init();
    let mut b = gst::ElementFactory::make("piperttssrc").property("is-live", false);
    for (k, v) in props {
        b = b.property(k, v.to_value());
    }
    let src = b.build().unwrap();
    // The probe records everything: fakesink (appsink would hold EOS until pulled dry).
    let (pipeline, sink) = common::src_to_fakesink(&src, false);
    let items = Arc::new(Mutex::new(Vec::new()));
    let rec = items.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => rec.lock().unwrap().push(Item::Buffer {
                    pts: b.pts().unwrap(),
                    duration: b.duration().unwrap(),
                    offset: b.offset(),
                    gap: b.flags().contains(gst::BufferFlags::GAP),
                    samples: samples_of(b),
                }),
                Some(gst::PadProbeData::Event(e)) => {
                    if let Some(s) = gstlivetalk::events::livetalk_structure(e) {
                        rec.lock().unwrap().push(Item::Event(s.to_owned()));
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Ready).unwrap();
    before(&src);
    pipeline.set_state(gst::State::Playing).unwrap();
    let (messages, warnings) = common::run_to_eos(&pipeline, Duration::from_secs(120));
    let caps = sink.static_pad("sink").unwrap().current_caps();
    pipeline.set_state(gst::State::Null).unwrap();
    let items = items.lock().unwrap().clone();
    Offline {
        items,
        messages,
        warnings,
        caps,
    }
}

fn rms(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
}

#[test]
fn offline_speaks_the_queue_with_continuous_timestamps_and_ends() {
    voice();
    let text = "Hello world, this is a test of the talking avatar. How are you today?";
    let out = run_offline(&[("text", &text)], |_| {});
    let caps = out.caps.as_ref().expect("negotiated caps");
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<&str>("format").unwrap(), "S16LE");
    assert_eq!(s.get::<i32>("channels").unwrap(), 1);
    assert_eq!(s.get::<i32>("rate").unwrap(), 22050);

    // Continuous timestamps from 0, offsets in samples, no GAP while speaking.
    let mut next = gst::ClockTime::ZERO;
    let mut offset = 0;
    for (pts, dur, off, gap, samples) in out.buffers() {
        assert_eq!(*pts, next, "buffer at offset {off}");
        assert_eq!(off, offset);
        assert!(!gap);
        let expect_end = gst::ClockTime::from_nseconds(
            ((off + samples.len() as u64) as u128 * 1_000_000_000 / 22050) as u64,
        );
        assert_eq!(*pts + *dur, expect_end);
        next = *pts + *dur;
        offset += samples.len() as u64;
    }
    let all = out.all_samples();
    let secs = all.len() as f64 / 22050.0;
    assert!((2.5..12.0).contains(&secs), "{secs} s of speech");
    assert!(
        rms(&all) > 1000.0,
        "speech is not silent: rms {}",
        rms(&all)
    );

    // Sentences cut as LiveTalking does, start/end on the bus in order, back to back.
    let starts = out.speech("start");
    let ends = out.speech("end");
    let texts: Vec<&str> = starts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "Hello world,",
            "this is a test of the talking avatar.",
            "How are you today?"
        ]
    );
    assert_eq!(ends.len(), 3);
    assert_eq!(starts[0].1, gst::ClockTime::ZERO);
    for i in 0..3 {
        assert_eq!(ends[i].0, starts[i].0);
        assert!(ends[i].1 > starts[i].1 + gst::ClockTime::from_mseconds(300));
        if i + 1 < 3 {
            assert_eq!(ends[i].1, starts[i + 1].1, "sentences back to back offline");
        }
    }
    assert_eq!(ends[2].1, next, "the last end is the end of the stream");

    // Downstream: each start event precedes the sentence's first buffer, whose PTS is the
    // event's running time; each end event follows its last buffer.
    // (Word events are checked in words_come_with_timings_from_the_voices_durations.)
    for (k, item) in out.items.iter().enumerate() {
        if let Item::Event(s) = item
            && s.name() != "livetalk-word"
        {
            assert_eq!(s.name(), "livetalk-speech");
            let rt = s.get::<gst::ClockTime>("running-time").unwrap();
            let next_pts = out.items[k + 1..].iter().find_map(|i| match i {
                Item::Buffer { pts, .. } => Some(*pts),
                _ => None,
            });
            match s.get::<&str>("status").unwrap() {
                "start" => assert_eq!(next_pts, Some(rt)),
                "end" => assert!(next_pts.is_none_or(|p| p == rt)),
                other => panic!("status {other}"),
            }
        }
    }
    let n_events = out
        .items
        .iter()
        .filter(|i| matches!(i, Item::Event(s) if s.name() == "livetalk-speech"))
        .count();
    assert_eq!(n_events, 6);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn speech_is_intelligible() {
    voice();
    let text = "The quick brown fox jumps over the lazy dog. \
                Please send the report to my office before Friday.";
    // Without the generator's noise the voice is deterministic: the same text gives the
    // same samples, so the transcript below does not vary from run to run.
    let quiet: [(&str, &dyn ToValue); 3] = [
        ("text", &text),
        ("noise-scale", &0.0f32),
        ("noise-w", &0.0f32),
    ];
    let samples = run_offline(&quiet, |_| {}).all_samples();
    assert_eq!(samples, run_offline(&quiet, |_| {}).all_samples());
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("speech.wav");
    write_wav(&wav, &samples, 22050);
    let cache = gstlivetalk::paths::cache_dir();
    let py = cache.join("venv/bin/python");
    assert!(py.is_file(), "run scripts/setup.sh (venv missing)");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/transcribe.py");
    let res = Command::new(py).arg(script).arg(&wav).output().unwrap();
    assert!(
        res.status.success(),
        "transcribe.py failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let heard = String::from_utf8_lossy(&res.stdout).to_lowercase();
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    let said = words(&text.to_lowercase());
    let got = words(&heard);
    let found = said.iter().filter(|w| got.contains(w)).count();
    eprintln!("heard: {heard}");
    assert!(
        found * 10 >= said.len() * 9,
        "only {found} of {} words recognised: {heard}",
        said.len()
    );
}

#[test]
fn words_come_with_timings_from_the_voices_durations() {
    voice();
    let text = "Hello there, how are you today? Fine, thanks.";
    let out = run_offline(&[("text", &text)], |_| {});
    let words: Vec<(String, gst::ClockTime, gst::ClockTime, gst::ClockTime)> = out
        .messages
        .iter()
        .filter(|s| s.name() == "livetalk-word")
        .map(|s| {
            (
                s.get::<String>("text").unwrap(),
                s.get::<gst::ClockTime>("offset").unwrap(),
                s.get::<gst::ClockTime>("duration").unwrap(),
                s.get::<gst::ClockTime>("running-time").unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = words.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "Hello", "there", "how", "are", "you", "today", "Fine", "thanks"
        ],
        "(setup exposes the voice's durations: models/piper_durations.py)"
    );
    // The same words travel downstream as events.
    let events = out
        .items
        .iter()
        .filter(|i| matches!(i, Item::Event(s) if s.name() == "livetalk-word"))
        .count();
    assert_eq!(events, words.len());
    // In order, without overlap, each over audible speech.
    let samples = out.all_samples();
    let at = |t: gst::ClockTime| (t.nseconds() as u128 * 22050 / 1_000_000_000) as usize;
    let peak = samples.chunks(441).map(rms).fold(0.0, f64::max);
    for pair in words.windows(2) {
        assert!(pair[1].3 >= pair[0].3 + pair[0].2, "{pair:?} overlap");
    }
    for (w, _, dur, rt) in &words {
        assert!(dur.mseconds() >= 60, "{w}: {dur}");
        let span = &samples[at(*rt)..at(*rt + *dur).min(samples.len())];
        assert!(
            rms(span) > 0.1 * peak,
            "{w}: quiet ({} of {peak})",
            rms(span)
        );
    }
    // The comma after "there" is a pause: quieter than the words around it.
    let (there, how) = (&words[1], &words[2]);
    let gap = &samples[at(there.3 + there.2)..at(how.3)];
    assert!(
        gap.len() > 22050 / 20,
        "no pause at the comma: {} samples",
        gap.len()
    );
    assert!(rms(gap) < 0.1 * peak, "the comma pause is not quiet");
    // A sentence whose numbers expand into more spoken words gets no word timings.
    let out = run_offline(&[("text", &"In 1990 it grew.")], |_| {});
    assert!(!out.messages.iter().any(|s| s.name() == "livetalk-word"));
}

#[test]
fn streamed_fragments_are_cut_into_sentences() {
    voice();
    let tokens = [
        "Sure", ",", " I", " can", " help", " with", " that", ".", " The", " answer", " is", " 3",
        ".", "5", " metres", "; ", "ok",
    ];
    let out = run_offline(&[], |src| {
        for t in tokens {
            src.emit_by_name::<()>("push-fragment", &[&t]);
        }
        // No end-fragments: offline, the rest is spoken before EOS.
    });
    let texts: Vec<String> = out.speech("start").into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        texts,
        vec![
            "Sure, I can help with that.",
            "The answer is 3.5 metres;",
            "ok"
        ]
    );
}

#[test]
fn control_characters_and_markup_are_spoken_as_text() {
    voice();
    // (GLib strings cannot hold NUL: the other control characters.)
    let out = run_offline(&[], |src| {
        src.emit_by_name::<bool>("speak", &[&"Hello\u{1}\u{7} there\u{1b} </speak> friend."]);
        src.emit_by_name::<bool>("speak", &[&"  \u{2}\n "]);
    });
    let texts: Vec<String> = out.speech("start").into_iter().map(|(t, _)| t).collect();
    assert_eq!(texts, vec!["Hello there </speak> friend."]);
    assert!(rms(&out.all_samples()) > 1000.0);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(
        out.warnings[0].contains("Nothing to speak"),
        "{:?}",
        out.warnings
    );
}

#[test]
fn missing_voice_and_bad_settings_fail_at_start_with_a_message() {
    init();
    let cases = [
        (
            "model",
            "/nonexistent/voice.onnx",
            "Piper voice model not found",
        ),
        ("speaker", "3", "Speaker 3 does not exist"),
    ];
    for (prop, value, expect) in cases {
        let src = gst::ElementFactory::make("piperttssrc")
            .property_from_str(prop, value)
            .build()
            .unwrap();
        let (pipeline, _sink) = common::src_to_fakesink(&src, false);
        assert!(pipeline.set_state(gst::State::Paused).is_err(), "{prop}");
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
            .expect("an error message");
        let gst::MessageView::Error(e) = msg.view() else {
            unreachable!()
        };
        assert!(
            e.error().to_string().contains(expect),
            "{prop}: {}",
            e.error()
        );
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

fn live_harness() -> (Harness, gst::Element, gst::Bus) {
    init();
    voice();
    let src = gst::ElementFactory::make("piperttssrc").build().unwrap();
    let bus = gst::Bus::new();
    src.set_bus(Some(&bus));
    let mut h = Harness::with_element(&src, None, Some("src"));
    h.play();
    (h, src, bus)
}

/// Cranks the test clock once and pulls the buffer it released.
fn crank(h: &mut Harness) -> gst::Buffer {
    h.crank_single_clock_wait().unwrap();
    h.pull().unwrap()
}

fn element_messages(bus: &gst::Bus) -> Vec<gst::Structure> {
    let mut v = Vec::new();
    while let Some(m) = bus.pop() {
        if let Some(s) = m.structure()
            && m.type_() == gst::MessageType::Element
        {
            v.push(s.to_owned());
        }
    }
    v
}

#[test]
fn gap_silence_false_keeps_idle_silence_as_plain_audio() {
    init();
    voice();
    let src = gst::ElementFactory::make("piperttssrc")
        .property("gap-silence", false)
        .build()
        .unwrap();
    let mut h = Harness::with_element(&src, None, Some("src"));
    h.play();
    for i in 0..5 {
        let b = crank(&mut h);
        assert!(!b.flags().contains(gst::BufferFlags::GAP), "buffer {i}");
        assert_eq!(samples_of(&b).len(), 441);
        assert!(samples_of(&b).iter().all(|&s| s == 0));
    }
}

#[test]
fn live_idle_output_is_gap_silence_in_real_time_steps() {
    let (mut h, src, _bus) = live_harness();
    let mut next = gst::ClockTime::ZERO;
    for i in 0..25 {
        let b = crank(&mut h);
        assert!(b.flags().contains(gst::BufferFlags::GAP), "buffer {i}");
        assert_eq!(b.pts(), Some(next), "buffer {i}");
        assert!(samples_of(&b).iter().all(|&s| s == 0));
        assert_eq!(samples_of(&b).len(), 441, "20 ms at 22050 Hz");
        next += b.duration().unwrap();
        // The source released a buffer only when the clock reached its end.
        assert_eq!(h.testclock().unwrap().time(), next);
    }
    assert!(!src.property::<bool>("speaking"));
    let mut q = gst::query::Latency::new();
    assert!(src.static_pad("src").unwrap().query(&mut q));
    let (live, min, _) = q.result();
    assert!(live);
    assert_eq!(min, gst::ClockTime::from_mseconds(20));
}

#[test]
fn live_speech_then_flush_returns_to_silence_within_one_buffer() {
    let (mut h, src, bus) = live_harness();
    let notified = Arc::new(Mutex::new(Vec::new()));
    let n2 = notified.clone();
    src.connect_notify(Some("speaking"), move |e, _| {
        n2.lock().unwrap().push(e.property::<bool>("speaking"));
    });
    src.emit_by_name::<bool>(
        "speak",
        &[
            &"This first sentence is long enough to keep talking for quite a while, \
            so that we can interrupt it. This second sentence must never be heard.",
        ],
    );
    // Idle GAP until the first sentence is synthesized, then speech.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        assert!(Instant::now() < deadline, "speech never started");
        let b = crank(&mut h);
        if !b.flags().contains(gst::BufferFlags::GAP) {
            break b;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let msgs = element_messages(&bus);
    let start = msgs
        .iter()
        .find(|s| s.name() == "livetalk-speech")
        .expect("start message");
    assert_eq!(start.get::<&str>("status").unwrap(), "start");
    assert_eq!(
        start.get::<gst::ClockTime>("running-time").unwrap(),
        first.pts().unwrap()
    );
    for _ in 0..10 {
        let b = crank(&mut h);
        assert!(!b.flags().contains(gst::BufferFlags::GAP));
    }
    assert!(src.property::<bool>("speaking"));

    src.emit_by_name::<()>("flush", &[]);
    // The buffer already made may still be speech; the next ones are silence.
    let mut after = Vec::new();
    for _ in 0..100 {
        after.push(crank(&mut h));
    }
    let speech_after = after
        .iter()
        .take_while(|b| !b.flags().contains(gst::BufferFlags::GAP))
        .count();
    assert!(
        speech_after <= 1,
        "{speech_after} speech buffers after flush"
    );
    for b in &after[speech_after..] {
        assert!(b.flags().contains(gst::BufferFlags::GAP));
        assert!(samples_of(b).iter().all(|&s| s == 0));
    }
    assert!(!src.property::<bool>("speaking"));
    assert_eq!(*notified.lock().unwrap(), vec![true, false]);

    // Downstream: start, then the interrupt; the interrupted end carries the cut time.
    let mut names = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        if let Some(s) = gstlivetalk::events::livetalk_structure(&ev)
            && s.name() != "livetalk-word"
        {
            names.push(s.to_owned());
        }
    }
    let seq: Vec<String> = names
        .iter()
        .map(|s| match s.get::<&str>("status") {
            Ok(st) => format!("{}:{st}", s.name()),
            Err(_) => s.name().to_string(),
        })
        .collect();
    assert_eq!(
        seq,
        vec![
            "livetalk-speech:start",
            "livetalk-speech:end",
            "livetalk-interrupt"
        ]
    );
    let cut = names[1].get::<gst::ClockTime>("running-time").unwrap();
    assert!(names[1].get::<bool>("interrupted").unwrap());
    assert_eq!(cut, after[speech_after].pts().unwrap());
    let msgs = element_messages(&bus);
    assert!(
        msgs.iter()
            .all(|s| s.get::<&str>("text").unwrap_or_default()
                != "This second sentence must never be heard."),
        "the second sentence was dropped by flush: {msgs:?}"
    );
}

#[test]
fn huge_text_is_queued_and_flush_drops_it() {
    let (mut h, src, bus) = live_harness();
    let sentence = "Words keep coming, and the queue keeps all of them. ";
    let text = sentence.repeat(100_000 / sentence.len() + 1);
    assert!(text.len() >= 100_000);
    let t0 = Instant::now();
    src.emit_by_name::<bool>("speak", &[&text]);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "speak() must not block"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "speech never started");
        if !crank(&mut h).flags().contains(gst::BufferFlags::GAP) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let msgs = element_messages(&bus);
    assert_eq!(
        msgs[0].get::<&str>("text").unwrap(),
        "Words keep coming,",
        "the first piece is cut from the start of the text"
    );
    src.emit_by_name::<()>("flush", &[]);
    crank(&mut h);
    for _ in 0..50 {
        assert!(crank(&mut h).flags().contains(gst::BufferFlags::GAP));
    }
}

#[test]
fn stop_while_synthesising_joins_the_synthesis_thread() {
    init();
    voice();
    // A short sentence, then one long piece without punctuation: once the first one plays,
    // the synthesis thread is busy with the long one when stop comes.
    let words = "many words follow one another here without any pause at all ";
    let text = format!("Here we go now. {}", words.repeat(4));
    let src = gst::ElementFactory::make("piperttssrc")
        .name("stopjoin")
        .build()
        .unwrap();
    // The base names its synthesis thread "tts:<element name>".
    let thread = "tts:stopjoin";
    let (pipeline, _sink) = common::src_to_fakesink(&src, false);
    let bus = pipeline.bus().unwrap();
    assert_eq!(common::threads_named(thread), 0);
    for cycle in 0..3 {
        pipeline.set_state(gst::State::Playing).unwrap();
        assert_eq!(
            common::wait_threads_named(thread, 1, Duration::from_secs(5)),
            1,
            "cycle {cycle}: running"
        );
        src.emit_by_name::<bool>("speak", &[&text]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "cycle {cycle}: no speech");
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(20)) else {
                continue;
            };
            if let Some(s) = msg.structure()
                && s.name() == "livetalk-speech"
            {
                assert_eq!(s.get::<&str>("text").unwrap(), "Here we go now.");
                break;
            }
        }
        let t0 = Instant::now();
        pipeline.set_state(gst::State::Ready).unwrap();
        let took = t0.elapsed();
        // Joined: gone when stop returns (give the system 20 ms to drop the entry).
        assert_eq!(
            common::wait_threads_named(thread, 0, Duration::from_millis(20)),
            0,
            "cycle {cycle}: joined"
        );
        assert!(!src.property::<bool>("speaking"));
        eprintln!("cycle {cycle}: stop took {took:?}");
        // Only flush drops text: what did not play is queued again; drop it for the next
        // cycle.
        src.emit_by_name::<()>("flush", &[]);
        while bus.pop().is_some() {}
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(common::threads_named(thread), 0);
}
