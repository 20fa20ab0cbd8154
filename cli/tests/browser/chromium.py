"""What page_check.py and offer_check.py share: headless Chromium (Debian's chromium and
chromedriver, through Selenium), the server's JSON API, and the reading of a playing video
and audio track."""

import json
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def api(base, method, path, body=None):
    """A JSON request to the API at `base`; an HTTP error's JSON body is returned too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def browser(extra=()):
    """Headless Chromium that plays media without a gesture and keeps loopback candidates."""
    profile = tempfile.mkdtemp(prefix="livetalk-chromium-")
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
              "--allow-loopback-in-peer-connection",
              "--disable-features=WebRtcHideLocalIpsWithMdns",
              "--user-data-dir=" + profile] + list(extra):
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_script_timeout(60)
    return d


def playing(d, frames_js, audio=True):
    """The `video` element's state, the frames the page counted (`frames_js`) in one second,
    and, with `audio`, the audio track read twice half a second apart (helpers.js' probe)."""
    out = {}
    v = d.execute_script(
        "const v = document.getElementById('video'); return {paused: v.paused, "
        "ready: v.readyState, w: v.videoWidth, h: v.videoHeight, frames: " + frames_js + "};")
    time.sleep(1.0)
    out["video"] = v
    out["frames_in_1s"] = d.execute_script("return " + frames_js) - v["frames"]
    if audio:
        a0 = d.execute_async_script("probe.audio().then(arguments[0])")
        time.sleep(0.5)
        a1 = d.execute_async_script("probe.audio().then(arguments[0])")
        out["audio"] = [a0, a1]
    return out
