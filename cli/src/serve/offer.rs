//! LiveTalking's `POST /offer`: the client makes the offer. Its page (or any client written
//! like it) adds recvonly video and audio transceivers, waits until ICE gathering is complete
//! and posts `{"sdp": ..., "type": "offer"}` (optionally `"avatar"`); the answer comes back
//! complete (every local candidate inside, no trickling) with the new session's id:
//! `{"sdp": ..., "type": "answer", "sessionid": "..."}`. The session is then driven by that id
//! like any other (`/human`, `/interrupt_talk`, `/record`, `/events`, ...).
//!
//! The session pipeline ends in its own `webrtcbin` (VP8 and Opus, encoded as webrtcsink
//! encodes them). It answers in READY, before the pipeline plays. The peer has left when
//! webrtcbin's ICE or peer connection fails or closes, when the DTLS transport closes or
//! fails, when the peer sends an RTCP BYE, or when its RTCP (receiver reports, sent every
//! second or so by browsers) stops for [`RTCP_SILENCE`]; a peer that never connects is ended
//! by the server's `--peer-timeout`, as for webrtcsink sessions.
//!
//! Threads: webrtcbin's and rtpbin's signal handlers only send [`PeerEvent`]s into a channel;
//! one task per session reads them into a [`PeerWatch`] (pure, tested below) and ends the
//! session. Negotiation blocks (call it off the async runtime).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use gst::glib;
use gst::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::ApiError;
use super::session::{EndReason, Output, Session, SessionError};
use super::{Config, Server};

/// The session pipeline's tail for an offer session: encoders and payloaders from the raw
/// tees `vt`/`at`, ending in `offervpay`/`offerapay` that code links to the webrtcbin.
/// vp8enc is set as webrtcsink sets it (see `VIDEO_OUT`), payloaders as webrtcsink's.
pub const BRANCHES: &str = "vt. ! queue name=offerv max-size-buffers=0 max-size-bytes=0 \
      max-size-time=2000000000 ! vp8enc name=offervenc deadline=1 cpu-used=-16 \
      target-bitrate=2048000 keyframe-max-dist=2000 keyframe-mode=disabled end-usage=cbr \
      buffer-initial-size=100 buffer-optimal-size=120 buffer-size=150 max-intra-bitrate=250 \
      error-resilient=default lag-in-frames=0 ! \
      rtpvp8pay name=offervpay mtu=1200 picture-id-mode=15-bit \
    at. ! queue name=offera max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! \
      opusenc perfect-timestamp=true ! rtpopuspay name=offerapay mtu=1200 ";

/// How long each webrtcbin step (set-remote, create-answer, set-local) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the answer waits for ICE gathering to complete; past it, the answer carries the
/// candidates gathered so far.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);
/// A connected peer whose RTCP stops this long has gone. Browsers send receiver reports
/// about once a second; RFC 3550's 5 s minimum interval, randomised, puts up to about 6 s
/// between GStreamer's; this allows two missed reports. A closed tab sends nothing.
pub const RTCP_SILENCE: Duration = Duration::from_secs(12);

/// What a client's offer asks for, read from its SDP text (no GStreamer involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferInfo {
    /// The payload type of VP8 in the offer's video section, if it has one.
    pub video_pt: Option<u32>,
    /// The payload type of Opus in the offer's audio section, if it has one.
    pub audio_pt: Option<u32>,
    /// `a=candidate` lines in the offer.
    pub candidates: usize,
}

/// Why an offer is refused (the client's fault: HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferError {
    NotSdp,
    NoMedia,
    TooMany(&'static str),
    NoCodec(&'static str, &'static str),
    WrongDirection(&'static str, String),
}

impl std::fmt::Display for OfferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfferError::NotSdp => f.write_str("'sdp' is not a session description (no v=0)"),
            OfferError::NoMedia => f.write_str(
                "the offer has no audio or video section: add recvonly video and audio transceivers",
            ),
            OfferError::TooMany(kind) => write!(f, "the offer has more than one {kind} section"),
            OfferError::NoCodec(kind, codec) => write!(
                f,
                "the offer's {kind} does not include {codec} (livetalk sends VP8 video and Opus audio)"
            ),
            OfferError::WrongDirection(kind, dir) => write!(
                f,
                "the offer's {kind} is {dir}: it must be recvonly or sendrecv (livetalk sends)"
            ),
        }
    }
}

