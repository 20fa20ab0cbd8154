//! Our log-mel against the reference front end, transformers' `WhisperFeatureExtractor`, on
//! 10 s of real speech (espeak-ng) with noise and silence. Needs the set-up venv.

use std::process::Command;

use gstlivetalk::mel::LogMel;
use gstlivetalk::npy::NpyF32;

#[test]
fn log_mel_matches_whisper_feature_extractor() {
    let venv_python = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    assert!(venv_python.exists(), "run scripts/setup.sh first");
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mel_reference.py");
    let status = Command::new(&venv_python)
        .args([script, "--out-dir"])
        .arg(dir.path())
        .env("TRANSFORMERS_VERBOSITY", "error")
        .status()
        .unwrap();
    assert!(status.success());
    let audio = NpyF32::read(&dir.path().join("audio.npy")).unwrap();
    let reference = NpyF32::read(&dir.path().join("mel.npy")).unwrap();
    assert_eq!(audio.shape, vec![160_000]);

    let ours = LogMel::new().compute(&audio.data);
    assert_eq!(reference.shape, vec![80, 1000]);
    assert_eq!(ours.len(), reference.data.len());
    let (mut max_diff, mut at) = (0.0f32, 0);
    for (i, (a, b)) in ours.iter().zip(&reference.data).enumerate() {
        let d = (a - b).abs();
        if d > max_diff {
            (max_diff, at) = (d, i);
        }
    }
    eprintln!(
        "max |ours - reference| = {max_diff:e} at mel {} frame {}",
        at / 1000,
        at % 1000
    );
    assert!(max_diff <= 2e-3, "max abs difference {max_diff} > 2e-3");
    // The clip really has speech and silence in it.
    let spread = reference.data.iter().fold(f32::MIN, |a, &b| a.max(b))
        - reference.data.iter().fold(f32::MAX, |a, &b| a.min(b));
    assert!(spread > 1.5, "reference mel is nearly flat ({spread})");
}
