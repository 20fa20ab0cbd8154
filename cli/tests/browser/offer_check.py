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
import threading
import time

import chromium

API = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))


def api(method, path, body=None):
    return chromium.api(API, method, path, body)


def serve_page():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    h = functools.partial(Quiet, directory=HERE)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


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


# In-page probes (helpers.js, shared with page_check.py): this page plays the audio through
# its <audio> element and keeps its peer connection in the global `pc`.
with open(os.path.join(HERE, "helpers.js")) as f:
    HELPERS = f.read() + r"""
probe.audioElement = "audio";
probe.pc = () => pc;
"""


def session_ids():
    return [s["sessionid"] for s in api("GET", "/sessions")["data"]]


def main():
    srv = serve_page()
    page = "http://127.0.0.1:%d/offer_client.html?api=%s" % (srv.server_address[1], API)
    avatars = api("GET", "/avatars")
    shown = next(a for a in avatars["data"] if a["id"] == avatars["default"])
    d = chromium.browser()
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
        d.execute_script("probe.box = arguments[0]; probe.frame = arguments[1]",
                         shown["face_box"], [shown["width"], shown["height"]])
        out.update(chromium.playing(d, "window.lt.frames", audio=False))
        out["idle"] = d.execute_async_script("probe.motion(2000, true).then(arguments[0])")
        d.execute_script("window.speech = probe.motion(4000, true)")
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
