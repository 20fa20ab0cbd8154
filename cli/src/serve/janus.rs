//! Sessions published into a Janus VideoRoom (`--janus`): a small client of Janus's websocket
//! API that makes sure the room exists (creating it when missing, checking `--janus-secret`
//! against a room that exists), and a watch that ends a session whose feed Janus no longer
//! carries (Janus stopped or restarted: its rooms and feeds are gone).
//!
//! The publishing itself is `janusvrwebrtcsink` (gst-plugin-webrtc) in the session pipeline:
//! one encode per session, however many viewers Janus fans it out to.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::protocol::WebSocket;
use tungstenite::{Error as WsError, Message};

/// What `--janus`, `--janus-room` and `--janus-secret` say.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    /// `ws://HOST:PORT[/PATH]`: Janus's websockets transport.
    pub endpoint: String,
    pub room: u64,
    /// The room's secret: set on a room we create, checked on a room that exists.
    pub secret: Option<String>,
}

/// How a Janus request failed; the HTTP layer maps the kind to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JanusErrorKind {
    /// Janus cannot be reached, or the connection broke.
    Unreachable,
    /// The room exists with another secret.
    WrongSecret,
    /// Janus or the VideoRoom plugin refused a request.
    Refused,
}

#[derive(Debug, Clone)]
pub struct JanusError {
    pub kind: JanusErrorKind,
    pub msg: String,
}

impl JanusError {
    fn new(kind: JanusErrorKind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
        }
    }
}

impl std::fmt::Display for JanusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// The VideoRoom plugin's "wrong secret" error code.
const UNAUTHORIZED: i64 = 433;
/// The VideoRoom plugin's "room already exists" error code.
const ROOM_EXISTS: i64 = 427;

/// `ws://host:port/path` -> (host, port); only plain websockets.
pub fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    let rest = endpoint
        .strip_prefix("ws://")
        .ok_or_else(|| format!("'{endpoint}': the Janus endpoint must be ws://HOST:PORT"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rfind(':') {
        // A colon inside "[v6]" is not a port separator.
        Some(i) if !authority[i..].contains(']') => {
            let p = &authority[i + 1..];
            (
                authority[..i].to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("'{endpoint}': bad port '{p}'"))?,
            )
        }
        _ => (authority.to_string(), 80),
    };
    if host.is_empty() {
        return Err(format!("'{endpoint}': no host"));
    }
    Ok((host, port))
}

