// SPDX-License-Identifier: MPL-2.0

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::inference::{self, Device, Input, InputData, SessionRequest, SharedSession, contract};
use crate::tts::piper::{self, Espeak, VoiceConfig};
use crate::tts::{Engine, SynthError, SynthSink, WordBoundary};
use crate::ttsbase::{TtsSrcExt, TtsSrcImpl};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "piperttssrc",
        gst::DebugColorFlags::empty(),
        Some("Piper neural text-to-speech source"),
    )
});

/// Scales at or below zero mean: the voice's own value (its `.onnx.json`).
const DEFAULT_SCALE: f32 = -1.0;
const DEFAULT_SPEAKER: u32 = 0;
const DEFAULT_SENTENCE_SILENCE_MS: u32 = 200;
const DEFAULT_DEVICE: &str = "cpu";
const DEFAULT_THREADS: u32 = 0;

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    speaker: u32,
    length_scale: f32,
    noise_scale: f32,
    noise_w: f32,
    sentence_silence_ms: u32,
    device: String,
    threads: u32,
    ort_library: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            speaker: DEFAULT_SPEAKER,
            length_scale: DEFAULT_SCALE,
            noise_scale: DEFAULT_SCALE,
            noise_w: DEFAULT_SCALE,
            sentence_silence_ms: DEFAULT_SENTENCE_SILENCE_MS,
            device: DEFAULT_DEVICE.into(),
            threads: DEFAULT_THREADS,
            ort_library: None,
        }
    }
}

/// A loaded voice; synthesizes on the base's thread.
struct PiperEngine {
    session: Arc<SharedSession>,
    config: VoiceConfig,
    espeak: Espeak,
    multi_speaker: bool,
    settings: Arc<Mutex<Settings>>,
}

impl PiperEngine {
    fn scales(&self) -> ([f32; 3], u32, u32) {
        let s = self.settings.lock().unwrap();
        let pick = |v: f32, d: f32| if v > 0.0 { v } else { d };
        let d = self.config.inference;
        (
            [
                pick(s.noise_scale, d.noise_scale),
                pick(s.length_scale, d.length_scale),
                pick(s.noise_w, d.noise_w),
            ],
            s.speaker,
            s.sentence_silence_ms,
        )
    }
}

impl Engine for PiperEngine {
    fn rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    fn synthesize(&self, text: &str, sink: &mut dyn SynthSink) -> Result<(), SynthError> {
        let sentences = self
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
            gst::debug!(
                CAT,
                "no word timings: the words of {text:?} and of its phonemes differ"
            );
        }
        let mut emitted = 0usize;
        for (phonemes, words) in sentences.iter().zip(&words) {
            if sink.cancelled() {
                return Err(SynthError::Cancelled);
            }
            let (ids, spans, missing) = self.config.phoneme_ids(phonemes);
            if !missing.is_empty() {
                gst::debug!(CAT, "phonemes missing from the voice's map: {missing:?}");
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
            if self.multi_speaker {
                inputs.push(Input {
                    name: "sid",
                    shape: &[1],
                    data: InputData::I64(&sid),
                });
            }
            let (out, optional) = self
                .session
                .run_with_optional(&inputs, &["durations"])
                .map_err(|e| SynthError::Failed(format!("Piper voice: {e}")))?;
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

pub struct PiperTtsSrc {
    settings: Arc<Mutex<Settings>>,
}

impl Default for PiperTtsSrc {
    fn default() -> Self {
        Self {
            settings: Arc::new(Mutex::new(Settings::default())),
        }
    }
}

impl PiperTtsSrc {
    fn load(&self) -> Result<Arc<PiperEngine>, gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let model = s
            .model
            .clone()
            .unwrap_or_else(crate::paths::default_piper_voice);
        if !model.is_file() {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                (
                    "Piper voice model not found: {} (run scripts/setup.sh for the default \
                     voice, or set the model property to a Piper .onnx file)",
                    model.display()
                )
            ));
        }
        let config_path = VoiceConfig::path_for_model(&model);
        if !config_path.is_file() {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                (
                    "Piper voice config not found: {} (it must lie beside the model)",
                    config_path.display()
                )
            ));
        }
        let config = VoiceConfig::load(&config_path).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Read,
                ("Invalid Piper voice config: {e}")
            )
        })?;
        if s.speaker >= config.num_speakers {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "Speaker {} does not exist: the voice has {} speaker(s) (0..{})",
                    s.speaker,
                    config.num_speakers,
                    config.num_speakers - 1
                )
            ));
        }
        let espeak = Espeak::new(&config.espeak.voice);
        espeak
            .check()
            .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{e}")))?;
        let device: Device = s
            .device
            .parse()
            .map_err(|e: String| gst::error_msg!(gst::ResourceError::Settings, ("{e}")))?;
        let multi_speaker = config.num_speakers > 1;
        let contract = if multi_speaker {
            &contract::PIPER_VOICE_MULTI
        } else {
            &contract::PIPER_VOICE
        };
        let mut req = SessionRequest::new(&model, contract);
        req.device = device;
        req.threads = s.threads as usize;
        req.runtime_library = s.ort_library.as_deref();
        let session = inference::load_for_element(&*self.obj(), &req, "Piper voice")?;
        gst::info!(
            CAT,
            imp = self,
            "voice {} ({} Hz, espeak voice {}, {} speaker(s))",
            model.display(),
            config.audio.sample_rate,
            config.espeak.voice,
            config.num_speakers
        );
        Ok(Arc::new(PiperEngine {
            session,
            config,
            espeak,
            multi_speaker,
            settings: self.settings.clone(),
        }))
    }
}

