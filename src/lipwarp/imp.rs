// SPDX-License-Identifier: MPL-2.0

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::audio_intake::{Frame, FrameCutter, FrameGrid};
use crate::audioclock::{BufferAudio, segment_start, stamp_frame};
use crate::avatar::{Avatar, mirror_index, prepare};
use crate::events;
use crate::meta::{self, AvatarFrame};
use crate::mouth::{MouthAnalyzer, MouthConfig, MouthGeometry, warp_mouth};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "lipwarp",
        gst::DebugColorFlags::empty(),
        Some("Audio-driven mouth warp"),
    )
});

const RATE: u64 = 16_000;
const AUDIO_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";
const DEFAULT_FPS: gst::Fraction = gst::Fraction::from_integer(25);
const DEFAULT_LIP_Y: f64 = 0.72;
const DEFAULT_MAX_OPEN: f64 = 0.085;
const DEFAULT_FLOOR_DB: f64 = -45.0;
/// Below this opening a frame is idle (GAP).
const IDLE_OPEN: f32 = 0.03;

#[derive(Debug, Clone)]
struct Settings {
    avatar: Option<PathBuf>,
    fps: gst::Fraction,
    lip_y: f64,
    max_open: f64,
    floor_db: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            avatar: None,
            fps: DEFAULT_FPS,
            lip_y: DEFAULT_LIP_Y,
            max_open: DEFAULT_MAX_OPEN,
            floor_db: DEFAULT_FLOOR_DB,
        }
    }
}

struct State {
    cutter: FrameCutter,
    analyzer: MouthAnalyzer,
    geometry: MouthGeometry,
}

#[derive(Default, Clone, Copy)]
struct Stats {
    frames: u64,
    speaking: u64,
    idle: u64,
}

pub struct LipWarp {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The avatar; its face crops are made once per avatar and shared by every lipwarp.
    face: Mutex<Option<Arc<Avatar>>>,
    stats: Mutex<Stats>,
}

impl LipWarp {
    fn new_state(&self) -> State {
        let s = self.settings.lock().unwrap();
        State {
            cutter: FrameCutter::new(FrameGrid::new(
                RATE,
                s.fps.numer() as u64,
                s.fps.denom() as u64,
            )),
            analyzer: MouthAnalyzer::new(
                MouthConfig {
                    floor_db: s.floor_db as f32,
                    ..Default::default()
                },
                RATE as u32,
            ),
            geometry: MouthGeometry {
                lip_y: s.lip_y as f32,
                max_open: s.max_open as f32,
                ..Default::default()
            },
        }
    }

    fn src_caps(&self) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", prepare::CROP as i32)
            .field("height", prepare::CROP as i32)
            .field("framerate", self.settings.lock().unwrap().fps)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build()
    }

    /// The crop (or GAP) buffers of the frames the intake cut.
    fn frame_buffers(
        &self,
        state: &mut State,
        face: &Avatar,
        frames: Vec<Frame>,
    ) -> Vec<gst::Buffer> {
        let mut out = Vec::with_capacity(frames.len());
        for frame in frames {
            let shape = state.analyzer.next(&frame.samples);
            let i = frame.index;
            let index = mirror_index(face.len(), i);
            let speaking = shape.open >= IDLE_OPEN;
            let mut buf = if speaking {
                let img = warp_mouth(face.face_crop(index), shape, &state.geometry);
                gst::Buffer::from_mut_slice(img.data)
            } else {
                gst::Buffer::new()
            };
            {
                let b = buf.get_mut().unwrap();
                stamp_frame(b, i, frame.pts, frame.duration);
                if !speaking {
                    b.set_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE);
                }
                meta::add(
                    b,
                    AvatarFrame {
                        index: index as u64,
                        frame: i,
                        speaking,
                    },
                );
            }
            let mut st = self.stats.lock().unwrap();
            st.frames += 1;
            if speaking {
                st.speaking += 1
            } else {
                st.idle += 1
            }
            drop(st);
            out.push(buf);
        }
        out
    }

    fn push_all(&self, out: Vec<gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        for b in out {
            self.srcpad.push(b)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Pushes the frames a SEGMENT or EOS drains (errors downstream are its to report).
    fn drain_with(&self, drain: impl FnOnce(&mut FrameCutter) -> Vec<Frame>) {
        let Ok(face) = self.face() else { return };
        let out = match self.state.lock().unwrap().as_mut() {
            Some(state) => {
                let frames = drain(&mut state.cutter);
                self.frame_buffers(state, &face, frames)
            }
            None => Vec::new(),
        };
        let _ = self.push_all(out);
    }

    fn face(&self) -> Result<Arc<Avatar>, gst::FlowError> {
        self.face.lock().unwrap().clone().ok_or_else(|| {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("No avatar loaded"));
            gst::FlowError::Error
        })
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let face = self.face()?;
        let out = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            let audio = BufferAudio::read(&buffer, RATE).ok_or(gst::FlowError::Error)?;
            let frames = state.cutter.push(audio.pts, audio.input());
            self.frame_buffers(state, &face, frames)
        };
        self.push_all(out)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::Caps(_) => {
                return self
                    .srcpad
                    .push_event(gst::event::Caps::new(&self.src_caps()));
            }
            EventView::Segment(e) => {
                let start = segment_start(e);
                self.drain_with(|cutter| cutter.segment(start));
            }
            EventView::Eos(_) => self.drain_with(FrameCutter::eos),
            EventView::FlushStop(_) => *self.state.lock().unwrap() = Some(self.new_state()),
            EventView::CustomDownstream(_) if events::is_interrupt(&event) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    // Pending speech becomes silence; the mouth closes on the next frame.
                    state.cutter.interrupt();
                    state.analyzer.reset();
                }
            }
            _ => {}
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            let fps = self.settings.lock().unwrap().fps;
            let frame = gst::ClockTime::SECOND
                .mul_div_floor(fps.denom() as u64, fps.numer() as u64)
                .unwrap_or(gst::ClockTime::ZERO);
            q.set(live, min + frame, max.map(|m| m + frame));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn load_avatar(&self) -> Result<(), gst::ErrorMessage> {
        let dir = self
            .settings
            .lock()
            .unwrap()
            .avatar
            .clone()
            .ok_or_else(|| {
                gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("No avatar set: set the avatar property to an avatar directory")
                )
            })?;
        let avatar = Avatar::load_shared(&dir).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("Cannot load the avatar: {e}")
            )
        })?;
        gst::info!(
            CAT,
            imp = self,
            "avatar {} with {} frames ({})",
            dir.display(),
            avatar.len(),
            avatar.storage()
        );
        *self.face.lock().unwrap() = Some(avatar);
        Ok(())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for LipWarp {
    const NAME: &'static str = "GstLipWarp";
    type Type = super::LipWarp;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                LipWarp::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                LipWarp::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .query_function(|pad, parent, query| {
                LipWarp::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
            })
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            face: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
        }
    }
}

