//! Helpers for the `livetalk serve` tests: a server process on loopback ports, a tiny HTTP
//! client, a server-sent-events reader. Everything binds 127.0.0.1 and is stopped on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod speech;

/// Runs `tests/browser/page_check.py` in MODE against the server's page in headless Chromium
/// (Debian's chromium + chromedriver through Selenium) and returns what it printed.
pub fn page_check(server: &Server, mode: &str) -> Value {
    for f in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(Path::new(f).exists(), "{f} missing: run scripts/setup.sh");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/page_check.py");
    let out = Command::new(cache_dir().join("venv/bin/python"))
        .arg(script)
        .arg(format!(
            "http://127.0.0.1:{}/index.html?autostart=1",
            server.web_port
        ))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .arg(mode)
        .output()
        .expect("running the venv's python (scripts/setup.sh installs selenium)");
    assert!(
        out.status.success(),
        "page check failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn cache_dir() -> PathBuf {
    gstlivetalk::paths::cache_dir()
}

/// Records that a test cannot run on this machine, and why: printed, and appended to the file
/// `LIVETALK_SKIP_LOG` names, from which `scripts/test.sh` counts the test as skipped, not
/// passed. The caller returns right after.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED: {test}: {why}");
    if let Some(log) = std::env::var_os("LIVETALK_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

pub fn require_setup() {
    assert!(
        cache_dir().join("avatars/astronaut/avatar.json").is_file(),
        "run scripts/setup.sh (it makes the demo avatar)"
    );
    assert!(
        cache_dir()
            .join("web/node_modules/gstwebrtc-api/dist")
            .is_dir(),
        "run scripts/setup.sh (it installs gstwebrtc-api from npm)"
    );
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub signalling_port: u16,
    pub web_port: u16,
    pub token: Option<String>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `livetalk serve` with `extra` arguments and waits for `/health`.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    /// As [`Server::start`], with extra environment variables for the server process.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        require_setup();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let (port, signalling_port, web_port) = (free_port(), free_port(), free_port());
        let token = extra
            .iter()
            .position(|a| *a == "--token")
            .map(|i| extra[i + 1].to_string());
        let child = Command::new(env!("CARGO_BIN_EXE_livetalk"))
            .arg("serve")
            .args(["--port", &port.to_string()])
            .args(["--signalling-port", &signalling_port.to_string()])
            .args(["--web-port", &web_port.to_string()])
            .args(
                (!extra.contains(&"--record-dir"))
                    .then(|| ["--record-dir".into(), dir.path().join("recordings")])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .env_remove("LIVETALK_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Server {
            child,
            port,
            signalling_port,
            web_port,
            token,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("livetalk serve exited ({status}): {}", s.log_text());
            }
            if let Ok((200, _)) = s.try_request("GET", "/health", None) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "livetalk serve did not come up: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, Value)> {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        raw_request(self.port, method, path, body, &auth)
    }

    /// A request with the server's token (if any); returns the status and the JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        self.try_request(method, path, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, Some(body))
    }

    /// Creates a WebRTC session; returns its id.
    pub fn new_session(&self) -> String {
        let (status, v) = self.post("/session", serde_json::json!({}));
        assert_eq!(status, 200, "{v}");
        v["sessionid"].as_str().unwrap().to_string()
    }

    pub fn session_ids(&self) -> Vec<String> {
        let (status, v) = self.request("GET", "/sessions", None);
        assert_eq!(status, 200, "{v}");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sessionid"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits (bounded) until `f` holds.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; server log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Subscribes to a session's server-sent events.
    pub fn events(&self, session: &str) -> Events {
        Events::open(self.port, session, self.token.as_deref())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM for a clean stop, then make sure.
        unsafe_kill(self.child.id(), 15);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal to one process (ours) with the `kill` command.
pub fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub fn raw_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra_headers: &str,
) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".to_string()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{ct}{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    read_response(&mut s)
}

pub fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, Value)> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:.200}")))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    Ok((status, v))
}

/// A server-sent events subscription, read on its own thread.
pub struct Events {
    rx: mpsc::Receiver<Value>,
    stream: TcpStream,
}

