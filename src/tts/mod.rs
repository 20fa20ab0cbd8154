//! Text-to-speech pieces free of GStreamer: the playout state machine, segmentation of
//! streamed text, the Piper engine (phonemes, ids, voice), the Edge client, and the interface
//! an engine offers to the shared TTS source base (`ttsbase`).

pub mod edge_client;
pub mod edge_protocol;
pub mod edge_token;
pub mod mp3;
pub mod piper;
pub mod piper_engine;
pub mod playout;
pub mod segment;

use std::fmt;

/// A word boundary as an engine reports it, relative to the start of the sentence's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordBoundary {
    pub text: String,
    /// Nanoseconds from the sentence's first sample.
    pub offset_ns: u64,
    pub duration_ns: u64,
}

/// Where an engine delivers what it synthesizes.
pub trait SynthSink {
    /// Audio, S16 mono at the engine's rate, in order.
    fn audio(&mut self, samples: &[i16]);
    /// A word boundary (engines that have them).
    fn word(&mut self, word: WordBoundary);
    /// Something went wrong but synthesis goes on (a retried request): posted as a warning.
    fn warning(&mut self, message: &str);
    /// A line for the debug log.
    fn debug(&mut self, _message: &str) {}
    /// True once the sentence is no longer wanted (flush, stop): the engine returns soon.
    fn cancelled(&self) -> bool;
    /// [`SynthSink::cancelled`] for another thread (one that watches a blocking call).
    fn cancel_check(&self) -> Option<CancelCheck> {
        None
    }
}

/// Whether the sentence is no longer wanted, callable from any thread.
pub type CancelCheck = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthError {
    /// Stopped because [`SynthSink::cancelled`] said so.
    Cancelled,
    /// The sentence could not be synthesized: it is skipped with a warning.
    Failed(String),
}

impl fmt::Display for SynthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SynthError::Cancelled => f.write_str("cancelled"),
            SynthError::Failed(m) => f.write_str(m),
        }
    }
}

/// A speech engine: one sentence in, audio out. Called from the base's synthesis thread,
/// never from a streaming thread.
pub trait Engine: Send + Sync + 'static {
    /// Sample rate of the audio the engine delivers.
    fn rate(&self) -> u32;
    /// Synthesizes one piece of text (already sanitized, never empty).
    fn synthesize(&self, text: &str, sink: &mut dyn SynthSink) -> Result<(), SynthError>;
}
