// SPDX-License-Identifier: MPL-2.0

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::prelude::*;

use crate::actions::{self, Clip, Player};
use crate::avatar::Avatar;
use crate::blend::{self, CROP_SIZE, Fader, Geometry, Paster};
use crate::meta::{self, AvatarFrame};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "avatarblend",
        gst::DebugColorFlags::empty(),
        Some("Paste-back of lip-sync face crops into full avatar frames"),
    )
});

const DEFAULT_TRANSITION_MS: u32 = 100;
const DEFAULT_FPS: gst::Fraction = gst::Fraction::from_integer(25);

#[derive(Debug, Clone)]
struct Settings {
    avatar: Option<PathBuf>,
    actions: Option<PathBuf>,
    transition_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            avatar: None,
            actions: None,
            transition_ms: DEFAULT_TRANSITION_MS,
        }
    }
}

/// The avatar frame `i` as bytes, shared with the avatar (no copy).
struct FrameBytes(Arc<Avatar>, usize);

impl AsRef<[u8]> for FrameBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.frame(self.1).data
    }
}

struct ClipBytes(Arc<Vec<Clip>>, usize, usize);

impl AsRef<[u8]> for ClipBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0[self.1].frames[self.2].data
    }
}

/// What NULL->READY loads.
struct Loaded {
    avatar: Arc<Avatar>,
    clips: Arc<Vec<Clip>>,
    /// Output layout (GStreamer's default strides).
    info: gst_video::VideoInfo,
    /// Every avatar frame as a ready output buffer.
    idle: Vec<gst::Buffer>,
    clip_frames: Vec<Vec<gst::Buffer>>,
}

/// A buffer in the output layout: the image's own bytes when the strides agree, else a copy.
fn frame_buffer(
    info: &gst_video::VideoInfo,
    image: crate::avatar::ImageRef,
    shared: impl AsRef<[u8]> + Send + 'static,
) -> gst::Buffer {
    let stride = info.stride()[0] as usize;
    if stride == image.stride() {
        return gst::Buffer::from_slice(shared);
    }
    let mut data = vec![0u8; info.size()];
    blend::copy_frame(image, &mut data, stride);
    gst::Buffer::from_mut_slice(data)
}

struct State {
    in_info: Option<gst_video::VideoInfo>,
    fader: Fader,
    paster: Paster,
    /// The last generated crop (for fading out, and for frames musetalk skipped).
    last_crop: Option<gst::Buffer>,
    pool: Option<gst::BufferPool>,
}

#[derive(Default)]
struct Counters {
    frames: u64,
    speaking: u64,
    idle: u64,
    held: u64,
    faded: u64,
    action: u64,
    blend_ns: u64,
}

pub struct AvatarBlend {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    loaded: Mutex<Option<Arc<Loaded>>>,
    state: Mutex<Option<State>>,
    player: Mutex<Player>,
    counters: Mutex<Counters>,
}

