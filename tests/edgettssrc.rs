//! edgettssrc against a local websocket server that speaks the Edge read-aloud protocol
//! (loopback only; the real service is never contacted), including its faults: 403,
//! disconnection mid-sentence, garbage frames, no audio, a slow server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_check::Harness;

mod common;
#[path = "common/edge_stub.rs"]
mod edge_stub;
use common::init;
use edge_stub::{Behavior, Server};

struct Run {
    samples: Vec<i16>,
    messages: Vec<gst::Structure>,
    warnings: Vec<String>,
    rate: i32,
}

impl Run {
    fn starts(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|s| {
                s.name() == "livetalk-speech" && s.get::<&str>("status").unwrap() == "start"
            })
            .map(|s| s.get::<String>("text").unwrap())
            .collect()
    }
}

/// `edgettssrc is-live=false endpoint=... ! fakesink` to EOS.
fn run_offline(server: &Server, text: &str, props: &[(&str, &dyn ToValue)]) -> Run {
    init();
    let mut b = gst::ElementFactory::make("edgettssrc")
        .property("is-live", false)
        .property("endpoint", server.endpoint())
        .property("text", text);
    for (k, v) in props {
        b = b.property(k, v.to_value());
    }
    let src = b.build().unwrap();
    let (pipeline, sink) = common::src_to_fakesink(&src, false);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let s2 = samples.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                s2.lock().unwrap().extend(common::s16_samples(b));
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let (messages, warnings) = common::run_to_eos(&pipeline, Duration::from_secs(60));
    let rate = sink
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap()
        .structure(0)
        .unwrap()
        .get::<i32>("rate")
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let samples = samples.lock().unwrap().clone();
    Run {
        samples,
        messages,
        warnings,
        rate,
    }
}

/// Zero crossings per second.
fn crossings_per_second(s: &[i16], rate: f64) -> f64 {
    let n = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    n as f64 / (s.len() as f64 / rate)
}

fn speech_seconds(run: &Run) -> f64 {
    run.samples.len() as f64 / 24_000.0
}

fn assert_one_sine_second(run: &Run) {
    let secs = speech_seconds(run);
    assert!((0.95..1.2).contains(&secs), "{secs} s of audio");
    // Skip the decoder's start-up; a 440 Hz sine crosses zero 880 times a second.
    let body = &run.samples[2400..run.samples.len() - 2400];
    let zc = crossings_per_second(body, 24_000.0);
    assert!((860.0..900.0).contains(&zc), "{zc} crossings/s");
    let peak = body.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 10_000, "peak {peak}");
}

#[test]
fn speaks_through_the_protocol_with_word_boundaries() {
    let server = Server::start(&[Behavior::Normal]);
    let run = run_offline(
        &server,
        "Hello brave new world.",
        &[
            ("voice", &"zh-CN-YunxiaNeural"),
            ("rate", &"+10%"),
            ("pitch", &"-5Hz"),
            ("volume", &"+0%"),
        ],
    );
    assert_eq!(run.rate, 24_000);
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert_one_sine_second(&run);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].ssml.contains(
        "<voice name='Microsoft Server Speech Text to Speech Voice (zh-CN, YunxiaNeural)'>\
         <prosody pitch='-5Hz' rate='+10%' volume='+0%'>Hello brave new world.</prosody>"
    ));
    let url = &seen[0].url;
    assert!(
        url.contains("TrustedClientToken=6A5AA1D4EAFF4E9FB37E23D68491D6F4"),
        "{url}"
    );
    let gec = url
        .split("Sec-MS-GEC=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(gec.len(), 81, "{gec}");
    assert!(url.contains("Sec-MS-GEC-Version=2-"), "{url}");
    assert!(url.contains("ConnectionId="), "{url}");

    assert_eq!(run.starts(), vec!["Hello brave new world."]);
    let words: Vec<(String, u64, u64, u64)> = run
        .messages
        .iter()
        .filter(|s| s.name() == "livetalk-word")
        .map(|s| {
            (
                s.get::<String>("text").unwrap(),
                s.get::<gst::ClockTime>("offset").unwrap().mseconds(),
                s.get::<gst::ClockTime>("duration").unwrap().mseconds(),
                s.get::<gst::ClockTime>("running-time").unwrap().mseconds(),
            )
        })
        .collect();
    assert_eq!(
        words,
        vec![
            ("Hello".to_string(), 0, 250, 0),
            ("brave".to_string(), 300, 250, 300),
            ("new".to_string(), 600, 250, 600),
            ("world".to_string(), 900, 250, 900),
        ]
    );
}

