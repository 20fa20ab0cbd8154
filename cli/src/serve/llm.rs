//! A streaming client for OpenAI-compatible chat completions (`POST .../chat/completions`
//! with `"stream": true`): the answer arrives as server-sent events whose `data:` lines carry
//! `choices[0].delta.content` fragments, ending with `data: [DONE]`.
//!
//! [`connect`] sends the request and waits for the response head (so that a dead endpoint is
//! an error the HTTP API can return at once); [`Answer::next_fragment`] then yields the text
//! fragments as they arrive.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

/// Splits a byte stream into SSE `data:` payloads. Free of I/O; fed chunk by chunk.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: String,
}

impl SseParser {
    /// Feeds bytes; returns the payloads of the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(std::mem::take(&mut self.data));
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
            // Comments (":..."), "event:", "id:", "retry:" carry nothing we use.
        }
        out
    }
}

/// What one SSE payload of a chat completion stream means.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    Text(String),
    Done,
    Nothing,
}

pub fn parse_chunk(payload: &str) -> anyhow::Result<Chunk> {
    if payload.trim() == "[DONE]" {
        return Ok(Chunk::Done);
    }
    let v: serde_json::Value =
        serde_json::from_str(payload).with_context(|| format!("not JSON: {payload:.80}"))?;
    if let Some(err) = v.get("error") {
        bail!("the LLM endpoint sent an error: {err}");
    }
    let choice = &v["choices"][0];
    match choice["delta"]["content"].as_str() {
        Some(t) if !t.is_empty() => Ok(Chunk::Text(t.to_string())),
        _ if choice["finish_reason"].is_string() => Ok(Chunk::Done),
        _ => Ok(Chunk::Nothing),
    }
}

#[derive(Clone)]
pub struct LlmConfig {
    pub url: String,
    pub model: String,
    pub key: Option<String>,
    pub system: Option<String>,
    /// How long an answer may go without a chunk before it counts as stalled.
    pub idle_timeout: Duration,
}

/// A streaming answer.
pub struct Answer {
    body: Incoming,
    parser: SseParser,
    pending: std::collections::VecDeque<String>,
    done: bool,
    idle_timeout: Duration,
}

impl Answer {
    /// The next text fragment, `None` at the end of the answer.
    pub async fn next_fragment(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            while let Some(p) = self.pending.pop_front() {
                match parse_chunk(&p)? {
                    Chunk::Text(t) => return Ok(Some(t)),
                    Chunk::Done => {
                        self.done = true;
                        self.pending.clear();
                    }
                    Chunk::Nothing => {}
                }
            }
            if self.done {
                return Ok(None);
            }
            let frame = tokio::time::timeout(self.idle_timeout, self.body.frame())
                .await
                .map_err(|_| {
                    anyhow!(
                        "the LLM stream stalled: nothing for {:?} (--llm-idle-timeout)",
                        self.idle_timeout
                    )
                })?;
            match frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.pending.extend(self.parser.feed(data));
                    }
                }
                Some(Err(e)) => return Err(anyhow!("the LLM stream broke: {e}")),
                None => {
                    // The stream ended without [DONE]: take what was said.
                    self.pending.extend(self.parser.feed(b"\n\n"));
                    self.done = true;
                }
            }
        }
    }
}

fn endpoint(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/chat/completions") {
        u.to_string()
    } else {
        format!("{u}/chat/completions")
    }
}

/// Sends the chat request and waits for the response head (at most `timeout`).
pub async fn connect(cfg: &LlmConfig, text: &str, timeout: Duration) -> anyhow::Result<Answer> {
    tokio::time::timeout(timeout, connect_inner(cfg, text))
        .await
        .map_err(|_| anyhow!("the LLM endpoint did not answer in {timeout:?}"))?
}

async fn connect_inner(cfg: &LlmConfig, text: &str) -> anyhow::Result<Answer> {
    let uri: hyper::Uri = endpoint(&cfg.url)
        .parse()
        .with_context(|| format!("bad LLM URL {}", cfg.url))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => bail!("the LLM URL must be http:// or https://"),
    };
    let host = uri.host().context("LLM URL without a host")?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("cannot reach the LLM endpoint {host}:{port}"))?;
    let mut messages = Vec::new();
    if let Some(s) = &cfg.system {
        messages.push(serde_json::json!({"role": "system", "content": s}));
    }
    messages.push(serde_json::json!({"role": "user", "content": text}));
    let body = serde_json::json!({"model": cfg.model, "messages": messages, "stream": true});
    let mut req = hyper::Request::post(uri.clone())
        .header(hyper::header::HOST, uri.authority().unwrap().as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "text/event-stream");
    if let Some(k) = &cfg.key {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_string())))?;
    let resp = if https {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .context("TLS handshake with the LLM endpoint")?;
        send(TokioIo::new(stream), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    let status = resp.status();
    let body = resp.into_body();
    if !status.is_success() {
        let bytes = tokio::time::timeout(Duration::from_secs(2), body.collect())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        bail!(
            "the LLM endpoint answered {status}: {:.200}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(Answer {
        body,
        parser: SseParser::default(),
        pending: Default::default(),
        done: false,
        idle_timeout: cfg.idle_timeout,
    })
}

async fn send<T>(
    io: TokioIo<T>,
    req: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<hyper::Response<Incoming>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender.send_request(req).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_payloads_across_chunk_boundaries() {
        let mut p = SseParser::default();
        let mut got = p.feed(b"data: {\"a\":1}\n\nda");
        got.extend(p.feed(b"ta: x\r\n\r\n: comment\n\ndata: [DONE]\n"));
        assert_eq!(got, vec!["{\"a\":1}".to_string(), "x".to_string()]);
        assert_eq!(p.feed(b"\n"), vec!["[DONE]".to_string()]);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        assert_eq!(p.feed(b"data: a\ndata: b\n\n"), vec!["a\nb".to_string()]);
    }

    #[test]
    fn chunks_of_a_chat_completion_stream() {
        let c = |s: &str| parse_chunk(s).unwrap();
        assert_eq!(
            c(r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#),
            Chunk::Text("Hel".into())
        );
        assert_eq!(
            c(r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#),
            Chunk::Nothing
        );
        assert_eq!(
            c(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
            Chunk::Done
        );
        assert_eq!(c("[DONE]"), Chunk::Done);
        assert!(parse_chunk(r#"{"error":{"message":"quota"}}"#).is_err());
        assert!(parse_chunk("not json").is_err());
    }

    #[test]
    fn endpoint_paths() {
        assert_eq!(endpoint("http://h:1/v1"), "http://h:1/v1/chat/completions");
        assert_eq!(
            endpoint("http://h:1/v1/chat/completions/"),
            "http://h:1/v1/chat/completions"
        );
    }
}
