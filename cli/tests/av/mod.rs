//! What a test receiver got back from a session (decoded RGB frames, 16 kHz mono audio, each
//! with its PTS and arrival time), and what it shows: how far the mouth opens per frame
//! against the avatar's own frames, the speech onset and loudness in the audio.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gstlivetalk::avatar::{Avatar, Image};

/// Decoded video as RGB, into an appsink named `v`.
pub const VIDEO_TAIL: &str = "videoconvert ! video/x-raw,format=RGB ! appsink name=v sync=false";
/// Decoded audio as 16 kHz mono F32, into an appsink named `a`.
pub const AUDIO_TAIL: &str = "audioconvert ! audioresample ! \
    audio/x-raw,format=F32LE,rate=16000,channels=1 ! appsink name=a sync=false";

#[derive(Default)]
pub struct Received {
    pub frames: Vec<(Instant, gst::ClockTime, Image)>,
    pub audio: Vec<(Instant, gst::ClockTime, Vec<f32>)>,
}

pub type Shared = Arc<Mutex<Received>>;

/// Collects the RGB frames of appsink `sink` into `got`.
pub fn collect_video(sink: &gst::Element, got: &Shared) {
    let sink = sink.clone().downcast::<gst_app::AppSink>().unwrap();
    let got = got.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
                let (w, h) = (
                    caps.get::<i32>("width").unwrap() as u32,
                    caps.get::<i32>("height").unwrap() as u32,
                );
                let buf = sample.buffer().unwrap();
                let map = buf.map_readable().unwrap();
                let stride = map.len() / h as usize;
                let mut data = Vec::with_capacity((w * h * 3) as usize);
                for row in map.chunks(stride).take(h as usize) {
                    data.extend_from_slice(&row[..(w * 3) as usize]);
                }
                got.lock().unwrap().frames.push((
                    Instant::now(),
                    buf.pts().unwrap_or(gst::ClockTime::ZERO),
                    Image {
                        width: w,
                        height: h,
                        channels: 3,
                        data,
                    },
                ));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// Collects the F32 samples of appsink `sink` into `got`.
pub fn collect_audio(sink: &gst::Element, got: &Shared) {
    let sink = sink.clone().downcast::<gst_app::AppSink>().unwrap();
    let got = got.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buf = sample.buffer().unwrap();
                let map = buf.map_readable().unwrap();
                let pcm = map
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                got.lock().unwrap().audio.push((
                    Instant::now(),
                    buf.pts().unwrap_or(gst::ClockTime::ZERO),
                    pcm,
                ));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// How far the mouth is open in each frame: the frame against the avatar frame it shows (the
/// one whose upper face matches best), compared in the lower face.
pub fn mouth_opening(frames: &[(Instant, gst::ClockTime, Image)]) -> Vec<(gst::ClockTime, f64)> {
    let avatar = Avatar::load(&crate::support::cache_dir().join("avatars/astronaut")).unwrap();
    let frames_of_avatar: Vec<Image> = avatar.frames().map(|f| f.to_image()).collect();
    let fb = avatar.manifest.frames[0].face_box;
    let (x0, x1) = (
        (fb.x1 + fb.width() / 4) as u32,
        (fb.x2 - fb.width() / 4) as u32,
    );
    let upper = (fb.y1 as u32, (fb.y1 + fb.height() * 2 / 5) as u32);
    let lower = ((fb.y1 + fb.height() * 3 / 5) as u32, fb.y2 as u32);
    frames
        .iter()
        .map(|(_, pts, f)| {
            let d = |k: usize, y: (u32, u32)| {
                gstlivetalk::mouth::region_difference(f, &frames_of_avatar[k], x0, y.0, x1, y.1)
            };
            let k = (0..avatar.len())
                .min_by(|&a, &b| d(a, upper).total_cmp(&d(b, upper)))
                .unwrap();
            (*pts, d(k, lower))
        })
        .collect()
}

/// RMS of each 20 ms of the audio, with its PTS.
pub fn audio_windows(audio: &[(Instant, gst::ClockTime, Vec<f32>)]) -> Vec<(gst::ClockTime, f64)> {
    audio
        .iter()
        .flat_map(|(_, pts, pcm)| {
            pcm.chunks(320).enumerate().map(move |(i, c)| {
                let rms =
                    (c.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
                (*pts + gst::ClockTime::from_mseconds(20 * i as u64), rms)
            })
        })
        .collect()
}

/// The A/V offset of speech: the first frame whose mouth opens past half its widest against
/// the first 20 ms of audio above a quarter of the loudest (ms, video minus audio), with the
/// loudest RMS, the widest opening, and the widest while idle.
pub struct Sync {
    pub offset_ms: i64,
    pub loudest: f64,
    pub idle_mouth: f64,
    pub widest_mouth: f64,
}

/// Measures [`Sync`] in what was received; frames `idle` show the avatar idle.
pub fn speech_sync(got: &Received, idle: std::ops::Range<usize>) -> Sync {
    let opening = mouth_opening(&got.frames);
    let idle = opening[idle.start.min(opening.len())..idle.end.min(opening.len())]
        .iter()
        .map(|x| x.1)
        .fold(0.0, f64::max);
    let widest = opening.iter().map(|x| x.1).fold(0.0, f64::max);
    let first_mouth = opening
        .iter()
        .find(|x| x.1 > 0.5 * widest)
        .map(|x| x.0)
        .unwrap();
    let windows = audio_windows(&got.audio);
    let loudest = windows.iter().map(|w| w.1).fold(0.0, f64::max);
    let onset = windows
        .iter()
        .find(|w| w.1 > 0.25 * loudest)
        .map(|w| w.0)
        .unwrap_or(gst::ClockTime::ZERO);
    Sync {
        offset_ms: first_mouth.mseconds() as i64 - onset.mseconds() as i64,
        loudest,
        idle_mouth: idle,
        widest_mouth: widest,
    }
}

/// Links `pad` of an element in `pipeline` to `queue ! <head><tail>`, the tail being
/// [`VIDEO_TAIL`] collected by [`collect_video`] or [`AUDIO_TAIL`] by [`collect_audio`] into
/// `got`; `head` decodes what the pad gives ("": it gives raw media).
pub fn decode_pad(pipeline: &gst::Pipeline, pad: &gst::Pad, head: &str, video: bool, got: &Shared) {
    let tail = if video { VIDEO_TAIL } else { AUDIO_TAIL };
    let bin = gst::parse::bin_from_description(&format!("queue ! {head}{tail}"), true).unwrap();
    if video {
        collect_video(&bin.by_name("v").unwrap(), got);
    } else {
        collect_audio(&bin.by_name("a").unwrap(), got);
    }
    pipeline.add(&bin).unwrap();
    bin.sync_state_with_parent().unwrap();
    pad.link(&bin.static_pad("sink").unwrap()).unwrap();
}

/// A receiver around a gst-plugins-rs WebRTC source (`whepclientsrc`, `whipserversrc` ...)
/// whose `signaller` is set up: its ICE agent offers 127.0.0.1 only, each decoded stream goes
/// to [`collect_video`] / [`collect_audio`], and the pipeline is playing. Stopped on drop, with
/// a bound on the time (see [`crate::support::stop_pipeline`]).
pub struct Receiver {
    pub pipeline: gst::Pipeline,
    pub got: Shared,
    /// Who receives, for messages ("WHEP player A").
    pub name: String,
}

impl Receiver {
    pub fn start(name: &str, src: &gst::Element, signaller: &gst::glib::Object) -> Receiver {
        signaller.connect("webrtcbin-ready", false, |args| {
            let webrtcbin = args[2].get::<gst::Element>().unwrap();
            webrtcbin
                .property::<gst::glib::Object>("ice-agent")
                .emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
            None
        });
        Self::start_on_any_address(name, src)
    }

    /// [`Receiver::start`] for a source whose ICE agent keeps every local address (a
    /// server such as Janus offers the addresses it finds, not only loopback).
    pub fn start_on_any_address(name: &str, src: &gst::Element) -> Receiver {
        let pipeline = gst::Pipeline::new();
        pipeline.add(src).unwrap();
        let got = Shared::default();
        // (weak: the source must not keep its own pipeline alive)
        let (p, g) = (pipeline.downgrade(), got.clone());
        src.connect_pad_added(move |_, pad| {
            if let Some(p) = p.upgrade() {
                decode_pad(&p, pad, "", pad.name().starts_with("video"), &g);
            }
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        Receiver {
            pipeline,
            got,
            name: name.to_string(),
        }
    }

    /// Waits until `frames` frames and some audio came, at most `timeout` (then panics with
    /// what came and the pipeline's error, if any).
    pub fn wait_for_media(&self, frames: usize, timeout: std::time::Duration) {
        let start = Instant::now();
        loop {
            {
                let g = self.got.lock().unwrap();
                if g.frames.len() >= frames && !g.audio.is_empty() {
                    return;
                }
                assert!(
                    start.elapsed() < timeout,
                    "{}: {} frames, {} audio buffers after {timeout:?}{}",
                    self.name,
                    g.frames.len(),
                    g.audio.len(),
                    self.bus_error()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn bus_error(&self) -> String {
        let bus = self.pipeline.bus().unwrap();
        while let Some(msg) = bus.pop() {
            if let gst::MessageView::Error(e) = msg.view() {
                return format!("; the receiver's error: {} ({:?})", e.error(), e.debug());
            }
        }
        String::new()
    }

    /// Frames received so far.
    pub fn frames(&self) -> usize {
        self.got.lock().unwrap().frames.len()
    }

    /// What was received so far (the receiver starts afresh).
    pub fn take(&self) -> Received {
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        crate::support::stop_pipeline(&self.pipeline, &self.name);
    }
}

/// Checks speech in what arrived: loud audio, 512x512 frames with a mouth that moves, and
/// (`sync_ms`) the mouth opening within that many ms of the speech onset. Frames `idle` show
/// the avatar idle.
pub fn assert_talks(
    got: &Received,
    idle: std::ops::Range<usize>,
    what: &str,
    sync_ms: Option<i64>,
) {
    assert!(
        got.frames.len() > 100,
        "{what}: {} frames",
        got.frames.len()
    );
    let (w, h) = (got.frames[0].2.width, got.frames[0].2.height);
    assert_eq!((w, h), (512, 512), "{what}");
    let sync = speech_sync(got, idle);
    eprintln!(
        "{what}: audio RMS up to {:.3}; mouth idle up to {:.2}, speaking up to {:.2}; speech \
         onset -> open mouth {} ms (PTS at the receiver)",
        sync.loudest, sync.idle_mouth, sync.widest_mouth, sync.offset_ms
    );
    assert!(sync.loudest > 0.05, "{what}: no speech in the audio");
    assert!(
        sync.widest_mouth > 3.0 * sync.idle_mouth.max(0.5),
        "{what}: the mouth does not move"
    );
    assert!(
        sync_ms.is_none_or(|ms| sync.offset_ms.abs() <= ms),
        "{what}: audio and video out of sync by {} ms",
        sync.offset_ms
    );
}
