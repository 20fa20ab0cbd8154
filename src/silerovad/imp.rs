// SPDX-License-Identifier: MPL-2.0
//
// Locks: `settings`, `session` and `state` are never held together, except `state` taken
// while `settings` is read once at stream start (settings -> state). Nothing is pushed or
// posted with a lock held.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use crate::asr::vad::{self, SileroModel, StreamVad, VadEvent, VadParams};
use crate::audio_intake::{AudioIntake, FrameGrid, Input, Timeline};
use crate::audioclock;
use crate::enums;
use crate::events::{self, VadStatus};
use crate::inference::{self, Device, SessionRequest, SharedSession, contract};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "silerovad",
        gst::DebugColorFlags::empty(),
        Some("Silero VAD voice activity detection"),
    )
});

const DEFAULT_THRESHOLD: f32 = 0.5;
const DEFAULT_MIN_SILENCE_MS: u32 = 100;
const DEFAULT_SPEECH_PAD_MS: u32 = 30;

const AUDIO_CAPS: &str = "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    device: enums::Device,
    device_id: u32,
    ort_library: Option<PathBuf>,
    threshold: f32,
    min_silence_ms: u32,
    speech_pad_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            device: enums::Device::Cpu,
            device_id: 0,
            ort_library: None,
            threshold: DEFAULT_THRESHOLD,
            min_silence_ms: DEFAULT_MIN_SILENCE_MS,
            speech_pad_ms: DEFAULT_SPEECH_PAD_MS,
        }
    }
}

impl Settings {
    fn params(&self) -> VadParams {
        VadParams {
            threshold: self.threshold as f64,
            min_silence_ms: self.min_silence_ms,
            speech_pad_ms: self.speech_pad_ms,
        }
    }
}

struct State {
    vad: StreamVad<SileroModel>,
    /// Arrival and timestamps of the stream (the project's one audio intake).
    intake: AudioIntake,
    inference_ns: u64,
}

pub struct SileroVad {
    settings: Mutex<Settings>,
    session: Mutex<Option<Arc<SharedSession>>>,
    state: Mutex<Option<State>>,
}

impl SileroVad {
    fn load_model(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let device: Device = settings.device.with_id(settings.device_id);
        let model = settings
            .model
            .clone()
            .unwrap_or_else(crate::asr::default_silero_vad);
        let mut req = SessionRequest::new(&model, &contract::SILERO_VAD);
        req.device = device;
        req.threads = 1;
        req.runtime_library = settings.ort_library.as_deref();
        let session = inference::load_for_element(&*self.obj(), &req, "Silero VAD model")?;
        gst::info!(
            CAT,
            imp = self,
            "Silero VAD {} on {}",
            model.display(),
            session.device
        );
        *self.session.lock().unwrap() = Some(session);
        Ok(())
    }

    fn new_state(&self) -> Option<State> {
        let params = self.settings.lock().unwrap().params();
        let session = self.session.lock().unwrap().clone()?;
        Some(State {
            vad: StreamVad::new(SileroModel::new(session), params),
            intake: AudioIntake::new(FrameGrid::from_samples(
                vad::SAMPLE_RATE as u64,
                vad::WINDOW as u64,
            )),
            inference_ns: 0,
        })
    }

    fn reset(&self) {
        let mut guard = self.state.lock().unwrap();
        if let Some(state) = guard.as_mut() {
            state.vad.reset();
            state.intake.reset();
        }
    }

    fn segment(&self) -> gst::FormattedSegment<gst::ClockTime> {
        self.obj()
            .segment()
            .downcast::<gst::ClockTime>()
            .unwrap_or_else(|_| gst::FormattedSegment::new())
    }

    /// Running time of sample `s` of the grid placed by `tl`.
    fn running_time(
        tl: Timeline,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        s: u64,
    ) -> gst::ClockTime {
        let pts = audioclock::clock_time(tl.sample_pts(s));
        segment
            .to_running_time(pts)
            .unwrap_or_else(|| pts.saturating_sub(segment.start().unwrap_or_default()))
    }

    fn to_running(
        tl: Timeline,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        events: Vec<VadEvent>,
    ) -> Vec<(VadStatus, gst::ClockTime)> {
        events
            .into_iter()
            .map(|e| match e {
                VadEvent::Start(s) => (VadStatus::Start, Self::running_time(tl, segment, s)),
                VadEvent::End(s) => (VadStatus::End, Self::running_time(tl, segment, s)),
            })
            .collect()
    }