/// Reads an offer's SDP: at most one audio and one video section (at least one of them),
/// each able to receive, with Opus / VP8 among its formats.
pub fn read_offer(sdp: &str) -> Result<OfferInfo, OfferError> {
    let lines: Vec<&str> = sdp.lines().map(str::trim).collect();
    if lines.iter().find(|l| !l.is_empty()) != Some(&"v=0") {
        return Err(OfferError::NotSdp);
    }
    struct Section<'a> {
        kind: &'a str,
        port: &'a str,
        formats: Vec<&'a str>,
        lines: Vec<&'a str>,
    }
    let mut session_dir = "sendrecv";
    let mut sections: Vec<Section> = Vec::new();
    for l in &lines {
        if let Some(m) = l.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            sections.push(Section {
                kind: f.next().unwrap_or_default(),
                port: f.next().unwrap_or_default(),
                formats: f.skip(1).collect(),
                lines: Vec::new(),
            });
        } else if let Some(s) = sections.last_mut() {
            s.lines.push(l);
        } else if let Some(d) = direction(l) {
            session_dir = d;
        }
    }
    let candidates = lines
        .iter()
        .filter(|l| l.starts_with("a=candidate:"))
        .count();
    let mut info = OfferInfo {
        video_pt: None,
        audio_pt: None,
        candidates,
    };
    for (kind, codec, rate) in [("video", "VP8", "90000"), ("audio", "OPUS", "48000")] {
        // Port 0 rejects a section, except one that rides on the bundle (`bundle-only`, as
        // webrtcbin offers with max-bundle).
        let mut found = sections
            .iter()
            .filter(|s| s.kind == kind && (s.port != "0" || s.lines.contains(&"a=bundle-only")));
        let Some(s) = found.next() else { continue };
        if found.next().is_some() {
            return Err(OfferError::TooMany(kind));
        }
        let dir = s
            .lines
            .iter()
            .find_map(|l| direction(l))
            .unwrap_or(session_dir);
        if dir != "recvonly" && dir != "sendrecv" {
            return Err(OfferError::WrongDirection(kind, dir.to_string()));
        }
        let pt = s
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .find_map(|r| {
                let (pt, enc) = r.split_once(' ')?;
                let mut e = enc.trim().split('/');
                let name_ok = e.next()?.eq_ignore_ascii_case(codec);
                let rate_ok = e.next() == Some(rate);
                (name_ok && rate_ok && s.formats.contains(&pt))
                    .then(|| pt.parse().ok())
                    .flatten()
            })
            .ok_or(OfferError::NoCodec(
                kind,
                if kind == "video" { "VP8" } else { "Opus" },
            ))?;
        if kind == "video" {
            info.video_pt = Some(pt);
        } else {
            info.audio_pt = Some(pt);
        }
    }
    if info.video_pt.is_none() && info.audio_pt.is_none() {
        return Err(OfferError::NoMedia);
    }
    Ok(info)
}

fn direction(line: &str) -> Option<&'static str> {
    match line {
        "a=sendrecv" => Some("sendrecv"),
        "a=recvonly" => Some("recvonly"),
        "a=sendonly" => Some("sendonly"),
        "a=inactive" => Some("inactive"),
        _ => None,
    }
}

/// What the session hears about its peer, from webrtcbin's and rtpbin's signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// The peer connection (ICE and DTLS) is up.
    Connected,
    /// An RTCP packet from the peer.
    Rtcp,
    /// The peer said goodbye (RTCP BYE).
    Bye,
    /// ICE, DTLS or the peer connection failed.
    Failed,
    /// ICE, DTLS or the peer connection closed.
    Closed,
}

/// Whether the peer is there, from the events so far: a state machine over times measured
/// from the session's start, free of clocks so that it is tested with made-up times.
#[derive(Debug, Default)]
pub struct PeerWatch {
    connected_at: Option<Duration>,
    last_heard: Option<Duration>,
    gone: Option<&'static str>,
}

