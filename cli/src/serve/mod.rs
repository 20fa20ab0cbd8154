//! `livetalk serve`: live talking avatars over WebRTC (and RTMP), an HTTP API compatible with
//! LiveTalking's where it makes sense, a browser page, many sessions.
//!
//! - A "host" webrtcsink that carries no media runs the built-in signalling server and the
//!   web server (the page, with gstwebrtc-api) for the whole process.
//! - Each session is its own pipeline ending in a webrtcsink producer on that signalling
//!   server, its meta `{livetalk-session: ID}` naming the session; the page creates a session
//!   through the API, then consumes that producer. The session ends when its peer leaves.
//! - `--rtmp URL` adds a session that pushes to an RTMP server for the server's lifetime.

mod api;
pub mod diagnostics;
mod gccleak;
pub mod janus;
pub mod listen;
pub mod llm;
mod offer;
pub mod session;
mod web;
mod whep;
mod whip;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use gst::prelude::*;
use tokio::sync::mpsc;

use crate::launch::{DriverArg, parse_device};
use gstlivetalk::inference::Device;
use session::{EndReason, Output, Session, SessionError};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Address the HTTP API, the signalling server and the page bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// HTTP API port.
    #[arg(long, default_value_t = 8010)]
    pub port: u16,
    /// WebRTC signalling server port (websocket).
    #[arg(long, default_value_t = 8443)]
    pub signalling_port: u16,
    /// Port of the web server that serves the page.
    #[arg(long, default_value_t = 8080)]
    pub web_port: u16,
    /// STUN server for WebRTC (stun://host:port); none by default.
    #[arg(long)]
    pub stun: Option<String>,
    /// TURN server for WebRTC (turn://user:password@host:port); repeatable.
    #[arg(long)]
    pub turn: Vec<String>,
    /// Bearer token the HTTP API requires (also read from LIVETALK_TOKEN).
    #[arg(long, env = "LIVETALK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Folder of avatar directories; an avatar's id is its folder name.
    #[arg(long)]
    pub avatars: Option<PathBuf>,
    /// The avatar a session gets when it names none.
    #[arg(long, default_value = "astronaut")]
    pub default_avatar: String,
    /// Lip driver: lipwarp (weight-free, CPU), musetalk, or auto (musetalk when its models
    /// are installed and the avatar has latents).
    #[arg(long, value_enum, default_value_t = DriverArg::Lipwarp)]
    pub driver: DriverArg,
    /// MuseTalk models (unet.onnx, vae_decoder.onnx); default: the set-up cache's musetalk/.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Device for the models: cpu, cuda, cuda:N, tensorrt, tensorrt:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Text-to-speech: piper (offline) or edge (the online Edge voices).
    #[arg(long, value_enum, default_value_t = Tts::Piper)]
    pub tts: Tts,
    /// Piper voice (.onnx with its .onnx.json); default: the set-up cache's.
    #[arg(long)]
    pub voice: Option<PathBuf>,
    /// Edge voice name (with --tts edge).
    #[arg(long)]
    pub edge_voice: Option<String>,
    /// A server speaking the Edge read-aloud protocol in place of Edge's own (ws:// or wss://).
    #[arg(long)]
    pub edge_endpoint: Option<String>,
    /// Action clips JSON for avatarblend (`/set_audiotype` plays them).
    #[arg(long)]
    pub actions: Option<PathBuf>,
    /// Most sessions at once.
    #[arg(long, default_value_t = 4)]
    pub max_sessions: usize,
    /// Seconds a new WebRTC session waits for its peer before it ends.
    #[arg(long, default_value_t = 30)]
    pub peer_timeout: u64,
    /// Seconds a connected viewer may send nothing (no RTCP, no feedback) before its
    /// session ends: a browser frozen or cut off without closing.
    #[arg(long, default_value_t = 15)]
    pub peer_lost_timeout: u64,
    /// Also push one session to this RTMP URL (flvmux + rtmp2sink) while the server runs.
    #[arg(long)]
    pub rtmp: Option<String>,
    /// Also push one session to this WHIP endpoint (whipclientsink) while the server runs.
    #[arg(long)]
    pub whip: Option<String>,
    /// Bearer token for the WHIP endpoint.
    #[arg(long, env = "LIVETALK_WHIP_TOKEN", hide_env_values = true)]
    pub whip_token: Option<String>,
    /// Also start one session that WHEP players (OBS, a WHEP web player) watch at
    /// http://HOST:PORT/whep on the API port (more: POST /session {"output": "whep"}).
    #[arg(long)]
    pub whep: bool,
    /// OpenAI-compatible endpoint for type=chat (e.g. http://127.0.0.1:8000/v1); its key is
    /// read from LIVETALK_LLM_KEY or OPENAI_API_KEY.
    #[arg(long)]
    pub llm_url: Option<String>,
    /// Seconds an LLM answer may go without a new chunk before it is abandoned (the speech
    /// so far is kept, a `chat-error` event says why).
    #[arg(long, default_value_t = 30)]
    pub llm_idle_timeout: u64,
    /// Model name sent to the LLM endpoint.
    #[arg(long, default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// System prompt for chat.
    #[arg(long)]
    pub llm_system: Option<String>,
    /// Folder for `/record` MP4 files (default: recordings/ in the set-up cache).
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    /// The gstwebrtc-api script (default: the one set-up installed from npm).
    #[arg(long)]
    pub gstwebrtc_api: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_body: usize,
    /// Largest `/humanaudio` upload, in bytes.
    #[arg(long, default_value_t = 20 * 1024 * 1024)]
    pub max_upload: usize,
    /// WebRTC congestion control: gcc, homegrown or disabled.
    #[arg(long, value_enum, default_value_t = CongestionControl::Gcc)]
    pub congestion_control: CongestionControl,
    /// Publish every session once into a Janus VideoRoom through this websockets endpoint
    /// (ws://HOST:PORT); viewers watch through Janus.
    #[arg(long)]
    pub janus: Option<String>,
    /// The Janus VideoRoom the sessions publish into (created when missing).
    #[arg(long, default_value_t = 1234, requires = "janus")]
    pub janus_room: u64,
    /// The room's secret: given to a room we create, checked against one that exists (also
    /// read from LIVETALK_JANUS_SECRET; unused without --janus).
    #[arg(long, env = "LIVETALK_JANUS_SECRET", hide_env_values = true)]
    pub janus_secret: Option<String>,
    /// Barge-in: user speech at the microphone interrupts the avatar (its speech, the LLM
    /// answer streaming, the pending frames), as /interrupt_talk does.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub barge_in: OnOff,
    /// Milliseconds the user must speak before a barge-in counts (a cough does not).
    #[arg(long, default_value_t = 400)]
    pub barge_in_min_ms: u64,
    /// Milliseconds of silence at the microphone that end the user's turn (the VAD's
    /// min-silence-ms): shorter answers sooner, longer lets the user pause mid-sentence.
    #[arg(long, default_value_t = 500)]
    pub end_of_turn_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The TTS source of the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tts {
    /// piperttssrc: offline, the set-up cache's voice or --voice.
    Piper,
    /// edgettssrc: the online Edge voices.
    Edge,
}

