//! Speech files made at test time: espeak-ng utterances, WAV reading and writing, a
//! microphone recording of utterances separated by silences.

use std::path::Path;
use std::process::Command;

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

pub fn read_wav(b: &[u8]) -> (Vec<i16>, u32) {
    assert_eq!(&b[0..4], b"RIFF");
    let (mut at, mut rate) = (12, 0);
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &b[at + 8..(at + 8 + len).min(b.len())];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM");
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let s = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (s, rate);
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

pub fn write_wav(path: &Path, samples: &[i16], rate: u32) {
    let mut b = Vec::new();
    let data = (samples.len() * 2) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
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