/// A Janus reply's outcome: the plugin's data (`plugindata.data`) for a plugin answer, the
/// `data` of a core answer; Janus errors and VideoRoom errors as (code, reason).
pub fn reply_data(v: &Value) -> Result<Value, (i64, String)> {
    match v["janus"].as_str() {
        Some("error") => Err((
            v["error"]["code"].as_i64().unwrap_or(0),
            v["error"]["reason"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
        )),
        Some("success") if v.get("plugindata").is_some() => {
            let data = &v["plugindata"]["data"];
            if let Some(code) = data["error_code"].as_i64() {
                Err((
                    code,
                    data["error"]
                        .as_str()
                        .unwrap_or("unknown error")
                        .to_string(),
                ))
            } else {
                Ok(data.clone())
            }
        }
        Some("success") => Ok(v["data"].clone()),
        other => Err((0, format!("unexpected Janus answer {other:?}"))),
    }
}

/// A Janus session with a VideoRoom handle over one websocket.
pub struct Client {
    ws: WebSocket<TcpStream>,
    endpoint: String,
    session: u64,
    handle: u64,
    next: u64,
}

impl Client {
    /// Connects, creates a Janus session and attaches the VideoRoom plugin.
    pub fn connect(endpoint: &str, timeout: Duration) -> Result<Client, JanusError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            JanusError::new(
                JanusErrorKind::Unreachable,
                format!("cannot reach Janus at {endpoint}: {e}"),
            )
        };
        let (host, port) =
            parse_endpoint(endpoint).map_err(|e| JanusError::new(JanusErrorKind::Refused, e))?;
        let addr = (host.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| unreachable(&e))?
            .next()
            .ok_or_else(|| unreachable(&"no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| unreachable(&e))?;
        tcp.set_read_timeout(Some(timeout))
            .map_err(|e| unreachable(&e))?;
        tcp.set_write_timeout(Some(timeout))
            .map_err(|e| unreachable(&e))?;
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(endpoint)
            .map_err(|e| unreachable(&e))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tungstenite::http::HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _) = tungstenite::client::client(request, tcp).map_err(|e| unreachable(&e))?;
        let mut c = Client {
            ws,
            endpoint: endpoint.to_string(),
            session: 0,
            handle: 0,
            next: 1,
        };
        let s = c.call(json!({"janus": "create"}))?;
        c.session = s["id"]
            .as_u64()
            .ok_or_else(|| JanusError::new(JanusErrorKind::Refused, "Janus gave no session id"))?;
        let h = c.call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))?;
        c.handle = h["id"].as_u64().ok_or_else(|| {
            JanusError::new(
                JanusErrorKind::Refused,
                "Janus gave no handle id (is its VideoRoom plugin loaded?)",
            )
        })?;
        Ok(c)
    }

    /// One request; waits for its answer (skipping acks and other traffic).
    fn call(&mut self, mut msg: Value) -> Result<Value, JanusError> {
        let transaction = format!("livetalk-{}", self.next);
        self.next += 1;
        msg["transaction"] = json!(transaction);
        if self.session != 0 {
            msg["session_id"] = json!(self.session);
        }
        let lost = |e: WsError, endpoint: &str| {
            JanusError::new(
                JanusErrorKind::Unreachable,
                format!("the connection to Janus at {endpoint} broke: {e}"),
            )
        };
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| lost(e, &self.endpoint))?;
        loop {
            let text = match self.ws.read().map_err(|e| lost(e, &self.endpoint))? {
                Message::Text(t) => t,
                Message::Close(_) => {
                    return Err(JanusError::new(
                        JanusErrorKind::Unreachable,
                        format!("Janus at {} closed the connection", self.endpoint),
                    ));
                }
                _ => continue,
            };
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if v["transaction"].as_str() != Some(transaction.as_str()) || v["janus"] == "ack" {
                continue;
            }
            return reply_data(&v).map_err(|(code, reason)| {
                let kind = if code == UNAUTHORIZED {
                    JanusErrorKind::WrongSecret
                } else {
                    JanusErrorKind::Refused
                };
                JanusError {
                    kind,
                    msg: format!("Janus refused {}: {reason} (code {code})", msg["janus"]),
                }
            });
        }
    }

    /// A synchronous VideoRoom request (`exists`, `create`, `edit`, `listparticipants`).
    pub fn videoroom(&mut self, body: Value) -> Result<Value, JanusError> {
        let what = body["request"].as_str().unwrap_or("?").to_string();
        let handle = self.handle;
        self.call(json!({"janus": "message", "handle_id": handle, "body": body}))
            .map_err(|e| JanusError {
                msg: e
                    .msg
                    .replace("\"message\"", &format!("the VideoRoom '{what}'")),
                ..e
            })
    }

    /// The publishers' feed ids in a room.
    pub fn publishers(&mut self, room: u64) -> Result<Vec<u64>, JanusError> {
        let v = self.videoroom(json!({"request": "listparticipants", "room": room}))?;
        Ok(v["participants"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["publisher"].as_bool() == Some(true))
                    .filter_map(|p| p["id"].as_u64())
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.session != 0 {
            let msg = json!({"janus": "destroy", "session_id": self.session, "transaction": "bye"});
            let _ = self.ws.send(Message::text(msg.to_string()));
        }
        let _ = self.ws.close(None);
    }
}