impl PeerWatch {
    pub fn on(&mut self, event: PeerEvent, at: Duration) {
        match event {
            PeerEvent::Connected => {
                self.connected_at.get_or_insert(at);
                self.heard(at);
            }
            PeerEvent::Rtcp => self.heard(at),
            PeerEvent::Bye => self.leave("the peer sent RTCP BYE"),
            PeerEvent::Failed => self.leave("the connection failed"),
            PeerEvent::Closed => self.leave("the connection closed"),
        }
    }

    fn heard(&mut self, at: Duration) {
        self.last_heard = Some(self.last_heard.map_or(at, |t| t.max(at)));
    }

    fn leave(&mut self, why: &'static str) {
        self.gone.get_or_insert(why);
    }

    pub fn connected(&self) -> bool {
        self.connected_at.is_some()
    }

    /// Why the peer has gone, at `now`; `None` while it is there (or not connected yet: the
    /// peer timeout covers that).
    pub fn gone(&self, now: Duration) -> Option<&'static str> {
        if let Some(why) = self.gone {
            return Some(why);
        }
        let last = self.last_heard?;
        self.connected_at?;
        (now.saturating_sub(last) >= RTCP_SILENCE).then_some("the peer went silent (no RTCP)")
    }
}

/// The body of `POST /offer`, as LiveTalking's clients send it. `avatar` picks the avatar
/// (LiveTalking's name; `avatar_id` is taken too); LiveTalking's voice-cloning and action
/// fields (`refaudio`, `reftext`, `custom_config`) and any other field are ignored.
#[derive(Deserialize)]
struct OfferReq {
    sdp: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    avatar: Option<String>,
    #[serde(default)]
    avatar_id: Option<String>,
}

/// `POST /offer`: answers `{"sdp", "type": "answer", "sessionid"}`, nothing else (clients
/// pass the object to `setRemoteDescription` or to aiortc's `RTCSessionDescription(**x)`).
pub async fn handle(
    State(server): State<Arc<Server>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|e| {
        let code = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(e.status(), code, &e.body_text())
    })?;
    let req: OfferReq = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_data() {
            "bad_fields"
        } else {
            "bad_json"
        };
        ApiError::bad_request(
            code,
            &format!("the body must be JSON {{\"sdp\": ..., \"type\": \"offer\"}}: {e}"),
        )
    })?;
    if req.kind != "offer" {
        return Err(ApiError::bad_request(
            "not_offer",
            &format!("'type' is '{}': POST /offer takes an offer", req.kind),
        ));
    }
    let info =
        read_offer(&req.sdp).map_err(|e| ApiError::bad_request("bad_sdp", &e.to_string()))?;
    let avatar = req
        .avatar
        .or(req.avatar_id)
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| server.cfg.default_avatar.clone());
    let s = server.clone();
    let candidates = info.candidates;
    let (session, answer) = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        let session = s.create_session_with(&avatar, Output::Offer, None, |session| {
            answer = answer_offer(&s.cfg, session, &req.sdp, &info, s.end_tx.clone())?;
            Ok::<(), ApiError>(())
        })?;
        Ok::<_, ApiError>((session, answer))
    })
    .await
    .map_err(|e| ApiError::internal(&e.to_string()))??;
    eprintln!(
        "livetalk serve: session {} answers an offer ({} remote candidates)",
        session.id, candidates
    );
    Ok(Json(json!({
        "sdp": answer,
        "type": "answer",
        "sessionid": session.id,
    })))
}

fn pipeline_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::from(SessionError::Pipeline(e.to_string()))
}

