// SPDX-License-Identifier: MPL-2.0
//
// Glue: properties, and the Piper engine (`crate::tts`) handed to the base at start.
// One lock, `settings`; the engine also reads it from the base's synthesis thread, which
// holds no lock of the base while it runs the engine.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::enums;
use crate::inference::{self, Device, SessionRequest};
use crate::tts::piper_engine::{PiperEngine, PiperParams, PiperVoice, VoiceErrorKind};
use crate::ttsbase::{TtsBaseSrcExt, TtsBaseSrcImpl};

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
const DEFAULT_THREADS: u32 = 0;

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    speaker: u32,
    length_scale: f32,
    noise_scale: f32,
    noise_w: f32,
    sentence_silence_ms: u32,
    device: enums::Device,
    device_id: u32,
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
            device: enums::Device::Cpu,
            device_id: 0,
            threads: DEFAULT_THREADS,
            ort_library: None,
        }
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
        let voice = PiperVoice::open(&model, s.speaker).map_err(|e| {
            let kind = match e.kind {
                VoiceErrorKind::NotFound => gst::ResourceError::NotFound,
                VoiceErrorKind::Invalid => gst::ResourceError::Read,
                VoiceErrorKind::Settings => gst::ResourceError::Settings,
            };
            gst::error_msg!(kind, ("{}", e.message))
        })?;
        let device: Device = s.device.with_id(s.device_id);
        let mut req = SessionRequest::new(&model, voice.contract());
        req.device = device;
        req.threads = s.threads as usize;
        req.runtime_library = s.ort_library.as_deref();
        let session = inference::load_for_element(&*self.obj(), &req, "Piper voice")?;
        gst::info!(
            CAT,
            imp = self,
            "voice {} ({} Hz, espeak voice {}, {} speaker(s))",
            model.display(),
            voice.rate(),
            voice.config.espeak.voice,
            voice.config.num_speakers
        );
        let settings = self.settings.clone();
        let params = Box::new(move || {
            let s = settings.lock().unwrap();
            PiperParams {
                speaker: s.speaker,
                length_scale: s.length_scale,
                noise_scale: s.noise_scale,
                noise_w: s.noise_w,
                sentence_silence_ms: s.sentence_silence_ms,
            }
        });
        Ok(Arc::new(PiperEngine::new(voice, session, params)))
    }
}

#[glib::object_subclass]
impl ObjectSubclass for PiperTtsSrc {
    const NAME: &'static str = "GstPiperTtsSrc";
    type Type = super::PiperTtsSrc;
    type ParentType = crate::ttsbase::TtsBaseSrc;
}

impl ObjectImpl for PiperTtsSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let [device, device_id] = enums::device_properties("the voice");
            vec![
                device,
                device_id,
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
                    .blurb("Generator noise (< 0: the voice's value; 0: none, the same text always gives the same samples)")
                    .minimum(-1.0)
                    .maximum(10.0)
                    .default_value(DEFAULT_SCALE)
                    .build(),
                glib::ParamSpecFloat::builder("noise-w")
                    .nick("Noise w")
                    .blurb("Phoneme width noise (< 0: the voice's value; 0: none)")
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
            "device" => s.device = value.get().expect("type checked"),
            "device-id" => s.device_id = value.get().expect("type checked"),
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
            "device-id" => s.device_id.to_value(),
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

impl TtsBaseSrcImpl for PiperTtsSrc {}