#[test]
fn text_is_escaped_so_it_cannot_inject_ssml() {
    let server = Server::start(&[]);
    let run = run_offline(&server, "Tom & Jerry </speak><voice name='x'> 'hi'", &[]);
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert_eq!(
        server.texts(),
        vec!["Tom &amp; Jerry &lt;/speak&gt;&lt;voice name=&apos;x&apos;&gt; &apos;hi&apos;"]
    );
    let ssml = server.seen.lock().unwrap()[0].ssml.clone();
    assert_eq!(ssml.matches("</speak>").count(), 1);
}

#[test]
fn refused_connection_is_retried() {
    let server = Server::start(&[Behavior::Forbidden, Behavior::Normal]);
    let run = run_offline(&server, "Refused once then spoken.", &[]);
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(run.warnings[0].contains("HTTP 403"), "{:?}", run.warnings);
    assert!(run.warnings[0].contains("retrying"), "{:?}", run.warnings);
    assert_one_sine_second(&run);
}

#[test]
fn refused_twice_skips_the_sentence_and_goes_on() {
    let server = Server::start(&[Behavior::Forbidden, Behavior::Forbidden, Behavior::Normal]);
    let run = run_offline(&server, "This one is refused. This one is spoken.", &[]);
    assert_eq!(run.starts(), vec!["This one is spoken."]);
    assert_eq!(run.warnings.len(), 2, "{:?}", run.warnings);
    assert!(run.warnings[1].contains("skipped"), "{:?}", run.warnings);
    assert_one_sine_second(&run);
}

#[test]
fn disconnection_mid_sentence_is_retried_whole() {
    let server = Server::start(&[Behavior::DisconnectMidway, Behavior::Normal]);
    let run = run_offline(&server, "Cut in the middle.", &[]);
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(
        run.warnings[0].contains("disconnected"),
        "{:?}",
        run.warnings
    );
    // The whole sentence once, not half of it plus all of it.
    assert_one_sine_second(&run);
}

#[test]
fn garbage_frames_are_skipped_with_a_warning() {
    let server = Server::start(&[Behavior::Garbage]);
    let run = run_offline(&server, "Some garbage in between.", &[]);
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(
        run.warnings[0].contains("4 malformed frame(s)"),
        "{:?}",
        run.warnings
    );
    assert_one_sine_second(&run);
    assert_eq!(server.seen.lock().unwrap().len(), 1, "no retry needed");
}

#[test]
fn no_audio_skips_the_sentence() {
    let server = Server::start(&[Behavior::NoAudio, Behavior::Normal]);
    let run = run_offline(&server, "Nothing comes back. This comes back.", &[]);
    assert_eq!(run.starts(), vec!["This comes back."]);
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(run.warnings[0].contains("no audio"), "{:?}", run.warnings);
    assert_one_sine_second(&run);
}

