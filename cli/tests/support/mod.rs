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

pub mod page;
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

/// `bash pipelines/<script>` with the plugins built beside the livetalk binary on
/// GST_PLUGIN_PATH (libgstlivetalk.so, and the libgstrswebrtc.so set-up builds), the demo
/// avatar as AVATAR, and no STUN server (its peers are on loopback). Panics when a plugin is
/// missing.
pub fn webrtc_pipeline_script(script: &str) -> Command {
    let plugins = PathBuf::from(env!("CARGO_BIN_EXE_livetalk"))
        .parent()
        .unwrap()
        .to_path_buf();
    for lib in ["libgstlivetalk.so", "libgstrswebrtc.so"] {
        assert!(
            plugins.join(lib).is_file(),
            "no {lib} next to the livetalk binary: scripts/setup.sh builds it"
        );
    }
    require_setup();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut command = Command::new("bash");
    command
        .arg(repo.join("pipelines").join(script))
        .env("GST_PLUGIN_PATH", &plugins)
        .env("AVATAR", cache_dir().join("avatars/astronaut"))
        .env("STUN", "");
    command
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
        // The server subscribes before it answers: once the headers are in, no event sent
        // from now on is missed (an event sent before that would be).
        let mut r = BufReader::new(s.try_clone().unwrap());
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "GET /events: {status}");
        loop {
            let mut header = String::new();
            if r.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
                break;
            }
        }
        s.set_read_timeout(None).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
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

/// Debian's Janus (1.1.2) on loopback with a generated configuration: the VideoRoom plugin and
/// the websockets and HTTP transports only, on free 127.0.0.1 ports, ICE on the loopback
/// interface only, no admin API, no event handlers. Stopped on drop (its log is printed when
/// the test panics).
pub struct Janus {
    child: Option<Child>,
    /// The websockets transport (`ws://127.0.0.1:PORT`).
    pub ws_port: u16,
    /// The HTTP transport (`http://127.0.0.1:PORT/janus`).
    pub http_port: u16,
    dir: tempfile::TempDir,
}

/// Where Debian installs Janus's plugins and transports.
pub const JANUS_LIB: &str = "/usr/lib/x86_64-linux-gnu/janus";

impl Janus {
    /// Whether Debian's janus is installed (`scripts/setup.sh` installs it).
    pub fn available() -> bool {
        Path::new("/usr/bin/janus").exists()
            && Path::new(JANUS_LIB)
                .join("plugins/libjanus_videoroom.so")
                .exists()
            && Path::new(JANUS_LIB)
                .join("transports/libjanus_websockets.so")
                .exists()
    }