impl Tts {
    pub fn factory(self) -> &'static str {
        match self {
            Tts::Piper => "piperttssrc",
            Tts::Edge => "edgettssrc",
        }
    }
}

/// webrtcsink's `congestion-control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CongestionControl {
    Gcc,
    Homegrown,
    Disabled,
}

impl CongestionControl {
    pub fn nick(self) -> &'static str {
        match self {
            CongestionControl::Gcc => "gcc",
            CongestionControl::Homegrown => "homegrown",
            CongestionControl::Disabled => "disabled",
        }
    }
}

/// What every part of the server reads; fixed at start.
pub struct Config {
    pub listen: IpAddr,
    pub port: u16,
    pub signalling_port: u16,
    pub web_port: u16,
    pub stun: Option<String>,
    pub turn: Vec<String>,
    pub token: Option<String>,
    pub avatars: PathBuf,
    pub default_avatar: String,
    pub driver: DriverArg,
    pub model_dir: PathBuf,
    pub device: Device,
    pub tts: Tts,
    pub voice: Option<PathBuf>,
    pub edge_voice: Option<String>,
    pub edge_endpoint: Option<String>,
    pub actions: Option<PathBuf>,
    pub action_names: Vec<String>,
    pub max_sessions: usize,
    pub peer_timeout: Duration,
    pub peer_lost_timeout: Duration,
    pub llm: Option<llm::LlmConfig>,
    pub record_dir: PathBuf,
    pub max_body: usize,
    pub max_upload: usize,
    pub congestion_control: CongestionControl,
    /// `--janus`: sessions publish into this VideoRoom.
    pub janus: Option<janus::JanusConfig>,
    pub barge_in: bool,
    pub barge_in_min: Duration,
    pub end_of_turn_ms: u32,
    /// `--whip`: the WHIP endpoint one session pushes to, and its token.
    pub whip: Option<String>,
    pub whip_token: Option<String>,
}

fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl Config {
    /// The signalling server as the session producers reach it.
    pub fn signalling_uri(&self) -> String {
        let h = if self.listen.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            host(self.listen)
        };
        format!("ws://{h}:{}", self.signalling_port)
    }

    /// The avatar directory of an avatar id: a plain folder name inside the avatars folder.
    pub fn avatar_dir(&self, id: &str) -> Result<PathBuf, SessionError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && !id.starts_with('.');
        if !ok {
            return Err(SessionError::BadAvatarId);
        }
        let dir = self.avatars.join(id);
        if !dir.join("avatar.json").is_file() {
            return Err(SessionError::UnknownAvatar(id.to_string()));
        }
        Ok(dir)
    }
}

/// The running server: its sessions and the channel that ends them.
pub struct Server {
    pub cfg: Arc<Config>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions being built: they hold a slot, so a burst of requests builds at most
    /// `max_sessions` pipelines (counted under the `sessions` lock).
    building: std::sync::atomic::AtomicUsize,
    end_tx: mpsc::UnboundedSender<(String, EndReason)>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Server {
    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap().get(id).cloned()
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut v: Vec<_> = self.sessions.lock().unwrap().values().cloned().collect();
        v.sort_by_key(|s| s.created);
        v
    }

    fn new_id(&self) -> String {
        // LiveTalking's session ids are numbers; a counter plus random bits keeps them unique
        // and not guessable from one another.
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let r = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos() as u64;
        let mix = (r ^ (n.wrapping_mul(0x9E37_79B9_7F4A_7C15))) % 1_000_000;
        format!("{n}{mix:06}")
    }

    /// Starts a session (blocking: builds a pipeline); refuses past `max_sessions`.
    pub fn create_session(
        &self,
        avatar: &str,
        output: Output,
        rtmp: Option<&str>,
    ) -> Result<Arc<Session>, SessionError> {
        self.create_session_with(avatar, output, rtmp, |_| Ok(()))
    }

    /// As [`Server::create_session`], with `prepare` run on the built session (in READY,
    /// already listed) before it plays; an error there ends the session.
    pub fn create_session_with<E: From<SessionError>>(
        &self,
        avatar: &str,
        output: Output,
        rtmp: Option<&str>,
        prepare: impl FnOnce(&Arc<Session>) -> Result<(), E>,
    ) -> Result<Arc<Session>, E> {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = self.cfg.avatar_dir(avatar).map_err(E::from)?;
        // Reserve a slot under the lock, build outside it, release the reservation when the
        // session is in the table (or failed).
        let id = {
            let sessions = self.sessions.lock().unwrap();
            let taken = sessions.len() + self.building.load(SeqCst);
            if taken >= self.cfg.max_sessions {
                return Err(SessionError::Full(taken).into());
            }
            self.building.fetch_add(1, SeqCst);
            self.new_id()
        };
        let built = Session::start(
            &self.cfg,
            id.clone(),
            avatar.to_string(),
            &dir,
            output,
            rtmp,
            self.end_tx.clone(),
        );
        let session = {
            let mut sessions = self.sessions.lock().unwrap();
            self.building.fetch_sub(1, SeqCst);
            let session = built.map_err(E::from)?;
            sessions.insert(id.clone(), session.clone());
            session
        };
        let started = prepare(&session).and_then(|()| {
            session
                .play(self.cfg.peer_timeout, self.end_tx.clone())
                .map_err(E::from)
        });
        if let Err(e) = started {
            self.sessions.lock().unwrap().remove(&id);
            session.shutdown(EndReason::Error);
            return Err(e);
        }
        Ok(session)
    }

