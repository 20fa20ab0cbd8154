//! WHEP egress: players that speak WHEP (OBS's WHEP source, a WHEP web player, GStreamer's
//! whepclientsrc) watch a session with no page of ours. The session's `whepserversink`
//! (gst-plugins-rs) answers each viewer's offer and encodes for it, as webrtcsink does for
//! its consumers (VP8 + Opus), so any number of viewers may watch one session.
//!
//! whepserversink's own HTTP server (one warp server per element, on `host-addr`) is left
//! off: serve's API port carries WHEP, and the requests are handed to the signaller through
//! its `post` and `delete` action signals. So every session is reachable on the one port the
//! API already has, behind the same bearer token, with the API's error bodies:
//!
//! - `POST /whep/{sessionid}` (`application/sdp`, the viewer's offer) -> `201 Created`, the
//!   answer, and `Location: /whep/{sessionid}/{viewer}`;
//! - `POST /whep`: the same for the oldest WHEP session (the one `--whep` starts), a URL that
//!   does not change between runs;
//! - `DELETE /whep/{sessionid}/{viewer}`: the viewer leaves; its consumer (webrtcbin,
//!   encoders) goes, the session goes on. A viewer that vanishes without it is dropped by
//!   webrtcsink when its peer connection fails.
//!
//! No trickle ICE: the answer carries all of our candidates (the signaller waits for ICE
//! gathering to end), so PATCH is refused with 405 as WHEP allows.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gst::glib;
use gst::prelude::*;

use super::api::ApiError;
use super::session::{Output, Session};
use super::{Config, Server};

/// Where whepserversink's signaller says a viewer's resource is.
const SIGNALLER_RESOURCE: &str = "/whep/resource/";
/// How long an offer may wait for its answer (the signaller's own limit is 30 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(35);

/// A session's WHEP side: its whepserversink and the viewers watching now.
pub struct WhepOutput {
    sink: gst::Element,
    /// The viewer ids (webrtcsink's consumer ids) that are connected or connecting.
    viewers: Arc<Mutex<HashSet<String>>>,
}

impl WhepOutput {
    /// How many viewers watch now.
    pub fn viewers(&self) -> usize {
        self.viewers.lock().unwrap().len()
    }

    fn signaller(&self) -> glib::Object {
        self.sink.property::<glib::Object>("signaller")
    }

    /// Hands a viewer's offer to the signaller and waits for its reply (status, headers,
    /// answer).
    async fn offer(&self, sdp: Bytes) -> Result<gst::Structure, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let promise = gst::Promise::with_change_func(move |reply| {
            let _ = tx.send(reply.ok().flatten().map(|s| s.to_owned()));
        });
        // The viewer id is the signaller's (a random UUID): only the viewer that made the
        // resource knows its URL.
        self.signaller().emit_by_name::<()>(
            "post",
            &[&None::<String>, &glib::Bytes::from_owned(sdp), &promise],
        );
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(Some(reply))) => Ok(reply),
            Ok(_) => Err(ApiError::internal("the WHEP signaller gave no answer")),
            Err(_) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "whep_timeout",
                "no answer to the offer in time (ICE gathering did not end)",
            )),
        }
    }

    /// Ends a viewer's consumer.
    async fn leave(&self, viewer: &str) -> Result<(), ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let promise = gst::Promise::with_change_func(move |_| {
            let _ = tx.send(());
        });
        self.signaller()
            .emit_by_name::<()>("delete", &[&viewer, &promise]);
        tokio::time::timeout(ANSWER_TIMEOUT, rx)
            .await
            .map_err(|_| ApiError::internal("the WHEP signaller did not end the viewer"))?
            .map_err(|_| ApiError::internal("the WHEP signaller did not end the viewer"))
    }
}

