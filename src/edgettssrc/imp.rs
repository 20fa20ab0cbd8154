// SPDX-License-Identifier: MPL-2.0
//
// Glue: properties, and the Edge engine (`crate::tts`) handed to the base at start.
// One lock, `settings`; the engine also reads it from the base's synthesis thread, which
// holds no lock of the base while it runs the engine.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::tts::edge_client::{EdgeClient, EdgeRequest};
use crate::tts::edge_protocol;
use crate::tts::{Engine, SynthError, SynthSink};
use crate::ttsbase::{TtsBaseSrcExt, TtsBaseSrcImpl};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "edgettssrc",
        gst::DebugColorFlags::empty(),
        Some("Edge read-aloud text-to-speech source"),
    )
});

const DEFAULT_VOICE: &str = "en-US-EmmaMultilingualNeural";
const DEFAULT_RATE: &str = "+0%";
const DEFAULT_PITCH: &str = "+0Hz";
const DEFAULT_VOLUME: &str = "+0%";
const DEFAULT_TIMEOUT_MS: u32 = 10_000;

#[derive(Debug, Clone)]
struct Settings {
    voice: String,
    rate: String,
    pitch: String,
    volume: String,
    endpoint: Option<String>,
    timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            voice: DEFAULT_VOICE.into(),
            rate: DEFAULT_RATE.into(),
            pitch: DEFAULT_PITCH.into(),
            volume: DEFAULT_VOLUME.into(),
            endpoint: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

impl Settings {
    fn request(&self) -> EdgeRequest {
        EdgeRequest {
            voice: self.voice.clone(),
            rate: self.rate.clone(),
            pitch: self.pitch.clone(),
            volume: self.volume.clone(),
            endpoint: self.endpoint.clone(),
            timeout: Duration::from_millis(self.timeout_ms as u64),
        }
    }
}

struct EdgeEngine {
    client: EdgeClient,
    settings: Arc<Mutex<Settings>>,
}

impl Engine for EdgeEngine {
    fn rate(&self) -> u32 {
        edge_protocol::RATE
    }

    fn synthesize(&self, text: &str, sink: &mut dyn SynthSink) -> Result<(), SynthError> {
        // Settings may change while playing: each sentence takes the current ones.
        let req = self.settings.lock().unwrap().request();
        gst::debug!(CAT, "requesting {text:?} ({})", req.voice);
        self.client.synthesize(&req, text, sink)
    }
}

#[derive(Default)]
pub struct EdgeTtsSrc {
    settings: Arc<Mutex<Settings>>,
}

#[glib::object_subclass]
impl ObjectSubclass for EdgeTtsSrc {
    const NAME: &'static str = "GstEdgeTtsSrc";
    type Type = super::EdgeTtsSrc;
    type ParentType = crate::ttsbase::TtsBaseSrc;
}

impl ObjectImpl for EdgeTtsSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("voice")
                    .nick("Voice")
                    .blurb(
                        "Edge voice, e.g. en-US-EmmaMultilingualNeural, zh-CN-YunxiaNeural \
                         (checked at start; an unknown voice gives no audio and a warning)",
                    )
                    .default_value(Some(DEFAULT_VOICE))
                    .build(),
                glib::ParamSpecString::builder("rate")
                    .nick("Rate")
                    .blurb("Speaking rate change: sign, digits, %, e.g. +10% or -5%")
                    .default_value(Some(DEFAULT_RATE))
                    .build(),
                glib::ParamSpecString::builder("pitch")
                    .nick("Pitch")
                    .blurb("Pitch change: sign, digits, Hz, e.g. +0Hz or -5Hz")
                    .default_value(Some(DEFAULT_PITCH))
                    .build(),
                glib::ParamSpecString::builder("volume")
                    .nick("Volume")
                    .blurb("Volume change: sign, digits, %, e.g. +0% or -50%")
                    .default_value(Some(DEFAULT_VOLUME))
                    .build(),
                glib::ParamSpecString::builder("endpoint")
                    .nick("Endpoint")
                    .blurb(
                        "ws:// or wss:// URL of a server speaking the Edge read-aloud protocol \
                         (default: the Edge service)",
                    )
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb(
                        "Milliseconds to wait for the connection and for each message from the \
                         server before the sentence is retried once, then skipped",
                    )
                    .minimum(100)
                    .maximum(600_000)
                    .default_value(DEFAULT_TIMEOUT_MS)
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let text = || {
            value
                .get::<Option<String>>()
                .expect("type checked")
                .map(|s| s.trim().to_string())
        };
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "voice" => s.voice = text().unwrap_or_else(|| DEFAULT_VOICE.into()),
            "rate" => s.rate = text().unwrap_or_else(|| DEFAULT_RATE.into()),
            "pitch" => s.pitch = text().unwrap_or_else(|| DEFAULT_PITCH.into()),
            "volume" => s.volume = text().unwrap_or_else(|| DEFAULT_VOLUME.into()),
            "endpoint" => s.endpoint = text().filter(|e| !e.is_empty()),
            "timeout" => s.timeout_ms = value.get().expect("type checked"),
            _ => unimplemented!(),
        }
        if let Err(e) = s.request().validate() {
            // Checked again at start (an error there) and for each sentence (a warning).
            gst::warning!(CAT, imp = self, "{e}");
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "voice" => s.voice.to_value(),
            "rate" => s.rate.to_value(),
            "pitch" => s.pitch.to_value(),
            "volume" => s.volume.to_value(),
            "endpoint" => s.endpoint.to_value(),
            "timeout" => s.timeout_ms.to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for EdgeTtsSrc {}

impl ElementImpl for EdgeTtsSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Edge text-to-speech source",
                "Source/Audio/Network",
                "Speaks text with the Edge read-aloud voices (online): live audio, silence \
                 while idle, instant interruption",
                "livetalk developers",
            )
        });
        Some(&*META)
    }
}

impl BaseSrcImpl for EdgeTtsSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let req = self.settings.lock().unwrap().request();
        req.validate()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{e}")))?;
        self.obj().set_engine(Arc::new(EdgeEngine {
            client: EdgeClient::default(),
            settings: self.settings.clone(),
        }));
        self.parent_start()
    }
}

impl PushSrcImpl for EdgeTtsSrc {}

impl TtsBaseSrcImpl for EdgeTtsSrc {}
