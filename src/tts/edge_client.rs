//! A blocking client of the Edge read-aloud service (or of anything that speaks its protocol
//! at `endpoint`): one websocket per request, abortable, with a timeout, decoding the MP3 it
//! receives. Faults (refused connection, disconnection, garbage, no audio, silence from the
//! server) are retried once, then reported; malformed frames are skipped with a warning.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocket;
use tungstenite::{Error as WsError, Message};

use super::edge_protocol::{self as proto, Frame};
use super::edge_token;
use super::{SynthError, SynthSink, WordBoundary};

/// How often a blocked read looks at the cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// What one request needs.
#[derive(Debug, Clone)]
pub struct EdgeRequest {
    pub voice: String,
    pub rate: String,
    pub pitch: String,
    pub volume: String,
    /// `ws://` or `wss://` URL; `None`: the service.
    pub endpoint: Option<String>,
    /// Longest wait for the connection, and for each message from the server.
    pub timeout: Duration,
}

impl EdgeRequest {
    /// Checks voice, rate, pitch and volume; returns the voice's full name.
    pub fn validate(&self) -> Result<String, String> {
        proto::check_rate(&self.rate)?;
        proto::check_pitch(&self.pitch)?;
        proto::check_volume(&self.volume)?;
        if let Some(e) = &self.endpoint {
            parse_endpoint(e)?;
        }
        proto::voice_full_name(&self.voice)
    }
}

/// What went wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Cancelled,
    Connect(String),
    /// The websocket handshake was refused with this HTTP status (and `Date` header).
    Refused(u16, Option<String>),
    Disconnected(String),
    Timeout(Duration),
    NoAudio,
    BadAudio(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Cancelled => write!(f, "cancelled"),
            Fault::Connect(e) => write!(f, "cannot connect: {e}"),
            Fault::Refused(s, _) => write!(f, "the server refused the connection (HTTP {s})"),
            Fault::Disconnected(e) => {
                write!(f, "disconnected before the end of the sentence ({e})")
            }
            Fault::Timeout(d) => write!(f, "no answer from the server within {} ms", d.as_millis()),
            Fault::NoAudio => write!(f, "the server sent no audio (unknown voice?)"),
            Fault::BadAudio(e) => write!(f, "the audio could not be decoded: {e}"),
        }
    }
}

/// What one request brought back.
#[derive(Debug, Default)]
pub struct Reply {
    pub mp3: Vec<u8>,
    pub words: Vec<proto::WordMeta>,
    /// Frames that could not be understood (skipped).
    pub garbage: Vec<String>,
}

struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query.
    path: String,
}

fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(format!("endpoint '{url}' is not a ws:// or wss:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("endpoint '{url}': bad port '{p}'"))?,
        ),
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("endpoint '{url}' has no host"));
    }
    Ok(Endpoint {
        tls,
        host,
        port,
        path: path.to_string(),
    })
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::LazyLock<Arc<rustls::ClientConfig>> =
        std::sync::LazyLock::new(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        });
    CONFIG.clone()
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The client; `clock_skew` corrects the token's time after a 403 with a `Date` header.
#[derive(Debug, Default)]
pub struct EdgeClient {
    clock_skew: std::sync::Mutex<i64>,
}

impl EdgeClient {
    fn now_secs(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        (now + *self.clock_skew.lock().unwrap()).max(0) as u64
    }

    fn url(&self, ep: &Endpoint, default: bool) -> String {
        let sep = if ep.path.contains('?') { '&' } else { '?' };
        let mut url = format!(
            "{}://{}:{}{}",
            if ep.tls { "wss" } else { "ws" },
            ep.host,
            ep.port,
            ep.path
        );
        if default || !url.contains("TrustedClientToken=") {
            url.push(sep);
            url.push_str("TrustedClientToken=");
            url.push_str(edge_token::TRUSTED_CLIENT_TOKEN);
        }
        url.push_str(&format!(
            "&ConnectionId={}&Sec-MS-GEC={}&Sec-MS-GEC-Version={}",
            proto::random_hex(),
            edge_token::sec_ms_gec(self.now_secs()),
            proto::sec_ms_gec_version()
        ));
        url
    }