/// The session's whepserversink (no HTTP server of its own), configured from `--stun`,
/// `--turn` and `--congestion-control`; `consumers` counts its viewers.
pub fn make_sink(
    cfg: &Config,
    consumers: &Arc<AtomicUsize>,
) -> anyhow::Result<(gst::Element, WhepOutput)> {
    let sink = super::session::webrtc_sink(
        cfg,
        "whepserversink",
        "whep",
        "gst-plugin-webrtc's whep feature",
    )?;
    let signaller = sink.property::<glib::Object>("signaller");
    // An empty host address: no warp server of the signaller's own (serve's port carries
    // WHEP). Its STUN/TURN servers are what it tells viewers in `Link` headers.
    signaller.set_property("host-addr", "");
    signaller.set_property("stun-server", cfg.stun.as_deref());
    if !cfg.turn.is_empty() {
        signaller.set_property("turn-servers", gst::Array::new(cfg.turn.iter()));
    }
    let viewers = Arc::new(Mutex::new(HashSet::new()));
    let loopback = cfg.listen.is_loopback();
    let (c, v) = (consumers.clone(), viewers.clone());
    sink.connect("consumer-added", false, move |args| {
        c.fetch_add(1, Ordering::SeqCst);
        if let Ok(peer) = args[1].get::<String>() {
            v.lock().unwrap().insert(peer);
        }
        if let (Ok(ws), Ok(webrtcbin)) =
            (args[0].get::<gst::Element>(), args[2].get::<gst::Element>())
        {
            super::gccleak::watch(&ws, &webrtcbin);
            if loopback {
                // As for webrtcsink's viewers (FACTS): a server on loopback offers a
                // loopback candidate, hidden unless asked for.
                let agent = webrtcbin.property::<glib::Object>("ice-agent");
                agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
            }
        }
        None
    });
    let (c, v) = (consumers.clone(), viewers.clone());
    sink.connect("consumer-removed", false, move |args| {
        if let Ok(peer) = args[1].get::<String>()
            && v.lock().unwrap().remove(&peer)
        {
            c.fetch_sub(1, Ordering::SeqCst);
        }
        None
    });
    let output = WhepOutput {
        sink: sink.clone(),
        viewers,
    };
    Ok((sink, output))
}

/// The viewer id in the resource path the signaller gives (`/whep/resource/{id}`).
pub fn viewer_of(location: &str) -> Option<&str> {
    location
        .strip_prefix(SIGNALLER_RESOURCE)
        .filter(|id| !id.is_empty() && !id.contains(['/', '?', '#']))
}

/// Whether a request's content type is SDP (parameters allowed, any case).
pub fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

/// Whether an offer looks like SDP with something to watch: `v=0` first, and an audio or
/// video media section.
pub fn is_media_offer(sdp: &str) -> bool {
    sdp.trim_start().starts_with("v=0")
        && sdp
            .lines()
            .any(|l| l.starts_with("m=audio ") || l.starts_with("m=video "))
}

/// Where a session's WHEP endpoint is, as a client that reached us at `host` (the request's
/// Host header) would call it.
pub fn endpoint_url(host: &str, session: &str) -> String {
    format!("http://{host}/whep/{session}")
}

/// A WHEP session's endpoint (as reached through the request's Host header, or the listen
/// address) and viewer count, for `POST /session` and `GET /sessions`.
pub fn whep_json(s: &Session, headers: &HeaderMap, cfg: &Config) -> Option<serde_json::Value> {
    let whep = s.whep.as_ref()?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ']))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}:{}", super::host(cfg.listen), cfg.port));
    Some(serde_json::json!({
        "url": endpoint_url(&host, &s.id),
        "viewers": whep.viewers(),
    }))
}

/// `POST /whep`: the oldest WHEP session.
pub async fn offer_default(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let session = server
        .sessions()
        .into_iter()
        .filter(|s| s.output == Output::Whep)
        .min_by_key(|s| s.created)
        .ok_or_else(|| {
            ApiError::not_found(
                "no_whep_session",
                "no WHEP session: start the server with --whep, or POST /session with \
                 {\"output\": \"whep\"}",
            )
        })?;
    offer(session, &headers, body).await
}

/// `POST /whep/{sessionid}`.
pub async fn offer_to(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    offer(whep_session(&server, &id)?, &headers, body).await
}

