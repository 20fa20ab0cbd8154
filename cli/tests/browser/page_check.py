"""Drives the livetalk page in headless Chromium (Debian's chromium + chromedriver, through
Selenium) and prints what it saw as one JSON object. The Rust test decides pass or fail.

usage: page_check.py PAGE_URL API_URL MODE
  MODE "play":  video plays, frames advance, the audio track is live, /human moves the mouth,
                /interrupt_talk silences the audio, closing the page ends the session.
  MODE "cycles:N": N connect / disconnect cycles; the server's threads and memory after each.
  MODE "voice:WAV:SECONDS": the page's microphone is WAV (Chromium's fake capture device, played
                once); for SECONDS, every 20 ms: the RMS of the microphone and of the avatar's
                played audio at the page, the mouth motion per frame, and the session's events
                as the page received them (with the page's time).
  MODE "nomic": Chromium without microphone permission: what the page says when Mic is pressed.
  MODE "vanish": the browser is killed (SIGKILL, no goodbye); how long until the session is gone.
  MODE "freeze": the browser is stopped (SIGSTOP): open sockets, nobody answering; the same.
  MODE "janusview:SESSIONID": the page's viewer mode (?view=SESSIONID) watches a session that
                serve publishes into Janus: frames, audio, idle and speaking mouth motion
                around a /human, the session's encoder count meanwhile, the ICE pair; then
                the session is closed and the page's message read.
"""

import json
import os
import sys
import time

import chromium

PAGE, API, MODE = sys.argv[1], sys.argv[2], sys.argv[3]


def api(method, path, body=None):
    return chromium.api(API, method, path, body)


def wait(d, js, timeout, what):
    t = time.time()
    while time.time() - t < timeout:
        v = d.execute_script(js)
        if v:
            return v
        time.sleep(0.05)
    state = d.execute_script(
        "const s = window.livetalk || {}; return {id: s.sessionId, error: s.error, "
        "connected: s.connected, frames: s.frames, status: document.getElementById('status')"
        ".textContent};")
    raise RuntimeError("timed out waiting for %s: %s" % (what, json.dumps(state)))


HERE = os.path.dirname(os.path.abspath(__file__))

# In-page probes (helpers.js, shared with offer_check.py), set up for this page: its peer
# connection (gstwebrtc-api's consumer session, or the Janus viewer's), the audio on the video
# element, the face box of the avatar shown.
with open(os.path.join(HERE, "helpers.js")) as f:
    HELPERS = f.read() + r"""
probe.pc = () => {
  const s = window.livetalk;
  return s.pc || (s.consumer && s.consumer.rtcPeerConnection) || null;
};
const shown = window.livetalk.avatars.find(
  (x) => x.id === document.getElementById("avatar").value) || window.livetalk.avatars[0];
probe.box = shown.face_box;
probe.frame = [shown.width, shown.height];
"""


def start_page(d):
    d.get(PAGE)
    wait(d, "return window.livetalk && window.livetalk.connected && window.livetalk.frames > 5",
         30, "video frames")
    d.execute_script(HELPERS)
    return d.execute_script("return window.livetalk.sessionId")


def session_ids():
    return [s["sessionid"] for s in api("GET", "/sessions")["data"]]


def play():
    d = chromium.browser()
    out = {}
    try:
        t_load = time.time()
        sid = start_page(d)
        out["first_frames_s"] = time.time() - t_load
        out["session"] = sid
        out.update(chromium.playing(d, "window.livetalk.frames"))

        # Idle motion, then speech: the mouth region changes between frames while speaking.
        out["idle"] = d.execute_async_script("probe.motion(2000).then(arguments[0])")
        d.execute_script("window.ltSpeech = probe.motion(4000)")
        t_post = time.time()
        out["human"] = api("POST", "/human", {"sessionid": sid, "text":
                           "Hello there! I am talking now, watch my lips move."})
        out["t_post_ms"] = t_post * 1000
        out["speech"] = d.execute_async_script("window.ltSpeech.then(arguments[0])")

        # Interruption: wait for sound, interrupt, time until the audio level falls silent.
        api("POST", "/human", {"sessionid": sid, "text":
            "This sentence is long so that it is still being spoken when it is interrupted by "
            "the test, which then measures how quickly the sound stops at the browser."})
        # Into the long sentence (the first one has ended by now, it was given 4 s), then
        # until the played samples are loud.
        time.sleep(1.5)
        t = time.time()
        while time.time() - t < 15:
            a = d.execute_async_script("probe.audio().then(arguments[0])")
            if a and (a.get("rms") or 0) > 0.02:
                break
            time.sleep(0.02)
        out["level_before_interrupt"] = a["level"] if a else None
        before = []
        t = time.time()
        while time.time() - t < 0.3:
            a = d.execute_async_script("probe.audio().then(arguments[0])")
            before.append(a["level"] if a else None)
            time.sleep(0.01)
        out["levels_before_interrupt"] = before
        t_int = time.time()
        out["interrupt"] = api("POST", "/interrupt_talk", {"sessionid": sid})
        out["interrupt_request_ms"] = (time.time() - t_int) * 1000
        levels = []
        while time.time() - t_int < 3:
            a = d.execute_async_script("probe.audio().then(arguments[0])")
            levels.append([(time.time() - t_int) * 1000, a["level"] if a else None,
                           a.get("rms") if a else None])
            time.sleep(0.01)
        out["levels_after_interrupt"] = levels
        out["is_speaking_after"] = api("POST", "/is_speaking", {"sessionid": sid})

        # The page leaves: the session ends.
        d.get("about:blank")
        t = time.time()
        while sid in session_ids() and time.time() - t < 20:
            time.sleep(0.1)
        out["session_gone_s"] = time.time() - t
        out["sessions_after"] = session_ids()
    finally:
        d.quit()
    return out