#[glib::object_subclass]
impl ObjectSubclass for PiperTtsSrc {
    const NAME: &'static str = "GstPiperTtsSrc";
    type Type = super::PiperTtsSrc;
    type ParentType = crate::ttsbase::TtsSrc;
}

impl ObjectImpl for PiperTtsSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(
                        "Piper voice .onnx file, its .onnx.json beside it (default: \
                         en_US-joe-medium in the set-up cache)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("speaker")
                    .nick("Speaker")
                    .blurb("Speaker id, for voices with several speakers")
                    .default_value(DEFAULT_SPEAKER)
                    .build(),
                glib::ParamSpecFloat::builder("length-scale")
                    .nick("Length scale")
                    .blurb("Phoneme length: > 1 slower, < 1 faster (<= 0: the voice's value)")
                    .minimum(-1.0)
                    .maximum(10.0)
                    .default_value(DEFAULT_SCALE)
                    .build(),
                glib::ParamSpecFloat::builder("noise-scale")
                    .nick("Noise scale")
                    .blurb("Generator noise (<= 0: the voice's value)")
                    .minimum(-1.0)
                    .maximum(10.0)
                    .default_value(DEFAULT_SCALE)
                    .build(),
                glib::ParamSpecFloat::builder("noise-w")
                    .nick("Noise w")
                    .blurb("Phoneme width noise (<= 0: the voice's value)")
                    .minimum(-1.0)
                    .maximum(10.0)
                    .default_value(DEFAULT_SCALE)
                    .build(),
                glib::ParamSpecUInt::builder("sentence-silence-ms")
                    .nick("Sentence silence")
                    .blurb("Silence after each sentence, in milliseconds")
                    .maximum(10_000)
                    .default_value(DEFAULT_SENTENCE_SILENCE_MS)
                    .build(),
                glib::ParamSpecString::builder("device")
                    .nick("Device")
                    .blurb("Where the voice runs: cpu, cuda, cuda:N, tensorrt, tensorrt:N")
                    .default_value(Some(DEFAULT_DEVICE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads (0: its default)")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb(
                        "libonnxruntime.so to load (default: ORT_DYLIB_PATH, set-up cache, system)",
                    )
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => {
                s.model = value
                    .get::<Option<String>>()
                    .expect("type checked")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            }
            "speaker" => s.speaker = value.get().expect("type checked"),
            "length-scale" => s.length_scale = value.get().expect("type checked"),
            "noise-scale" => s.noise_scale = value.get().expect("type checked"),
            "noise-w" => s.noise_w = value.get().expect("type checked"),
            "sentence-silence-ms" => s.sentence_silence_ms = value.get().expect("type checked"),
            "device" => {
                s.device = value
                    .get::<Option<String>>()
                    .expect("type checked")
                    .unwrap_or_else(|| DEFAULT_DEVICE.into())
            }
            "threads" => s.threads = value.get().expect("type checked"),
            "ort-library" => {
                s.ort_library = value
                    .get::<Option<String>>()
                    .expect("type checked")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            }
            _ => unimplemented!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => s.model.as_ref().map(|p| p.display().to_string()).to_value(),
            "speaker" => s.speaker.to_value(),
            "length-scale" => s.length_scale.to_value(),
            "noise-scale" => s.noise_scale.to_value(),
            "noise-w" => s.noise_w.to_value(),
            "sentence-silence-ms" => s.sentence_silence_ms.to_value(),
            "device" => s.device.to_value(),
            "threads" => s.threads.to_value(),
            "ort-library" => s
                .ort_library
                .as_ref()
                .map(|p| p.display().to_string())
                .to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for PiperTtsSrc {}

impl ElementImpl for PiperTtsSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Piper text-to-speech source",
                "Source/Audio",
                "Speaks text with a Piper neural voice (ONNX, phonemes from the espeak-ng \
                 program): live audio, silence while idle, instant interruption",
                "livetalk developers",
            )
        });
        Some(&*META)
    }
}

impl BaseSrcImpl for PiperTtsSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let engine = self.load()?;
        self.obj().set_engine(engine);
        self.parent_start()
    }
}

impl PushSrcImpl for PiperTtsSrc {}

impl TtsSrcImpl for PiperTtsSrc {}
