//! The Piper engine: a voice (its ONNX model, its `.onnx.json`, the espeak-ng program for
//! phonemes) that synthesizes one piece of text at a time for the TTS source base, with word
//! timings when the voice exposes its phoneme durations.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::piper::{self, Espeak, VoiceConfig};
use super::{Engine, SynthError, SynthSink, WordBoundary};
use crate::inference::contract::{self, ModelContract};
use crate::inference::{InferenceError, Input, InputData, Output, RunCancel, SharedSession};

/// What may change from one sentence to the next (the element's properties). Scales at or
/// below zero mean: the voice's own value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PiperParams {
    pub speaker: u32,
    pub length_scale: f32,
    pub noise_scale: f32,
    pub noise_w: f32,
    /// Silence after each sentence of phonemes.
    pub sentence_silence_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceErrorKind {
    /// A file or program is missing.
    NotFound,
    /// A file cannot be read or parsed.
    Invalid,
    /// The settings do not fit the voice.
    Settings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceError {
    pub kind: VoiceErrorKind,
    pub message: String,
}

impl VoiceError {
    fn new(kind: VoiceErrorKind, message: String) -> Self {
        Self { kind, message }
    }
}

impl std::fmt::Display for VoiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A voice's files, checked; the model is loaded by the caller (it owns the runtime settings).
#[derive(Debug, Clone)]
pub struct PiperVoice {
    pub model: PathBuf,
    pub config: VoiceConfig,
    pub espeak: Espeak,
}

impl PiperVoice {
    /// Opens the voice `model` (its `.onnx.json` beside it) for `speaker`, and checks that the
    /// espeak-ng program runs and knows the voice's espeak voice.
    pub fn open(model: &Path, speaker: u32) -> Result<Self, VoiceError> {
        use VoiceErrorKind::*;
        if !model.is_file() {
            return Err(VoiceError::new(
                NotFound,
                format!(
                    "Piper voice model not found: {} (run scripts/setup.sh for the default \
                     voice, or set the model property to a Piper .onnx file)",
                    model.display()
                ),
            ));
        }
        let config_path = VoiceConfig::path_for_model(model);
        if !config_path.is_file() {
            return Err(VoiceError::new(
                NotFound,
                format!(
                    "Piper voice config not found: {} (it must lie beside the model)",
                    config_path.display()
                ),
            ));
        }
        let config = VoiceConfig::load(&config_path)
            .map_err(|e| VoiceError::new(Invalid, format!("Invalid Piper voice config: {e}")))?;
        if speaker >= config.num_speakers {
            return Err(VoiceError::new(
                Settings,
                format!(
                    "Speaker {speaker} does not exist: the voice has {} speaker(s) (0..{})",
                    config.num_speakers,
                    config.num_speakers - 1
                ),
            ));
        }
        let espeak = Espeak::new(&config.espeak.voice);
        espeak.check().map_err(|e| VoiceError::new(NotFound, e))?;
        Ok(Self {
            model: model.to_path_buf(),
            config,
            espeak,
        })
    }

    pub fn multi_speaker(&self) -> bool {
        self.config.num_speakers > 1
    }

    /// The contract the model must meet (with a speaker input or without).
    pub fn contract(&self) -> &'static ModelContract {
        if self.multi_speaker() {
            &contract::PIPER_VOICE_MULTI
        } else {
            &contract::PIPER_VOICE
        }
    }

    pub fn rate(&self) -> u32 {
        self.config.audio.sample_rate
    }
}

/// The source of the per-sentence parameters (read once per piece of text).
pub type ParamsFn = Box<dyn Fn() -> PiperParams + Send + Sync>;

/// A loaded voice; synthesizes on the base's synthesis thread.
pub struct PiperEngine {
    session: Arc<SharedSession>,
    voice: PiperVoice,
    params: ParamsFn,
}

impl PiperEngine {
    pub fn new(voice: PiperVoice, session: Arc<SharedSession>, params: ParamsFn) -> Self {
        Self {
            session,
            voice,
            params,
        }
    }

    /// The scales input (noise, length, noise_w), the speaker and the sentence silence.
    fn scales(&self) -> ([f32; 3], u32, u32) {
        let s = (self.params)();
        // Length: <= 0 is the voice's value. Noise: < 0 is the voice's value, 0 is no
        // noise at all (the same text then always gives the same samples).
        let pick = |v: f32, d: f32| if v > 0.0 { v } else { d };
        let pick_noise = |v: f32, d: f32| if v >= 0.0 { v } else { d };
        let d = self.voice.config.inference;
        (
            [
                pick_noise(s.noise_scale, d.noise_scale),
                pick(s.length_scale, d.length_scale),
                pick_noise(s.noise_w, d.noise_w),
            ],
            s.speaker,
            s.sentence_silence_ms,
        )
    }
}

