//! Whisper speech recognition through the inference core: log-mel of the utterance padded to
//! whisper's 30 s, the encoder (the same ONNX whisperfeat loads), the cross-attention keys and
//! values once per utterance, then greedy decoding with the cached decoder
//! ([`super::decode`]), and the tokenizer (`tokenizer.json`, through the `tokenizers` crate)
//! for the text.
//!
//! A model directory (made by `models/convert_whisper.py`) holds `encoder.onnx`,
//! `cross_kv.onnx`, `decoder.onnx`, `tokenizer.json` and `asr.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::inference::{self, Device, Input, InputData, SessionRequest, SharedSession, contract};
use crate::mel::{self, LogMel};

use super::decode::{self, DecodeParams, Decoded, DecoderStep, SpecialTokens};

/// Samples whisper sees at once: 30 s at 16 kHz.
pub const WINDOW_SAMPLES: usize = 30 * mel::SAMPLE_RATE as usize;
const MEL_FRAMES: usize = 3000;

/// `asr.json`: what decoding needs beyond the graphs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AsrConfig {
    pub n_vocab: usize,
    pub n_text_ctx: usize,
    pub multilingual: bool,
    #[serde(default)]
    pub suppress_ids: Vec<i64>,
    #[serde(default)]
    pub suppress_ids_begin: Vec<i64>,
}

/// What the caller chooses.
#[derive(Debug, Clone)]
pub struct WhisperOptions {
    pub device: Device,
    pub threads: usize,
    pub runtime_library: Option<PathBuf>,
    /// Language code for multilingual models (`en`, `de`, ...); ignored by English-only ones.
    pub language: String,
    pub no_speech_threshold: f64,
    pub logprob_threshold: f64,
}

impl Default for WhisperOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            threads: 0,
            runtime_library: None,
            language: "en".into(),
            no_speech_threshold: 0.6,
            logprob_threshold: -1.0,
        }
    }
}

/// One utterance's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    pub text: String,
    pub decoded: Decoded,
}

/// The loaded model: sessions shared through the inference core.
pub struct Whisper {
    encoder: Arc<SharedSession>,
    cross: Arc<SharedSession>,
    decoder: Arc<SharedSession>,
    tokenizer: tokenizers::Tokenizer,
    config: AsrConfig,
    special: SpecialTokens,
    params: DecodeParams,
}

/// The default model directory: whisper tiny.en as the set-up converts it.
pub fn default_model_dir() -> PathBuf {
    crate::paths::models_dir().join("whisper-tiny.en")
}

fn token(tok: &tokenizers::Tokenizer, name: &str) -> Result<i64, String> {
    tok.token_to_id(name)
        .map(|t| t as i64)
        .ok_or_else(|| format!("the tokenizer has no token {name}"))
}

