//! One live avatar session: a pipeline `TTS -> lip driver -> avatarblend -> outputs`, where the
//! outputs are a webrtcsink producer (one browser), a janusvrwebrtcsink publishing once into a
//! Janus VideoRoom (any number of viewers), an RTMP push, and an optional MP4 recording that
//! the API starts and stops while the session runs.
//!
//! Nothing here holds a lock while GStreamer pushes: the signal handlers only touch atomics and
//! channels, and the pipeline is torn down by the server's end task, never from a streaming
//! thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::launch::{AvatarChain, quote};
use anyhow::{Context, anyhow};
use futures::StreamExt;
use gst::prelude::*;
use tokio::sync::{broadcast, mpsc};

use super::listen::{BargeIn, Heard, Listener, Turn};
use super::{Config, Tts, llm};

/// What can go wrong with a session, in its own terms; the HTTP layer alone maps these to
/// status codes.
#[derive(Debug)]
pub enum SessionError {
    /// An avatar id that is not a plain folder name.
    BadAvatarId,
    /// No avatar of that id.
    UnknownAvatar(String),
    /// `--max-sessions` sessions exist already (how many).
    Full(usize),
    /// The session's pipeline could not be built or started.
    Pipeline(String),
    /// type=chat on a server without `--llm-url`.
    ChatUnavailable,
    /// The LLM endpoint could not be reached or refused the request.
    Llm(String),
    /// No action clip of that name or number.
    UnknownAction(String),
    /// The avatar cannot play an action clip yet (the session is starting).
    ActionNotReady,
    /// A recording could not be started or finished.
    Recording(String),
    /// The session's text queue is full (or the text had nothing to say).
    QueueFull,
    /// An upload that is not audio GStreamer can decode, or holds no sound.
    BadAudio(String),
    /// Janus (`--janus`) cannot be reached or refused the room.
    Janus(super::janus::JanusError),
    /// The microphone could not be listened to.
    Microphone(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::BadAvatarId => f.write_str(
                "an avatar id is a folder name: letters, digits, '-', '_', '.', not starting with '.'",
            ),
            SessionError::UnknownAvatar(id) => write!(f, "no avatar '{id}'"),
            SessionError::Full(n) => write!(f, "{n} sessions already (--max-sessions)"),
            SessionError::Pipeline(e) => write!(f, "the session pipeline: {e}"),
            SessionError::ChatUnavailable => {
                f.write_str("type=chat needs a server started with --llm-url")
            }
            SessionError::Llm(e) => f.write_str(e),
            SessionError::UnknownAction(e) => f.write_str(e),
            SessionError::ActionNotReady => {
                f.write_str("the session is not ready to play actions yet")
            }
            SessionError::Recording(e) => f.write_str(e),
            SessionError::BadAudio(e) => write!(f, "not playable audio: {e}"),
            SessionError::Janus(e) => write!(f, "{e}"),
            SessionError::Microphone(e) => write!(f, "the microphone: {e}"),
            SessionError::QueueFull => f.write_str(
                "the session's text queue is full: wait for the avatar to finish, or interrupt",
            ),
        }
    }
}

impl std::error::Error for SessionError {}

/// An action clip as the API names it: by name, or by number (1-based; 0 is idle).
pub enum ActionRef {
    Name(String),
    Number(u64),
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its WebRTC peer left.
    PeerLeft,
    /// Its WebRTC peer stopped sending anything (no RTCP, no feedback) for
    /// `--peer-lost-timeout`: a browser frozen or cut off without closing.
    PeerLost,
    /// No peer connected in time.
    NoPeer,
    /// Closed through the API.
    Closed,
    /// The pipeline failed.
    Error,
    /// The pipeline ended its stream (EOS).
    Eos,
    /// The server stops.
    Shutdown,
    /// Janus lost the session's feed, or the connection to Janus broke.
    JanusLost,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::PeerLeft => "peer-left",
            EndReason::PeerLost => "peer-lost",
            EndReason::NoPeer => "no-peer",
            EndReason::Closed => "closed",
            EndReason::Error => "error",
            EndReason::Eos => "eos",
            EndReason::Shutdown => "shutdown",
            EndReason::JanusLost => "janus-lost",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Webrtc,
    Rtmp,
    /// Encoded as webrtcsink would (VP8 + Opus) into clock-synced fakesinks: a session with
    /// no viewer, for `livetalk bench soak` and `bench sessions`.
    Encoded,
    /// Published once into a Janus VideoRoom (`--janus`) with janusvrwebrtcsink.
    Janus,
    /// The session's own webrtcbin answering one client's offer (`POST /offer`).
    Offer,
    /// Pushed to a WHIP endpoint by whipclientsink (`--whip`).
    Whip,
    /// Watched by WHEP players through whepserversink (`--whep`, `output: "whep"`).
    Whep,
}

/// What webrtcsink sets on vp8enc, into a synced fakesink: the encode cost of one viewer.
pub const VIDEO_OUT: &str = "vp8enc deadline=1 cpu-used=-16 target-bitrate=2048000 \
    keyframe-max-dist=2000 keyframe-mode=disabled end-usage=cbr buffer-initial-size=100 \
    buffer-optimal-size=120 buffer-size=150 max-intra-bitrate=250 error-resilient=default \
    lag-in-frames=0 name=venc ! rtpvp8pay ! fakesink sync=true";
/// webrtcsink's audio encoding, into a synced fakesink.
pub const AUDIO_OUT: &str = "opusenc ! rtpopuspay ! fakesink sync=true";

/// How long an uploaded audio file waits for a session's voice to start.
const VOICE_START: Duration = Duration::from_secs(10);

/// An MP4 recording branch hanging off the session's raw audio and video tees.
struct Recording {
    bin: gst::Bin,
    file: PathBuf,
    video_pad: gst::Pad,
    audio_pad: gst::Pad,
}

