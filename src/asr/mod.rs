//! Voice input: voice activity detection (Silero VAD) and speech recognition (whisper greedy
//! decoding), free of GStreamer; the `silerovad` and `whisperasr` elements are glue around it.

use std::path::PathBuf;

pub mod decode;
pub mod segment;
pub mod vad;
pub mod whisper;

/// The Silero VAD model `silerovad` loads when none is named: `silero_vad.onnx`, which the
/// set-up copies out of the PyPI package `silero-vad`.
pub fn default_silero_vad() -> PathBuf {
    crate::paths::models_dir()
        .join("silero-vad")
        .join("silero_vad.onnx")
}