    /// Asks for a session's end (the end task tears it down).
    pub fn end_session(&self, id: &str, reason: EndReason) {
        let _ = self.end_tx.send((id.to_string(), reason));
    }
}

fn default_record_dir() -> PathBuf {
    gstlivetalk::paths::cache_dir().join("recordings")
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = config(&a)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(cfg, a.rtmp, a.whep))
}

/// Checks what the server needs and makes its configuration from the command line.
pub fn config(a: &Args) -> anyhow::Result<Arc<Config>> {
    gstwebrtc::plugin_register_static().context("registering gst-plugin-webrtc")?;
    gstrsrtp::plugin_register_static().context("registering gst-plugin-rtp")?;
    let janus_sink = a.janus.as_ref().map(|_| "janusvrwebrtcsink");
    for f in ["webrtcsink", "rtpgccbwe", "avatarbin"]
        .into_iter()
        .chain(janus_sink)
    {
        if gst::ElementFactory::find(f).is_none() {
            bail!("GStreamer element {f} is missing");
        }
    }
    if gst::ElementFactory::find(a.tts.factory()).is_none() {
        bail!("{} is not available in this build", a.tts.factory());
    }
    diagnostics::start_object_tracking();
    if a.congestion_control == CongestionControl::Gcc {
        gccleak::start_reaper();
    }
    let avatars = a.avatars.clone().unwrap_or_else(|| {
        crate::render::default_avatar()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    });
    let llm = a.llm_url.as_ref().map(|url| llm::LlmConfig {
        url: url.clone(),
        model: a.llm_model.clone(),
        key: std::env::var("LIVETALK_LLM_KEY")
            .or_else(|_| std::env::var("OPENAI_API_KEY"))
            .ok()
            .filter(|k| !k.is_empty()),
        system: a.llm_system.clone(),
        idle_timeout: Duration::from_secs(a.llm_idle_timeout.max(1)),
    });
    let cfg = Arc::new(Config {
        listen: a.listen,
        port: a.port,
        signalling_port: a.signalling_port,
        web_port: a.web_port,
        stun: a.stun.clone(),
        turn: a.turn.clone(),
        token: a.token.clone().filter(|t| !t.is_empty()),
        action_names: a
            .actions
            .as_deref()
            .map(gstlivetalk::actions::names)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--actions: {e}"))?
            .unwrap_or_default(),
        avatars,
        default_avatar: a.default_avatar.clone(),
        driver: a.driver,
        model_dir: a
            .model_dir
            .clone()
            .unwrap_or_else(|| gstlivetalk::paths::models_dir().join("musetalk")),
        device: a.device,
        tts: a.tts,
        voice: a.voice.clone(),
        edge_voice: a.edge_voice.clone(),
        edge_endpoint: a.edge_endpoint.clone(),
        actions: a.actions.clone(),
        max_sessions: a.max_sessions.max(1),
        peer_timeout: Duration::from_secs(a.peer_timeout.max(1)),
        peer_lost_timeout: Duration::from_secs(a.peer_lost_timeout.max(1)),
        llm,
        record_dir: a.record_dir.clone().unwrap_or_else(default_record_dir),
        max_body: a.max_body,
        max_upload: a.max_upload,
        congestion_control: a.congestion_control,
        janus: a
            .janus
            .as_ref()
            .map(|endpoint| -> anyhow::Result<janus::JanusConfig> {
                janus::parse_endpoint(endpoint).map_err(|e| anyhow::anyhow!("--janus: {e}"))?;
                Ok(janus::JanusConfig {
                    endpoint: endpoint.clone(),
                    room: a.janus_room,
                    secret: a.janus_secret.clone().filter(|s| !s.is_empty()),
                })
            })
            .transpose()?,
        barge_in: a.barge_in == OnOff::On,
        barge_in_min: Duration::from_millis(a.barge_in_min_ms),
        end_of_turn_ms: a.end_of_turn_ms,
        whip: a.whip.clone(),
        whip_token: a.whip_token.clone().filter(|t| !t.is_empty()),
    });
    // The default avatar must exist (a typo should fail at start, not at the first session).
    cfg.avatar_dir(&cfg.default_avatar)
        .map_err(|e| anyhow::anyhow!("--default-avatar: {e}"))?;
    Ok(cfg)
}