pub struct Session {
    pub id: String,
    pub avatar: String,
    pub output: Output,
    pub created: Instant,
    pipeline: gst::Pipeline,
    tts: gst::Element,
    /// The `avatarbin`: action clips, and the interrupt of pending frames.
    avatarbin: gst::Element,
    vtee: gst::Element,
    atee: gst::Element,
    /// Speech, word and session events for the SSE subscribers (JSON objects).
    pub events: broadcast::Sender<serde_json::Value>,
    pub consumers: Arc<AtomicUsize>,
    pub ever_connected: Arc<AtomicBool>,
    /// When a packet last came in from a viewer (see [`since_start`]), for the peer-lost
    /// watch.
    last_inbound: Arc<AtomicU64>,
    /// The LLM stream feeding this session, if any.
    pub chat: Mutex<Option<tokio::task::AbortHandle>>,
    recording: Mutex<Option<Recording>>,
    /// The browser's microphone, when the page sends it (`POST /mic`), and the task that
    /// turns what it hears into answers.
    listener: Mutex<Option<(Listener, tokio::task::AbortHandle)>>,
    /// Audio already queued for the viewers with a running time before this (ns) is muted
    /// as it leaves its queue: set by an interrupt (see [`MutedBefore`]).
    muted_before: Arc<AtomicU64>,
    cfg: Arc<Config>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    ended: AtomicBool,
    /// The video encoders the session's webrtcsink set up for its consumers.
    encoders: Encoders,
    /// Where a Janus session publishes.
    pub janus: Option<JanusFeed>,
    /// A WHEP session's sink and viewers.
    pub whep: Option<super::whep::WhepOutput>,
}

/// A session's feed in a Janus VideoRoom.
pub struct JanusFeed {
    pub room: u64,
    pub feed: u64,
    pub display: String,
    sink: gst::Element,
    cfg: super::janus::JanusConfig,
    /// Ends the watch thread.
    stop: Arc<AtomicBool>,
}

impl JanusFeed {
    /// The signaller's state (janusvrwebrtcsink's `janus-state`), e.g. "webrtc-up".
    pub fn state(&self) -> String {
        let v = self.sink.property_value("janus-state");
        glib::EnumValue::from_value(&v)
            .map(|(_, e)| e.nick().to_string())
            .unwrap_or_default()
    }
}

/// (consumer, stream, encoder) for every encoder webrtcsink set up, held weakly: an encoder
/// counts while it exists.
type Encoders = Arc<Mutex<Vec<(String, String, glib::WeakRef<gst::Element>)>>>;

/// Counts the encoders `ws` (a webrtcsink or janusvrwebrtcsink) sets up for its consumers
/// (codec discovery's short-lived ones left out).
fn track_encoders(ws: &gst::Element, encoders: &Encoders) {
    let list = encoders.clone();
    ws.connect("encoder-setup", false, move |args| {
        let consumer = args[1].get::<String>().unwrap_or_default();
        let stream = args[2].get::<String>().unwrap_or_default();
        if consumer != "discovery"
            && let Ok(enc) = args[3].get::<gst::Element>()
        {
            let mut l = list.lock().unwrap();
            l.retain(|(_, _, e)| e.upgrade().is_some());
            l.push((consumer, stream, enc.downgrade()));
        }
        // Let webrtcsink's own configuration run too.
        Some(false.to_value())
    });
}

/// What every session runs: TTS -> avatarbin, its video as I420 into tee `vt` and its audio
/// as 48 kHz mono S16 into tee `at` (`livetalk bench sessions` runs it too).
pub fn media_chain(tts: &str, chain: &AvatarChain) -> String {
    format!(
        "{tts} ! {bin} \
         avatar.video ! videoconvert ! video/x-raw,format=I420 ! tee name=vt allow-not-linked=true \
         avatar.audio ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! \
           tee name=at allow-not-linked=true ",
        bin = chain.describe("avatar")
    )
}

/// The session's pipeline description; `webrtcsink` is added by code (its signaller needs
/// configuring before the pipeline starts).
fn describe(cfg: &Config, avatar_dir: &Path, output: &Output, rtmp: Option<&str>) -> String {
    let tts = match cfg.tts {
        Tts::Edge => format!(
            "edgettssrc name=tts is-live=true{}{}",
            cfg.edge_voice
                .as_ref()
                .map(|v| format!(" voice=\"{v}\""))
                .unwrap_or_default(),
            cfg.edge_endpoint
                .as_ref()
                .map(|e| format!(" endpoint=\"{}\"", e.replace('"', "")))
                .unwrap_or_default()
        ),
        Tts::Piper => format!(
            "piperttssrc name=tts is-live=true{}",
            cfg.voice
                .as_ref()
                .map(|v| format!(" model={}", quote(v)))
                .unwrap_or_default()
        ),
    };
    let chain = AvatarChain {
        avatar: avatar_dir.to_path_buf(),
        driver: cfg.driver.into(),
        model_dir: Some(cfg.model_dir.clone()),
        device: cfg.device,
        actions: cfg.actions.clone(),
    };
    let mut d = media_chain(&tts, &chain);
    match output {
        Output::Webrtc | Output::Janus | Output::Whip | Output::Whep => d.push_str(
            "vt. ! queue name=wsv max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 \
             at. ! queue name=wsa max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ",
        ),
        Output::Offer => d.push_str(super::offer::BRANCHES),
        Output::Encoded => {
            let q = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000";
            d.push_str(&format!("vt. ! {q} ! {VIDEO_OUT} at. ! {q} ! {AUDIO_OUT}"));
        }
        Output::Rtmp => d.push_str(&format!(
            "vt. ! queue ! x264enc tune=zerolatency speed-preset=veryfast bframes=0 key-int-max=50 ! \
               video/x-h264,profile=baseline ! h264parse ! queue ! flv.video \
             at. ! queue ! audioconvert name=rtmpaudio ! avenc_aac ! aacparse ! queue ! flv.audio \
             flvmux name=flv streamable=true latency=100000000 ! rtmp2sink location=\"{}\" async-connect=true",
            rtmp.unwrap_or_default().replace('"', "")
        )),
    }
    d
}