    /// Ends the grid `tl` (a timestamp jump, a new segment, EOS): open speech ends at its
    /// last sample, stamped on that grid; the VAD starts afresh.
    fn drain(
        state: &mut State,
        tl: Option<Timeline>,
        segment: &gst::FormattedSegment<gst::ClockTime>,
    ) -> Vec<(VadStatus, gst::ClockTime)> {
        let ev: Vec<_> = state.vad.finish().into_iter().collect();
        state.vad.reset();
        tl.map_or_else(Vec::new, |tl| Self::to_running(tl, segment, ev))
    }

    /// Posts and sends the decisions (called without lock).
    fn announce(&self, decisions: Vec<(VadStatus, gst::ClockTime)>) {
        let obj = self.obj();
        for (status, rt) in decisions {
            gst::debug!(CAT, imp = self, "speech {} at {rt}", status.as_str());
            let _ = obj.post_message(events::vad_message(&*obj, status, rt));
            obj.src_pad().push_event(events::vad_event(status, rt));
        }
    }

    /// Where `len` samples at `pts` fall in the stream (the audio intake's rules): the grid
    /// before a jump is drained, a hole is filled with silence.
    fn arrive(
        &self,
        state: &mut State,
        segment: &gst::FormattedSegment<gst::ClockTime>,
        pts: Option<gst::ClockTime>,
        len: u64,
        decisions: &mut Vec<(VadStatus, gst::ClockTime)>,
    ) -> Result<(), String> {
        let intake = state
            .intake
            .push(pts.map(|t| t.nseconds()), Input::Gap(len));
        if let Some(old) = intake.drain {
            gst::debug!(CAT, imp = self, "timestamps jump to {pts:?}: new stream");
            decisions.extend(Self::drain(state, Some(old), segment));
        }
        if intake.fill > 0 {
            let ev = state.vad.push_gap(intake.fill)?;
            decisions.extend(Self::to_running(state.intake.timeline(), segment, ev));
        }
        Ok(())
    }