#[test]
fn slow_server_times_out_and_the_sentence_is_skipped() {
    let slow = Behavior::Slow(Duration::from_millis(1500));
    let server = Server::start(&[slow, slow, Behavior::Normal]);
    let t0 = Instant::now();
    let run = run_offline(
        &server,
        "The server is too slow. Now it is fast.",
        &[("timeout", &300u32)],
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(run.starts(), vec!["Now it is fast."]);
    assert_eq!(run.warnings.len(), 2, "{:?}", run.warnings);
    assert!(
        run.warnings[0].contains("within 300 ms"),
        "{:?}",
        run.warnings
    );
    assert_one_sine_second(&run);
}

#[test]
fn slow_but_in_time_is_fine() {
    let server = Server::start(&[Behavior::Slow(Duration::from_millis(300))]);
    let run = run_offline(&server, "Slow but in time.", &[("timeout", &2000u32)]);
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert_one_sine_second(&run);
}

#[test]
fn bad_settings_fail_at_start_with_a_message() {
    init();
    for (prop, value, expect) in [
        ("voice", "Emma", "is not an Edge voice name"),
        ("rate", "fast", "rate 'fast' is invalid"),
        ("pitch", "+5%", "pitch '+5%' is invalid"),
        ("volume", "loud", "volume 'loud' is invalid"),
        (
            "endpoint",
            "http://127.0.0.1:1/",
            "is not a ws:// or wss:// URL",
        ),
    ] {
        let src = gst::ElementFactory::make("edgettssrc")
            .property(prop, value)
            .build()
            .unwrap();
        let (pipeline, _sink) = common::src_to_fakesink(&src, false);
        assert!(pipeline.set_state(gst::State::Paused).is_err(), "{prop}");
        let msg = pipeline
            .bus()
            .unwrap()
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

fn live(server: &Server, timeout_ms: u32) -> (Harness, gst::Element, gst::Bus) {
    init();
    let src = gst::ElementFactory::make("edgettssrc")
        .property("endpoint", server.endpoint())
        .property("timeout", timeout_ms)
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    src.set_bus(Some(&bus));
    let mut h = Harness::with_element(&src, None, Some("src"));
    h.play();
    (h, src, bus)
}

fn crank(h: &mut Harness) -> gst::Buffer {
    h.crank_single_clock_wait().unwrap();
    h.pull().unwrap()
}

#[test]
fn live_faults_never_stall_the_silence() {
    let server = Server::start(&[Behavior::Forbidden, Behavior::Forbidden]);
    let (mut h, src, bus) = live(&server, 1000);
    src.emit_by_name::<bool>("speak", &[&"Refused twice and skipped."]);
    let mut warnings = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while warnings < 2 {
        assert!(Instant::now() < deadline, "no warnings");
        let b = crank(&mut h);
        assert!(b.flags().contains(gst::BufferFlags::GAP));
        n += 1;
        while let Some(m) = bus.pop() {
            match m.view() {
                gst::MessageView::Warning(_) => warnings += 1,
                gst::MessageView::Error(e) => panic!("{}", e.error()),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..25 {
        assert!(crank(&mut h).flags().contains(gst::BufferFlags::GAP));
    }
    assert!(n > 0);
    assert!(!src.property::<bool>("speaking"));
}

#[test]
fn flush_aborts_a_request_in_flight() {
    // The first request hangs for 8 s (timeout 20 s); flush must not wait for it.
    let server = Server::start(&[Behavior::Slow(Duration::from_secs(8)), Behavior::Normal]);
    let (mut h, src, bus) = live(&server, 20_000);
    src.emit_by_name::<bool>("speak", &[&"This request hangs."]);
    let t0 = Instant::now();
    while server.seen.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        crank(&mut h);
        std::thread::sleep(Duration::from_millis(5));
    }
    src.emit_by_name::<()>("flush", &[]);
    let t1 = Instant::now();
    src.emit_by_name::<bool>("speak", &[&"This one is spoken at once."]);
    loop {
        assert!(
            t1.elapsed() < Duration::from_secs(4),
            "the hung request held the synthesis thread"
        );
        if !crank(&mut h).flags().contains(gst::BufferFlags::GAP) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let starts: Vec<String> = std::iter::from_fn(|| bus.pop())
        .filter_map(|m| m.structure().map(|s| s.to_owned()))
        .filter(|s| s.name() == "livetalk-speech")
        .map(|s| s.get::<String>("text").unwrap())
        .collect();
    assert_eq!(starts, vec!["This one is spoken at once."]);
    assert_eq!(server.texts()[1], "This one is spoken at once.");
}

#[test]
fn stop_while_a_request_hangs_returns_promptly_and_joins() {
    // The server holds each request for 30 s (timeout 60 s): stop must cancel it.
    let hang = Behavior::Slow(Duration::from_secs(30));
    let server = Server::start(&[hang, hang]);
    init();
    let src = gst::ElementFactory::make("edgettssrc")
        .name("edgejoin")
        .property("endpoint", server.endpoint())
        .property("timeout", 60_000u32)
        .build()
        .unwrap();
    // The base names its synthesis thread "tts:<element name>".
    let thread = "tts:edgejoin";
    let (pipeline, _sink) = common::src_to_fakesink(&src, false);
    for cycle in 0..2 {
        pipeline.set_state(gst::State::Playing).unwrap();
        assert_eq!(
            common::wait_threads_named(thread, 1, Duration::from_secs(5)),
            1,
            "cycle {cycle}: running"
        );
        src.emit_by_name::<bool>("speak", &[&format!("Request number {cycle} hangs.")]);
        let t0 = Instant::now();
        while server.seen.lock().unwrap().len() <= cycle {
            assert!(t0.elapsed() < Duration::from_secs(10), "no request");
            std::thread::sleep(Duration::from_millis(5));
        }
        let t1 = Instant::now();
        pipeline.set_state(gst::State::Null).unwrap();
        let took = t1.elapsed();
        assert_eq!(
            common::wait_threads_named(thread, 0, Duration::from_millis(20)),
            0,
            "cycle {cycle}: joined"
        );
        assert!(
            took < Duration::from_secs(10),
            "stop waited {took:?} for a request held 30 s"
        );
    }
}