    pub fn start() -> Janus {
        assert!(
            Janus::available(),
            "Debian's janus is missing: run scripts/setup.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let (ws_port, http_port) = (free_port(), free_port());
        let d = dir.path();
        // Only the pieces we want: folders of links to Debian's modules.
        for (folder, libs) in [
            ("plugins", &["libjanus_videoroom.so"][..]),
            (
                "transports",
                &["libjanus_websockets.so", "libjanus_http.so"][..],
            ),
            ("events", &[][..]),
            ("loggers", &[][..]),
        ] {
            std::fs::create_dir_all(d.join(folder)).unwrap();
            for lib in libs {
                std::os::unix::fs::symlink(
                    Path::new(JANUS_LIB).join(folder).join(lib),
                    d.join(folder).join(lib),
                )
                .unwrap();
            }
        }
        for (file, text) in janus_config(d, ws_port, http_port) {
            std::fs::write(d.join(file), text).unwrap();
        }
        let mut j = Janus {
            child: None,
            ws_port,
            http_port,
            dir,
        };
        j.run();
        j
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `ws://127.0.0.1:PORT`
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }

    /// Starts the process and waits until both transports answer.
    fn run(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("janus.log"))
            .unwrap();
        let child = Command::new("/usr/bin/janus")
            .arg("-C")
            .arg(d.join("janus.jcfg"))
            .arg("-F")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let up = [self.ws_port, self.http_port]
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if up {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("janus exited ({status}): {}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "janus did not come up: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGKILL: no goodbye to its peers, as a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it and starts it again on the same ports (its rooms and sessions are gone).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// One request to the HTTP transport; returns the JSON answer.
    pub fn http(&self, path: &str, body: &Value) -> Value {
        let (status, v) = raw_request(
            self.http_port,
            "POST",
            &format!("/janus{path}"),
            Some(&body.to_string()),
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{v}");
        match v {
            // Janus answers with chunked transfer encoding: one chunk, then the last.
            Value::String(chunked) => chunked
                .split("\r\n")
                .filter_map(|part| serde_json::from_str::<Value>(part).ok())
                .find(Value::is_object)
                .unwrap_or_else(|| panic!("Janus HTTP answer: {chunked}")),
            v => v,
        }
    }

    /// A VideoRoom request through a fresh HTTP-API session: the plugin's answer
    /// (`plugindata.data`). For synchronous requests (`create`, `exists`, `listparticipants`).
    pub fn videoroom(&self, body: Value) -> Value {
        let t = || format!("t{}", free_port());
        let s = self.http("", &json!({"janus": "create", "transaction": t()}));
        let sid = s["data"]["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("Janus create: {s}"));
        let h = self.http(
            &format!("/{sid}"),
            &json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": t()}),
        );
        let hid = h["data"]["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("Janus attach: {h}"));
        let r = self.http(
            &format!("/{sid}/{hid}"),
            &json!({"janus": "message", "transaction": t(), "body": body}),
        );
        let _ = self.http(
            &format!("/{sid}"),
            &json!({"janus": "destroy", "transaction": t()}),
        );
        r["plugindata"]["data"].clone()
    }

    /// The publishers in a room: (feed id, display name).
    pub fn publishers(&self, room: u64) -> Vec<(u64, String)> {
        let v = self.videoroom(json!({"request": "listparticipants", "room": room}));
        v["participants"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["publisher"].as_bool() == Some(true))
                    .map(|p| {
                        (
                            p["id"].as_u64().unwrap_or(0),
                            p["display"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The generated configuration files of [`Janus`], by name.
pub fn janus_config(dir: &Path, ws_port: u16, http_port: u16) -> Vec<(&'static str, String)> {
    let d = dir.display();
    vec![
        (
            "janus.jcfg",
            format!(
                "general: {{\n\
                 \tconfigs_folder = \"{d}\"\n\
                 \tplugins_folder = \"{d}/plugins\"\n\
                 \ttransports_folder = \"{d}/transports\"\n\
                 \tevents_folder = \"{d}/events\"\n\
                 \tloggers_folder = \"{d}/loggers\"\n\
                 \tdebug_level = 4\n\
                 \tserver_name = \"livetalk-test\"\n\
                 }}\n\
                 certificates: {{}}\n\
                 media: {{\n\trtp_port_range = \"20000-40000\"\n}}\n\
                 nat: {{\n\
                 \tnice_debug = false\n\
                 \tignore_mdns = true\n\
                 }}\n\
                 plugins: {{}}\n\
                 transports: {{}}\n\
                 loggers: {{}}\n\
                 events: {{\n\tbroadcast = false\n}}\n"
            ),
        ),
        ("janus.plugin.videoroom.jcfg", "general: {\n}\n".to_string()),
        (
            "janus.transport.websockets.jcfg",
            format!(
                "general: {{\n\
                 \tjson = \"compact\"\n\
                 \tws = true\n\
                 \tws_port = {ws_port}\n\
                 \tws_ip = \"127.0.0.1\"\n\
                 \twss = false\n\
                 }}\n\
                 admin: {{\n\tadmin_ws = false\n\tadmin_wss = false\n}}\n"
            ),
        ),
        (
            "janus.transport.http.jcfg",
            format!(
                "general: {{\n\
                 \tjson = \"compact\"\n\
                 \tbase_path = \"/janus\"\n\
                 \thttp = true\n\
                 \tport = {http_port}\n\
                 \tip = \"127.0.0.1\"\n\
                 \thttps = false\n\
                 }}\n\
                 admin: {{\n\tadmin_http = false\n\tadmin_https = false\n}}\n"
            ),
        ),
    ]
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("janus log:\n{}", self.log_text());
        }
    }
}

/// One test at a time in this test binary (each runs live sessions; two at once starve a
/// small machine), watched for hangs: see [`Watchdog`]. Hold it for the whole test.
pub struct Serial {
    _watchdog: Watchdog,
    _guard: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Waits for the tests before this one, then watches this one for `limit`.
pub fn serial(test: &str, limit: Duration) -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    Serial {
        _watchdog: Watchdog::start(test, limit),
        _guard: guard,
    }
}

/// Turns a hung test into a failure that says where it hangs. A test still running after its
/// limit has its threads' names and kernel wait channels printed (GStreamer names its
/// threads after elements, which shows the pipeline that is stuck), the processes it
/// started killed, and the test binary ends with status 101; without it the test run would
/// wait for CI's own limit and say nothing. Dropping it ends the watch.
pub struct Watchdog {
    _stop: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn start(test: &str, limit: Duration) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let test = test.to_string();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(limit) {
                // (straight to the process's stderr: the test harness captures eprintln!
                // and would drop it at exit)
                let _ = writeln!(
                    std::io::stderr(),
                    "HUNG: {test} still running after {limit:?}; its threads:\n{}",
                    thread_states()
                );
                for pid in child_pids() {
                    unsafe_kill(pid, 9);
                }
                std::process::exit(101);
            }
        });
        Watchdog { _stop: stop }
    }
}

/// Each thread of this process: name, state and what it waits in (/proc).
fn thread_states() -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let p = task.path();
        let read = |f: &str| {
            std::fs::read_to_string(p.join(f))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let stat = read("stat");
        // (the state follows the name in parentheses)
        let state = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.chars().next().unwrap_or('?'))
            .unwrap_or('?');
        out.push_str(&format!(
            "  {} {:<16} {state} {}\n",
            task.file_name().to_string_lossy(),
            read("comm"),
            read("wchan")
        ));
    }
    out
}

/// The processes this one started (their parent is this process).
fn child_pids() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid == Some(me.as_str()) {
            pids.push(pid);
        }
    }
    pids
}

/// Sets a receiving pipeline to NULL, waiting at most 20 s. A WebRTC source of another
/// project (whipserversrc, whepclientsrc) whose peer was killed mid-call may not stop: then
/// the test says so and goes on without it, rather than hanging after its checks are done.
pub fn stop_pipeline(pipeline: &gst::Pipeline, what: &str) {
    use gst::prelude::*;
    let (done, stopped) = mpsc::channel();
    let p = pipeline.clone();
    std::thread::spawn(move || {
        let _ = p.set_state(gst::State::Null);
        let _ = done.send(());
    });
    if stopped.recv_timeout(Duration::from_secs(20)).is_err() {
        eprintln!("WARNING: {what} did not stop within 20 s; left behind");
    }
}

/// A pipeline script running in the background, its stdout discarded and its stderr read
/// as it comes (a full pipe would stall it).
pub struct Script {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Script {
    pub fn spawn(mut command: Command) -> Script {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the pipeline script");
        let mut err = child.stderr.take().unwrap();
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = err.read_to_end(&mut text);
            let _ = tx.send(String::from_utf8_lossy(&text).into_owned());
        });
        Script { child, stderr }
    }

    /// Whether the script is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Kills the script and returns what it wrote to stderr. Its process is reaped whatever
    /// happens; the rest of its stderr is awaited for at most 5 s after that (a process it
    /// started could hold it open).
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| "(its stderr stayed open: a process it started holds it)".into())
    }
}