    fn handle_gap(&self, pts: gst::ClockTime, duration: Option<gst::ClockTime>) -> bool {
        let segment = self.segment();
        let mut decisions = Vec::new();
        let res = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return true;
            };
            let n = state
                .intake
                .grid()
                .samples_in(duration.unwrap_or_default().nseconds());
            self.arrive(state, &segment, Some(pts), n, &mut decisions)
                .and_then(|()| state.vad.push_gap(n))
                .map(|ev| decisions.extend(Self::to_running(state.intake.timeline(), &segment, ev)))
        };
        self.announce(decisions);
        if let Err(e) = res {
            gst::element_imp_error!(self, gst::LibraryError::Failed, ("Silero VAD failed: {e}"));
            return false;
        }
        true
    }

    fn stats(&self) -> gst::Structure {
        let guard = self.state.lock().unwrap();
        let (run, gap, ns, speech, prob) = guard.as_ref().map_or((0, 0, 0, false, 0.0), |s| {
            (
                s.vad.windows_run,
                s.vad.windows_gap,
                s.inference_ns,
                s.vad.in_speech(),
                s.vad.last_probability,
            )
        });
        gst::Structure::builder("silerovad-stats")
            .field("windows-run", run)
            .field("windows-gap", gap)
            .field("inference-time", gst::ClockTime::from_nseconds(ns))
            .field("in-speech", speech)
            .field("probability", prob)
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SileroVad {
    const NAME: &'static str = "GstSileroVad";
    type Type = super::SileroVad;
    type ParentType = gst_base::BaseTransform;

    fn new() -> Self {
        Self {
            settings: Mutex::new(Settings::default()),
            session: Mutex::new(None),
            state: Mutex::new(None),
        }
    }
}

impl ObjectImpl for SileroVad {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let [device, device_id] = enums::device_properties("the VAD model");
            vec![
                device,
                device_id,
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Silero VAD v5 ONNX (input [1,576], state [2,1,128], sr -> output, stateN); \
                            default: silero_vad.onnx of the silero-vad package in the set-up cache")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so (default: ORT_DYLIB_PATH, the set-up cache, the system)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Threshold")
                    .blurb("Speech starts at a window whose probability is at least this; it ends \
                            after windows below threshold - 0.15 (VADIterator's rule)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-silence-ms")
                    .nick("Minimum silence")
                    .blurb("Silence that must follow speech before it ends")
                    .maximum(60_000)
                    .default_value(DEFAULT_MIN_SILENCE_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("speech-pad-ms")
                    .nick("Speech pad")
                    .blurb("Each speech segment is widened by this much at both ends")
                    .maximum(10_000)
                    .default_value(DEFAULT_SPEECH_PAD_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("windows-run, windows-gap, inference-time, in-speech, probability (of the last window)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let path = |v: &glib::Value| {
            v.get::<Option<String>>()
                .unwrap()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        match pspec.name() {
            "model" => s.model = path(value),
            "device" => s.device = value.get().unwrap(),
            "device-id" => s.device_id = value.get().unwrap(),
            "ort-library" => s.ort_library = path(value),
            "threshold" => s.threshold = value.get().unwrap(),
            "min-silence-ms" => s.min_silence_ms = value.get().unwrap(),
            "speech-pad-ms" => s.speech_pad_ms = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => s.model.as_ref().map(|p| p.display().to_string()).to_value(),
            "device" => s.device.to_value(),
            "device-id" => s.device_id.to_value(),
            "ort-library" => s
                .ort_library
                .as_ref()
                .map(|p| p.display().to_string())
                .to_value(),
            "threshold" => s.threshold.to_value(),
            "min-silence-ms" => s.min_silence_ms.to_value(),
            "speech-pad-ms" => s.speech_pad_ms.to_value(),
            "stats" => {
                drop(s);
                self.stats().to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_passthrough(true);
    }
}

impl GstObjectImpl for SileroVad {}

impl ElementImpl for SileroVad {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Silero VAD",
                "Filter/Audio/Analyzer",
                "Voice activity detection with Silero VAD v5: livetalk-vad start/end messages and events, audio unchanged",
                "livetalk developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = AUDIO_CAPS.parse::<gst::Caps>().unwrap();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
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
        if transition == gst::StateChange::NullToReady
            && let Err(msg) = self.load_model()
        {
            self.post_error_message(msg);
            return Err(gst::StateChangeError);
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::ReadyToNull {
            *self.session.lock().unwrap() = None;
        }
        Ok(ret)
    }
}

impl BaseTransformImpl for SileroVad {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let state = self.new_state().ok_or_else(|| {
            gst::error_msg!(gst::CoreError::StateChange, ("No Silero VAD model loaded"))
        })?;
        *self.state.lock().unwrap() = Some(state);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let segment = self.segment();
        let map = buf.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Cannot map buffer"));
            gst::FlowError::Error
        })?;
        let samples: Vec<f32> = map
            .as_slice()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        drop(map);
        let mut decisions = Vec::new();
        let res = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            if buf.flags().contains(gst::BufferFlags::GAP) {
                // A GAP buffer is silence: no inference.
                self.arrive(
                    state,
                    &segment,
                    buf.pts(),
                    samples.len() as u64,
                    &mut decisions,
                )
                .and_then(|()| state.vad.push_gap(samples.len() as u64))
            } else {
                let started = std::time::Instant::now();
                let r = self
                    .arrive(
                        state,
                        &segment,
                        buf.pts(),
                        samples.len() as u64,
                        &mut decisions,
                    )
                    .and_then(|()| state.vad.push(&samples));
                state.inference_ns += started.elapsed().as_nanos() as u64;
                r
            }
            .map(|ev| decisions.extend(Self::to_running(state.intake.timeline(), &segment, ev)))
        };
        self.announce(decisions);
        res.map_err(|e| {
            gst::element_imp_error!(self, gst::LibraryError::Failed, ("Silero VAD failed: {e}"));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::Gap(gap) => {
                let (pts, duration) = gap.get();
                if !self.handle_gap(pts, duration) {
                    return false;
                }
            }
            // The intake's rule: a new segment and EOS end the grid (open speech ends at
            // its last sample), the next buffer starts a new one.
            EventView::Eos(_) => {
                let segment = self.segment();
                let decisions = {
                    let mut guard = self.state.lock().unwrap();
                    guard.as_mut().map_or_else(Vec::new, |state| {
                        let tl = state.intake.eos();
                        Self::drain(state, tl, &segment)
                    })
                };
                self.announce(decisions);
            }
            EventView::Segment(e) => {
                let old = self.segment();
                let start = audioclock::segment_start(e);
                let decisions = {
                    let mut guard = self.state.lock().unwrap();
                    guard.as_mut().map_or_else(Vec::new, |state| {
                        let tl = state.intake.segment(start);
                        Self::drain(state, tl, &old)
                    })
                };
                self.announce(decisions);
            }
            EventView::FlushStop(_) => self.reset(),
            EventView::StreamStart(_) => self.reset(),
            _ => {}
        }
        self.parent_sink_event(event)
    }
}