def cycles(n):
    d = chromium.browser()
    out = {"health": []}
    try:
        for i in range(n):
            sid = start_page(d)
            d.get("about:blank")
            t = time.time()
            while sid in session_ids() and time.time() - t < 20:
                time.sleep(0.05)
            if sid in session_ids():
                raise RuntimeError("session %s did not end after its page left" % sid)
            time.sleep(1.0)  # the session leaves the list first, then its pipeline goes
            h = api("GET", "/health")
            out["health"].append({"threads": h["threads"], "rss_kb": h["rss_kb"],
                                  "sessions": h["sessions"],
                                  "live_objects": h.get("live_objects")})
    finally:
        d.quit()
    return out


VOICE_TRACE = r"""
window.ltTrace = [];
window.ltMotion = probe.motion(arguments[0]);
const rms = (an, buf) => {
  an.getFloatTimeDomainData(buf);
  let e = 0;
  for (const x of buf) e += x * x;
  return Math.sqrt(e / buf.length);
};
window.ltTimer = setInterval(async () => {
  const a = await probe.audio();
  const m = window.livetalk.mic;
  if (m && m.stream && !probe.micAn) {
    const ctx = new AudioContext();
    probe.micAn = ctx.createAnalyser();
    probe.micAn.fftSize = 512;
    ctx.createMediaStreamSource(m.stream).connect(probe.micAn);
    probe.micBuf = new Float32Array(probe.micAn.fftSize);
  }
  window.ltTrace.push({t: Date.now(), out: a ? (a.rms === undefined ? null : a.rms) : null,
                       mic: probe.micAn ? rms(probe.micAn, probe.micBuf) : null});
}, 20);
"""


def voice(wav, seconds):
    d = chromium.browser(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--use-file-for-fake-audio-capture=%s%%noloop" % wav])
    out = {}
    try:
        d.get(PAGE + "&mic=1" + ("&aec=0" if os.environ.get("LIVETALK_TEST_AEC") == "0" else ""))
        wait(d, "return window.livetalk && window.livetalk.connected && window.livetalk.frames > 5",
             30, "video frames")
        d.execute_script(HELPERS)
        out["session"] = d.execute_script("return window.livetalk.sessionId")
        d.execute_script(VOICE_TRACE, seconds * 1000)
        time.sleep(seconds)
        d.execute_script("clearInterval(window.ltTimer)")
        out["motion"] = d.execute_async_script("window.ltMotion.then(arguments[0])")
        out["trace"] = d.execute_script("return window.ltTrace")
        out["events"] = d.execute_script("return window.livetalk.eventsSeen")
        out["mic_state"] = d.execute_script("return window.livetalk.micState")
        out["mic_error"] = d.execute_script("return window.livetalk.micError")
        out["mic_status"] = d.execute_script("return document.getElementById('micstatus').textContent")
        out["layout"] = layout(d)
    finally:
        d.quit()
    return out


def layout(d):
    """Where the controls are in a 1280x800 window."""
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.3)
    return d.execute_script(
        "const r = (id) => { const b = document.getElementById(id).getBoundingClientRect(); "
        "return {top: b.top, bottom: b.bottom, left: b.left, right: b.right, "
        "width: b.width, height: b.height}; }; "
        "return {inner: [window.innerWidth, window.innerHeight], "
        "scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight], "
        "video: r('video'), subtitles: r('subtitles'), text: r('text'), mic: r('mic'), "
        "interrupt: r('interrupt'), start: r('start')};")