impl Session {
    /// Builds a session (not started: see [`Session::play`]). `end` is told when the session
    /// should end.
    pub fn start(
        cfg: &Arc<Config>,
        id: String,
        avatar: String,
        avatar_dir: &Path,
        output: Output,
        rtmp: Option<&str>,
        end: mpsc::UnboundedSender<(String, EndReason)>,
    ) -> Result<Arc<Session>, SessionError> {
        if output == Output::Janus {
            let jc = cfg.janus.as_ref().ok_or_else(|| {
                SessionError::Pipeline("a Janus session needs a server started with --janus".into())
            })?;
            super::janus::ensure_room(jc).map_err(SessionError::Janus)?;
        }
        Self::build(cfg, id, avatar, avatar_dir, output, rtmp, end)
            .map_err(|e| SessionError::Pipeline(format!("{e:#}")))
    }

    /// The video encoders that exist for this session's consumers (webrtcsink encodes once
    /// per consumer; a Janus session has one consumer, Janus, whatever its viewer count).
    pub fn video_encoders(&self) -> usize {
        let l = self.encoders.lock().unwrap();
        l.iter()
            .filter(|(_, stream, e)| stream.starts_with("video") && e.upgrade().is_some())
            .count()
    }

    fn build(
        cfg: &Arc<Config>,
        id: String,
        avatar: String,
        avatar_dir: &Path,
        output: Output,
        rtmp: Option<&str>,
        end: mpsc::UnboundedSender<(String, EndReason)>,
    ) -> anyhow::Result<Arc<Session>> {
        let desc = describe(cfg, avatar_dir, &output, rtmp);
        let pipeline = gst::parse::launch(&desc)
            .with_context(|| format!("building the session pipeline: {desc}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("not a pipeline"))?;
        pipeline.set_property("name", format!("session-{id}"));
        if matches!(output, Output::Rtmp) {
            crate::launch::encode_gaps_as_silence(&pipeline, "rtmpaudio")?;
        }
        let by_name = |n: &str| {
            pipeline
                .by_name(n)
                .ok_or_else(|| anyhow!("no element {n} in the session pipeline"))
        };
        let (tts, avatar_bin, vtee, atee) = (
            by_name("tts")?,
            by_name("avatar")?,
            by_name("vt")?,
            by_name("at")?,
        );
        let consumers = Arc::new(AtomicUsize::new(0));
        let ever_connected = Arc::new(AtomicBool::new(false));
        let last_inbound = Arc::new(AtomicU64::new(since_start()));
        let encoders = Encoders::default();
        let mut janus = None;
        let mut whep = None;
        let ws = match output {
            Output::Webrtc => Some(make_webrtcsink(
                cfg,
                &id,
                &consumers,
                &ever_connected,
                &last_inbound,
                &end,
            )?),
            Output::Janus => {
                let jc = cfg.janus.clone().context("no --janus")?;
                let feed = make_janus_feed(cfg, jc, &id, &consumers)?;
                let sink = feed.sink.clone();
                janus = Some(feed);
                Some(sink)
            }
            Output::Whip => {
                let url = cfg.whip.as_deref().context("no --whip")?;
                Some(super::whip::make_sink(cfg, url, cfg.whip_token.as_deref())?)
            }
            Output::Whep => {
                let (sink, out) = super::whep::make_sink(cfg, &consumers)?;
                whep = Some(out);
                Some(sink)
            }
            _ => None,
        };
        if let Some(ws) = ws {
            track_encoders(&ws, &encoders);
            pipeline.add(&ws)?;
            by_name("wsv")?.link_pads(Some("src"), &ws, Some("video_%u"))?;
            by_name("wsa")?.link_pads(Some("src"), &ws, Some("audio_%u"))?;
        }
        let muted_before = Arc::new(AtomicU64::new(0));
        // Where queued audio leaves for the viewers: after the last queue of each output.
        for (element, pad) in [("wsa", "src"), ("rtmpaudio", "sink")] {
            if let Some(pad) = pipeline.by_name(element).and_then(|e| e.static_pad(pad)) {
                mute_queued_audio(&pad, muted_before.clone());
            }
        }
        let (events, _) = broadcast::channel(256);
        let session = Arc::new(Session {
            id: id.clone(),
            avatar,
            output,
            created: Instant::now(),
            pipeline: pipeline.clone(),
            tts,
            avatarbin: avatar_bin,
            vtee,
            atee,
            events: events.clone(),
            consumers,
            ever_connected,
            last_inbound,
            chat: Mutex::new(None),
            recording: Mutex::new(None),
            listener: Mutex::new(None),
            muted_before,
            cfg: cfg.clone(),
            tasks: Mutex::new(Vec::new()),
            ended: AtomicBool::new(false),
            encoders,
            janus,
            whep,
        });

        // READY here, before the bus is watched: a bad avatar or a driver that cannot run is
        // refused now, with the element's own message.
        let bus = pipeline.bus().context("pipeline without a bus")?;
        if pipeline.set_state(gst::State::Ready).is_err() {
            let why = crate::launch::bus_error(&bus);
            let _ = pipeline.set_state(gst::State::Null);
            anyhow::bail!("{why}");
        }
        // Bus: speech/word messages to the SSE subscribers, errors end the session.
        let mut stream = bus.stream();
        let (bus_id, bus_end, bus_events) = (id.clone(), end.clone(), events);
        let weak = Arc::downgrade(&session);
        let janus_output = output == Output::Janus;
        let bus_task = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                match msg.view() {
                    gst::MessageView::Element(e) => {
                        if let Some(ev) = e.structure().and_then(event_json) {
                            let _ = bus_events.send(ev);
                        }
                    }
                    // A recording that fails (disk full, folder gone) ends, not the session.
                    gst::MessageView::Error(e) if from_recording(&msg) => {
                        let text = format!("the recording failed: {}", e.error());
                        eprintln!("livetalk serve: session {bus_id}: {text}");
                        let _ = bus_events
                            .send(serde_json::json!({"type": "record-error", "msg": text}));
                        if let Some(s) = weak.upgrade() {
                            tokio::task::spawn_blocking(move || s.abandon_recording());
                        }
                    }
                    // The Janus signaller's connection broke (Janus stopped or restarted): say
                    // so, and end as the Janus watch would.
                    gst::MessageView::Error(e) if janus_output && from_janus_sink(&msg) => {
                        let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
                        // The debug text ends with the signaller's own message.
                        let why = debug.rsplit('\n').next().unwrap_or_default();
                        let text = format!("publishing to Janus failed: {why}");
                        eprintln!("livetalk serve: session {bus_id}: {text}");
                        let _ = bus_events
                            .send(serde_json::json!({"type": "janus-error", "msg": text}));
                        let _ = bus_end.send((bus_id.clone(), EndReason::JanusLost));
                        break;
                    }
                    gst::MessageView::Error(e) => {
                        eprintln!(
                            "livetalk serve: session {bus_id}: {} ({})",
                            e.error(),
                            e.debug().map(|d| d.to_string()).unwrap_or_default()
                        );
                        let _ = bus_end.send((bus_id.clone(), EndReason::Error));
                        break;
                    }
                    gst::MessageView::Eos(_) => {
                        let _ = bus_end.send((bus_id.clone(), EndReason::Eos));
                        break;
                    }
                    _ => {}
                }
            }
        });
        session.tasks.lock().unwrap().push(bus_task.abort_handle());

