"""Drives offer_client.html (a client negotiating as LiveTalking's client.js does) in headless
Chromium (Debian's chromium + chromedriver, through Selenium) against `livetalk serve`'s
POST /offer, and prints what it saw as one JSON object. The Rust test decides pass or fail.

usage: offer_check.py API_URL
  The page is served from this folder by a local HTTP server on a free loopback port; it
  negotiates, plays, then /human with its sessionid; the script samples mouth and eye motion
  and the played audio, then the page closes its peer connection and leaves, and the script
  waits for the session to end.
"""

import functools
import http.server
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

API = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))


def api(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def serve_page():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    h = functools.partial(Quiet, directory=HERE)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def browser():
    profile = tempfile.mkdtemp(prefix="livetalk-chromium-")
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
              "--allow-loopback-in-peer-connection",
              "--disable-features=WebRtcHideLocalIpsWithMdns",
              "--user-data-dir=" + profile]:
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_script_timeout(60)
    return d


def wait(d, js, timeout, what):
    t = time.time()
    while time.time() - t < timeout:
        v = d.execute_script(js)
        if v:
            return v
        time.sleep(0.05)
    state = d.execute_script(
        "return {lt: window.lt, ice: pc && pc.iceConnectionState, conn: pc && pc.connectionState,"
        " gathering: pc && pc.iceGatheringState};")
    raise RuntimeError("timed out waiting for %s: %s" % (what, json.dumps(state)))


# Motion of the mouth and of the eyes between consecutive video frames (through a canvas), and
# the played audio's RMS (WebAudio analyser on the audio element's track).
HELPERS = r"""
window.h = {
  box: null,
  regions() {
    const [x1, y1, x2, y2] = this.box;
    const w = x2 - x1, h = y2 - y1;
    return {mouth: [x1 + w / 4, y1 + h * 0.6, w / 2, h * 0.4], eyes: [x1 + w / 4, y1, w / 2, h * 0.4]};
  },
  grab() {
    const v = document.getElementById("video");
    if (!this.canvas) this.canvas = document.createElement("canvas");
    const c = this.canvas;
    c.width = v.videoWidth; c.height = v.videoHeight;
    const ctx = c.getContext("2d", {willReadFrequently: true});
    ctx.drawImage(v, 0, 0);
    const r = this.regions();
    const get = (b) => ctx.getImageData(Math.round(b[0]), Math.round(b[1]),
                                        Math.round(b[2]), Math.round(b[3])).data;
    return {mouth: get(r.mouth), eyes: get(r.eyes)};
  },
  diff(a, b) {
    let s = 0;
    for (let i = 0; i < a.length; i += 4) {
      s += Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
    }
    return s / (a.length / 4) / 3;
  },
  rms() {
    const a = document.getElementById("audio");
    const tracks = a.srcObject ? a.srcObject.getAudioTracks() : [];
    if (!tracks.length) return null;
    if (!this.analyser) {
      const ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(new MediaStream([tracks[0]]));
      this.analyser = ctx.createAnalyser();
      this.analyser.fftSize = 1024;
      src.connect(this.analyser);
      this.buf = new Float32Array(this.analyser.fftSize);
    }
    this.analyser.getFloatTimeDomainData(this.buf);
    let e = 0;
    for (const x of this.buf) e += x * x;
    return Math.sqrt(e / this.buf.length);
  },
  // Per presented frame, for ms: motion against the frame before, and the audio RMS.
  async sample(ms) {
    const v = document.getElementById("video");
    const out = [];
    let prev = this.grab();
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      await new Promise((res) => v.requestVideoFrameCallback(() => res()));
      const cur = this.grab();
      out.push({t: Date.now(), mouth: this.diff(prev.mouth, cur.mouth),
                eyes: this.diff(prev.eyes, cur.eyes), rms: this.rms()});
      prev = cur;
    }
    return out;
  },
};
"""


def session_ids():
    return [s["sessionid"] for s in api("GET", "/sessions")["data"]]


def main():
    srv = serve_page()
    page = "http://127.0.0.1:%d/offer_client.html?api=%s" % (srv.server_address[1], API)
    avatars = api("GET", "/avatars")
    box = next(a for a in avatars["data"] if a["id"] == avatars["default"])["face_box"]
    d = browser()
    out = {}
    try:
        d.get(page)
        d.execute_script("start()")
        wait(d, "return window.lt.error || (window.lt.frames > 5)", 30, "video frames")
        lt = d.execute_script("return window.lt")
        if lt["error"]:
            raise RuntimeError("the page failed: %s" % lt["error"])
        out["answer"] = lt["answer"]
        out["sessionid"] = sid = lt["sessionid"]
        out["post_to_first_frame_ms"] = lt["tFirstFrame"] - lt["tOffer"]
        out["post_to_answer_ms"] = lt["tAnswer"] - lt["tOffer"]
        out["sessions"] = api("GET", "/sessions")["data"]
        d.execute_script(HELPERS)
        d.execute_script("window.h.box = arguments[0]", box)
        out["video"] = d.execute_script(
            "const v = document.getElementById('video'); return {paused: v.paused, "
            "w: v.videoWidth, h: v.videoHeight, frames: window.lt.frames};")
        time.sleep(1.0)
        out["frames_in_1s"] = d.execute_script("return window.lt.frames") - out["video"]["frames"]
        out["idle"] = d.execute_async_script("h.sample(2000).then(arguments[0])")
        d.execute_script("window.speech = h.sample(4000)")
        # As LiveTalking's pages send it: the id as a string.
        out["human"] = api("POST", "/human", {"sessionid": str(sid), "type": "echo",
                           "text": "Hello there! I am talking now, watch my lips move."})
        out["speech"] = d.execute_async_script("window.speech.then(arguments[0])")
        out["is_speaking"] = api("POST", "/is_speaking", {"sessionid": str(sid)})

        # The page closes its peer connection (client.js's stop()) and leaves.
        d.execute_script("stop()")
        d.get("about:blank")
        t = time.time()
        while sid in session_ids() and time.time() - t < 30:
            time.sleep(0.1)
        out["session_gone_s"] = time.time() - t
        out["sessions_after"] = session_ids()
    finally:
        d.quit()
        srv.shutdown()
    return out


print(json.dumps(main()))
