//! Silero VAD v5 on a stream: 512-sample windows at 16 kHz, the model's recurrent state and its
//! 64-sample context carried from window to window, and the start/end hysteresis of Silero's
//! own `VADIterator` (the `silero-vad` package).
//!
//! The model contract (checked when it is loaded, [`crate::inference::contract::SILERO_VAD`]):
//! `input` f32 `[1, 64 + 512]` (the last 64 samples of the previous window, then the window),
//! `state` f32 `[2, 1, 128]`, `sr` i64 scalar 16000 -> `output` f32 `[1, 1]` (speech
//! probability) and `stateN` (the next state). A new stream starts with zero state and zero
//! context.
//!
//! The hysteresis, in samples counted from the stream start, after each window that ends at
//! sample `n`:
//! - a probability `>= threshold` cancels a pending end; when not in speech, speech starts at
//!   `max(0, n - speech_pad - 512)`;
//! - in speech, a probability `< threshold - 0.15` marks the end candidate `n` (if none is
//!   pending); once `n - candidate >= min_silence`, speech ends at
//!   `candidate + speech_pad - 512`;
//! - probabilities in between change nothing.
//!
//! GAP (silence the stream says it has) costs no inference: a window made only of GAP has
//! probability 0 and leaves the model as a fresh stream (zero state and context).

use std::sync::Arc;

use crate::inference::{Input, InputData, SharedSession};

pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per window at 16 kHz.
pub const WINDOW: usize = 512;
/// Samples of the previous window the model sees before each window.
pub const CONTEXT: usize = 64;
const STATE_LEN: usize = 2 * 128;

/// The hysteresis parameters (the defaults are `VADIterator`'s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadParams {
    pub threshold: f64,
    pub min_silence_ms: u32,
    pub speech_pad_ms: u32,
}

impl Default for VadParams {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_silence_ms: 100,
            speech_pad_ms: 30,
        }
    }
}

/// A decision of the hysteresis, at a sample position from the stream start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech starts at this sample.
    Start(u64),
    /// Speech ends before this sample.
    End(u64),
}

/// The start/end state machine, fed one probability per window.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    params: VadParams,
    triggered: bool,
    /// End candidate (sample position), 0 when none.
    temp_end: u64,
    current: u64,
}

impl Hysteresis {
    pub fn new(params: VadParams) -> Self {
        Self {
            params,
            triggered: false,
            temp_end: 0,
            current: 0,
        }
    }

    pub fn params(&self) -> VadParams {
        self.params
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.params);
    }

    /// Whether speech is going on.
    pub fn in_speech(&self) -> bool {
        self.triggered
    }

    /// Samples seen so far.
    pub fn position(&self) -> u64 {
        self.current
    }

    fn pad(&self) -> f64 {
        SAMPLE_RATE as f64 * self.params.speech_pad_ms as f64 / 1000.0
    }

    /// Feeds the probability of the window of `len` samples that follows the previous one.
    pub fn step(&mut self, prob: f32, len: usize) -> Option<VadEvent> {
        let p = prob as f64;
        let threshold = self.params.threshold;
        self.current += len as u64;
        if p >= threshold && self.temp_end != 0 {
            self.temp_end = 0;
        }
        if p >= threshold && !self.triggered {
            self.triggered = true;
            let start = (self.current as f64 - self.pad() - len as f64).max(0.0);
            return Some(VadEvent::Start(start as u64));
        }
        if p < threshold - 0.15 && self.triggered {
            if self.temp_end == 0 {
                self.temp_end = self.current;
            }
            let min_silence = SAMPLE_RATE as f64 * self.params.min_silence_ms as f64 / 1000.0;
            if ((self.current - self.temp_end) as f64) < min_silence {
                return None;
            }
            let end = self.temp_end as f64 + self.pad() - len as f64;
            self.temp_end = 0;
            self.triggered = false;
            return Some(VadEvent::End(end.max(0.0) as u64));
        }
        None
    }

    /// Closes speech that is still going on at the end of the stream (`VADIterator` leaves it
    /// open): it ends at the last sample seen.
    pub fn finish(&mut self) -> Option<VadEvent> {
        if !self.triggered {
            return None;
        }
        self.triggered = false;
        self.temp_end = 0;
        Some(VadEvent::End(self.current))
    }
}

/// Gives the speech probability of one window.
pub trait SpeechModel {
    /// `window` holds [`WINDOW`] samples; the model keeps its own recurrent state.
    fn probability(&mut self, window: &[f32]) -> Result<f32, String>;
    /// Back to a fresh stream.
    fn reset(&mut self);
}

