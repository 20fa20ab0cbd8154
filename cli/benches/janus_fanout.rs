//! One talking session watched by 1, 5 and 10 viewers: `livetalk serve`'s CPU with the
//! viewers on its own webrtcsink (one encode per viewer) against the same session published
//! once into a Janus VideoRoom (one encode, Janus fans out), in the same run; Janus's own CPU
//! beside it. Debian's Janus on loopback ports (as the tests run it); the viewers are
//! GStreamer `webrtcsrc` / `janusvrwebrtcsrc` pipelines in this process that take the
//! streams depayloaded, not decoded (their cost is not serve's or Janus's). Figures only, no verdict.
//!
//! `cargo bench -p livetalk --bench janus_fanout [-- --viewers 1,5,10 --seconds 10]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::str::FromStr;

use gst::prelude::*;
use serde_json::json;
use support::{Janus, Server};

const TALK: &str = "This is a benchmark of one avatar watched by many people. I keep talking \
    so that every frame has a moving mouth, and every viewer gets the same picture. One, two, \
    three, four, five, six, seven, eight, nine, ten. The quick brown fox jumps over the lazy \
    dog, again and again, while the encoders work.";

/// CPU time (user + system) of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// A viewer that takes its source's streams depayloaded (VP8 frames, Opus packets) and
/// counts video frames.
struct Viewer {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
}

