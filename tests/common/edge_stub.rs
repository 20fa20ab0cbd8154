//! A local websocket server that speaks the Edge read-aloud protocol (loopback only; the real
//! service is never contacted), with its faults: 403, disconnection mid-sentence, garbage
//! frames, no audio, a slow server. Shared by the edgettssrc tests and serve's (cli/tests).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gst::prelude::*;
use gstlivetalk::tts::edge_protocol as proto;
use tungstenite::Message;

fn init() {
    gst::init().unwrap();
    let _ = gstlivetalk::plugin_register_static();
}

/// One second of a 440 Hz sine at 24 kHz, MP3 48 kbit/s (lamemp3enc).
pub fn mp3() -> &'static [u8] {
    static MP3: OnceLock<Vec<u8>> = OnceLock::new();
    MP3.get_or_init(|| {
        init();
        let p = gst::parse::launch(
            "audiotestsrc num-buffers=24 samplesperbuffer=1000 freq=440 volume=0.5 ! \
             audio/x-raw,rate=24000,channels=1 ! lamemp3enc target=bitrate bitrate=48 cbr=true ! \
             appsink name=out sync=false",
        )
        .expect("lamemp3enc (gstreamer1.0-plugins-good/ugly)")
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = p
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let mut bytes = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            bytes.extend_from_slice(&s.buffer().unwrap().map_readable().unwrap());
        }
        p.set_state(gst::State::Null).unwrap();
        assert!(bytes.len() > 3000, "MP3 of {} bytes", bytes.len());
        bytes
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behavior {
    Normal,
    Forbidden,
    DisconnectMidway,
    Garbage,
    NoAudio,
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub url: String,
    pub ssml: String,
}

pub struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub fn start(behaviors: &[Behavior]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let behaviors = Arc::new(Mutex::new(
            behaviors.iter().copied().collect::<VecDeque<_>>(),
        ));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (b, s) = (behaviors, seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let behavior = b.lock().unwrap().pop_front().unwrap_or(Behavior::Normal);
                let s = s.clone();
                std::thread::spawn(move || serve(conn, behavior, s));
            }
        });
        Server { port, seen }
    }

    pub fn endpoint(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/consumer/speech/synthesize/readaloud/edge/v1",
            self.port
        )
    }

    pub fn texts(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| {
                let body = &s.ssml[s.ssml.rfind("volume=").unwrap()..];
                let from = body.find('>').unwrap() + 1;
                let to = body.find("</prosody>").unwrap();
                body[from..to].to_string()
            })
            .collect()
    }
}

pub fn text_msg(path: &str, body: &str) -> Message {
    Message::text(format!(
        "X-RequestId:0123\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}\r\n\r\n{body}"
    ))
}

pub fn word_msg(word: &str, offset: u64, duration: u64) -> Message {
    text_msg(
        "audio.metadata",
        &format!(
            "{{\"Metadata\":[{{\"Type\":\"WordBoundary\",\"Data\":{{\"Offset\":{offset},\
             \"Duration\":{duration},\"text\":{{\"Text\":\"{word}\",\"Length\":{},\
             \"BoundaryType\":\"WordBoundary\"}}}}}}]}}",
            word.len()
        ),
    )
}

#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature
fn serve(mut conn: TcpStream, behavior: Behavior, seen: Arc<Mutex<Vec<Seen>>>) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    if behavior == Behavior::Forbidden {
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(
            b"HTTP/1.1 403 Forbidden\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let url = Arc::new(Mutex::new(String::new()));
    let u = url.clone();
    let Ok(mut ws) = tungstenite::accept_hdr(
        conn,
        move |req: &tungstenite::handshake::server::Request,
              resp: tungstenite::handshake::server::Response| {
            *u.lock().unwrap() = req.uri().to_string();
            Ok(resp)
        },
    ) else {
        return;
    };
    let mut ssml = String::new();
    for _ in 0..2 {
        match ws.read() {
            Ok(Message::Text(t)) if t.contains("Path:ssml") => ssml = t.to_string(),
            Ok(Message::Text(_)) => {}
            _ => return,
        }
    }
    let words: Vec<String> = {
        let body = &ssml[ssml.rfind("volume=").unwrap_or(0)..];
        let from = body.find('>').map_or(0, |i| i + 1);
        let to = body.find("</prosody>").unwrap_or(body.len());
        body[from..to]
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
            .filter(|w| !w.is_empty())
            .collect()
    };
    seen.lock().unwrap().push(Seen {
        url: url.lock().unwrap().clone(),
        ssml,
    });
    if let Behavior::Slow(d) = behavior {
        std::thread::sleep(d);
    }
    let _ = ws.send(text_msg(
        "turn.start",
        "{\"context\":{\"serviceTag\":\"x\"}}",
    ));
    if behavior == Behavior::NoAudio {
        let _ = ws.send(text_msg("turn.end", "{}"));
        let _ = ws.read();
        return;
    }
    let _ = ws.send(text_msg("response", "{}"));
    for (i, w) in words.iter().enumerate() {
        let _ = ws.send(word_msg(w, i as u64 * 3_000_000, 2_500_000));
    }
    let audio = mp3();
    let chunks: Vec<&[u8]> = audio.chunks(1000).collect();
    for (i, c) in chunks.iter().enumerate() {
        if behavior == Behavior::DisconnectMidway && i == chunks.len() / 2 {
            // Drop the TCP connection: no close frame, no turn.end.
            let _ = ws.get_mut().shutdown(std::net::Shutdown::Both);
            return;
        }
        if behavior == Behavior::Garbage && i == 1 {
            let _ = ws.send(Message::binary(vec![7u8]));
            let _ = ws.send(Message::binary(vec![0xFF, 0xFF, 1, 2, 3]));
            let _ = ws.send(Message::text("complete nonsense"));
            let _ = ws.send(text_msg("audio.metadata", "{not json"));
        }
        let _ = ws.send(Message::binary(proto::binary_audio_message("0123", c)));
    }
    let _ = ws.send(Message::binary({
        let h = b"X-RequestId:0123\r\nPath:audio\r\n";
        let mut v = (h.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(h);
        v
    }));
    let _ = ws.send(text_msg("turn.end", "{}"));
    // Wait for the client to close.
    let _ = ws.read();
}