impl AvatarBlend {
    fn load(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let Some(dir) = settings.avatar else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("No avatar: set the 'avatar' property to an avatar directory")
            ));
        };
        let avatar = Avatar::load_shared(&dir)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{e}")))?;
        let (w, h) = (avatar.manifest.width, avatar.manifest.height);
        let clips = match &settings.actions {
            Some(p) => actions::load(p, w, h)
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{e}")))?,
            None => Vec::new(),
        };
        let clips = Arc::new(clips);
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w, h)
            .build()
            .map_err(|e| gst::error_msg!(gst::CoreError::Negotiation, ("{e}")))?;
        let idle = (0..avatar.len())
            .map(|i| frame_buffer(&info, avatar.frame(i), FrameBytes(avatar.clone(), i)))
            .collect();
        let clip_frames = clips
            .iter()
            .enumerate()
            .map(|(c, clip)| {
                (0..clip.frames.len())
                    .map(|k| {
                        frame_buffer(&info, clip.frames[k].view(), ClipBytes(clips.clone(), c, k))
                    })
                    .collect()
            })
            .collect();
        gst::info!(
            CAT,
            imp = self,
            "avatar {} ({} frames, {w}x{h}, {}), {} action clips",
            dir.display(),
            avatar.len(),
            avatar.storage(),
            clips.len()
        );
        *self.loaded.lock().unwrap() = Some(Arc::new(Loaded {
            avatar,
            clips,
            info,
            idle,
            clip_frames,
        }));
        Ok(())
    }

    fn src_caps(&self, loaded: &Loaded, fps: gst::Fraction) -> gst::Caps {
        let mut caps = loaded.info.to_caps().unwrap();
        caps.get_mut().unwrap().set("framerate", fps);
        caps
    }

    fn new_state(&self, fps: gst::Fraction) -> State {
        let transition = self.settings.lock().unwrap().transition_ms as u64 * 1_000_000;
        let frame_ns = gst::ClockTime::SECOND
            .mul_div_round(fps.denom() as u64, fps.numer().max(1) as u64)
            .unwrap_or(gst::ClockTime::from_mseconds(40))
            .nseconds();
        State {
            in_info: None,
            fader: Fader::new(frame_ns, transition),
            paster: Paster::default(),
            last_crop: None,
            pool: None,
        }
    }

    fn output_buffer(
        &self,
        state: &mut State,
        loaded: &Loaded,
    ) -> Result<gst::Buffer, gst::FlowError> {
        if state.pool.is_none() {
            let pool = gst::BufferPool::new();
            let mut config = pool.config();
            let caps = loaded.info.to_caps().unwrap();
            config.set_params(Some(&caps), loaded.info.size() as u32, 2, 0);
            if pool.set_config(config).is_ok() && pool.set_active(true).is_ok() {
                state.pool = Some(pool);
            }
        }
        match &state.pool {
            Some(pool) => pool.acquire_buffer(None),
            None => gst::Buffer::with_size(loaded.info.size()).map_err(|_| gst::FlowError::Error),
        }
    }

    fn flow_error(&self, msg: String) -> gst::FlowError {
        gst::element_imp_error!(self, gst::StreamError::Format, ("{msg}"));
        gst::FlowError::Error
    }

    fn render(
        &self,
        state: &mut State,
        loaded: &Loaded,
        info: AvatarFrame,
        buffer: &gst::Buffer,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let n = loaded.avatar.len();
        let index = info.index as usize;
        if index >= n {
            return Err(self.flow_error(format!(
                "Avatar frame index {index} out of range: the avatar has {n} frames \
                 (musetalk and avatarblend must use the same avatar)"
            )));
        }
        let gap = buffer.flags().contains(gst::BufferFlags::GAP) || buffer.size() == 0;
        let speaking = info.speaking && !gap;
        // A GAP buffer that still says `speaking` is a speech frame the lip driver skipped
        // (QoS): hold the last mouth.
        let held = info.speaking && gap;
        if !gap {
            let in_info = state
                .in_info
                .as_ref()
                .ok_or(gst::FlowError::NotNegotiated)?;
            if buffer.size() < in_info.size() {
                return Err(self.flow_error(format!(
                    "Face crop buffer has {} bytes, a {CROP_SIZE}x{CROP_SIZE} RGB frame needs {}",
                    buffer.size(),
                    in_info.size()
                )));
            }
            state.last_crop = Some(buffer.clone());
        }
        if speaking {
            self.player.lock().unwrap().stop();
        }
        let weight = state
            .fader
            .advance(speaking || (held && state.last_crop.is_some()));
        let mut c = self.counters.lock().unwrap();
        c.frames += 1;
        if speaking {
            c.speaking += 1;
        } else if held {
            c.held += 1;
        }
        let crop = match &state.last_crop {
            Some(crop) if weight > 0 => crop.clone(),
            _ => {
                if !speaking && !held {
                    state.last_crop = None;
                }
                let next = self.player.lock().unwrap().next(&loaded.clips);
                return Ok(match next {
                    Some((clip, k)) => {
                        c.action += 1;
                        loaded.clip_frames[clip][k].clone()
                    }
                    None => {
                        c.idle += 1;
                        loaded.idle[index].clone()
                    }
                });
            }
        };
        if !speaking && !held {
            c.faded += 1;
        }
        drop(c);

        let start = Instant::now();
        let in_info = state.in_info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let crop_frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(crop.as_ref(), &in_info)
                .map_err(|_| self.flow_error("Cannot map the face crop buffer".into()))?;
        let crop_stride = crop_frame.plane_stride()[0] as usize;
        let crop_data = crop_frame.plane_data(0).unwrap();
        let mut out = self.output_buffer(state, loaded)?;
        {
            let out_ref = out.get_mut().unwrap();
            let mut map = out_ref
                .map_writable()
                .map_err(|_| self.flow_error("Cannot map an output buffer".into()))?;
            let stride = loaded.info.stride()[0] as usize;
            let frame = loaded.avatar.frame(index);
            blend::copy_frame(frame, &mut map, stride);
            let fi = loaded.avatar.manifest.frames[index];
            let geometry = Geometry {
                face_box: fi.face_box,
                blend_box: fi.blend_box,
                mask: loaded.avatar.mask(index),
            };
            state
                .paster
                .paste(
                    &mut map,
                    frame.width,
                    frame.height,
                    stride,
                    crop_data,
                    crop_stride,
                    &geometry,
                    weight,
                )
                .map_err(|e| self.flow_error(format!("Cannot blend avatar frame {index}: {e}")))?;
        }
        self.counters.lock().unwrap().blend_ns += start.elapsed().as_nanos() as u64;
        Ok(out)
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(info) = meta::get(&buffer) else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Buffer without avatar frame meta: avatarblend takes the output of musetalk (or another lip driver)")
            );
            return Err(gst::FlowError::Error);
        };
        let loaded = self
            .loaded
            .lock()
            .unwrap()
            .clone()
            .ok_or(gst::FlowError::Flushing)?;
        let mut out = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            self.render(state, &loaded, info, &buffer)?
        };
        {
            let o = out.make_mut();
            o.set_pts(buffer.pts());
            o.set_dts(buffer.dts());
            o.set_duration(buffer.duration());
            o.set_offset(buffer.offset());
            o.set_offset_end(buffer.offset_end());
            o.unset_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE);
            if buffer.flags().contains(gst::BufferFlags::DISCONT) {
                o.set_flags(gst::BufferFlags::DISCONT);
            }
            meta::add(o, info);
        }
        self.srcpad.push(out)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::Caps(e) => {
                let caps = e.caps_owned();
                let Ok(in_info) = gst_video::VideoInfo::from_caps(&caps) else {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Cannot parse caps {caps}")
                    );
                    return false;
                };
                let Some(loaded) = self.loaded.lock().unwrap().clone() else {
                    return false;
                };
                let fps = if in_info.fps().numer() > 0 {
                    in_info.fps()
                } else {
                    DEFAULT_FPS
                };
                let avatar_fps = gst::Fraction::from_integer(loaded.avatar.manifest.fps as i32);
                if fps != avatar_fps {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "stream at {fps} fps, avatar made at {avatar_fps} fps"
                    );
                }
                {
                    let mut guard = self.state.lock().unwrap();
                    let mut state = self.new_state(fps);
                    if let Some(old) = guard.take() {
                        state.pool = old.pool;
                    }
                    state.in_info = Some(in_info);
                    *guard = Some(state);
                }
                let out = self.src_caps(&loaded, fps);
                return self.srcpad.push_event(gst::event::Caps::new(&out));
            }
            EventView::FlushStop(_) => {
                if let Some(s) = self.state.lock().unwrap().as_mut() {
                    s.fader.reset();
                    s.last_crop = None;
                }
            }
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn play_action(&self, name: &str) -> bool {
        let Some(loaded) = self.loaded.lock().unwrap().clone() else {
            gst::warning!(
                CAT,
                imp = self,
                "play-action '{name}' before the element is READY"
            );
            return false;
        };
        match loaded.clips.iter().position(|c| c.name == name) {
            Some(i) => {
                gst::debug!(CAT, imp = self, "playing action '{name}'");
                self.player.lock().unwrap().start(i);
                true
            }
            None => {
                let names: Vec<&str> = loaded.clips.iter().map(|c| c.name.as_str()).collect();
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::NotFound,
                    (
                        "No action clip named '{name}' (clips: {})",
                        names.join(", ")
                    )
                );
                false
            }
        }
    }

    fn stats(&self) -> gst::Structure {
        let c = self.counters.lock().unwrap();
        gst::Structure::builder("avatarblend-stats")
            .field("frames", c.frames)
            .field("speaking-frames", c.speaking)
            .field("idle-frames", c.idle)
            .field("held-frames", c.held)
            .field("fading-frames", c.faded)
            .field("action-frames", c.action)
            .field("blend-time", gst::ClockTime::from_nseconds(c.blend_ns))
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AvatarBlend {
    const NAME: &'static str = "GstAvatarBlend";
    type Type = super::AvatarBlend;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").unwrap();
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                AvatarBlend::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                AvatarBlend::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .build();
        let templ = klass.pad_template("src").unwrap();
        let srcpad = gst::Pad::builder_from_template(&templ).build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            loaded: Mutex::new(None),
            state: Mutex::new(None),
            player: Mutex::new(Player::default()),
            counters: Mutex::new(Counters::default()),
        }
    }
}

