//! Speech files made at test time: espeak-ng utterances, WAV reading and writing, a
//! microphone recording of utterances separated by silences.

use std::path::Path;
use std::process::Command;

#[path = "../../../tests/common/wav.rs"]
mod wav;
pub use wav::{read_wav, write_wav};

/// Mono 16-bit samples of an espeak-ng utterance, and their rate.
pub fn espeak(text: &str, dir: &Path) -> (Vec<i16>, u32) {
    let wav = dir.join("utterance.wav");
    let ok = Command::new("espeak-ng")
        .args(["-w", wav.to_str().unwrap(), text])
        .status()
        .expect("espeak-ng (scripts/setup.sh installs it)")
        .success();
    assert!(ok, "espeak-ng failed");
    read_wav(&std::fs::read(wav).unwrap())
}

/// A microphone recording: for each (silence before, text), that much silence then the
/// utterance; then `tail` of silence.
pub fn mic_file(dir: &Path, parts: &[(f64, &str)], tail: f64) -> std::path::PathBuf {
    let mut all = Vec::new();
    let mut rate = 0;
    for (gap, text) in parts {
        let (s, r) = espeak(text, dir);
        rate = r;
        all.extend(std::iter::repeat_n(0i16, (gap * r as f64) as usize));
        all.extend(s);
    }
    all.extend(std::iter::repeat_n(0i16, (tail * rate as f64) as usize));
    let path = dir.join("mic.wav");
    write_wav(&path, &all, rate);
    path
}