        Ok(session)
    }

    /// Starts the pipeline (once the server knows the session, so that an early end finds
    /// it); a WebRTC session that no peer joins ends after the peer timeout.
    pub fn play(
        &self,
        peer_timeout: std::time::Duration,
        end: mpsc::UnboundedSender<(String, EndReason)>,
    ) -> Result<(), SessionError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| SessionError::Pipeline(format!("it does not start: {e}")))?;
        if let Some(j) = &self.janus {
            // Janus stopping or restarting drops its rooms and feeds: the session ends with
            // a message saying so (it does not republish).
            let (id, events, end_janus) = (self.id.clone(), self.events.clone(), end.clone());
            super::janus::watch(j.cfg.clone(), j.feed, j.stop.clone(), move |why| {
                eprintln!("livetalk serve: session {id}: {why}");
                let _ = events.send(serde_json::json!({"type": "janus-error", "msg": why}));
                let _ = end_janus.send((id, EndReason::JanusLost));
            })
            .map_err(|e| SessionError::Pipeline(format!("the Janus watch: {e}")))?;
        }
        if matches!(self.output, Output::Webrtc | Output::Offer) {
            let (id, ever) = (self.id.clone(), self.ever_connected.clone());
            let no_peer_end = end.clone();
            let t = tokio::spawn(async move {
                tokio::time::sleep(peer_timeout).await;
                if !ever.load(Ordering::SeqCst) {
                    let _ = no_peer_end.send((id, EndReason::NoPeer));
                }
            });
            self.tasks.lock().unwrap().push(t.abort_handle());
        }
        if self.output == Output::Webrtc {
            // A viewer that stays connected but sends nothing (frozen, cut off) ends the
            // session after --peer-lost-timeout (`/offer` sessions have their own watch).
            let (id, consumers, last) = (
                self.id.clone(),
                self.consumers.clone(),
                self.last_inbound.clone(),
            );
            let lost_after = self.cfg.peer_lost_timeout.as_nanos() as u64;
            let t = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let quiet = since_start().saturating_sub(last.load(Ordering::SeqCst));
                    if consumers.load(Ordering::SeqCst) > 0 && quiet > lost_after {
                        let _ = end.send((id, EndReason::PeerLost));
                        break;
                    }
                }
            });
            self.tasks.lock().unwrap().push(t.abort_handle());
        }
        Ok(())
    }

    /// A task that ends with the session.
    pub(super) fn add_task(&self, task: tokio::task::AbortHandle) {
        self.tasks.lock().unwrap().push(task);
    }

    /// Queues text to say; refused when the session's text queue is full.
    pub fn speak(&self, text: &str) -> Result<(), SessionError> {
        if self.tts.emit_by_name::<bool>("speak", &[&text]) {
            Ok(())
        } else {
            Err(SessionError::QueueFull)
        }
    }

    pub fn push_fragment(&self, text: &str) {
        self.tts.emit_by_name::<()>("push-fragment", &[&text]);
    }

    pub fn end_fragments(&self) {
        self.tts.emit_by_name::<()>("end-fragments", &[]);
    }

    /// Says an audio file (any format GStreamer decodes): decoded to the TTS source's rate
    /// and queued behind what is queued, or said at once with `interrupt`. Blocking (decodes).
    pub fn say_audio(
        &self,
        file: &Path,
        label: &str,
        interrupt: bool,
    ) -> Result<f64, SessionError> {
        let rate = self.voice_rate(VOICE_START).ok_or_else(|| {
            SessionError::Pipeline(format!(
                "the voice has not started within {} s",
                VOICE_START.as_secs()
            ))
        })?;
        let samples =
            decode_mono_s16(file, rate).map_err(|e| SessionError::BadAudio(format!("{e:#}")))?;
        if samples.iter().all(|s| s.unsigned_abs() < 8) {
            return Err(SessionError::BadAudio("the file holds no sound".into()));
        }
        let seconds = samples.len() as f64 / rate as f64;
        let bytes = glib::Bytes::from_owned(
            samples
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        if interrupt {
            self.interrupt();
        }
        self.tts
            .emit_by_name::<bool>("push-audio", &[&label, &bytes]);
        Ok(seconds)
    }

    /// The sample rate of the voice's output, once its caps are set: waits for them up to
    /// `within` (a file uploaded as the session starts comes before the voice has started).
    /// Blocking.
    fn voice_rate(&self, within: Duration) -> Option<i32> {
        let pad = self.tts.static_pad("src")?;
        let rate = |p: &gst::Pad| {
            p.current_caps()
                .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("rate").ok()))
        };
        if let Some(r) = rate(&pad) {
            return Some(r);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let id = pad.connect_notify(Some("caps"), move |_, _| {
            let _ = tx.try_send(());
        });
        // (caps set between the first look and the connection: seen here)
        let r = rate(&pad).or_else(|| {
            let _ = rx.recv_timeout(within);
            rate(&pad)
        });
        pad.disconnect(id);
        r
    }

    /// Cancels the LLM stream, if any, and drops queued and in-flight speech: the TTS stops
    /// at its next buffer, and the speech already queued behind the pipeline's latency is
    /// muted as it leaves for the viewers, so that the ear hears the interrupt at once.
    pub fn interrupt(&self) {
        if let Some(h) = self.chat.lock().unwrap().take() {
            h.abort();
        }
        if let Some(now) = self.pipeline.current_running_time() {
            // The TTS's buffers (20 ms) stamped up to now may still be on their way.
            let until =
                now + gst::ClockTime::from_mseconds(2 * gstlivetalk::tts::playout::BUFFER_MS);
            self.muted_before
                .fetch_max(until.nseconds(), Ordering::SeqCst);
        }
        self.tts.emit_by_name::<()>("flush", &[]);
    }

    /// The session's pipeline, for measurements (benchmarks).
    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    pub fn is_speaking(&self) -> bool {
        self.tts.property::<bool>("speaking")
    }

    /// Speaking, or an LLM answer still streaming in.
    fn is_talking(&self) -> bool {
        self.is_speaking()
            || self
                .chat
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|h| !h.is_finished())
    }

    /// Starts listening to the microphone the page publishes as producer `peer` (replacing
    /// a listener already running). What is heard is answered (the LLM with `--llm-url`, an
    /// echo without) and, with `--barge-in on`, user speech interrupts the avatar. Blocking
    /// (loads the VAD and whisper models): call off the async runtime, inside it.
    pub fn start_listening(self: &Arc<Self>, peer: &str) -> Result<(), SessionError> {
        self.stop_listening();
        let (tx, rx) = mpsc::unbounded_channel();
        let listener = Listener::start(&self.cfg, &self.id, peer, tx)
            .map_err(|e| SessionError::Microphone(format!("{e:#}")))?;
        let task = tokio::spawn(voice_turns(Arc::downgrade(self), listener.serial, rx));
        *self.listener.lock().unwrap() = Some((listener, task.abort_handle()));
        Ok(())
    }

    /// Stops listening, if listening; true if it was. Blocking.
    pub fn stop_listening(&self) -> bool {
        self.stop_listener(None)
    }

    /// Stops the running listener (only if it is the one numbered `serial`, when given: a
    /// listener that ended on its own must not stop its successor); true if one was stopped.
    /// Blocking.
    fn stop_listener(&self, serial: Option<u64>) -> bool {
        let taken = {
            let mut slot = self.listener.lock().unwrap();
            match &*slot {
                Some((l, _)) if serial.is_none_or(|s| s == l.serial) => slot.take(),
                _ => None,
            }
        };
        let Some((listener, task)) = taken else {
            return false;
        };
        task.abort();
        listener.stop();
        true
    }

    /// The microphone producer listened to, if any.
    pub fn listening_to(&self) -> Option<String> {
        self.listener
            .lock()
            .unwrap()
            .as_ref()
            .map(|(l, _)| l.peer.clone())
    }

    fn listener_running_time(&self) -> Option<gst::ClockTime> {
        self.listener
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|(l, _)| l.running_time())
    }

    /// A spoken turn: to the LLM, or said back without one.
    async fn answer(self: &Arc<Self>, text: &str) {
        let interrupt = self.cfg.barge_in;
        let result = if self.cfg.llm.is_some() {
            self.chat(self.cfg.llm.as_ref(), text, interrupt).await
        } else {
            if interrupt {
                self.interrupt();
            }
            self.speak(text)
        };
        if let Err(e) = result {
            let _ = self
                .events
                .send(serde_json::json!({"type": "chat-error", "msg": e.to_string()}));
        }
    }

    /// Plays an action clip by name or number (1-based; 0 or "idle" returns to the idle
    /// cycle). `names` are the clips of the server's actions file.
    pub fn set_action(&self, names: &[String], which: ActionRef) -> Result<(), SessionError> {
        let name = match which {
            ActionRef::Name(n) => n,
            ActionRef::Number(0) => String::new(),
            ActionRef::Number(i) if (i as usize) <= names.len() => names[i as usize - 1].clone(),
            ActionRef::Number(i) => {
                return Err(SessionError::UnknownAction(format!(
                    "no action clip number {i} ({} clips)",
                    names.len()
                )));
            }
        };
        if name.is_empty() || name == "idle" {
            self.avatarbin.emit_by_name::<()>("stop-action", &[]);
            return Ok(());
        }
        if !names.contains(&name) {
            return Err(SessionError::UnknownAction(format!(
                "no action clip '{name}' (clips: {})",
                names.join(", ")
            )));
        }
        if !self.avatarbin.emit_by_name::<bool>("play-action", &[&name]) {
            return Err(SessionError::ActionNotReady);
        }
        Ok(())
    }

    /// Asks the LLM and speaks its answer as it streams in. `interrupt`: cut what is being
    /// said first; otherwise a new question only replaces an answer still streaming.
    /// Returns once the endpoint has accepted the request; the answer streams on in a task
    /// that ends with the session.
    pub async fn chat(
        self: &Arc<Self>,
        cfg: Option<&llm::LlmConfig>,
        text: &str,
        interrupt: bool,
    ) -> Result<(), SessionError> {
        let cfg = cfg.ok_or(SessionError::ChatUnavailable)?;
        if interrupt {
            self.interrupt();
        } else if let Some(h) = self.chat.lock().unwrap().take() {
            h.abort();
        }
        let mut answer = llm::connect(cfg, text, std::time::Duration::from_secs(15))
            .await
            .map_err(|e| SessionError::Llm(format!("{e:#}")))?;
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let next = answer.next_fragment().await;
                let Some(s) = weak.upgrade() else { break };
                match next {
                    Ok(Some(fragment)) => {
                        let _ = s
                            .events
                            .send(serde_json::json!({"type": "chat", "text": fragment}));
                        s.push_fragment(&fragment);
                    }
                    Ok(None) => {
                        s.end_fragments();
                        break;
                    }
                    Err(e) => {
                        let _ = s.events.send(
                            serde_json::json!({"type": "chat-error", "msg": format!("{e:#}")}),
                        );
                        s.end_fragments();
                        break;
                    }
                }
            }
        });
        *self.chat.lock().unwrap() = Some(task.abort_handle());
        Ok(())
    }

    pub fn recording_file(&self) -> Option<PathBuf> {
        self.recording
            .lock()
            .unwrap()
            .as_ref()
            .map(|r| r.file.clone())
    }

    /// Starts recording the session's audio and video into `dir`; returns the file.
    pub fn start_recording(&self, dir: &Path) -> Result<PathBuf, SessionError> {
        self.start_recording_inner(dir)
            .map_err(|e| SessionError::Recording(format!("{e:#}")))
    }

    fn start_recording_inner(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let mut rec = self.recording.lock().unwrap();
        if let Some(r) = rec.as_ref() {
            anyhow::bail!("already recording into {}", r.file.display());
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the recording folder {}", dir.display()))?;
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let file = dir.join(format!("{}-{stamp}.mp4", self.id));
        let bin = gst::parse::bin_from_description_with_name(
            &format!(
                "queue name=rv max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! videoconvert ! \
                   x264enc tune=zerolatency speed-preset=veryfast bframes=0 key-int-max=50 ! h264parse ! queue ! mux. \
                 queue name=ra max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! audioconvert ! \
                   audioresample ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! queue ! mux. \
                 mp4mux name=mux ! filesink name=file location={}",
                quote(&file)
            ),
            false,
            RECORDING_BIN,
        )?;
        let ghost = |inner: &str, name: &str| -> anyhow::Result<gst::Pad> {
            let pad = bin
                .by_name(inner)
                .and_then(|e| e.static_pad("sink"))
                .ok_or_else(|| anyhow!("recording bin without {inner}"))?;
            let g = gst::GhostPad::builder_with_target(&pad)?.name(name).build();
            bin.add_pad(&g)?;
            Ok(g.upcast())
        };
        let (gv, ga) = (ghost("rv", "video")?, ghost("ra", "audio")?);
        self.pipeline.add(&bin)?;
        bin.sync_state_with_parent()?;
        let video_pad = self
            .vtee
            .request_pad_simple("src_%u")
            .ok_or_else(|| anyhow!("no tee pad"))?;
        let audio_pad = self
            .atee
            .request_pad_simple("src_%u")
            .ok_or_else(|| anyhow!("no tee pad"))?;
        video_pad.link(&gv)?;
        audio_pad.link(&ga)?;
        *rec = Some(Recording {
            bin,
            file: file.clone(),
            video_pad,
            audio_pad,
        });
        Ok(file)
    }

    /// Ends the recording: unlinks it from the tees, sends EOS through it so that mp4mux
    /// writes its index, then removes it. Blocking (up to a few seconds): call off the async
    /// runtime.
    pub fn stop_recording(&self) -> Result<PathBuf, SessionError> {
        let rec = self
            .recording
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| SessionError::Recording("not recording".into()))?;
        finish_recording(&self.pipeline, &self.vtee, &self.atee, rec)
            .map_err(|e| SessionError::Recording(format!("{e:#}")))
    }

    /// Drops a recording whose branch failed, without waiting for it to finish its file.
    fn abandon_recording(&self) {
        let Some(rec) = self.recording.lock().unwrap().take() else {
            return;
        };
        for (tee, pad) in [(&self.vtee, &rec.video_pad), (&self.atee, &rec.audio_pad)] {
            if let Some(peer) = pad.peer() {
                let _ = pad.unlink(&peer);
            }
            tee.release_request_pad(pad);
        }
        let _ = rec.bin.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&rec.bin);
    }

    /// Ends the session: the LLM stream, the tasks, the recording (finalised), the pipeline.
    /// Blocking; idempotent.
    pub fn shutdown(&self, reason: EndReason) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(j) = &self.janus {
            j.stop.store(true, Ordering::SeqCst);
        }
        let _ = self
            .events
            .send(serde_json::json!({"type": "session-end", "reason": reason.as_str()}));
        if let Some(h) = self.chat.lock().unwrap().take() {
            h.abort();
        }
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        if let Some(rec) = self.recording.lock().unwrap().take() {
            let _ = finish_recording(&self.pipeline, &self.vtee, &self.atee, rec);
        }
        self.stop_listening();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// What a session does with what its microphone hears: events for the page, barge-in, and