impl ObjectImpl for AvatarBlend {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("avatar")
                    .nick("Avatar")
                    .blurb("Avatar directory (format v1, made by `livetalk prepare-avatar`): frames, boxes, masks")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("actions")
                    .nick("Action clips")
                    .blurb("JSON file naming action clips: {\"clips\":[{\"name\":..,\"frames\":\"folder\",\"mode\":\"once\"|\"loop\"}]}")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("transition-ms")
                    .nick("Transition")
                    .blurb("Crossfade between idle and speaking frames, both ways, in ms (0: cut)")
                    .maximum(10_000)
                    .default_value(DEFAULT_TRANSITION_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("frames, speaking-frames, idle-frames, held-frames (speech frames the lip driver skipped), fading-frames, action-frames, blend-time")
                    .read_only()
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
                        let obj = args[0].get::<super::AvatarBlend>().unwrap();
                        let name = args[1].get::<String>().unwrap_or_default();
                        Some(obj.imp().play_action(&name).to_value())
                    })
                    .build(),
                glib::subclass::Signal::builder("stop-action")
                    .action()
                    .class_handler(|args| {
                        let obj = args[0].get::<super::AvatarBlend>().unwrap();
                        obj.imp().player.lock().unwrap().stop();
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
            "actions" => s.actions = path(value),
            "transition-ms" => s.transition_ms = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "avatar" => s
                .avatar
                .as_ref()
                .map(|p| p.display().to_string())
                .to_value(),
            "actions" => s
                .actions
                .as_ref()
                .map(|p| p.display().to_string())
                .to_value(),
            "transition-ms" => s.transition_ms.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for AvatarBlend {}

impl ElementImpl for AvatarBlend {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Avatar paste-back",
                "Filter/Effect/Video",
                "Blends lip-sync face crops into the full avatar frames (MuseTalk's paste-back), \
                 idle frames on GAP, crossfades and action clips",
                "livetalk developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let fps = gst::FractionRange::new(gst::Fraction::new(1, 1), gst::Fraction::new(120, 1));
            let sink_caps = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", CROP_SIZE as i32)
                .field("height", CROP_SIZE as i32)
                .field("framerate", fps)
                .build();
            let src_caps = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", gst::IntRange::new(1, 16384))
                .field("height", gst::IntRange::new(1, 16384))
                .field("framerate", fps)
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady => {
                if let Err(msg) = self.load() {
                    self.post_error_message(msg);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::ReadyToPaused => {
                *self.counters.lock().unwrap() = Counters::default();
                *self.state.lock().unwrap() = Some(self.new_state(DEFAULT_FPS));
            }
            _ => {}
        }
        let ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::PausedToReady => {
                if let Some(s) = self.state.lock().unwrap().take()
                    && let Some(pool) = s.pool
                {
                    let _ = pool.set_active(false);
                }
                self.player.lock().unwrap().stop();
            }
            gst::StateChange::ReadyToNull => *self.loaded.lock().unwrap() = None,
            _ => {}
        }
        Ok(ret)
    }
}