def nomic():
    d = chromium.browser(["--use-fake-device-for-media-stream", "--deny-permission-prompts"])
    out = {}
    try:
        start_page(d)
        d.execute_script("document.getElementById('mic').click()")
        t = time.time()
        while time.time() - t < 10:
            out["mic_error"] = d.execute_script("return window.livetalk.micError")
            if out["mic_error"]:
                break
            time.sleep(0.1)
        out["mic_status"] = d.execute_script("return document.getElementById('micstatus').textContent")
        out["connected"] = d.execute_script("return window.livetalk.connected")
        out["frames"] = d.execute_script("return window.livetalk.frames")
    finally:
        d.quit()
    return out


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def descendants(pid):
    out = []
    for c in children(pid):
        out.append(c)
        out.extend(descendants(c))
    return out


def vanish(freeze=False):
    """The browser is killed, or with freeze, stopped (SIGSTOP): its sockets stay open but
    nothing answers, as when a laptop's network goes away."""
    import signal
    d = chromium.browser()
    out = {}
    try:
        sid = start_page(d)
        out["session"] = sid
        out["sessions_before"] = session_ids()
        if freeze:
            browsers = descendants(d.service.process.pid)
            for pid in browsers:
                os.kill(pid, signal.SIGSTOP)
        else:
            browsers = children(d.service.process.pid)
            for pid in browsers:
                os.kill(pid, signal.SIGKILL)
        out["killed"] = len(browsers)
        t = time.time()
        while sid in session_ids() and time.time() - t < 120:
            time.sleep(0.2)
        out["session_gone_s"] = time.time() - t
        out["sessions_after"] = session_ids()
        time.sleep(1.0)
        h = api("GET", "/health")
        out["health"] = {"threads": h["threads"], "rss_kb": h["rss_kb"], "sessions": h["sessions"]}
        if freeze:
            for pid in browsers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    finally:
        try:
            d.quit()
        except Exception:
            pass
    return out



def janusview(sid):
    d = chromium.browser()
    out = {}
    try:
        t_load = time.time()
        d.get(PAGE.replace("autostart=1", "view=" + sid))
        wait(d, "return window.livetalk && (window.livetalk.ended || "
             "(window.livetalk.connected && window.livetalk.frames > 5))", 30,
             "video frames through Janus")
        ended = d.execute_script("return window.livetalk.ended")
        if ended:
            raise RuntimeError("the viewer gave up: %s" % ended)
        out["first_frames_s"] = time.time() - t_load
        out["status"] = d.execute_script("return document.getElementById('status').textContent")
        d.execute_script(HELPERS)
        out.update(chromium.playing(d, "window.livetalk.frames"))
        # The addresses of the ICE pair in use (Janus never offers loopback candidates).
        out["ice_pair"] = d.execute_async_script(r"""
            const done = arguments[0];
            probe.pc().getStats().then((st) => {
              let pair = null;
              st.forEach((s) => { if (s.type === "transport") pair = st.get(s.selectedCandidatePairId); });
              const c = (id) => { const x = st.get(id); return x ? x.address + ":" + x.port : null; };
              done(pair ? {local: c(pair.localCandidateId), remote: c(pair.remoteCandidateId)} : null);
            });""")

        out["idle"] = d.execute_async_script("probe.motion(2000, true).then(arguments[0])")
        d.execute_script("window.ltSpeech = probe.motion(5000, true)")
        out["human"] = api("POST", "/human", {"sessionid": sid, "text":
                           "Hello to everyone watching through Janus. One, two, three, four."})
        time.sleep(2.5)
        out["session_while_speaking"] = next(
            (s for s in api("GET", "/sessions")["data"] if s["sessionid"] == sid), None)
        out["speech"] = d.execute_async_script("window.ltSpeech.then(arguments[0])")
        out["frames_total"] = d.execute_script("return window.livetalk.frames")

        # The session goes: the page says so.
        out["close"] = api("DELETE", "/sessions/" + sid)
        t = time.time()
        while time.time() - t < 20:
            out["ended"] = d.execute_script("return window.livetalk.ended")
            if out["ended"]:
                break
            time.sleep(0.1)
        out["ended_after_s"] = time.time() - t
        out["status_after"] = d.execute_script(
            "return document.getElementById('status').textContent")
    finally:
        d.quit()
    return out


if MODE == "play":
    result = play()
elif MODE == "vanish":
    result = vanish()
elif MODE == "freeze":
    result = vanish(freeze=True)
elif MODE.startswith("voice:"):
    _, wav, secs = MODE.split(":")
    result = voice(wav, float(secs))
elif MODE.startswith("janusview:"):
    result = janusview(MODE.split(":", 1)[1])
elif MODE == "nomic":
    result = nomic()
elif MODE.startswith("cycles:"):
    result = cycles(int(MODE.split(":")[1]))
else:
    raise SystemExit("unknown mode " + MODE)
print(json.dumps(result))