/// an answer to each finished utterance. Ends when the listener stops or the session goes.
async fn voice_turns(
    session: std::sync::Weak<Session>,
    serial: u64,
    mut heard: mpsc::UnboundedReceiver<Heard>,
) {
    let (barge_in, min) = match session.upgrade() {
        Some(s) => (s.cfg.barge_in, s.cfg.barge_in_min),
        None => return,
    };
    let mut barge = BargeIn::new(min);
    let mut turn = Turn::default();
    loop {
        // Until the current utterance is long enough to barge in, if one goes on.
        let wait = match (barge_in, barge.next_check(), session.upgrade()) {
            (true, Some(at), Some(s)) => s
                .listener_running_time()
                .map(|now| Duration::from_nanos(at.saturating_sub(now).nseconds())),
            _ => None,
        };
        let next = tokio::select! {
            h = heard.recv() => h,
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                let Some(s) = session.upgrade() else { break };
                if let Some(now) = s.listener_running_time()
                    && barge.due(now, s.is_talking())
                {
                    s.interrupt();
                    let _ = s.events.send(serde_json::json!({"type": "barge-in"}));
                }
                continue;
            }
        };
        let (Some(h), Some(s)) = (next, session.upgrade()) else {
            break;
        };
        let send = |v: serde_json::Value| {
            let _ = s.events.send(v);
        };
        match h {
            Heard::Listening => send(serde_json::json!({"type": "mic", "status": "listening"})),
            Heard::Silent => send(serde_json::json!({"type": "mic", "status": "silent",
                "msg": "no sound from the microphone for 5 s: is it muted?"})),
            Heard::Vad { start, at } => {
                barge.vad(start, at);
                send(serde_json::json!({"type": "vad",
                    "status": if start { "start" } else { "end" },
                    "running_time_ms": at.mseconds()}));
            }
            Heard::Transcript { text, is_final } => {
                send(serde_json::json!({"type": "transcript", "text": text, "final": is_final}));
                if let Some(t) = turn.add(&text, is_final) {
                    s.answer(&t).await;
                }
            }
            Heard::Ended(msg) => {
                send(serde_json::json!({"type": "mic", "status": "ended", "msg": msg}));
                // The listener is done: stop it off the runtime. This task ends here, so the
                // abort that comes with the stop finds it finished.
                let s2 = s.clone();
                tokio::task::spawn_blocking(move || s2.stop_listener(Some(serial)));
                break;
            }
        }
    }
}