    fn connect(
        &self,
        req: &EdgeRequest,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<WebSocket<Stream>, Fault> {
        let default = req.endpoint.is_none();
        let ep = parse_endpoint(req.endpoint.as_deref().unwrap_or(proto::ENDPOINT))
            .map_err(Fault::Connect)?;
        let addrs: Vec<_> = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(|e| Fault::Connect(format!("{}: {e}", ep.host)))?
            .collect();
        let mut last = Fault::Connect(format!("{}: no address", ep.host));
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, req.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) if would_block(&e) => last = Fault::Timeout(req.timeout),
                Err(e) => last = Fault::Connect(format!("{a}: {e}")),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let io = |e: io::Error| Fault::Connect(e.to_string());
        tcp.set_nodelay(true).map_err(io)?;
        tcp.set_read_timeout(Some(POLL)).map_err(io)?;
        tcp.set_write_timeout(Some(req.timeout)).map_err(io)?;
        let stream = if ep.tls {
            let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
                .map_err(|e| Fault::Connect(format!("{}: {e}", ep.host)))?;
            let conn = rustls::ClientConnection::new(tls_config(), name)
                .map_err(|e| Fault::Connect(e.to_string()))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        } else {
            Stream::Plain(tcp)
        };
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(self.url(&ep, default))
                .map_err(|e| Fault::Connect(e.to_string()))?;
        let h = request.headers_mut();
        let ua = proto::user_agent();
        let muid = format!("muid={};", proto::random_hex());
        for (k, v) in [
            ("Pragma", "no-cache"),
            ("Cache-Control", "no-cache"),
            ("Origin", proto::ORIGIN),
            ("User-Agent", ua.as_str()),
            ("Accept-Language", "en-US,en;q=0.9"),
            ("Cookie", muid.as_str()),
        ] {
            if let Ok(v) = v.parse() {
                h.insert(k, v);
            }
        }
        let deadline = Instant::now() + req.timeout;
        let mut attempt = tungstenite::client::client(request, stream);
        loop {
            match attempt {
                Ok((ws, _)) => return Ok(ws),
                Err(HandshakeError::Interrupted(mid)) => {
                    if cancelled() {
                        return Err(Fault::Cancelled);
                    }
                    if Instant::now() > deadline {
                        return Err(Fault::Timeout(req.timeout));
                    }
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(WsError::Http(resp))) => {
                    let date = resp
                        .headers()
                        .get("Date")
                        .and_then(|d| d.to_str().ok())
                        .map(String::from);
                    return Err(Fault::Refused(resp.status().as_u16(), date));
                }
                Err(HandshakeError::Failure(e)) => return Err(Fault::Connect(e.to_string())),
            }
        }
    }