/// Adds the session's webrtcbin, answers the offer, waits (bounded) for ICE gathering and
/// returns the answer's SDP; starts the task that watches the peer. Blocking.
fn answer_offer(
    cfg: &Config,
    session: &Arc<Session>,
    offer_sdp: &str,
    info: &OfferInfo,
    end: mpsc::UnboundedSender<(String, EndReason)>,
) -> Result<String, ApiError> {
    let pipeline = session.pipeline();
    let by_name = |n: &str| {
        pipeline
            .by_name(n)
            .ok_or_else(|| pipeline_error(format!("no element {n}")))
    };
    let webrtcbin = gst::ElementFactory::make("webrtcbin")
        .name("offerbin")
        .property_from_str("bundle-policy", "max-bundle")
        .build()
        .map_err(|e| pipeline_error(format!("webrtcbin: {e}")))?;
    if let Some(stun) = &cfg.stun {
        webrtcbin.set_property("stun-server", stun);
    }
    for turn in &cfg.turn {
        webrtcbin.emit_by_name::<bool>("add-turn-server", &[turn]);
    }
    if cfg.listen.is_loopback() {
        // As for webrtcsink's peers (FACTS): loopback candidates only when asked for, and
        // then only those.
        let agent = webrtcbin.property::<glib::Object>("ice-agent");
        agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
    }
    pipeline.add(&webrtcbin).map_err(pipeline_error)?;
    webrtcbin.sync_state_with_parent().map_err(pipeline_error)?;

    // One send transceiver per kind the offer asks for, its codec fixed to the offer's
    // payload type; a kind the offer lacks is encoded into a fakesink (the tees stay linked).
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, PeerEvent)>();
    for (pt, pay, caps) in [
        (
            info.video_pt,
            "offervpay",
            "media=video,encoding-name=VP8,clock-rate=90000",
        ),
        (
            info.audio_pt,
            "offerapay",
            "media=audio,encoding-name=OPUS,clock-rate=48000,encoding-params=(string)2",
        ),
    ] {
        let pay = by_name(pay)?;
        let src = pay
            .static_pad("src")
            .ok_or_else(|| pipeline_error("payloader without src"))?;
        let Some(pt) = pt else {
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", true)
                .build()
                .map_err(pipeline_error)?;
            pipeline.add(&sink).map_err(pipeline_error)?;
            sink.sync_state_with_parent().map_err(pipeline_error)?;
            pay.link(&sink).map_err(pipeline_error)?;
            continue;
        };
        pay.set_property("pt", pt);
        let caps: gst::Caps = format!("application/x-rtp,{caps},payload={pt}")
            .parse()
            .map_err(pipeline_error)?;
        let templ = webrtcbin
            .pad_template("sink_%u")
            .ok_or_else(|| pipeline_error("webrtcbin without sink pads"))?;
        let sink = webrtcbin
            .request_pad(&templ, None, Some(&caps))
            .ok_or_else(|| pipeline_error("webrtcbin refused a sink pad"))?;
        sink.property::<glib::Object>("transceiver")
            .set_property("codec-preferences", &caps);
        src.link(&sink).map_err(pipeline_error)?;
    }

    let offer = gst_sdp::SDPMessage::parse_buffer(offer_sdp.as_bytes())
        .map_err(|e| ApiError::bad_request("bad_sdp", &format!("the offer's SDP: {e}")))?;
    let offer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
    let bad_offer = |e: String| ApiError::bad_request("bad_offer", &e);
    step("setting the offer", |p| {
        webrtcbin.emit_by_name::<()>("set-remote-description", &[&offer, p])
    })
    .map_err(bad_offer)?;
    let reply = step("answering the offer", |p| {
        webrtcbin.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, p])
    })
    .map_err(bad_offer)?;
    let answer = reply
        .as_ref()
        .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok())
        .ok_or_else(|| bad_offer("webrtcbin made no answer to this offer".into()))?;

    // Watch the peer from here on (gathering and connecting happen from set-local on).
    watch_peer(&webrtcbin, &tx);
    let (gtx, grx) = std::sync::mpsc::channel::<()>();
    let gathered = webrtcbin.connect_notify(Some("ice-gathering-state"), move |w, _| {
        if w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            == gst_webrtc::WebRTCICEGatheringState::Complete
        {
            let _ = gtx.send(());
        }
    });
    step("setting the answer", |p| {
        webrtcbin.emit_by_name::<()>("set-local-description", &[&answer, p])
    })
    .map_err(pipeline_error)?;
    let complete = webrtcbin.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
        == gst_webrtc::WebRTCICEGatheringState::Complete
        || grx.recv_timeout(GATHERING_TIMEOUT).is_ok();
    webrtcbin.disconnect(gathered);
    if !complete {
        eprintln!(
            "livetalk serve: session {}: ICE gathering not complete after {:?}; answering with \
             the candidates so far",
            session.id, GATHERING_TIMEOUT
        );
    }
    watch_dtls(&webrtcbin, &tx);
    let local = webrtcbin
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or_else(|| pipeline_error("webrtcbin has no local description"))?;
    let sdp = local.sdp().as_text().map_err(pipeline_error)?;

    let task = tokio::spawn(peer_task(session.clone(), webrtcbin.clone(), rx, end));
    session.add_task(task.abort_handle());
    Ok(sdp)
}