impl Server {
    /// A server without sessions, and its task that ends them (off the streaming threads and
    /// off the request handlers). Call within the tokio runtime.
    pub fn new(cfg: Arc<Config>) -> (Arc<Server>, tokio::task::JoinHandle<()>) {
        let (end_tx, mut end_rx) = mpsc::unbounded_channel::<(String, EndReason)>();
        let server = Arc::new(Server {
            cfg,
            sessions: Mutex::new(HashMap::new()),
            building: std::sync::atomic::AtomicUsize::new(0),
            end_tx,
            next_id: std::sync::atomic::AtomicU64::new(1),
        });
        let ender = server.clone();
        let end_task = tokio::spawn(async move {
            while let Some((id, reason)) = end_rx.recv().await {
                let s = ender.sessions.lock().unwrap().remove(&id);
                if let Some(s) = s {
                    eprintln!("livetalk serve: session {id} ends ({})", reason.as_str());
                    let _ = tokio::task::spawn_blocking(move || {
                        s.shutdown(reason);
                        drop(s);
                        release_freed_memory();
                    })
                    .await;
                }
            }
        });
        (server, end_task)
    }

    /// Ends every session now (blocking).
    pub fn shutdown_all(&self) {
        let all: Vec<_> = self.sessions.lock().unwrap().drain().collect();
        for (_, s) in all {
            s.shutdown(EndReason::Shutdown);
        }
    }
}

async fn serve(cfg: Arc<Config>, rtmp: Option<String>, whep_at_start: bool) -> anyhow::Result<()> {
    let page = web::PageDir::assemble(&cfg, None)?;
    // The host sink: signalling server + web server for the process, no media.
    let host_pl = host_pipeline(&cfg, page.path())?;

    let (server, end_task) = Server::new(cfg.clone());

    if let Some(url) = rtmp {
        let s = server.clone();
        let avatar = cfg.default_avatar.clone();
        let first_url = url.clone();
        let session = tokio::task::spawn_blocking(move || {
            s.create_session(&avatar, Output::Rtmp, Some(&first_url))
        })
        .await?
        .map_err(|e| anyhow::anyhow!("the RTMP session: {e}"))?;
        eprintln!("livetalk serve: RTMP session {}", session.id);
        tokio::spawn(keep_rtmp_pushing(server.clone(), session, url.clone()));
    }

    if whep_at_start {
        let s = server.clone();
        let avatar = cfg.default_avatar.clone();
        let session =
            tokio::task::spawn_blocking(move || s.create_session(&avatar, Output::Whep, None))
                .await?
                .map_err(|e| anyhow::anyhow!("the WHEP session: {e}"))?;
        eprintln!(
            "livetalk serve: WHEP session {id}: {url} (also {base}/whep)",
            id = session.id,
            url = whep::endpoint_url(&format!("{}:{}", host(cfg.listen), cfg.port), &session.id),
            base = format_args!("http://{}:{}", host(cfg.listen), cfg.port),
        );
    }

    if cfg.whip.is_some() {
        let s = server.clone();
        let avatar = cfg.default_avatar.clone();
        let session =
            tokio::task::spawn_blocking(move || s.create_session(&avatar, Output::Whip, None))
                .await?
                .map_err(|e| anyhow::anyhow!("the WHIP session: {e}"))?;
        eprintln!("livetalk serve: WHIP session {}", session.id);
    }

    let app = api::router(server.clone());
    let listener = tokio::net::TcpListener::bind((cfg.listen, cfg.port))
        .await
        .with_context(|| format!("binding the HTTP API to {}:{}", cfg.listen, cfg.port))?;
    eprintln!(
        "livetalk serve: page http://{h}:{w}/  API http://{h}:{p}/  signalling {s}",
        h = host(cfg.listen),
        w = cfg.web_port,
        p = cfg.port,
        s = cfg.signalling_uri()
    );
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;

    eprintln!("livetalk serve: stopping");
    end_task.abort();
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        s.shutdown_all();
        let _ = host_pl.set_state(gst::State::Null);
    })
    .await?;
    drop(page);
    Ok(())
}

