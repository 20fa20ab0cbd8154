//! The HTTP API. LiveTalking's routes and bodies where it makes sense (`/human`,
//! `/interrupt_talk`, `/is_speaking`, `/set_audiotype`, `/record`; `sessionid` a number or a
//! string), plus `POST /session`, `GET /sessions`, `DELETE /sessions/{id}`, `GET /avatars`,
//! `GET /health` and `GET /events` (server-sent events).
//!
//! Success: `{"code": 0, "msg": "ok", ...}`. Errors: the HTTP status, and
//! `{"code": <status>, "error": "<machine-readable code>", "msg": "<what went wrong>"}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::janus::JanusErrorKind;
use super::session::{ActionRef, EndReason, Output, Session, SessionError};
use super::{Server, diagnostics};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub msg: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, msg: &str) -> Self {
        Self {
            status,
            code,
            msg: msg.to_string(),
        }
    }
    pub fn bad_request(code: &'static str, msg: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }
    pub fn not_found(code: &'static str, msg: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, msg)
    }
    pub fn internal(msg: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
    }
}

/// The one place where a session's errors become HTTP statuses.
impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let msg = e.to_string();
        let (status, code) = match e {
            SessionError::BadAvatarId => (StatusCode::BAD_REQUEST, "bad_avatar"),
            SessionError::UnknownAvatar(_) => (StatusCode::NOT_FOUND, "unknown_avatar"),
            SessionError::Full(_) => (StatusCode::SERVICE_UNAVAILABLE, "too_many_sessions"),
            SessionError::Pipeline(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            SessionError::ChatUnavailable => (StatusCode::BAD_REQUEST, "chat_unavailable"),
            SessionError::Llm(_) => (StatusCode::BAD_GATEWAY, "llm_unreachable"),
            SessionError::UnknownAction(_) => (StatusCode::NOT_FOUND, "unknown_action"),
            SessionError::ActionNotReady => (StatusCode::CONFLICT, "action_refused"),
            SessionError::Recording(_) => (StatusCode::CONFLICT, "record_failed"),
            SessionError::BadAudio(_) => (StatusCode::BAD_REQUEST, "not_audio"),
            SessionError::Microphone(_) => (StatusCode::BAD_GATEWAY, "mic_unavailable"),
            SessionError::QueueFull => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            SessionError::Janus(ref j) => match j.kind {
                JanusErrorKind::Unreachable => (StatusCode::BAD_GATEWAY, "janus_unreachable"),
                JanusErrorKind::WrongSecret => (StatusCode::FORBIDDEN, "janus_wrong_secret"),
                JanusErrorKind::Refused => (StatusCode::BAD_GATEWAY, "janus_refused"),
            },
        };
        ApiError::new(status, code, &msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"code": self.status.as_u16(), "error": self.code, "msg": self.msg})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            // A slot frees when a session ends; ask clients to come back, not to hammer.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn ok(extra: Value) -> ApiResult {
    let mut v = json!({"code": 0, "msg": "ok"});
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    Ok(Json(v))
}

/// `Json<T>` whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection as R;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                let code = match &rej {
                    R::JsonDataError(_) => "bad_fields",
                    R::JsonSyntaxError(_) => "bad_json",
                    R::MissingJsonContentType(_) => "needs_json",
                    _ if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    _ => "bad_body",
                };
                Err(ApiError::new(rej.status(), code, &rej.body_text()))
            }
        }
    }
}

/// A session id: LiveTalking sends numbers, others strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum SessionId {
    Num(u64),
    Str(String),
}

impl SessionId {
    fn as_string(&self) -> String {
        match self {
            SessionId::Num(n) => n.to_string(),
            SessionId::Str(s) => s.clone(),
        }
    }
}

fn find(server: &Server, id: &SessionId) -> Result<Arc<Session>, ApiError> {
    let id = id.as_string();
    server
        .session(&id)
        .ok_or_else(|| ApiError::not_found("unknown_session", &format!("no session '{id}'")))
}