/// One webrtcbin step: emits it with a promise and waits for the reply (an `error` field in
/// it is the step's failure).
fn step(what: &str, emit: impl FnOnce(&gst::Promise)) -> Result<Option<gst::Structure>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let _ = tx.send(match reply {
            Ok(r) => Ok(r.map(|s| s.to_owned())),
            Err(e) => Err(format!("{e:?}")),
        });
    });
    emit(&promise);
    let reply = rx
        .recv_timeout(STEP_TIMEOUT)
        .map_err(|_| format!("{what}: webrtcbin did not reply"))?
        .map_err(|e| format!("{what}: {e}"))?;
    if let Some(err) = reply
        .as_ref()
        .and_then(|r| r.get::<glib::Error>("error").ok())
    {
        return Err(format!("{what}: {}", err.message()));
    }
    Ok(reply)
}

/// Connection states and RTCP from the peer, as [`PeerEvent`]s (the handlers only send).
fn watch_peer(webrtcbin: &gst::Element, tx: &mpsc::UnboundedSender<(Instant, PeerEvent)>) {
    let t = tx.clone();
    webrtcbin.connect_notify(Some("connection-state"), move |w, _| {
        use gst_webrtc::WebRTCPeerConnectionState as S;
        let ev = match w.property::<S>("connection-state") {
            S::Connected => PeerEvent::Connected,
            S::Failed => PeerEvent::Failed,
            S::Closed => PeerEvent::Closed,
            _ => return,
        };
        let _ = t.send((Instant::now(), ev));
    });
    let t = tx.clone();
    webrtcbin.connect_notify(Some("ice-connection-state"), move |w, _| {
        use gst_webrtc::WebRTCICEConnectionState as S;
        let ev = match w.property::<S>("ice-connection-state") {
            S::Failed => PeerEvent::Failed,
            S::Closed => PeerEvent::Closed,
            _ => return,
        };
        let _ = t.send((Instant::now(), ev));
    });
    let rtpbin = webrtcbin.downcast_ref::<gst::Bin>().and_then(|b| {
        b.iterate_elements()
            .into_iter()
            .flatten()
            .find(|e| e.factory().is_some_and(|f| f.name() == "rtpbin"))
    });
    let Some(rtpbin) = rtpbin else {
        eprintln!("livetalk serve: webrtcbin without an rtpbin: the peer's RTCP is not watched");
        return;
    };
    {
        let t = tx.clone();
        rtpbin.connect("on-ssrc-active", false, move |_| {
            let _ = t.send((Instant::now(), PeerEvent::Rtcp));
            None
        });
        let t = tx.clone();
        rtpbin.connect("on-bye-ssrc", false, move |_| {
            let _ = t.send((Instant::now(), PeerEvent::Bye));
            None
        });
    }
}

/// The DTLS transport closing (the peer's close_notify) or failing, as [`PeerEvent`]s.
fn watch_dtls(webrtcbin: &gst::Element, tx: &mpsc::UnboundedSender<(Instant, PeerEvent)>) {
    let Some(trans) = webrtcbin.emit_by_name::<Option<glib::Object>>("get-transceiver", &[&0i32])
    else {
        return;
    };
    let Some(transport) = trans
        .property::<Option<glib::Object>>("sender")
        .and_then(|s| s.property::<Option<glib::Object>>("transport"))
    else {
        return;
    };
    let t = tx.clone();
    transport.connect_notify(Some("state"), move |d, _| {
        use gst_webrtc::WebRTCDTLSTransportState as S;
        let ev = match d.property::<S>("state") {
            S::Failed => PeerEvent::Failed,
            S::Closed => PeerEvent::Closed,
            _ => return,
        };
        let _ = t.send((Instant::now(), ev));
    });
}

