//! What `tests/browser/page_check.py` and `offer_check.py` report of a page that plays, and
//! the checks the browser tests share.

use serde_json::Value;

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The page's picture plays: not paused, at a size `size` accepts, at least 10 frames in
/// its measured second (the source makes 25).
pub fn assert_plays(r: &Value, size: impl Fn(u64, u64) -> bool) {
    let v = &r["video"];
    assert_eq!(v["paused"], false, "{v}");
    let (w, h) = (v["w"].as_u64().unwrap(), v["h"].as_u64().unwrap());
    assert!(size(w, h), "video {w}x{h}");
    let fps = r["frames_in_1s"].as_f64().unwrap();
    assert!(fps >= 10.0, "{fps} frames in a second at the browser");
}

/// The page's audio track (read twice, half a second apart) is live and its packets advance.
pub fn assert_audio_live(r: &Value) {
    let (a0, a1) = (&r["audio"][0], &r["audio"][1]);
    assert_eq!(a1["track"], "live", "{a1}");
    assert!(
        a1["packets"].as_u64().unwrap() > a0["packets"].as_u64().unwrap(),
        "audio packets do not advance: {a0} {a1}"
    );
}

/// Motion and sound measured at the page per frame, idle and while speaking.
pub struct Talk {
    pub idle_mouth: Vec<f64>,
    pub speech_mouth: Vec<f64>,
    pub speech_eyes: Vec<f64>,
    pub idle_rms: Vec<f64>,
    pub speech_rms: Vec<f64>,
}

impl Talk {
    /// From the report's `idle` and `speech` series (entries without a figure left out);
    /// prints the figures.
    pub fn of(r: &Value) -> Talk {
        let series = |k: &str, part: &str| -> Vec<f64> {
            r[k].as_array()
                .unwrap_or_else(|| panic!("no '{k}' in the page's report"))
                .iter()
                .filter_map(|s| s[part].as_f64())
                .collect()
        };
        let t = Talk {
            idle_mouth: series("idle", "mouth"),
            speech_mouth: series("speech", "mouth"),
            speech_eyes: series("speech", "eyes"),
            idle_rms: series("idle", "rms"),
            speech_rms: series("speech", "rms"),
        };
        eprintln!(
            "browser: mouth idle max {:.2} (mean {:.2}), speaking max {:.2} (mean {:.2}), eyes \
             speaking mean {:.2}; audio RMS idle max {:.3}, speaking max {:.3}",
            max(&t.idle_mouth),
            mean(&t.idle_mouth),
            max(&t.speech_mouth),
            mean(&t.speech_mouth),
            mean(&t.speech_eyes),
            max(&t.idle_rms),
            max(&t.speech_rms)
        );
        t
    }

    /// Twice the idle mouth's largest motion (at least 0.5): what speech must pass.
    pub fn threshold(&self) -> f64 {
        2.0 * max(&self.idle_mouth).max(0.5)
    }

    /// The mouth moves while speaking, far more than in idle and than the eyes.
    pub fn assert_mouth_moves(&self) {
        assert!(
            max(&self.speech_mouth) > self.threshold(),
            "the mouth does not move at the browser"
        );
        assert!(mean(&self.speech_mouth) > 2.0 * mean(&self.speech_eyes).max(0.1));
    }

    /// The page hears the speech: loud, and far louder than in idle.
    pub fn assert_sound(&self) {
        assert!(max(&self.speech_rms) > 0.02, "no sound at the browser");
        assert!(max(&self.speech_rms) > 4.0 * max(&self.idle_rms).max(0.001));
    }
}