/// `--rtmp`: when the push fails (the RTMP server went away, restarts, refuses), the session
/// ends with the error in the log, and a new one is started after a pause that doubles up to
/// 30 s while the server stays away; the other sessions are not touched. Stops when the
/// server stops or the session is closed through the API.
async fn keep_rtmp_pushing(server: Arc<Server>, mut session: Arc<Session>, url: String) {
    let mut pause = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let mut events = session.events.subscribe();
        let id = session.id.clone();
        drop(session);
        // Ended before we listened: the end task has already taken it off the table.
        let reason = if server.session(&id).is_none() {
            EndReason::Error.as_str().to_string()
        } else {
            loop {
                match events.recv().await {
                    Ok(v) if v["type"] == "session-end" => {
                        break v["reason"].as_str().unwrap_or_default().to_string();
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        break EndReason::Error.as_str().to_string();
                    }
                }
            }
        };
        if reason != EndReason::Error.as_str() && reason != EndReason::Eos.as_str() {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            // It had been pushing for a while: a new outage starts with a short pause.
            pause = Duration::from_secs(1);
        }
        session = loop {
            eprintln!(
                "livetalk serve: the RTMP push to {url} stopped (session {id}: {reason}); \
                 starting it again in {} s",
                pause.as_secs()
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
            let (s, u) = (server.clone(), url.clone());
            let avatar = server.cfg.default_avatar.clone();
            match tokio::task::spawn_blocking(move || {
                s.create_session(&avatar, Output::Rtmp, Some(&u))
            })
            .await
            {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) => eprintln!("livetalk serve: the RTMP session: {e}"),
                Err(_) => return,
            }
        };
        eprintln!("livetalk serve: RTMP session {} (again)", session.id);
    }
}

/// A session's pipeline frees hundreds of MB (frames, encoders, jitter buffers) across many
/// threads; glibc keeps freed memory in per-thread arenas. Give it back to the system once a
/// session has gone, so that a long-running server's footprint follows its sessions.
fn release_freed_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap structures.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A pipeline holding only a webrtcsink that runs the signalling server and the web server.
fn host_pipeline(cfg: &Config, page_dir: &Path) -> anyhow::Result<gst::Pipeline> {
    let ws = gst::ElementFactory::make("webrtcsink")
        .name("host")
        .property("run-signalling-server", true)
        .property("signalling-server-host", cfg.listen.to_string())
        .property("signalling-server-port", cfg.signalling_port as u32)
        .property("run-web-server", true)
        .property("web-server-directory", page_dir.to_string_lossy().as_ref())
        .property(
            "web-server-host-addr",
            format!("http://{}:{}/", host(cfg.listen), cfg.web_port),
        )
        .build()
        .context("webrtcsink (gst-plugin-webrtc) is not registered")?;
    ws.set_property("stun-server", None::<String>);
    let pipeline = gst::Pipeline::with_name("livetalk-host");
    pipeline.add(&ws)?;
    // READY -> PAUSED prepares the sink: it starts both servers. With no input it never
    // prerolls, which is what a host needs.
    pipeline
        .set_state(gst::State::Paused)
        .context("starting the signalling and web servers")?;
    Ok(pipeline)
}