/// Zeroes the audio buffers passing `pad` whose running time lies before `muted_before`
/// (ns): speech that was queued when the session was interrupted. Their timestamps and
/// durations stay, so that nothing downstream sees a discontinuity.
fn mute_queued_audio(pad: &gst::Pad, muted_before: Arc<AtomicU64>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let until = muted_before.load(Ordering::SeqCst);
        if until == 0 {
            return gst::PadProbeReturn::Ok;
        }
        let running_time = |b: &gst::BufferRef| {
            let segment = pad.sticky_event::<gst::event::Segment>(0)?;
            let segment = segment.segment().downcast_ref::<gst::ClockTime>()?.clone();
            segment.to_running_time(b.pts()?)
        };
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
            && running_time(buffer).is_some_and(|t| t.nseconds() < until)
            && !buffer.flags().contains(gst::BufferFlags::GAP)
        {
            let b = buffer.make_mut();
            if let Ok(mut map) = b.map_writable() {
                map.as_mut_slice().fill(0);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// A whole audio file as S16 mono samples at `rate`, decoded by GStreamer.
fn decode_mono_s16(file: &Path, rate: i32) -> anyhow::Result<Vec<i16>> {
    use gst_app::AppSink;
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! audioconvert ! audioresample ! \
         audio/x-raw,format=S16LE,channels=1,rate={rate} ! appsink name=out sync=false",
        quote(file)
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow!("not a pipeline"))?;
    let sink = p
        .by_name("out")
        .and_then(|e| e.downcast::<AppSink>().ok())
        .context("no appsink")?;
    p.set_state(gst::State::Playing)?;
    let bus = p.bus().context("no bus")?;
    let mut out = Vec::new();
    let result = loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            if let Some(b) = sample.buffer()
                && let Ok(m) = b.map_readable()
            {
                out.extend(m.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
            }
            continue;
        }
        if sink.is_eos() {
            break Ok(());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            break Err(anyhow!("{}", e.error()));
        }
    };
    let _ = p.set_state(gst::State::Null);
    result?;
    Ok(out)
}

/// The name of a session's recording bin.
const RECORDING_BIN: &str = "recording";

/// Whether a message comes from inside the recording bin.
fn from_recording(msg: &gst::MessageRef) -> bool {
    let mut o = msg.src().cloned();
    while let Some(obj) = o {
        if obj.name() == RECORDING_BIN && obj.is::<gst::Bin>() {
            return true;
        }
        o = obj.parent();
    }
    false
}

/// The name of a Janus session's janusvrwebrtcsink.
const JANUS_SINK: &str = "janus";

/// Whether a message comes from the Janus sink (or inside it).
fn from_janus_sink(msg: &gst::MessageRef) -> bool {
    let mut o = msg.src().cloned();
    while let Some(obj) = o {
        if obj.name() == JANUS_SINK && obj.type_().name() == "GstJanusVRWebRTCSink" {
            return true;
        }
        o = obj.parent();
    }
    false
}

fn finish_recording(
    pipeline: &gst::Pipeline,
    vtee: &gst::Element,
    atee: &gst::Element,
    rec: Recording,
) -> anyhow::Result<PathBuf> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let sink_pad = rec
        .bin
        .by_name("file")
        .and_then(|f| f.static_pad("sink"))
        .ok_or_else(|| anyhow!("recording bin without its file sink"))?;
    sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data
            && ev.type_() == gst::EventType::Eos
            && let Some(tx) = tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
        gst::PadProbeReturn::Ok
    });
    for (tee, pad) in [(vtee, &rec.video_pad), (atee, &rec.audio_pad)] {
        if let Some(peer) = pad.peer() {
            let _ = pad.unlink(&peer);
            peer.send_event(gst::event::Eos::new());
        }
        tee.release_request_pad(pad);
    }
    let finished = rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok();
    let _ = rec.bin.set_state(gst::State::Null);
    let _ = pipeline.remove(&rec.bin);
    if !finished {
        anyhow::bail!(
            "the recording {} did not finish in time",
            rec.file.display()
        );
    }
    Ok(rec.file)
}