    /// One request: one piece of escaped text.
    pub fn request(
        &self,
        req: &EdgeRequest,
        voice_full: &str,
        escaped: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Reply, Fault> {
        let mut ws = self.connect(req, cancelled)?;
        let now = proto::js_date(self.now_secs());
        let doc = proto::ssml(voice_full, &req.rate, &req.pitch, &req.volume, escaped);
        for msg in [
            proto::speech_config_message(&now),
            proto::ssml_message(&proto::random_hex(), &now, &doc),
        ] {
            ws.send(Message::text(msg))
                .map_err(|e| Fault::Disconnected(e.to_string()))?;
        }
        let mut reply = Reply::default();
        let mut last_data = Instant::now();
        loop {
            if cancelled() {
                let _ = ws.close(None);
                return Err(Fault::Cancelled);
            }
            let msg = match ws.read() {
                Ok(m) => m,
                Err(WsError::Io(e)) if would_block(&e) => {
                    if last_data.elapsed() > req.timeout {
                        let _ = ws.close(None);
                        return Err(Fault::Timeout(req.timeout));
                    }
                    continue;
                }
                Err(e) => return Err(Fault::Disconnected(e.to_string())),
            };
            last_data = Instant::now();
            let frame = match msg {
                Message::Text(t) => proto::parse_text(t.as_str()),
                Message::Binary(b) => proto::parse_binary(&b),
                Message::Close(_) => {
                    return Err(Fault::Disconnected("closed by the server".into()));
                }
                _ => continue,
            };
            match frame {
                Ok(Frame::TurnEnd) => break,
                Ok(Frame::Audio(bytes)) => reply.mp3.extend_from_slice(&bytes),
                Ok(Frame::Words(w)) => reply.words.extend(w),
                Ok(Frame::TurnStart | Frame::Response | Frame::AudioEnd) => {}
                Err(e) => reply.garbage.push(e),
            }
        }
        let _ = ws.close(None);
        // Let the close go out; the server's answer is not awaited.
        let _ = ws.flush();
        Ok(reply)
    }

    /// Speaks `text` (sanitized): split under the service's limit, one request per piece,
    /// each retried once on a fault; the audio and word boundaries go to `sink`.
    pub fn synthesize(
        &self,
        req: &EdgeRequest,
        text: &str,
        sink: &mut dyn SynthSink,
    ) -> Result<(), SynthError> {
        let voice_full = req.validate().map_err(SynthError::Failed)?;
        let pieces = proto::split_escaped(&proto::escape_xml(text), proto::MAX_TEXT_BYTES);
        let mut samples_so_far: u64 = 0;
        for piece in pieces {
            let mut tries = 0;
            let (samples, words) = loop {
                tries += 1;
                let cancelled = || sink.cancelled();
                let result = self
                    .request(req, &voice_full, &piece, &cancelled)
                    .and_then(|r| {
                        if !r.garbage.is_empty() {
                            sink.warning(&format!(
                                "Edge TTS: skipped {} malformed frame(s) from the server: {}",
                                r.garbage.len(),
                                r.garbage[0]
                            ));
                        }
                        if r.mp3.is_empty() {
                            return Err(Fault::NoAudio);
                        }
                        let (rate, samples) = super::mp3::decode(r.mp3).map_err(Fault::BadAudio)?;
                        if rate != proto::RATE {
                            return Err(Fault::BadAudio(format!(
                                "{rate} Hz, expected {} Hz",
                                proto::RATE
                            )));
                        }
                        Ok((samples, r.words))
                    });
                match result {
                    Ok(v) => break v,
                    Err(Fault::Cancelled) => return Err(SynthError::Cancelled),
                    Err(f) if tries == 1 && !matches!(f, Fault::NoAudio) => {
                        if let Fault::Refused(403, Some(date)) = &f
                            && let Some(server) = proto::parse_http_date(date)
                        {
                            let skew = server as i64 - self.now_secs() as i64;
                            *self.clock_skew.lock().unwrap() += skew;
                        }
                        sink.warning(&format!("Edge TTS: {f}; retrying the sentence"));
                    }
                    Err(f) => return Err(SynthError::Failed(format!("Edge TTS: {f}"))),
                }
            };
            let base_ns = samples_so_far * 1_000_000_000 / proto::RATE as u64;
            for w in words {
                sink.word(WordBoundary {
                    text: w.text,
                    offset_ns: base_ns + w.offset * 100,
                    duration_ns: w.duration * 100,
                });
            }
            samples_so_far += samples.len() as u64;
            sink.audio(&samples);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_parsed() {
        let e = parse_endpoint(proto::ENDPOINT).unwrap();
        assert!(e.tls);
        assert_eq!(e.host, "speech.platform.bing.com");
        assert_eq!(e.port, 443);
        assert!(e.path.starts_with("/consumer/"));
        let e = parse_endpoint("ws://127.0.0.1:8765/tts?x=1").unwrap();
        assert!(!e.tls);
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 8765, "/tts?x=1")
        );
        assert!(parse_endpoint("http://x").is_err());
        assert!(parse_endpoint("ws://:80/").is_err());
        assert!(parse_endpoint("ws://h:notaport/").is_err());
    }

    #[test]
    fn url_carries_the_token_parameters() {
        let c = EdgeClient::default();
        let ep = parse_endpoint(proto::ENDPOINT).unwrap();
        let url = c.url(&ep, true);
        assert!(url.starts_with(
            "wss://speech.platform.bing.com:443/consumer/speech/synthesize/readaloud/edge/v1?\
             TrustedClientToken=6A5AA1D4EAFF4E9FB37E23D68491D6F4&ConnectionId="
        ));
        let gec = url
            .split("Sec-MS-GEC=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert_eq!(gec.len(), 16 + 1 + 64);
        assert!(url.ends_with(&format!("Sec-MS-GEC-Version=2-{}", proto::CHROMIUM_VERSION)));
    }

    #[test]
    fn requests_are_validated() {
        let mut r = EdgeRequest {
            voice: "en-US-EmmaMultilingualNeural".into(),
            rate: "+0%".into(),
            pitch: "+0Hz".into(),
            volume: "+0%".into(),
            endpoint: None,
            timeout: Duration::from_secs(1),
        };
        r.validate().unwrap();
        r.rate = "fast".into();
        assert!(r.validate().unwrap_err().contains("rate 'fast'"));
        r.rate = "+0%".into();
        r.endpoint = Some("http://x".into());
        assert!(r.validate().is_err());
    }
}
