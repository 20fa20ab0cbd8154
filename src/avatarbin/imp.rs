// SPDX-License-Identifier: MPL-2.0
//! `avatarbin`: the lip-sync chain as one bin.
//!
//! The fixed part (tee, the three queues, the conversion to 16 kHz mono F32LE, avatarblend)
//! is made when the element is constructed, so its pads can be linked at once (gst-launch).
//! The lip driver (`whisperfeat ! musetalk` or `lipwarp`) is put between the conversion and
//! the queue before avatarblend on NULL->READY, once `driver`, `avatar` and `model-dir` are
//! known, and made anew there on every run.
//!
//! The queue between the driver and avatarblend gives blending and everything downstream
//! their own thread: the driver's thread only makes frames. Without it musetalk's thread
//! would blend, convert, and wait in a synchronised sink until each frame's time, and the
//! frames due meanwhile would miss their deadlines: with a GPU-like model cost (57 ms a
//! batch, 8 ms a frame) one session straight into a synchronised sink held 20 of 25 fps;
//! through a queue, 25.
//!
//! Locks: `settings` and `chain` are never held together (each is taken, copied from or
//! written, and released), and neither is held while a child changes state or a message is
//! posted.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::avatar::Avatar;
use crate::enums::{self, Device, Driver, Precision};
use crate::events;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "avatarbin",
        gst::DebugColorFlags::empty(),
        Some("Audio in, talking-avatar video and the same audio out"),
    )
});

const DEFAULT_TRANSITION_MS: u32 = 100;
/// What each branch queue holds: enough for the lip driver's latency (batches and context,
/// about 0.5 s at whisperfeat's defaults) and for the sinks' latency on the audio branch.
const QUEUE_TIME: u64 = 3_000_000_000;

#[derive(Debug, Clone, Default)]
struct Settings {
    avatar: Option<PathBuf>,
    driver: Driver,
    model_dir: Option<PathBuf>,
    device: Device,
    device_id: u32,
    precision: Precision,
    transition_ms: u32,
    actions: Option<PathBuf>,
}

impl Settings {
    fn model_dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| crate::paths::models_dir().join("musetalk"))
    }
}

/// The lip driver now between the conversion and the queue before avatarblend.
struct Chain {
    driver: Driver,
    elements: Vec<gst::Element>,
}

pub struct AvatarBin {
    settings: Mutex<Settings>,
    chain: Mutex<Option<Chain>>,
    tee: gst::Element,
    convert: gst::Element,
    /// Between the lip driver and avatarblend.
    driven: gst::Element,
    blend: gst::Element,
}

impl AvatarBin {
    /// The element message or error for an avatar/driver problem, and the driver to run.
    /// Called without lock.
    fn resolve(&self, s: &Settings) -> Result<(Driver, String, u32), gst::ErrorMessage> {
        let Some(dir) = &s.avatar else {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("no avatar: set the `avatar` property to a directory made by `livetalk prepare-avatar`")
            ));
        };
        let avatar = Avatar::load_shared(dir).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("Cannot load the avatar: {e}")
            )
        })?;
        let (driver, why) = s
            .driver
            .resolve(&s.model_dir(), avatar.has_latents())
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{e}")))?;
        Ok((driver, why, avatar.manifest.fps.max(1)))
    }

    /// Makes the lip driver's elements, configured. Called without lock.
    fn make_driver(
        &self,
        driver: Driver,
        s: &Settings,
        fps: u32,
    ) -> Result<Vec<gst::Element>, glib::BoolError> {
        let avatar = s.avatar.as_ref().map(|p| p.display().to_string());
        let fps = gst::Fraction::new(fps as i32, 1);
        match driver {
            Driver::Musetalk => {
                let feat = gst::ElementFactory::make("whisperfeat")
                    .name("whisperfeat")
                    .property("fps", fps)
                    .build()?;
                set_device(&feat, s.device, s.device_id);
                let muse = gst::ElementFactory::make("musetalk")
                    .name("musetalk")
                    .property("avatar", &avatar)
                    .property("model-dir", s.model_dir().display().to_string())
                    .build()?;
                set_device(&muse, s.device, s.device_id);
                set_enum_or_string(&muse, "precision", s.precision.nick());
                Ok(vec![feat, muse])
            }
            _ => Ok(vec![
                gst::ElementFactory::make("lipwarp")
                    .name("lipwarp")
                    .property("avatar", &avatar)
                    .property("fps", fps)
                    .build()?,
            ]),
        }
    }

    /// Puts `driver` between the conversion and the queue before avatarblend, replacing
    /// another one. Called without lock, in NULL.
    fn install(&self, driver: Driver, s: &Settings, fps: u32) -> Result<(), glib::BoolError> {
        let obj = self.obj();
        if let Some(old) = self.chain.lock().unwrap().take() {
            for e in &old.elements {
                let _ = e.set_state(gst::State::Null);
            }
            obj.remove_many(&old.elements)?;
        }
        let elements = self.make_driver(driver, s, fps)?;
        obj.add_many(&elements)?;
        let mut all = vec![&self.convert];
        all.extend(elements.iter());
        all.push(&self.driven);
        gst::Element::link_many(all)?;
        *self.chain.lock().unwrap() = Some(Chain { driver, elements });
        Ok(())
    }

    /// Configures the chain for the next run: driver, avatar, models. Called without lock.
    fn prepare(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let (driver, why, fps) = self.resolve(&s)?;
        // Made anew each run (cheap: the models and the avatar are loaded and shared by the
        // elements themselves), so that changed settings and a changed driver both apply.
        self.install(driver, &s, fps).map_err(|e| {
            gst::error_msg!(
                gst::CoreError::MissingPlugin,
                ("cannot build the {} chain: {e}", driver.nick())
            )
        })?;
        self.blend
            .set_property("avatar", s.avatar.as_ref().map(|p| p.display().to_string()));
        self.blend.set_property(
            "actions",
            s.actions.as_ref().map(|p| p.display().to_string()),
        );
        self.blend.set_property("transition-ms", s.transition_ms);
        gst::info!(CAT, imp = self, "lip driver {} ({why})", driver.nick());
        let obj = self.obj();
        let _ = obj.post_message(events::driver_message(&*obj, driver.nick(), &why));
        Ok(())
    }

    fn active_driver(&self) -> Driver {
        self.chain
            .lock()
            .unwrap()
            .as_ref()
            .map_or(Driver::Auto, |c| c.driver)
    }
}