/// A webrtcsink producer for one session, on the server's signalling server. Its meta names
/// the session so that the page finds it among the producers.
fn make_webrtcsink(
    cfg: &Config,
    id: &str,
    consumers: &Arc<AtomicUsize>,
    ever_connected: &Arc<AtomicBool>,
    last_inbound: &Arc<AtomicU64>,
    end: &mpsc::UnboundedSender<(String, EndReason)>,
) -> anyhow::Result<gst::Element> {
    let ws = webrtc_sink(cfg, "webrtcsink", "ws", "gst-plugin-webrtc")?;
    ws.set_property(
        "meta",
        gst::Structure::builder("meta")
            .field("livetalk-session", id)
            .build(),
    );
    let signaller = ws.property::<glib::Object>("signaller");
    signaller.set_property("uri", cfg.signalling_uri());

    let loopback = cfg.listen.is_loopback();
    let (c, ever, last) = (
        consumers.clone(),
        ever_connected.clone(),
        last_inbound.clone(),
    );
    ws.connect("consumer-added", false, move |args| {
        c.fetch_add(1, Ordering::SeqCst);
        ever.store(true, Ordering::SeqCst);
        last.store(since_start(), Ordering::SeqCst);
        if let Ok(webrtcbin) = args[2].get::<gst::Element>() {
            watch_inbound(&webrtcbin, last.clone());
        }
        if let (Ok(ws), Ok(webrtcbin)) =
            (args[0].get::<gst::Element>(), args[2].get::<gst::Element>())
        {
            super::gccleak::watch(&ws, &webrtcbin);
        }
        if loopback && let Ok(webrtcbin) = args[2].get::<gst::Element>() {
            // Loopback candidates are hidden unless asked for (see FACTS: webrtcsink on
            // loopback needs 127.0.0.1 as a local address of the ICE agent).
            let agent = webrtcbin.property::<glib::Object>("ice-agent");
            agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        }
        None
    });
    let (c, end, sid) = (consumers.clone(), end.clone(), id.to_string());
    ws.connect("consumer-removed", false, move |_| {
        if c.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = end.send((sid.clone(), EndReason::PeerLeft));
        }
        None
    });
    Ok(ws)
}