impl ObjectImpl for LipWarp {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("avatar")
                    .nick("Avatar")
                    .blurb("Avatar directory (livetalk prepare-avatar); latents are not needed")
                    .mutable_ready()
                    .build(),
                gst::ParamSpecFraction::builder("fps")
                    .nick("Frame rate")
                    .blurb("Video frames per second")
                    .minimum(gst::Fraction::new(1, 1))
                    .maximum(gst::Fraction::new(120, 1))
                    .default_value(DEFAULT_FPS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("lip-y")
                    .nick("Lip line")
                    .blurb("Where the lips meet in the 256x256 face crop, as a fraction of its height")
                    .minimum(0.3)
                    .maximum(0.95)
                    .default_value(DEFAULT_LIP_Y)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("max-open")
                    .nick("Largest opening")
                    .blurb("Largest jaw drop, as a fraction of the crop height")
                    .minimum(0.0)
                    .maximum(0.3)
                    .default_value(DEFAULT_MAX_OPEN)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("floor-db")
                    .nick("Opening level")
                    .blurb("Audio level (dBFS) at which the mouth starts to open; quieter frames are idle")
                    .minimum(-120.0)
                    .maximum(-10.0)
                    .default_value(DEFAULT_FLOOR_DB)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("frames, speaking-frames, idle-frames")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "avatar" => {
                s.avatar = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|p| !p.is_empty())
                    .map(Into::into)
            }
            "fps" => s.fps = value.get().unwrap(),
            "lip-y" => s.lip_y = value.get().unwrap(),
            "max-open" => s.max_open = value.get().unwrap(),
            "floor-db" => s.floor_db = value.get().unwrap(),
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
            "fps" => s.fps.to_value(),
            "lip-y" => s.lip_y.to_value(),
            "max-open" => s.max_open.to_value(),
            "floor-db" => s.floor_db.to_value(),
            "stats" => {
                let st = *self.stats.lock().unwrap();
                gst::Structure::builder("lipwarp-stats")
                    .field("frames", st.frames)
                    .field("speaking-frames", st.speaking)
                    .field("idle-frames", st.idle)
                    .build()
                    .to_value()
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

impl GstObjectImpl for LipWarp {}

impl ElementImpl for LipWarp {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Lip warp",
                "Filter/Effect/Video",
                "Weight-free lip driver: the avatar's face crop with the mouth opened by the audio",
                "livetalk developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let src = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", prepare::CROP as i32)
                .field("height", prepare::CROP as i32)
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
                    &AUDIO_CAPS.parse().unwrap(),
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady => {
                if let Err(msg) = self.load_avatar() {
                    self.post_error_message(msg);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::ReadyToPaused => {
                *self.stats.lock().unwrap() = Stats::default();
                *self.state.lock().unwrap() = Some(self.new_state());
            }
            _ => {}
        }
        let ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::PausedToReady => *self.state.lock().unwrap() = None,
            gst::StateChange::ReadyToNull => *self.face.lock().unwrap() = None,
            _ => {}
        }
        Ok(ret)
    }
}
