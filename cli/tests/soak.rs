//! `livetalk bench soak` for 3 minutes with 2 sessions (the CI version of the hour-long run):
//! sessions through serve's own session code, cycling speak / interrupt / chat / action /
//! idle. What must hold: no errors, no GStreamer objects or threads piling up while the
//! sessions run, and the A/V offset at the output the same at the end as after warm-up.

mod support;

use std::process::Command;

#[test]
fn three_minutes_of_two_sessions_hold_objects_threads_and_sync() {
    support::require_setup();
    let out = Command::new(env!("CARGO_BIN_EXE_livetalk"))
        .args([
            "bench",
            "soak",
            "--minutes",
            "3",
            "--sessions",
            "2",
            "--json",
            "--objects",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("{}", r["verdict"]);
    assert_eq!(r["errors"].as_array().unwrap().len(), 0, "{}", r["errors"]);
    let samples = r["samples"].as_array().unwrap();
    assert!(samples.len() >= 6, "{samples:?}");
    // The leaks tracer's counts: the two sessions' elements and pads stay exactly what they
    // were; threads do not grow.
    let first = &samples[1];
    let last = samples.last().unwrap();
    assert!(
        first["elements"].as_i64().unwrap() > 0,
        "no leaks tracer: {first}"
    );
    assert_eq!(first["elements"], last["elements"], "{samples:?}");
    assert_eq!(first["pads"], last["pads"], "{samples:?}");
    assert!(
        last["threads"].as_i64().unwrap() <= first["threads"].as_i64().unwrap() + 2,
        "{samples:?}"
    );
    // Memory: reported. Under the leaks tracer RSS includes the tracer's own bookkeeping,
    // which grows with load (+9 to +12 % in three minutes here): only a gross leak fails
    // this run; the 2 % goal is judged by runs without --objects.
    let growth = r["rss_growth_after_warmup_pct"].as_f64().unwrap();
    assert!(growth < 40.0, "RSS grew {growth:.1} % in three minutes");
    // A/V: measured in both windows for both sessions, near zero, and unchanged.
    for k in 0..2 {
        let a = r["av_offset_start"][k]
            .as_f64()
            .expect("no A/V measure at the start");
        let b = r["av_offset_end"][k]
            .as_f64()
            .expect("no A/V measure at the end");
        assert!(a.abs() <= 1.5 && b.abs() <= 1.5, "offsets {a} / {b} frames");
        assert!((a - b).abs() < 1.0, "A/V drifted from {a} to {b} frames");
    }
}