/// Reads the peer's events into a [`PeerWatch`]: on connection, counts the consumer and asks
/// the encoder for a key frame; when the peer has gone, ends the session (`peer-left`, or
/// `no-peer` for a connection that failed before it was ever up).
async fn peer_task(
    session: Arc<Session>,
    webrtcbin: gst::Element,
    mut rx: mpsc::UnboundedReceiver<(Instant, PeerEvent)>,
    end: mpsc::UnboundedSender<(String, EndReason)>,
) {
    let start = Instant::now();
    let id = session.id.clone();
    let (consumers, ever) = (session.consumers.clone(), session.ever_connected.clone());
    // The task must not keep the session alive: it ends with it (aborted at shutdown).
    drop(session);
    let mut watch = PeerWatch::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some((at, ev)) = ev else { break };
                let was = watch.connected();
                watch.on(ev, at.saturating_duration_since(start));
                if !was && watch.connected() {
                    consumers.store(1, Ordering::SeqCst);
                    ever.store(true, Ordering::SeqCst);
                    request_key_frame(&webrtcbin);
                }
            }
            _ = tick.tick() => {}
        }
        if let Some(why) = watch.gone(start.elapsed()) {
            let reason = if watch.connected() {
                eprintln!("livetalk serve: session {id}: the peer left ({why})");
                EndReason::PeerLeft
            } else {
                eprintln!("livetalk serve: session {id}: the peer never connected ({why})");
                EndReason::NoPeer
            };
            consumers.store(0, Ordering::SeqCst);
            let _ = end.send((id, reason));
            break;
        }
    }
}