/// `DELETE /whep/{sessionid}/{viewer}`.
pub async fn leave(
    State(server): State<Arc<Server>>,
    Path((id, viewer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let session = whep_session(&server, &id)?;
    let whep = session
        .whep
        .as_ref()
        .expect("a WHEP session has its output");
    if !whep.viewers.lock().unwrap().contains(&viewer) {
        return Err(ApiError::not_found(
            "unknown_viewer",
            &format!("no viewer '{viewer}' in session '{id}'"),
        ));
    }
    whep.leave(&viewer).await?;
    Ok(StatusCode::OK.into_response())
}

fn whep_session(server: &Server, id: &str) -> Result<Arc<Session>, ApiError> {
    let session = server
        .session(id)
        .ok_or_else(|| ApiError::not_found("unknown_session", &format!("no session '{id}'")))?;
    if session.whep.is_none() {
        return Err(ApiError::bad_request(
            "not_whep",
            &format!("session '{id}' has no WHEP output (its output is not \"whep\")"),
        ));
    }
    Ok(session)
}

async fn offer(
    session: Arc<Session>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_sdp(ct) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "needs_sdp",
            "a WHEP offer is 'Content-Type: application/sdp'",
        ));
    }
    if !is_media_offer(&String::from_utf8_lossy(&body)) {
        // GStreamer's SDP parser takes nearly any text, and webrtcsink answers it.
        return Err(ApiError::bad_request(
            "bad_sdp",
            "a WHEP offer is SDP ('v=0' first) with an audio or video section",
        ));
    }
    let whep = session
        .whep
        .as_ref()
        .expect("a WHEP session has its output");
    let reply = whep.offer(body).await?;
    let status = reply
        .get::<u32>("status")
        .ok()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = reply
        .get::<glib::Bytes>("body")
        .map(|b| b.to_vec())
        .unwrap_or_default();
    if status != StatusCode::CREATED {
        let why = String::from_utf8_lossy(&body);
        let (code, msg) = if status == StatusCode::NOT_ACCEPTABLE {
            (
                "bad_offer",
                "the offer is not SDP webrtcsink can answer".to_string(),
            )
        } else {
            ("whep_failed", format!("no answer to the offer: {why}"))
        };
        return Err(ApiError::new(status, code, &msg));
    }
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    if let Ok(fields) = reply.get::<gst::Structure>("headers") {
        for (name, value) in fields.iter() {
            let (name, Ok(value)) = (name.as_str(), value.get::<String>()) else {
                continue;
            };
            if name.eq_ignore_ascii_case("location") {
                // The signaller's resource path, as this server serves it.
                if let Some(viewer) = viewer_of(&value)
                    && let Ok(v) = HeaderValue::from_str(&format!("/whep/{}/{viewer}", session.id))
                {
                    h.insert(header::LOCATION, v);
                }
            } else if let (Ok(n), Ok(v)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                // Content type (application/sdp) replaces axum's default; ICE servers add up.
                if n == header::LINK {
                    h.append(n, v);
                } else {
                    h.insert(n, v);
                }
            }
        }
    }
    if !h.contains_key(header::LOCATION) {
        return Err(ApiError::internal("the WHEP signaller gave no resource"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_ids_from_the_signallers_location() {
        assert_eq!(
            viewer_of("/whep/resource/0b1c-42"),
            Some("0b1c-42"),
            "the signaller's resource path"
        );
        assert_eq!(viewer_of("/whep/resource/"), None);
        assert_eq!(viewer_of("/whep/resource/a/b"), None);
        assert_eq!(viewer_of("/whep/resource/a?x=1"), None);
        assert_eq!(viewer_of("/whep/endpoint/a"), None);
        assert_eq!(viewer_of("http://h/whep/resource/a"), None);
    }

    #[test]
    fn sdp_content_types() {
        assert!(is_sdp("application/sdp"));
        assert!(is_sdp("Application/SDP; charset=utf-8"));
        assert!(!is_sdp("application/json"));
        assert!(!is_sdp(""));
        assert!(!is_sdp("application/sdpx"));
    }

    #[test]
    fn media_offers() {
        assert!(is_media_offer(
            "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        ));
        assert!(is_media_offer("v=0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\n"));
        assert!(!is_media_offer("this is not SDP"));
        assert!(!is_media_offer("v=0\r\ns=-\r\n"));
        assert!(!is_media_offer("m=video 9 RTP/AVP 96\r\n"));
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:8010", "3"),
            "http://127.0.0.1:8010/whep/3"
        );
        assert_eq!(endpoint_url("[::1]:80", "a"), "http://[::1]:80/whep/a");
    }
}