/// Makes sure the room exists: creates it (with the secret, if any) when missing; checks the
/// secret against a room that exists (a no-change `edit` that Janus refuses with a wrong one).
pub fn ensure_room(cfg: &JanusConfig) -> Result<(), JanusError> {
    let mut c = Client::connect(&cfg.endpoint, Duration::from_secs(5))?;
    let exists = c.videoroom(json!({"request": "exists", "room": cfg.room}))?["exists"]
        .as_bool()
        .unwrap_or(false);
    if !exists {
        let mut create = json!({
            "request": "create",
            "room": cfg.room,
            "description": format!("livetalk {}", cfg.room),
            "publishers": 64,
            "audiocodec": "opus",
            "videocodec": "vp8",
        });
        if let Some(s) = &cfg.secret {
            create["secret"] = json!(s);
        }
        match c.videoroom(create) {
            Ok(_) => return Ok(()),
            // Another session created it meanwhile: check it like an existing room.
            Err(e) if e.msg.contains(&format!("code {ROOM_EXISTS}")) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(s) = &cfg.secret {
        c.videoroom(json!({"request": "edit", "room": cfg.room, "secret": s}))
            .map_err(|e| match e.kind {
                JanusErrorKind::WrongSecret => JanusError::new(
                    JanusErrorKind::WrongSecret,
                    format!(
                        "Janus room {} exists with another secret (--janus-secret is wrong)",
                        cfg.room
                    ),
                ),
                _ => e,
            })?;
    }
    Ok(())
}

/// Where a watched feed stands after one look at the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedState {
    /// Not in the room yet (`looks` looks so far).
    Waiting(u32),
    /// Published.
    Up,
    /// Gone, or never came: why.
    Lost(String),
}

/// One step of the watch: the state after a look that found the feed `present` (or failed
/// with an error). A feed that was up and is no longer listed is lost; one that is not up
/// after `max_wait` looks is lost too.
pub fn next_state(
    state: &FeedState,
    look: Result<bool, String>,
    room: u64,
    max_wait: u32,
) -> FeedState {
    match (state, look) {
        (FeedState::Lost(why), _) => FeedState::Lost(why.clone()),
        (_, Err(e)) => FeedState::Lost(e),
        (_, Ok(true)) => FeedState::Up,
        (FeedState::Up, Ok(false)) => FeedState::Lost(format!(
            "the feed is no longer published in Janus room {room} (Janus restarted?)"
        )),
        (FeedState::Waiting(n), Ok(false)) if n + 1 >= max_wait => FeedState::Lost(format!(
            "the feed did not appear in Janus room {room} after {} looks",
            n + 1
        )),
        (FeedState::Waiting(n), Ok(false)) => FeedState::Waiting(n + 1),
    }
}

/// Watches a feed from its own thread, one look a second, until `stop` is set; calls `lost`
/// once (and stops) when Janus loses the feed or the connection to Janus breaks.
pub fn watch(
    cfg: JanusConfig,
    feed: u64,
    stop: Arc<AtomicBool>,
    lost: impl FnOnce(String) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("janus-watch".into())
        .spawn(move || {
            let mut client = match Client::connect(&cfg.endpoint, Duration::from_secs(5)) {
                Ok(c) => Some(c),
                Err(e) => {
                    if !stop.load(Ordering::SeqCst) {
                        lost(e.msg);
                    }
                    return;
                }
            };
            let mut state = FeedState::Waiting(0);
            // 30 looks: the first frames (codec discovery, ICE) come well within that.
            const MAX_WAIT: u32 = 30;
            loop {
                for _ in 0..10 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let c = client.as_mut().expect("client kept until lost");
                let look = c
                    .publishers(cfg.room)
                    .map(|p| p.contains(&feed))
                    .map_err(|e| e.msg);
                state = next_state(&state, look, cfg.room, MAX_WAIT);
                if let FeedState::Lost(why) = &state {
                    // Janus sees the connection go; the dead client owes it nothing more.
                    drop(client.take());
                    if !stop.load(Ordering::SeqCst) {
                        lost(why.clone());
                    }
                    return;
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("ws://127.0.0.1:8188").unwrap(),
            ("127.0.0.1".into(), 8188)
        );
        assert_eq!(
            parse_endpoint("ws://janus.example/ws").unwrap(),
            ("janus.example".into(), 80)
        );
        assert_eq!(
            parse_endpoint("ws://[::1]:8188/").unwrap(),
            ("[::1]".into(), 8188)
        );
        assert!(parse_endpoint("wss://x:1").is_err());
        assert!(parse_endpoint("ws://x:port").is_err());
    }

    #[test]
    fn replies() {
        // As Janus 1.1.2 answers (seen over its HTTP API).
        let ok = json!({"janus": "success", "transaction": "c", "plugindata":
            {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "success", "room": 77, "exists": false}}});
        assert_eq!(reply_data(&ok).unwrap()["exists"], false);
        let wrong = json!({"janus": "success", "plugindata": {"plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "event", "error_code": 433, "error": "Unauthorized (wrong secret)"}}});
        assert_eq!(
            reply_data(&wrong).unwrap_err(),
            (433, "Unauthorized (wrong secret)".into())
        );
        let core = json!({"janus": "success", "transaction": "a", "data": {"id": 5}});
        assert_eq!(reply_data(&core).unwrap()["id"], 5);
        let err = json!({"janus": "error", "error": {"code": 458, "reason": "No such session"}});
        assert_eq!(
            reply_data(&err).unwrap_err(),
            (458, "No such session".into())
        );
    }

    #[test]
    fn feed_watch() {
        let step = |s: &FeedState, l: Result<bool, String>| next_state(s, l, 7, 3);
        let s = step(&FeedState::Waiting(0), Ok(false));
        assert_eq!(s, FeedState::Waiting(1));
        assert_eq!(step(&s, Ok(true)), FeedState::Up);
        // Never published: lost after max_wait looks.
        let s = step(&step(&s, Ok(false)), Ok(false));
        assert!(matches!(s, FeedState::Lost(ref w) if w.contains("did not appear")));
        // Up, then gone from the room.
        let gone = step(&FeedState::Up, Ok(false));
        assert!(matches!(gone, FeedState::Lost(ref w) if w.contains("no longer published")));
        // A broken connection is lost at once, whatever the state; lost stays lost.
        assert_eq!(
            step(&FeedState::Up, Err("broke".into())),
            FeedState::Lost("broke".into())
        );
        assert_eq!(step(&gone, Ok(true)), gone);
    }
}