impl Whisper {
    /// Loads a model directory; every model is checked against its contract.
    pub fn load(dir: &Path, opts: &WhisperOptions) -> Result<Self, String> {
        let load = |name: &str, c: &'static contract::ModelContract| {
            let path = dir.join(name);
            let mut req = SessionRequest::new(&path, c);
            req.device = opts.device;
            req.threads = opts.threads;
            req.runtime_library = opts.runtime_library.as_deref();
            inference::load_session(&req).map_err(|e| e.to_string())
        };
        let config_path = dir.join("asr.json");
        let config: AsrConfig =
            serde_json::from_slice(&std::fs::read(&config_path).map_err(|e| {
                format!(
                    "{}: {e} (make the model directory with models/convert_whisper.py --decoder)",
                    config_path.display()
                )
            })?)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| format!("{}: {e}", tok_path.display()))?;
        let special = SpecialTokens {
            sot: token(&tokenizer, "<|startoftranscript|>")?,
            eot: token(&tokenizer, "<|endoftext|>")?,
            no_timestamps: token(&tokenizer, "<|notimestamps|>")?,
            no_speech: token(&tokenizer, "<|nospeech|>")
                .or_else(|_| token(&tokenizer, "<|nocaptions|>"))
                .ok(),
            transcribe: token(&tokenizer, "<|transcribe|>").ok(),
        };
        let language = if config.multilingual {
            let code = opts.language.trim().to_ascii_lowercase();
            Some(token(&tokenizer, &format!("<|{code}|>")).map_err(|_| {
                format!("language '{code}' is not one this multilingual model knows")
            })?)
        } else {
            None
        };
        let params = DecodeParams {
            language,
            suppress: config.suppress_ids.clone(),
            suppress_begin: config.suppress_ids_begin.clone(),
            // whisper's sample_len: half the text context
            max_tokens: config.n_text_ctx / 2,
            no_speech_threshold: opts.no_speech_threshold,
            logprob_threshold: opts.logprob_threshold,
        };
        Ok(Self {
            encoder: load("encoder.onnx", &contract::WHISPER_ENCODER)?,
            cross: load("cross_kv.onnx", &contract::WHISPER_CROSS_KV)?,
            decoder: load("decoder.onnx", &contract::WHISPER_DECODER)?,
            tokenizer,
            config,
            special,
            params,
        })
    }

    pub fn is_multilingual(&self) -> bool {
        self.config.multilingual
    }

    /// The device the decoder really runs on, and why not the one asked for, if not.
    pub fn device(&self) -> (Device, Option<String>) {
        (self.decoder.device, self.decoder.fallback.clone())
    }

    /// Log-mel of up to 30 s of audio padded with silence to 30 s, `[80, 3000]`.
    pub fn features(mel: &mut LogMel, audio: &[f32]) -> Vec<f32> {
        let mut padded = audio[..audio.len().min(WINDOW_SAMPLES)].to_vec();
        padded.resize(WINDOW_SAMPLES, 0.0);
        mel.compute(&padded)
    }

    /// Text of tokens (special tokens left out).
    pub fn decode_text(&self, tokens: &[i64]) -> Result<String, String> {
        let ids: Vec<u32> = tokens
            .iter()
            .filter(|&&t| t >= 0 && t < self.special.eot)
            .map(|&t| t as u32)
            .collect();
        self.tokenizer
            .decode(&ids, true)
            .map(|s| s.trim().to_string())
            .map_err(|e| e.to_string())
    }

    /// Transcribes up to 30 s of 16 kHz mono audio. `cancelled` is asked between decoding
    /// steps.
    pub fn transcribe(
        &self,
        mel: &mut LogMel,
        audio: &[f32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Transcription, String> {
        let features = Self::features(mel, audio);
        let out = self
            .encoder
            .run(&[Input {
                name: "input_features",
                shape: &[1, mel::N_MELS, MEL_FRAMES],
                data: InputData::F32(&features),
            }])
            .map_err(|e| e.to_string())?;
        let hidden = &out[0];
        // [1, steps, layers + 1, d]: the last is the encoder output
        let &[_, steps, states, d] = hidden.shape.as_slice() else {
            return Err(format!("encoder output has shape {:?}", hidden.shape));
        };
        let mut enc = Vec::with_capacity(steps * d);
        for s in 0..steps {
            let at = (s * states + states - 1) * d;
            enc.extend_from_slice(&hidden.data[at..at + d]);
        }
        let cross = self
            .cross
            .run(&[Input {
                name: "encoder_output",
                shape: &[1, steps, d],
                data: InputData::F32(&enc),
            }])
            .map_err(|e| e.to_string())?
            .remove(0);
        if cross.shape.len() != 5 {
            return Err(format!(
                "cross-attention output has shape {:?}",
                cross.shape
            ));
        }
        let mut step = CachedDecoder {
            session: &self.decoder,
            cross_shape: cross.shape.clone(),
            cross: cross.data,
            self_kv: Vec::new(),
            past: 0,
            vocab: self.config.n_vocab,
        };
        let decoded = decode::greedy(&mut step, &self.special, &self.params, cancelled)?;
        let text = self.decode_text(&decoded.tokens)?;
        Ok(Transcription { text, decoded })
    }
}

/// [`DecoderStep`] over the cached decoder session.
struct CachedDecoder<'a> {
    session: &'a SharedSession,
    /// `[2 * layers, 1, heads, steps, head_dim]`
    cross_shape: Vec<usize>,
    cross: Vec<f32>,
    self_kv: Vec<f32>,
    past: usize,
    vocab: usize,
}

impl DecoderStep for CachedDecoder<'_> {
    fn step(&mut self, tokens: &[i64]) -> Result<Vec<f32>, String> {
        let c = &self.cross_shape;
        let kv_shape = [c[0], c[1], c[2], self.past, c[4]];
        let mut out = self
            .session
            .run(&[
                Input {
                    name: "tokens",
                    shape: &[1, tokens.len()],
                    data: InputData::I64(tokens),
                },
                Input {
                    name: "self_kv",
                    shape: &kv_shape,
                    data: InputData::F32(&self.self_kv),
                },
                Input {
                    name: "cross_kv",
                    shape: &self.cross_shape,
                    data: InputData::F32(&self.cross),
                },
            ])
            .map_err(|e| e.to_string())?;
        let new_kv = out.pop().ok_or("decoder gave no cache")?;
        let logits = out.pop().ok_or("decoder gave no logits")?;
        if new_kv.shape.len() != 5 || new_kv.shape[3] != self.past + tokens.len() {
            return Err(format!(
                "decoder cache has shape {:?} after {} + {} tokens",
                new_kv.shape,
                self.past,
                tokens.len()
            ));
        }
        self.past = new_kv.shape[3];
        self.self_kv = new_kv.data;
        Ok(logits.data)
    }

    fn vocab(&self) -> usize {
        self.vocab
    }
}