/// A key frame now, for a peer that just connected (the encoder makes them on request only).
fn request_key_frame(webrtcbin: &gst::Element) {
    for pad in webrtcbin.sink_pads() {
        if let Some(peer) = pad.peer() {
            let ev = gst::event::CustomUpstream::new(
                gst::Structure::builder("GstForceKeyUnit")
                    .field("all-headers", true)
                    .build(),
            );
            peer.send_event(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offer Chromium makes for two recvonly transceivers (video first, as LiveTalking's
    /// client.js adds them), shortened.
    const CHROMIUM: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\n\
        m=video 40000 UDP/TLS/RTP/SAVPF 96 97 102 45\r\nc=IN IP4 127.0.0.1\r\n\
        a=candidate:1 1 udp 2113937151 127.0.0.1 40000 typ host\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=mid:0\r\na=recvonly\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        a=rtpmap:102 H264/90000\r\na=rtpmap:45 AV1/90000\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn reads_a_browser_offer() {
        assert_eq!(
            read_offer(CHROMIUM),
            Ok(OfferInfo {
                video_pt: Some(96),
                audio_pt: Some(111),
                candidates: 1
            })
        );
        // webrtcbin's max-bundle offer: the second section has port 0 and bundle-only.
        let bundled = CHROMIUM
            .replace("m=audio 9", "m=audio 0")
            .replace("a=mid:1\r\n", "a=mid:1\r\na=bundle-only\r\n");
        assert_eq!(read_offer(&bundled).unwrap().audio_pt, Some(111));
        // Audio only (a radio client): video stays unset.
        let audio_only = CHROMIUM.replace("m=video 40000", "m=video 0");
        assert_eq!(read_offer(&audio_only).unwrap().video_pt, None);
        assert_eq!(read_offer(&audio_only).unwrap().audio_pt, Some(111));
        // Payload types are the offer's, not fixed ones; "\n" line ends are read too.
        let moved = CHROMIUM
            .replace("96 97 102 45", "100 97 102 45")
            .replace("a=rtpmap:96 VP8", "a=rtpmap:100 VP8")
            .replace("\r\n", "\n");
        assert_eq!(read_offer(&moved).unwrap().video_pt, Some(100));
        // sendrecv (the session-level default) is fine too.
        let sendrecv = CHROMIUM.replace("a=recvonly", "a=sendrecv");
        assert!(read_offer(&sendrecv).is_ok());
        let nodir = CHROMIUM.replace("a=recvonly\r\n", "");
        assert!(read_offer(&nodir).is_ok());
    }

    #[test]
    fn refuses_offers_it_cannot_serve() {
        assert_eq!(read_offer("hello"), Err(OfferError::NotSdp));
        assert_eq!(read_offer(""), Err(OfferError::NotSdp));
        let head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
        assert_eq!(read_offer(head), Err(OfferError::NoMedia));
        let data_only = format!("{head}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
        assert_eq!(read_offer(&data_only), Err(OfferError::NoMedia));
        // VP8 named, but not among the section's formats: not offered.
        let no_vp8 = CHROMIUM.replace("96 97 102 45", "97 102 45");
        assert_eq!(
            read_offer(&no_vp8),
            Err(OfferError::NoCodec("video", "VP8"))
        );
        let no_opus = CHROMIUM.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 G722/8000");
        assert_eq!(
            read_offer(&no_opus),
            Err(OfferError::NoCodec("audio", "Opus"))
        );
        let sendonly = CHROMIUM.replacen("a=recvonly", "a=sendonly", 1);
        assert_eq!(
            read_offer(&sendonly),
            Err(OfferError::WrongDirection("video", "sendonly".into()))
        );
        let session_inactive = CHROMIUM
            .replace("a=recvonly\r\n", "")
            .replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
        assert_eq!(
            read_offer(&session_inactive),
            Err(OfferError::WrongDirection("video", "inactive".into()))
        );
        let two_videos =
            format!("{CHROMIUM}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
        assert_eq!(read_offer(&two_videos), Err(OfferError::TooMany("video")));
        // Every refusal says what is wrong in words.
        assert!(OfferError::NoMedia.to_string().contains("recvonly"));
    }

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn a_peer_is_there_while_its_rtcp_comes() {
        let mut w = PeerWatch::default();
        // Not connected yet: never "gone" (the peer timeout decides that).
        assert_eq!(w.gone(s(100.0)), None);
        w.on(PeerEvent::Rtcp, s(0.5));
        assert_eq!(w.gone(s(100.0)), None);
        w.on(PeerEvent::Connected, s(1.0));
        assert!(w.connected());
        for i in 1..30 {
            w.on(PeerEvent::Rtcp, s(1.0 + i as f64));
            assert_eq!(w.gone(s(1.5 + i as f64)), None);
        }
        // Reports every second until 30 s; silence up to just under the limit is fine.
        let last = 30.0;
        assert_eq!(w.gone(s(last) + RTCP_SILENCE - s(0.01)), None);
        assert!(w.gone(s(last) + RTCP_SILENCE).is_some());
        // A late event from before the last one does not move the time back.
        w.on(PeerEvent::Rtcp, s(2.0));
        assert!(w.gone(s(last) + RTCP_SILENCE).is_some());
    }

    #[test]
    fn a_connected_peer_that_never_reports_goes_after_the_silence() {
        let mut w = PeerWatch::default();
        w.on(PeerEvent::Connected, s(3.0));
        assert_eq!(w.gone(s(3.0) + RTCP_SILENCE - s(0.1)), None);
        assert!(w.gone(s(3.0) + RTCP_SILENCE).is_some());
    }

    #[test]
    fn bye_failure_and_close_end_at_once_and_the_first_reason_stays() {
        for (ev, why) in [
            (PeerEvent::Bye, "BYE"),
            (PeerEvent::Failed, "failed"),
            (PeerEvent::Closed, "closed"),
        ] {
            let mut w = PeerWatch::default();
            w.on(PeerEvent::Connected, s(1.0));
            w.on(PeerEvent::Rtcp, s(2.0));
            assert_eq!(w.gone(s(2.1)), None);
            w.on(ev, s(2.2));
            assert!(w.gone(s(2.2)).unwrap().contains(why), "{ev:?}");
            w.on(PeerEvent::Closed, s(2.3));
            assert!(w.gone(s(2.3)).unwrap().contains(why));
        }
        // A failure before any connection ends the session too.
        let mut w = PeerWatch::default();
        w.on(PeerEvent::Failed, s(0.3));
        assert!(w.gone(s(0.3)).is_some());
    }
}