/// How often a run in flight looks whether its sentence is still wanted.
const CANCEL_POLL: Duration = Duration::from_millis(10);

impl PiperEngine {
    /// One inference run, stopped early when the sentence is no longer wanted (flush, stop):
    /// a watcher thread raises the runtime's terminate flag. (The watcher calls the check,
    /// which takes the base's lock, while it holds `done`; nothing takes them the other way
    /// round.)
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        inputs: &[Input<'_>],
        sink: &dyn SynthSink,
    ) -> Result<(Vec<Output>, Vec<Option<Output>>), SynthError> {
        let failed = |e: InferenceError| SynthError::Failed(format!("Piper voice: {e}"));
        let Some(check) = sink.cancel_check() else {
            return self
                .session
                .run_with_optional(inputs, &["durations"])
                .map_err(failed);
        };
        let cancel = RunCancel::new().map_err(failed)?;
        let (lock, cond) = (Mutex::new(false), Condvar::new());
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut done = lock.lock().unwrap();
                while !*done {
                    if check() {
                        cancel.cancel();
                        return;
                    }
                    done = cond.wait_timeout(done, CANCEL_POLL).unwrap().0;
                }
            });
            let result = self
                .session
                .run_cancellable(inputs, &["durations"], Some(&cancel));
            *lock.lock().unwrap() = true;
            cond.notify_all();
            result
        });
        match result {
            Err(_) if check() => Err(SynthError::Cancelled),
            other => other.map_err(failed),
        }
    }
}

impl Engine for PiperEngine {
    fn rate(&self) -> u32 {
        self.voice.rate()
    }

    fn synthesize(&self, text: &str, sink: &mut dyn SynthSink) -> Result<(), SynthError> {
        let sentences = self
            .voice
            .espeak
            .phonemize(text)
            .map_err(|e| SynthError::Failed(format!("espeak-ng: {e}")))?;
        let (scales, speaker, silence_ms) = self.scales();
        let silence = vec![0i16; (self.rate() as u64 * silence_ms as u64 / 1000) as usize];
        // Word timings need the voice's durations output (models/piper_durations.py) and
        // the text's words to pair one to one with the phonemes' words (numbers and
        // abbreviations expand into more words: then there are none for this text).
        let words: Vec<Vec<Range<usize>>> =
            sentences.iter().map(|p| piper::phoneme_words(p)).collect();
        let mut text_words = piper::text_words(text).into_iter();
        let paired = text_words.len() == words.iter().map(Vec::len).sum::<usize>();
        if !paired {
            sink.debug(&format!(
                "no word timings: the words of {text:?} and of its phonemes differ"
            ));
        }
        let mut emitted = 0usize;
        for (phonemes, words) in sentences.iter().zip(&words) {
            if sink.cancelled() {
                return Err(SynthError::Cancelled);
            }
            let (ids, spans, missing) = self.voice.config.phoneme_ids(phonemes);
            if !missing.is_empty() {
                sink.debug(&format!(
                    "phonemes missing from the voice's map: {missing:?}"
                ));
            }
            let sentence_words: Vec<String> = text_words.by_ref().take(words.len()).collect();
            if ids.len() <= 3 {
                continue;
            }
            let lengths = [ids.len() as i64];
            let sid = [speaker as i64];
            let input_shape = [1, ids.len()];
            let mut inputs = vec![
                Input {
                    name: "input",
                    shape: &input_shape,
                    data: InputData::I64(&ids),
                },
                Input {
                    name: "input_lengths",
                    shape: &[1],
                    data: InputData::I64(&lengths),
                },
                Input {
                    name: "scales",
                    shape: &[3],
                    data: InputData::F32(&scales),
                },
            ];
            if self.voice.multi_speaker() {
                inputs.push(Input {
                    name: "sid",
                    shape: &[1],
                    data: InputData::I64(&sid),
                });
            }
            let (out, optional) = self.run(&inputs, sink)?;
            let audio = out.into_iter().next().map(|o| o.data).unwrap_or_default();
            if sink.cancelled() {
                return Err(SynthError::Cancelled);
            }
            if paired && let Some(Some(durations)) = optional.into_iter().next() {
                let timings = piper::word_timings(words, &spans, &durations.data, audio.len());
                let ns = |samples: usize| samples as u64 * 1_000_000_000 / self.rate() as u64;
                for (word, timing) in sentence_words.into_iter().zip(timings) {
                    if let Some((start, len)) = timing {
                        sink.word(WordBoundary {
                            text: word,
                            offset_ns: ns(emitted + start),
                            duration_ns: ns(len),
                        });
                    }
                }
            }
            sink.audio(&piper::to_i16(&audio));
            sink.audio(&silence);
            emitted += audio.len() + silence.len();
        }
        Ok(())
    }
}