/// A sink of webrtcsink's family (`factory`: webrtcsink, janusvrwebrtcsink, whipclientsink,
/// whepserversink) named `name`, sending VP8 and Opus with serve's `--congestion-control`,
/// `--stun` and `--turn`; `plugin` says where the factory comes from, for the error.
pub(super) fn webrtc_sink(
    cfg: &Config,
    factory: &str,
    name: &str,
    plugin: &str,
) -> anyhow::Result<gst::Element> {
    let sink = gst::ElementFactory::make(factory)
        .name(name)
        .property_from_str("congestion-control", cfg.congestion_control.nick())
        .property("video-caps", gst::Caps::builder("video/x-vp8").build())
        .property("audio-caps", gst::Caps::builder("audio/x-opus").build())
        .build()
        .with_context(|| format!("{factory} ({plugin}) is not registered"))?;
    sink.set_property("stun-server", cfg.stun.as_deref());
    if !cfg.turn.is_empty() {
        sink.set_property("turn-servers", gst::Array::new(cfg.turn.iter()));
    }
    Ok(sink)
}

/// A janusvrwebrtcsink that publishes the session once into the Janus room: feed id and
/// display name are the session id.
fn make_janus_feed(
    cfg: &Config,
    jc: super::janus::JanusConfig,
    id: &str,
    consumers: &Arc<AtomicUsize>,
) -> anyhow::Result<JanusFeed> {
    let feed: u64 = id.parse().context("a session id that is not a number")?;
    let sink = webrtc_sink(
        cfg,
        "janusvrwebrtcsink",
        JANUS_SINK,
        "gst-plugin-webrtc, feature janus",
    )?;
    let signaller = sink.property::<glib::Object>("signaller");
    signaller.set_property("janus-endpoint", &jc.endpoint);
    signaller.set_property("room-id", jc.room);
    signaller.set_property("feed-id", feed);
    signaller.set_property("display-name", id);
    // No loopback address for the ICE agent here, unlike a local browser: Janus 1.1 never
    // gathers loopback candidates (its ice.c skips loopback interfaces), so a Janus on this
    // machine is reached on the host's own addresses (delivered locally by the kernel).
    let c = consumers.clone();
    sink.connect("consumer-added", false, move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        None
    });
    let c = consumers.clone();
    sink.connect("consumer-removed", false, move |_| {
        c.fetch_sub(1, Ordering::SeqCst);
        None
    });
    Ok(JanusFeed {
        room: jc.room,
        feed,
        display: id.to_string(),
        sink,
        cfg: jc,
        stop: Arc::new(AtomicBool::new(false)),
    })
}

/// Nanoseconds since the first call: the clock of the peer-lost watch.
fn since_start() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Notes in `last` (see [`since_start`]) each packet a viewer's webrtcbin receives (its ICE
/// transports' `nicesrc`): a browser sends RTCP reports and congestion feedback every second
/// or more often while it is there.
fn watch_inbound(webrtcbin: &gst::Element, last: Arc<AtomicU64>) {
    let watch = move |e: &gst::Element| {
        if e.factory().is_some_and(|f| f.name() == "nicesrc")
            && let Some(pad) = e.static_pad("src")
        {
            let last = last.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |_, _| {
                    last.store(since_start(), Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                },
            );
        }
    };
    let Some(bin) = webrtcbin.downcast_ref::<gst::Bin>() else {
        return;
    };
    for e in bin.iterate_recurse().into_iter().flatten() {
        watch(&e);
    }
    bin.connect_deep_element_added(move |_, _, e| watch(e));
}

/// A `livetalk-speech` / `livetalk-word` message as the JSON the SSE stream sends.
pub fn event_json(s: &gst::StructureRef) -> Option<serde_json::Value> {
    let text = s.get::<String>("text").unwrap_or_default();
    let ms = |f: &str| s.get::<gst::ClockTime>(f).ok().map(|t| t.mseconds());
    match s.name().as_str() {
        gstlivetalk::events::SPEECH => Some(serde_json::json!({
            "type": "speech",
            "status": s.get::<String>("status").unwrap_or_default(),
            "text": text,
            "interrupted": s.get::<bool>("interrupted").unwrap_or(false),
            "running_time_ms": ms("running-time"),
        })),
        gstlivetalk::events::WORD => Some(serde_json::json!({
            "type": "word",
            "text": text,
            "offset_ms": ms("offset"),
            "duration_ms": ms("duration"),
            "running_time_ms": ms("running-time"),
        })),
        _ => None,
    }
}

use gst::glib;

#[cfg(test)]
mod tests {
    use gstlivetalk::events::{self, SpeechStatus};

    #[test]
    fn bus_messages_become_sse_json() {
        gst::init().unwrap();
        let t = gst::ClockTime::from_mseconds;
        let v =
            super::event_json(&events::word_structure("Hello", t(120), t(300), t(5120))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "word", "text": "Hello", "offset_ms": 120,
                "duration_ms": 300, "running_time_ms": 5120})
        );
        let v = super::event_json(&events::speech_structure(
            SpeechStatus::End,
            "Hi.",
            t(9),
            true,
        ))
        .unwrap();
        assert_eq!(
            (
                v["type"].as_str(),
                v["status"].as_str(),
                v["interrupted"].as_bool()
            ),
            (Some("speech"), Some("end"), Some(true))
        );
        assert!(super::event_json(&gst::Structure::new_empty("other")).is_none());
    }
}