/// Silero VAD v5 through a shared ONNX Runtime session.
pub struct SileroModel {
    session: Arc<SharedSession>,
    state: Vec<f32>,
    input: Vec<f32>,
}

impl SileroModel {
    pub fn new(session: Arc<SharedSession>) -> Self {
        Self {
            session,
            state: vec![0.0; STATE_LEN],
            input: vec![0.0; CONTEXT + WINDOW],
        }
    }
}

impl SpeechModel for SileroModel {
    fn probability(&mut self, window: &[f32]) -> Result<f32, String> {
        if window.len() != WINDOW {
            return Err(format!(
                "window of {} samples, expected {WINDOW}",
                window.len()
            ));
        }
        // input = the context (last CONTEXT samples of the previous input) ++ the window.
        self.input.copy_within(WINDOW.., 0);
        self.input[CONTEXT..].copy_from_slice(window);
        let sr = [SAMPLE_RATE as i64];
        let out = self
            .session
            .run(&[
                Input {
                    name: "input",
                    shape: &[1, CONTEXT + WINDOW],
                    data: InputData::F32(&self.input),
                },
                Input {
                    name: "state",
                    shape: &[2, 1, 128],
                    data: InputData::F32(&self.state),
                },
                Input {
                    name: "sr",
                    shape: &[],
                    data: InputData::I64(&sr),
                },
            ])
            .map_err(|e| e.to_string())?;
        let prob = *out[0]
            .data
            .first()
            .ok_or_else(|| "Silero VAD gave an empty output".to_string())?;
        if out[1].data.len() != STATE_LEN {
            return Err(format!(
                "Silero VAD gave a state of shape {:?}, expected [2,1,128]",
                out[1].shape
            ));
        }
        self.state.copy_from_slice(&out[1].data);
        Ok(prob)
    }

    fn reset(&mut self) {
        self.state.fill(0.0);
        self.input.fill(0.0);
    }
}

/// Windows a stream, runs the model and the hysteresis.
pub struct StreamVad<M> {
    model: M,
    hysteresis: Hysteresis,
    window: Vec<f32>,
    /// Whether every sample now in `window` came from GAP.
    window_all_gap: bool,
    /// Windows run through the model, and windows skipped as GAP.
    pub windows_run: u64,
    pub windows_gap: u64,
    /// The probability of the last window.
    pub last_probability: f32,
}

impl<M: SpeechModel> StreamVad<M> {
    pub fn new(model: M, params: VadParams) -> Self {
        Self {
            model,
            hysteresis: Hysteresis::new(params),
            window: Vec::with_capacity(WINDOW),
            window_all_gap: true,
            windows_run: 0,
            windows_gap: 0,
            last_probability: 0.0,
        }
    }

    /// Back to a fresh stream at sample 0.
    pub fn reset(&mut self) {
        self.model.reset();
        self.hysteresis.reset();
        self.window.clear();
        self.window_all_gap = true;
        self.last_probability = 0.0;
    }

    pub fn in_speech(&self) -> bool {
        self.hysteresis.in_speech()
    }

    /// Samples taken so far (including those waiting for a full window).
    pub fn samples_in(&self) -> u64 {
        self.hysteresis.position() + self.window.len() as u64
    }

    fn run_window(&mut self) -> Result<Option<VadEvent>, String> {
        let prob = if self.window_all_gap {
            self.windows_gap += 1;
            self.model.reset();
            0.0
        } else {
            self.windows_run += 1;
            self.model.probability(&self.window)?
        };
        self.last_probability = prob;
        self.window.clear();
        self.window_all_gap = true;
        Ok(self.hysteresis.step(prob, WINDOW))
    }

    /// Feeds audio; returns the decisions of the windows it completed.
    pub fn push(&mut self, mut samples: &[f32]) -> Result<Vec<VadEvent>, String> {
        let mut events = Vec::new();
        while !samples.is_empty() {
            let take = (WINDOW - self.window.len()).min(samples.len());
            self.window.extend_from_slice(&samples[..take]);
            self.window_all_gap = false;
            samples = &samples[take..];
            if self.window.len() == WINDOW {
                events.extend(self.run_window()?);
            }
        }
        Ok(events)
    }

    /// Feeds `n` samples of GAP (silence without data).
    pub fn push_gap(&mut self, mut n: u64) -> Result<Vec<VadEvent>, String> {
        let mut events = Vec::new();
        while n > 0 {
            let take = ((WINDOW - self.window.len()) as u64).min(n) as usize;
            self.window.resize(self.window.len() + take, 0.0);
            n -= take as u64;
            if self.window.len() == WINDOW {
                events.extend(self.run_window()?);
            }
        }
        Ok(events)
    }