impl Events {
    pub fn open(port: u16, session: &str, token: Option<&str>) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /events?sessionid={session} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{auth}\r\n"
        )
        .unwrap();
        let reader = s.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = BufReader::new(reader);
            for line in r.lines() {
                let Ok(line) = line else { break };
                // Chunked framing lines and SSE fields: only "data:" lines matter here.
                if let Some(d) = line.strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<Value>(d)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Events { rx, stream: s }
    }

    /// The next event that satisfies `f`, within `timeout`.
    pub fn wait(&self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(v) if f(&v) => return Some(v),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Every event received so far.
    pub fn drain(&self) -> Vec<Value> {
        self.rx.try_iter().collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// nginx with libnginx-mod-rtmp on a free loopback port, `application live`; stopped on drop
/// (its error log is printed when the test panics).
pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start() -> Nginx {
        Self::start_on(free_port())
    }

    /// On a given loopback port (a restart on the port the server pushes to).
    pub fn start_on(port: u16) -> Nginx {
        let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
        assert!(
            Path::new(module).exists() && Path::new("/usr/sbin/nginx").exists(),
            "nginx with libnginx-mod-rtmp is missing: run scripts/setup.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let conf = format!(
            "load_module {module};\n\
             daemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {d}/nginx.pid;\nerror_log {d}/logs/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; record off; }} }} }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("logs/error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self._dir.path().join("logs/error.log"))
                .unwrap_or_default();
            eprintln!("nginx log:\n{log}");
        }
    }
}

/// A pull-back of an RTMP stream: `rtmp2src ! flvdemux`, each track through decodebin into
/// the given tail. nginx-rtmp starts a new viewer's video at the next keyframe (up to one
/// GOP, 2 s here) while its audio flows at once, so the queues must hold more than a GOP of
/// audio: with queue's 1 s default the audio sink prerolls, the audio queue fills, flvdemux
/// blocks and the video sink never prerolls.
pub fn rtmp_pull(url: &str, video_tail: &str, audio_tail: &str) -> String {
    let q = "queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0";
    format!(
        "rtmp2src location={url} ! flvdemux name=d \
         d.video ! {q} ! decodebin ! {video_tail} \
         d.audio ! {q} ! decodebin ! {audio_tail}"
    )
}

/// A stub OpenAI-compatible endpoint: streams `fragments` as SSE chunks, one every `gap`,
/// then `[DONE]`. Records whether a client hung up before the end.
pub struct StubLlm {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<serde_json::Value>>>,
    pub hung_up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl StubLlm {
    pub fn start(fragments: Vec<String>, gap: Duration) -> StubLlm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hung_up = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, st) = (requests.clone(), hung_up.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let (r, h, fragments) = (r.clone(), h.clone(), fragments.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end().to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if l.is_empty() {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    r.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    let mut w = stream;
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                    if w.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let mut send = |s: &str| -> bool {
                        w.write_all(format!("{:x}\r\n{s}\r\n", s.len()).as_bytes())
                            .and_then(|_| w.flush())
                            .is_ok()
                    };
                    for f in &fragments {
                        let chunk = json!({"choices": [{"index": 0, "delta": {"content": f}}]});
                        if !send(&format!("data: {chunk}\n\n")) {
                            h.store(true, Ordering::SeqCst);
                            return;
                        }
                        std::thread::sleep(gap);
                    }
                    send("data: [DONE]\n\n");
                    send("");
                });
            }
        });
        StubLlm {
            port,
            requests,
            hung_up,
            stop,
        }
    }
}

impl Drop for StubLlm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Which streams a file has and how long it is.
pub fn probe_mp4(path: &std::path::Path) -> (bool, bool, Duration) {
    use gst::prelude::*;
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! qtdemux name=d d.video_0 ! queue ! fakesink name=v d.audio_0 ! queue ! fakesink name=a",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Paused).unwrap();
    let _ = p.state(gst::ClockTime::from_seconds(10));
    let dur = p
        .query_duration::<gst::ClockTime>()
        .unwrap_or(gst::ClockTime::ZERO);
    let linked = |n: &str| {
        p.by_name(n)
            .and_then(|e| e.static_pad("sink"))
            .is_some_and(|pad| pad.is_linked())
    };
    let r = (
        linked("v"),
        linked("a"),
        Duration::from_nanos(dur.nseconds()),
    );
    p.set_state(gst::State::Null).unwrap();
    r
}