impl Viewer {
    fn start(src: gst::Element) -> Viewer {
        src.set_property("stun-server", None::<String>);
        let pipeline = gst::Pipeline::new();
        pipeline.add(&src).unwrap();
        let frames = Arc::new(AtomicU64::new(0));
        let (p, f) = (pipeline.downgrade(), frames.clone());
        src.connect_pad_added(move |_, pad| {
            let Some(pipeline) = p.upgrade() else { return };
            // Depayloaded but not decoded: one buffer per frame, and no decoding cost on
            // this (shared) machine.
            let video = pad.name().starts_with("video");
            let caps = if video { "video/x-vp8" } else { "audio/x-opus" };
            let sink = gst::ElementFactory::make("appsink")
                .property("sync", false)
                .property("caps", gst::Caps::from_str(caps).unwrap())
                .property("drop", true)
                .property("max-buffers", 1u32)
                .build()
                .unwrap();
            if video {
                let f = f.clone();
                sink.static_pad("sink").unwrap().add_probe(
                    gst::PadProbeType::BUFFER,
                    move |_, _| {
                        f.fetch_add(1, Ordering::Relaxed);
                        gst::PadProbeReturn::Ok
                    },
                );
            }
            pipeline.add(&sink).unwrap();
            sink.sync_state_with_parent().unwrap();
            let _ = pad.link(&sink.static_pad("sink").unwrap());
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        Viewer { pipeline, frames }
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A viewer of a session's own webrtcsink producer, through serve's signalling server.
fn direct_viewer(signalling_port: u16, producer: &str) -> Viewer {
    let src = gst::ElementFactory::make("webrtcsrc").build().unwrap();
    let signaller = src.property::<gst::glib::Object>("signaller");
    signaller.set_property("uri", format!("ws://127.0.0.1:{signalling_port}"));
    signaller.set_property("producer-peer-id", producer);
    // serve offers loopback candidates only (it listens on 127.0.0.1): so does this viewer.
    signaller.connect("webrtcbin-ready", false, |args| {
        if let Ok(webrtcbin) = args[2].get::<gst::Element>() {
            let agent = webrtcbin.property::<gst::glib::Object>("ice-agent");
            agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        }
        None
    });
    Viewer::start(src)
}

fn janus_viewer(janus: &Janus, room: u64, feed: u64) -> Viewer {
    let src = gst::ElementFactory::make("janusvrwebrtcsrc")
        .build()
        .unwrap();
    let signaller = src.property::<gst::glib::Object>("signaller");
    signaller.set_property("janus-endpoint", janus.ws_url());
    signaller.set_property("room-id", room);
    signaller.set_property("producer-peer-id", feed);
    Viewer::start(src)
}

/// The producer id of a session on serve's signalling server (its meta names the session).
fn producer_of(signalling_port: u16, session: &str) -> Option<String> {
    use tungstenite::Message;
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{signalling_port}")).ok()?;
    ws.send(Message::text(r#"{"type":"list"}"#)).ok()?;
    for _ in 0..8 {
        let Ok(Message::Text(t)) = ws.read() else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
        if v["type"] == "list" {
            return v["producers"].as_array()?.iter().find_map(|p| {
                (p["meta"]["livetalk-session"] == session)
                    .then(|| p["id"].as_str().map(str::to_string))
                    .flatten()
            });
        }
    }
    None
}

struct Row {
    viewers: usize,
    mode: &'static str,
    serve_cpu: f64,
    janus_cpu: f64,
    encoders: u64,
    fps_min: f64,
}

fn measure(
    server: &Server,
    janus: &Janus,
    viewers: usize,
    via_janus: bool,
    seconds: f64,
) -> Result<Row, String> {
    let (status, v) = server.post(
        "/session",
        json!({"output": if via_janus { "janus" } else { "webrtc" }}),
    );
    if status != 200 {
        return Err(format!("POST /session: {v}"));
    }
    let id = v["sessionid"].as_str().unwrap_or_default().to_string();
    let list: Vec<Viewer> = if via_janus {
        let room = v["data"]["janus"]["room"].as_u64().unwrap_or(0);
        let feed = v["data"]["janus"]["feed"].as_u64().unwrap_or(0);
        let start = Instant::now();
        while !janus.publishers(room).iter().any(|(f, _)| *f == feed) {
            if start.elapsed() > Duration::from_secs(40) {
                return Err("the feed was not published".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (0..viewers)
            .map(|_| janus_viewer(janus, room, feed))
            .collect()
    } else {
        let start = Instant::now();
        let producer = loop {
            if let Some(p) = producer_of(server.signalling_port, &id) {
                break p;
            }
            if start.elapsed() > Duration::from_secs(40) {
                return Err("no producer for the session".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        (0..viewers)
            .map(|_| direct_viewer(server.signalling_port, &producer))
            .collect()
    };
    let start = Instant::now();
    while list.iter().any(|v| v.frames() < 25) {
        if start.elapsed() > Duration::from_secs(60) {
            let got: Vec<u64> = list.iter().map(Viewer::frames).collect();
            return Err(format!("viewers without frames: {got:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Talking for the whole window, then settle before measuring.
    for _ in 0..3 {
        server.post("/human", json!({"sessionid": id, "text": TALK}));
    }
    std::thread::sleep(Duration::from_secs(3));
    let janus_pid = janus.pid().unwrap_or(0);
    let (s0, j0, t0) = (
        cpu_seconds(server.pid()),
        cpu_seconds(janus_pid),
        Instant::now(),
    );
    let f0: Vec<u64> = list.iter().map(Viewer::frames).collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let dt = t0.elapsed().as_secs_f64();
    let (s1, j1) = (cpu_seconds(server.pid()), cpu_seconds(janus_pid));
    let fps_min = list
        .iter()
        .zip(&f0)
        .map(|(v, f)| (v.frames() - f) as f64 / dt)
        .fold(f64::INFINITY, f64::min);
    let (_, sessions) = server.request("GET", "/sessions", None);
    let encoders = sessions["data"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["sessionid"] == id.as_str()))
        .and_then(|s| s["video_encoders"].as_u64())
        .unwrap_or(0);
    drop(list);
    server.request("DELETE", &format!("/sessions/{id}"), None);
    let start = Instant::now();
    while server.session_ids().contains(&id) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Row {
        viewers,
        mode: if via_janus { "janus" } else { "direct" },
        serve_cpu: 100.0 * (s1 - s0) / dt,
        janus_cpu: if via_janus {
            100.0 * (j1 - j0) / dt
        } else {
            f64::NAN
        },
        encoders,
        fps_min,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let counts: Vec<usize> = arg("--viewers")
        .unwrap_or_else(|| "1,5,10".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    gst::init().unwrap();
    gstwebrtc::plugin_register_static().unwrap();
    if !Janus::available() {
        eprintln!(
            "janus_fanout: Debian's janus is not installed (scripts/setup.sh); nothing measured"
        );
        return;
    }
    let janus = Janus::start();
    let server = Server::start(&[
        "--janus",
        &janus.ws_url(),
        "--janus-room",
        "2024",
        "--peer-timeout",
        "120",
        "--congestion-control",
        "disabled",
    ]);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "janus_fanout: one talking session, {cores} cores, load average before: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("viewers  mode    serve CPU %  Janus CPU %  video encoders  min viewer fps");
    for &n in &counts {
        for via_janus in [false, true] {
            match measure(&server, &janus, n, via_janus, seconds) {
                Ok(r) => println!(
                    "{:>7}  {:<6}  {:>11.1}  {:>11}  {:>14}  {:>14.1}",
                    r.viewers,
                    r.mode,
                    r.serve_cpu,
                    if r.janus_cpu.is_nan() {
                        "-".to_string()
                    } else {
                        format!("{:.1}", r.janus_cpu)
                    },
                    r.encoders,
                    r.fps_min
                ),
                Err(e) => println!(
                    "{n:>7}  {:<6}  failed: {e}",
                    if via_janus { "janus" } else { "direct" }
                ),
            }
        }
    }
}