pub fn router(server: Arc<Server>) -> Router {
    let max_body = server.cfg.max_body;
    let api = Router::new()
        .route("/session", post(create_session))
        .route("/offer", post(super::offer::handle))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", delete(close_session))
        .route("/avatars", get(avatars))
        .route("/human", post(human))
        .route(
            "/humanaudio",
            post(human_audio).layer(DefaultBodyLimit::max(server.cfg.max_upload)),
        )
        .route("/interrupt_talk", post(interrupt_talk))
        .route("/is_speaking", post(is_speaking))
        .route("/set_audiotype", post(set_audiotype))
        .route("/record", post(record))
        .route("/mic", post(mic))
        .route("/events", get(events))
        .route("/whep", post(super::whep::offer_default))
        .route("/whep/{id}", post(super::whep::offer_to))
        .route("/whep/{id}/{viewer}", delete(super::whep::leave))
        .route_layer(middleware::from_fn_with_state(server.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no_route", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "bad_method",
                "method not allowed",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(cors))
        .with_state(server)
}

/// The page is served from another port (webrtcsink's web server): allow cross-origin calls;
/// the bearer token, not the origin, is what guards the API.
async fn cors(req: Request, next: Next) -> Response {
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    // A WHEP web player reads where its resource is.
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location, link"),
    );
    resp
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Authorization: Bearer TOKEN`, or `?token=TOKEN` (EventSource cannot set headers).
async fn auth(State(server): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let Some(token) = server.cfg.token.as_deref() else {
        return next.run(req).await;
    };
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
    });
    match from_header.or(from_query) {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", "wrong bearer token")
            .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "needs_token",
            "this server needs 'Authorization: Bearer <token>'",
        )
        .into_response(),
    }
}

async fn health(State(server): State<Arc<Server>>) -> ApiResult {
    let (threads, rss_kb) = diagnostics::proc_status();
    let live = tokio::task::spawn_blocking(diagnostics::live_objects)
        .await
        .unwrap_or(Value::Null);
    ok(json!({
        "status": "ok",
        "sessions": server.sessions().len(),
        "max_sessions": server.cfg.max_sessions,
        "threads": threads,
        "rss_kb": rss_kb,
        "live_objects": live,
    }))
}

async fn avatars(State(server): State<Arc<Server>>) -> ApiResult {
    let mut list = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&server.cfg.avatars) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(bytes) = std::fs::read(e.path().join("avatar.json")) else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            list.push(json!({
                "id": name,
                "width": m["width"],
                "height": m["height"],
                "fps": m["fps"],
                "face_box": m["frames"][0]["face_box"],
            }));
        }
    }
    list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    ok(
        json!({"data": list, "default": server.cfg.default_avatar, "actions": server.cfg.action_names}),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    #[serde(default)]
    avatar: Option<String>,
    /// "webrtc" (one browser through our signalling server), "janus" (published into the
    /// Janus room) or "whep" (WHEP players at /whep/{sessionid}); the default is janus on a
    /// server started with --janus.
    #[serde(default)]
    output: Option<String>,
}

async fn create_session(
    State(server): State<Arc<Server>>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    // The body is optional here: none means the default avatar.
    let body = body.map_err(|e| {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(e.status(), code, &e.body_text())
    })?;
    let req: CreateReq = if body.iter().all(u8::is_ascii_whitespace) {
        CreateReq::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("bad_json", &e.to_string()))?
    };
    let avatar = req
        .avatar
        .unwrap_or_else(|| server.cfg.default_avatar.clone());
    let output = match req.output.as_deref() {
        None if server.cfg.janus.is_some() => Output::Janus,
        None | Some("webrtc") => Output::Webrtc,
        Some("janus") if server.cfg.janus.is_some() => Output::Janus,
        Some("janus") => {
            return Err(ApiError::bad_request(
                "janus_unavailable",
                "output 'janus' needs a server started with --janus",
            ));
        }
        Some("whep") => Output::Whep,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_output",
                &format!("output '{other}': expected webrtc, janus or whep"),
            ));
        }
    };
    let s = server.clone();
    let session = tokio::task::spawn_blocking(move || s.create_session(&avatar, output, None))
        .await
        .map_err(|e| ApiError::internal(&e.to_string()))??;
    let mut data = json!({
        "sessionid": session.id,
        "avatar": session.avatar,
        "output": session.output,
        "meta": {"livetalk-session": session.id},
        "signalling_port": server.cfg.signalling_port,
        "peer_timeout_s": server.cfg.peer_timeout.as_secs(),
    });
    if let Some(j) = janus_json(&session) {
        data["janus"] = j;
    }
    if let Some(w) = super::whep::whep_json(&session, &headers, &server.cfg) {
        data["whep"] = w;
    }
    ok(json!({"sessionid": session.id, "data": data}))
}

/// Where a Janus session publishes: room, feed (id and display name), signaller state.
fn janus_json(s: &Session) -> Option<Value> {
    s.janus
        .as_ref()
        .map(|j| json!({"room": j.room, "feed": j.feed, "display": j.display, "state": j.state()}))
}

async fn list_sessions(
    State(server): State<Arc<Server>>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    let data: Vec<Value> = server
        .sessions()
        .iter()
        .map(|s| {
            let mut v = json!({
                "sessionid": s.id,
                "avatar": s.avatar,
                "output": s.output,
                "consumers": s.consumers.load(std::sync::atomic::Ordering::SeqCst),
                "video_encoders": s.video_encoders(),
                "speaking": s.is_speaking(),
                "recording": s.recording_file().is_some(),
                "listening": s.listening_to().is_some(),
                "age_s": s.created.elapsed().as_secs_f64(),
            });
            if let Some(j) = janus_json(s) {
                v["janus"] = j;
            }
            if let Some(w) = super::whep::whep_json(s, &headers, &server.cfg) {
                v["whep"] = w;
            }
            v
        })
        .collect();
    ok(json!({"data": data}))
}

async fn close_session(State(server): State<Arc<Server>>, Path(id): Path<String>) -> ApiResult {
    if server.session(&id).is_none() {
        return Err(ApiError::not_found(
            "unknown_session",
            &format!("no session '{id}'"),
        ));
    }
    server.end_session(&id, EndReason::Closed);
    ok(json!({}))
}

#[derive(Deserialize)]
struct HumanReq {
    sessionid: SessionId,
    text: String,
    #[serde(default = "echo", rename = "type")]
    kind: String,
    #[serde(default)]
    interrupt: bool,
}

fn echo() -> String {
    "echo".into()
}

async fn human(State(server): State<Arc<Server>>, ApiJson(req): ApiJson<HumanReq>) -> ApiResult {
    let session = find(&server, &req.sessionid)?;
    let text = req.text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("empty_text", "'text' is empty"));
    }
    match req.kind.as_str() {
        "echo" => {
            if req.interrupt {
                session.interrupt();
            }
            session.speak(text)?;
        }
        "chat" => {
            session
                .chat(server.cfg.llm.as_ref(), text, req.interrupt)
                .await?;
        }
        other => {
            return Err(ApiError::bad_request(
                "bad_type",
                &format!("type '{other}': expected echo or chat"),
            ));
        }
    }
    ok(json!({}))
}

/// LiveTalking's `/humanaudio`: a multipart form with `file` (audio in any format GStreamer
/// decodes) and `sessionid`; `interrupt` ("true"/"1") cuts what is being said first, else
/// the audio is queued behind it.
async fn human_audio(
    State(server): State<Arc<Server>>,
    mut form: axum::extract::Multipart,
) -> ApiResult {
    let (mut id, mut file, mut name, mut interrupt) = (None, None, String::new(), false);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(ApiError::new(e.status(), "bad_form", &e.body_text())),
        };
        let key = field.name().unwrap_or_default().to_string();
        if key == "file" {
            name = field.file_name().unwrap_or("audio").to_string();
        }
        let data = field
            .bytes()
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_form", &e.body_text()))?;
        match key.as_str() {
            "file" => file = Some(data),
            "sessionid" => id = Some(String::from_utf8_lossy(&data).trim().to_string()),
            "interrupt" => {
                interrupt = matches!(String::from_utf8_lossy(&data).trim(), "true" | "1")
            }
            _ => {}
        }
    }
    let id =
        id.ok_or_else(|| ApiError::bad_request("bad_fields", "the form has no 'sessionid'"))?;
    let file = file.ok_or_else(|| ApiError::bad_request("bad_fields", "the form has no 'file'"))?;
    let session = find(&server, &SessionId::Str(id))?;
    let seconds = tokio::task::spawn_blocking(move || -> Result<f64, ApiError> {
        let tmp = tempfile::NamedTempFile::new().map_err(|e| ApiError::internal(&e.to_string()))?;
        std::fs::write(tmp.path(), &file).map_err(|e| ApiError::internal(&e.to_string()))?;
        Ok(session.say_audio(tmp.path(), &name, interrupt)?)
    })
    .await
    .map_err(|e| ApiError::internal(&e.to_string()))??;
    ok(json!({"data": {"seconds": seconds}}))
}

#[derive(Deserialize)]
struct MicReq {
    sessionid: SessionId,
    /// The page's producer id on the signalling server (its gstwebrtc-api client id).
    #[serde(default)]
    peer_id: Option<String>,
    #[serde(default)]
    stop: bool,
}

/// Listens to the microphone the page publishes (`peer_id`), or stops listening (`stop`).
/// What it hears comes back as `vad`, `transcript` and `mic` events and is answered.
async fn mic(State(server): State<Arc<Server>>, ApiJson(req): ApiJson<MicReq>) -> ApiResult {
    let session = find(&server, &req.sessionid)?;
    if req.stop {
        let was = tokio::task::spawn_blocking(move || session.stop_listening())
            .await
            .map_err(|e| ApiError::internal(&e.to_string()))?;
        return ok(json!({"data": {"listening": false, "was_listening": was}}));
    }
    let peer = req
        .peer_id
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_fields",
                "'peer_id' (the microphone producer) is missing",
            )
        })?;
    tokio::task::spawn_blocking(move || session.start_listening(&peer))
        .await
        .map_err(|e| ApiError::internal(&e.to_string()))??;
    ok(json!({"data": {"listening": true}}))
}

#[derive(Deserialize)]
struct SessionReq {
    sessionid: SessionId,
}

async fn interrupt_talk(
    State(server): State<Arc<Server>>,
    ApiJson(req): ApiJson<SessionReq>,
) -> ApiResult {
    find(&server, &req.sessionid)?.interrupt();
    ok(json!({}))
}

async fn is_speaking(
    State(server): State<Arc<Server>>,
    ApiJson(req): ApiJson<SessionReq>,
) -> ApiResult {
    let s = find(&server, &req.sessionid)?;
    ok(json!({"data": s.is_speaking()}))
}

#[derive(Deserialize)]
struct AudioTypeReq {
    sessionid: SessionId,
    audiotype: Value,
    #[serde(default)]
    #[allow(dead_code)]
    reinit: Option<Value>,
}

/// LiveTalking's custom audio/video states become avatarblend action clips: `audiotype` is a
/// clip name, or a number (1-based index into the clips; 0 returns to the idle cycle).
async fn set_audiotype(
    State(server): State<Arc<Server>>,
    ApiJson(req): ApiJson<AudioTypeReq>,
) -> ApiResult {
    let s = find(&server, &req.sessionid)?;
    let which = match &req.audiotype {
        Value::String(n) => ActionRef::Name(n.clone()),
        Value::Number(n) => ActionRef::Number(n.as_u64().ok_or_else(|| {
            ApiError::bad_request("bad_fields", "'audiotype' is a clip name or number")
        })?),
        _ => {
            return Err(ApiError::bad_request(
                "bad_fields",
                "'audiotype' is a clip name or number",
            ));
        }
    };
    s.set_action(&server.cfg.action_names, which)?;
    ok(json!({}))
}

#[derive(Deserialize)]
struct RecordReq {
    sessionid: SessionId,
    #[serde(rename = "type")]
    kind: String,
}

async fn record(State(server): State<Arc<Server>>, ApiJson(req): ApiJson<RecordReq>) -> ApiResult {
    let s = find(&server, &req.sessionid)?;
    let dir = server.cfg.record_dir.clone();
    let kind = req.kind.clone();
    let result = tokio::task::spawn_blocking(move || match kind.as_str() {
        "start_record" | "start" => s.start_recording(&dir).map_err(ApiError::from),
        "end_record" | "end" | "stop" => s.stop_recording().map_err(ApiError::from),
        other => Err(ApiError::bad_request(
            "bad_type",
            &format!("type '{other}': expected start_record or end_record"),
        )),
    })
    .await
    .map_err(|e| ApiError::internal(&e.to_string()))??;
    ok(json!({"data": {"file": result.display().to_string()}}))
}

/// Event streams one session serves at once (each holds a connection and a queue).
const MAX_EVENT_LISTENERS: usize = 16;

#[derive(Deserialize)]
struct EventsQuery {
    sessionid: String,
}

/// Server-sent events of one session: `speech` (start/end), `word`, `chat` fragments,
/// `chat-error`, and `session-end` (then the stream closes).
async fn events(
    State(server): State<Arc<Server>>,
    Query(q): Query<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let s = find(&server, &SessionId::Str(q.sessionid))?;
    if s.events.receiver_count() >= MAX_EVENT_LISTENERS {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_listeners",
            &format!("{MAX_EVENT_LISTENERS} event streams are open on this session already"),
        ));
    }
    let rx = s.events.subscribe();
    drop(s);
    let stream = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(v) => {
                    let last = v["type"] == "session-end";
                    let ev = Event::default()
                        .event(v["type"].as_str().unwrap_or("message"))
                        .data(v.to_string());
                    return Some((Ok::<_, std::convert::Infallible>(ev), (rx, last)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