    /// End of stream: the samples short of a window are dropped (as `VADIterator` never sees
    /// them) and speech still going on ends at the last full window.
    pub fn finish(&mut self) -> Option<VadEvent> {
        self.window.clear();
        self.window_all_gap = true;
        self.hysteresis.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(probs: &[f32], params: VadParams) -> Vec<VadEvent> {
        let mut h = Hysteresis::new(params);
        probs.iter().filter_map(|&p| h.step(p, WINDOW)).collect()
    }

    #[test]
    fn start_is_padded_back_and_clamped_at_zero() {
        let ev = run(&[0.9], VadParams::default());
        assert_eq!(ev, vec![VadEvent::Start(0)]);
        let ev = run(&[0.1, 0.1, 0.1, 0.6], VadParams::default());
        // current 2048, minus pad 480, minus the window 512
        assert_eq!(ev, vec![VadEvent::Start(2048 - 480 - 512)]);
    }

    #[test]
    fn end_waits_for_min_silence() {
        // 100 ms = 1600 samples: the end candidate at window k ends speech at the window
        // where current - candidate >= 1600, i.e. 4 windows later (2048 >= 1600).
        let mut probs = vec![0.9; 5];
        probs.extend([0.1; 5]);
        let ev = run(&probs, VadParams::default());
        let candidate = 6 * WINDOW as u64;
        assert_eq!(
            ev,
            vec![
                VadEvent::Start(0),
                VadEvent::End(candidate + 480 - WINDOW as u64)
            ]
        );
        // three silent windows are not enough
        let mut probs = vec![0.9; 5];
        probs.extend([0.1; 4]);
        assert_eq!(run(&probs, VadParams::default()).len(), 1);
    }

    #[test]
    fn speech_cancels_a_pending_end_and_grey_zone_keeps_it() {
        let mut probs = vec![0.9; 3];
        probs.extend([0.1, 0.1, 0.9, 0.1, 0.1, 0.1]);
        // the 0.9 resets the candidate: 4 windows of silence after it are needed
        assert_eq!(run(&probs, VadParams::default()).len(), 1);
        // a grey-zone probability (0.4) neither starts, ends nor cancels
        let mut probs = vec![0.9; 3];
        probs.extend([0.1, 0.4, 0.4, 0.1, 0.1]);
        let ev = run(&probs, VadParams::default());
        assert_eq!(ev[1], VadEvent::End(4 * 512 + 480 - 512));
        assert_eq!(run(&[0.4; 10], VadParams::default()), vec![]);
    }

    #[test]
    fn threshold_and_pad_follow_the_parameters() {
        let params = VadParams {
            threshold: 0.8,
            min_silence_ms: 0,
            speech_pad_ms: 0,
        };
        // 0.7 is below the threshold; 0.66 is not below 0.8 - 0.15
        let ev = run(&[0.7, 0.9, 0.66, 0.6], params);
        assert_eq!(ev, vec![VadEvent::Start(512), VadEvent::End(3 * 512)]);
    }

    struct Fake {
        /// Probability = mean absolute sample value; counts calls.
        calls: usize,
        resets: usize,
    }

    impl SpeechModel for Fake {
        fn probability(&mut self, w: &[f32]) -> Result<f32, String> {
            assert_eq!(w.len(), WINDOW);
            self.calls += 1;
            Ok(w.iter().map(|x| x.abs()).sum::<f32>() / w.len() as f32)
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    #[test]
    fn stream_windows_across_buffers_and_gap_costs_nothing() {
        let mut vad = StreamVad::new(
            Fake {
                calls: 0,
                resets: 0,
            },
            VadParams::default(),
        );
        let mut events = Vec::new();
        // 700 + 324 = 2 windows of "speech" (amplitude 1)
        events.extend(vad.push(&[1.0; 700]).unwrap());
        events.extend(vad.push(&[1.0; 324]).unwrap());
        assert_eq!(events, vec![VadEvent::Start(0)]);
        assert_eq!(vad.model.calls, 2);
        // 1 s of GAP: silence without inference, ends the speech
        events.extend(vad.push_gap(16_000).unwrap());
        assert_eq!(vad.model.calls, 2);
        assert_eq!(vad.windows_gap, 31);
        assert_eq!(events[1], VadEvent::End(1024 + 512 + 480 - 512));
        assert_eq!(vad.samples_in(), 1024 + 16_000);
        assert!(vad.finish().is_none());
        vad.reset();
        assert_eq!(vad.samples_in(), 0);
        assert_eq!(vad.push(&[1.0; 512]).unwrap(), vec![VadEvent::Start(0)]);
        assert_eq!(vad.finish(), Some(VadEvent::End(512)));
    }
}