/// Sets a `device` property in the form the element has: the `GstLivetalkDevice` enum with
/// `device-id`, or the older string form ("cuda:1").
fn set_device(e: &gst::Element, kind: Device, id: u32) {
    let Some(p) = e.find_property("device") else {
        return;
    };
    if p.value_type() == String::static_type() {
        let v = match kind {
            Device::Cpu => "cpu".to_string(),
            other => format!("{}:{id}", other.nick()),
        };
        e.set_property("device", v);
    } else {
        e.set_property("device", kind);
        if e.find_property("device-id").is_some() {
            e.set_property("device-id", id);
        }
    }
}

/// Sets an enum property by its nick, or a string property to the same text.
fn set_enum_or_string(e: &gst::Element, name: &str, nick: &str) {
    if let Some(p) = e.find_property(name) {
        if p.value_type() == String::static_type() {
            e.set_property(name, nick);
        } else {
            e.set_property_from_str(name, nick);
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AvatarBin {
    const NAME: &'static str = "GstAvatarBin";
    type Type = super::AvatarBin;
    type ParentType = gst::Bin;

    fn with_class(_klass: &Self::Class) -> Self {
        let make = |factory: &str, name: &str| {
            gst::ElementFactory::make(factory)
                .name(name)
                .build()
                .unwrap_or_else(|e| panic!("core element {factory} missing: {e}"))
        };
        Self {
            settings: Mutex::new(Settings {
                transition_ms: DEFAULT_TRANSITION_MS,
                ..Default::default()
            }),
            chain: Mutex::new(None),
            tee: make("tee", "tee"),
            convert: make("capsfilter", "to16k"),
            driven: make("queue", "drivenqueue"),
            blend: gst::ElementFactory::make("avatarblend")
                .name("avatarblend")
                .build()
                .expect("avatarblend is registered with avatarbin"),
        }
    }
}

impl ObjectImpl for AvatarBin {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let [device, device_id] = enums::device_properties("whisperfeat and musetalk");
            vec![
                glib::ParamSpecString::builder("avatar")
                    .nick("Avatar")
                    .blurb("Avatar directory (format v1, made by `livetalk prepare-avatar`)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("driver", Driver::Auto)
                    .nick("Lip driver")
                    .blurb("auto: musetalk when model-dir has its models and the avatar has latents, else lipwarp")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("active-driver", Driver::Auto)
                    .nick("Active lip driver")
                    .blurb("The driver chosen at READY (auto before that)")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("model-dir")
                    .nick("MuseTalk models")
                    .blurb("Folder with unet.onnx and vae_decoder.onnx (default: the set-up cache's models/musetalk)")
                    .mutable_ready()
                    .build(),
                device,
                device_id,
                enums::precision_property(
                    "musetalk's precision (fp16 loads the *_fp16.onnx models where present)",
                ),
                glib::ParamSpecUInt::builder("transition-ms")
                    .nick("Transition")
                    .blurb("Crossfade between idle and speaking frames, both ways, in ms (0: cut)")
                    .maximum(10_000)
                    .default_value(DEFAULT_TRANSITION_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("actions")
                    .nick("Action clips")
                    .blurb("JSON file naming action clips (see avatarblend), played with play-action")
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("play-action")
                    .param_types([String::static_type()])
                    .return_type::<bool>()
                    .action()
                    .class_handler(|args| {
                        let obj = args[0].get::<super::AvatarBin>().unwrap();
                        let name = args[1].get::<String>().unwrap_or_default();
                        let ok = obj
                            .imp()
                            .blend
                            .emit_by_name::<bool>("play-action", &[&name]);
                        Some(ok.to_value())
                    })
                    .build(),
                glib::subclass::Signal::builder("stop-action")
                    .action()
                    .class_handler(|args| {
                        let obj = args[0].get::<super::AvatarBin>().unwrap();
                        obj.imp().blend.emit_by_name::<()>("stop-action", &[]);
                        None
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let path = |v: &glib::Value| -> Option<PathBuf> {
            v.get::<Option<String>>()
                .unwrap()
                .filter(|p| !p.is_empty())
                .map(Into::into)
        };
        match pspec.name() {
            "avatar" => s.avatar = path(value),
            "driver" => s.driver = value.get().unwrap(),
            "model-dir" => s.model_dir = path(value),
            "device" => s.device = value.get().unwrap(),
            "device-id" => s.device_id = value.get().unwrap(),
            "precision" => s.precision = value.get().unwrap(),
            "transition-ms" => s.transition_ms = value.get().unwrap(),
            "actions" => s.actions = path(value),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "active-driver" {
            return self.active_driver().to_value();
        }
        let s = self.settings.lock().unwrap();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).to_value();
        match pspec.name() {
            "avatar" => path(&s.avatar),
            "driver" => s.driver.to_value(),
            "model-dir" => path(&s.model_dir),
            "device" => s.device.to_value(),
            "device-id" => s.device_id.to_value(),
            "precision" => s.precision.to_value(),
            "transition-ms" => s.transition_ms.to_value(),
            "actions" => path(&s.actions),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        let make = |factory: &str, name: &str| {
            gst::ElementFactory::make(factory)
                .name(name)
                .build()
                .unwrap_or_else(|e| panic!("core element {factory} missing: {e}"))
        };
        let size = |q: &gst::Element| {
            q.set_property("max-size-buffers", 0u32);
            q.set_property("max-size-bytes", 0u32);
            q.set_property("max-size-time", QUEUE_TIME);
        };
        let queue = |name: &str| {
            let q = make("queue", name);
            size(&q);
            q
        };
        let (vq, aq) = (queue("videoqueue"), queue("audioqueue"));
        size(&self.driven);
        let (conv, res) = (
            make("audioconvert", "convert"),
            make("audioresample", "resample"),
        );
        self.convert.set_property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("rate", 16_000i32)
                .field("channels", 1i32)
                .field("layout", "interleaved")
                .build(),
        );
        obj.add_many([
            &self.tee,
            &vq,
            &conv,
            &res,
            &self.convert,
            &self.driven,
            &self.blend,
            &aq,
        ])
        .expect("adding the fixed part");
        self.driven
            .link(&self.blend)
            .expect("linking the queue before avatarblend");
        gst::Element::link_many([&self.tee, &vq, &conv, &res, &self.convert])
            .expect("linking the conversion");
        self.tee.link(&aq).expect("linking the audio branch");

        let templ = |name: &str| obj.pad_template(name).expect("pad template");
        let ghost = |name: &str, target: gst::Pad| {
            let pad = gst::GhostPad::builder_from_template_with_target(&templ(name), &target)
                .expect("ghost pad")
                .name(name)
                .build();
            obj.add_pad(&pad).expect("adding a pad");
        };
        ghost("sink", self.tee.static_pad("sink").unwrap());
        ghost("video", self.blend.static_pad("src").unwrap());
        ghost("audio", aq.static_pad("src").unwrap());
    }
}

impl GstObjectImpl for AvatarBin {}

impl ElementImpl for AvatarBin {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Talking avatar",
                "Filter/Converter/Audio/Video",
                "Audio in; the lip-synced avatar's frames (whisperfeat ! musetalk, or lipwarp, \
                 then avatarblend) and the same audio out",
                "livetalk developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let audio = gst::Caps::builder("audio/x-raw").build();
            let video = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", gst::IntRange::new(1, 16384))
                .field("height", gst::IntRange::new(1, 16384))
                .field(
                    "framerate",
                    gst::FractionRange::new(gst::Fraction::new(1, 1), gst::Fraction::new(120, 1)),
                )
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &audio,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "video",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &video,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "audio",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &audio,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn send_event(&self, event: gst::Event) -> bool {
        if events::is_interrupt(&event) {
            // Into the chain as if it came with the audio, serialized with it.
            return self
                .tee
                .static_pad("sink")
                .is_some_and(|p| p.send_event(event));
        }
        self.parent_send_event(event)
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady
            && let Err(msg) = self.prepare()
        {
            self.post_error_message(msg);
            return Err(gst::StateChangeError);
        }
        self.parent_change_state(transition)
    }
}

impl BinImpl for AvatarBin {}
