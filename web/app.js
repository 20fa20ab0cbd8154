// livetalk page: create a session through the HTTP API, watch it through gstwebrtc-api,
// send text, interrupt, talk through the microphone (the page publishes it as a producer,
// the server listens: VAD, whisper, answer, barge-in), show subtitles from the session's
// server-sent events.
// URL parameters: token (bearer token), api, signalling (override the addresses),
// avatar, autostart=1, mic=1 (start the microphone once connected), aec=0 (no echo
// cancellation, noise suppression or gain control on the microphone: for headphones).
// Viewer mode, view=SESSIONID: creates no session; watches that session's feed in the Janus
// VideoRoom it publishes into (`livetalk serve --janus`) through janus.js, as one of any
// number of viewers (Janus forwards; the session still encodes once). janus=ws://... overrides
// the Janus websocket address the server's config gives.
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const state = {
  sessionId: null, api: null, consumer: null, events: null, config: null,
  frames: 0, connected: false, error: null, eventsSeen: [],
  clientId: null, mic: null, micState: "off", micError: null,
  view: null, janus: null, handle: null, pc: null, ended: null,
};
window.livetalk = state; // read by the browser test

function setStatus(s) { $("status").textContent = s; }
function setMicStatus(s) { $("micstatus").textContent = s; }

async function call(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = params.get("token");
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch(state.apiBase + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await resp.json().catch(() => ({}));
  if (!resp.ok || json.code !== 0) {
    throw new Error(json.msg || ("HTTP " + resp.status));
  }
  return json;
}

function countFrames(video) {
  if (!("requestVideoFrameCallback" in video)) return;
  const tick = () => { state.frames += 1; video.requestVideoFrameCallback(tick); };
  video.requestVideoFrameCallback(tick);
}

function connectProducer(peerId) {
  if (state.consumer) return;
  const consumer = state.api.createConsumerSession(peerId);
  state.consumer = consumer;
  consumer.addEventListener("streamsChanged", () => {
    const streams = consumer.streams;
    if (streams.length > 0) {
      const video = $("video");
      video.srcObject = streams[0];
      video.play().catch((e) => { state.error = "play: " + e; });
      state.connected = true;
      setStatus("live (session " + state.sessionId + ")");
      $("mic").disabled = false;
      if (params.get("mic") === "1" && !state.mic) toggleMic();
    }
  });
  consumer.addEventListener("error", (e) => {
    state.error = e.message || String(e);
    setStatus("error: " + state.error);
  });
  consumer.addEventListener("closed", () => {
    state.connected = false;
    setStatus("closed");
  });
  consumer.connect();
}

function showEvent(ev) {
  ev.t_page = Date.now();
  state.eventsSeen.push(ev);
  const sub = $("subtitles");
  if (ev.type === "speech" && ev.status === "start") {
    sub.dataset.sentence = ev.text;
    sub.textContent = ev.text;
  } else if (ev.type === "speech" && ev.status === "end") {
    sub.textContent = "";
  } else if (ev.type === "word" && sub.dataset.sentence) {
    // Mark what was said so far.
    const s = sub.dataset.sentence;
    const at = s.indexOf(ev.text, Number(sub.dataset.pos || 0));
    if (at >= 0) {
      const end = at + ev.text.length;
      sub.dataset.pos = end;
      sub.innerHTML = "";
      const done = document.createElement("span");
      done.className = "spoken";
      done.textContent = s.slice(0, end);
      sub.append(done, document.createTextNode(s.slice(end)));
    }
  } else if (ev.type === "session-end") {
    setStatus("session ended (" + ev.reason + ")");
  } else if (ev.type === "transcript") {
    $("heard").textContent = ev.text ? "You: " + ev.text : "";
  } else if (ev.type === "vad" && ev.status === "start") {
    $("heard").textContent = "You: …";
  } else if (ev.type === "mic") {
    if (ev.status === "listening") setMicStatus("listening");
    else setMicStatus(ev.msg || ev.status);
    if (ev.status === "ended") stopMic(false);
  } else if (ev.type === "chat-error") {
    setMicStatus("answer failed: " + ev.msg);
  } else if (ev.type === "barge-in") {
    $("subtitles").textContent = "";
  }
  if (ev.type === "speech") sub.dataset.pos = 0;
}

async function start() {
  $("start").disabled = true;
  try {
    const body = { avatar: $("avatar").value || undefined };
    const created = await call("POST", "/session", body);
    state.sessionId = created.sessionid;
    setStatus("connecting (session " + state.sessionId + ")");
    watchEvents(state.sessionId);
    state.api = new GstWebRTCAPI({
      signalingServerUrl: state.signalling,
      reconnectionTimeout: 0,
      meta: { "livetalk-page": state.sessionId },
      webrtcConfig: { iceServers: state.config.ice_servers, bundlePolicy: "max-bundle" },
    });
    const mine = (p) => p.meta && String(p.meta["livetalk-session"]) === String(state.sessionId);
    state.api.registerPeerListener({
      producerAdded: (p) => { if (mine(p)) connectProducer(p.id); },
    });
    state.api.registerConnectionListener({
      connected: (clientId) => {
        state.clientId = clientId;
        const p = state.api.getAvailableProducers().find(mine);
        if (p) connectProducer(p.id);
      },
      disconnected: () => {},
    });
    $("stop").disabled = false;
  } catch (e) {
    state.error = String(e);
    setStatus("error: " + e.message);
    $("start").disabled = false;
  }
}

// The microphone: published to the signalling server as a producer (audio only, echo
// cancellation on), then the server is asked to listen to it.
async function toggleMic() {
  if (state.mic) { stopMic(true); return; }
  if (!state.api || !state.sessionId || !state.clientId) return;
  state.micError = null;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      // aec=0: no echo cancellation (headphones), the speech reaches whisper unprocessed.
      audio: params.get("aec") === "0"
        ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false }
        : { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: false,
    });
  } catch (e) {
    state.micError = (e.name === "NotAllowedError" || e.name === "SecurityError")
      ? "microphone permission denied" : "no microphone: " + (e.message || e.name);
    setMicStatus(state.micError);
    return;
  }
  const producer = state.api.createProducerSession(stream);
  if (!producer) {
    for (const t of stream.getTracks()) t.stop();
    state.micError = "the microphone cannot be published (signalling not ready)";
    setMicStatus(state.micError);
    return;
  }
  state.mic = { stream, producer, asked: false };
  state.micState = "connecting";
  $("mic").setAttribute("aria-pressed", "true");
  setMicStatus("connecting the microphone");
  producer.addEventListener("error", (e) => {
    state.micError = "microphone: " + (e.message || String(e));
    setMicStatus(state.micError);
  });
  producer.addEventListener("closed", () => stopMic(false));
  producer.addEventListener("stateChanged", () => {
    // 2: streaming, i.e. registered as a producer; the server may now connect to it.
    if (producer.state === 2 && state.mic && !state.mic.asked) {
      state.mic.asked = true;
      call("POST", "/mic", { sessionid: state.sessionId, peer_id: state.clientId })
        .then(() => { state.micState = "on"; setMicStatus("listening"); })
        .catch((e) => { state.micError = e.message; setMicStatus("microphone: " + e.message); stopMic(false); });
    }
  });
  producer.start();
}

function stopMic(tellServer) {
  const mic = state.mic;
  state.mic = null;
  state.micState = "off";
  $("mic").setAttribute("aria-pressed", "false");
  if (!mic) return;
  mic.producer.close();
  if (tellServer && state.sessionId) {
    call("POST", "/mic", { sessionid: state.sessionId, stop: true }).catch(() => {});
    setMicStatus("");
  }
}

function stop() {
  stopMic(true);
  $("mic").disabled = true;
  if (state.consumer) state.consumer.close();
  if (state.events) state.events.close();
  state.consumer = null;
  state.events = null;
  $("stop").disabled = true;
  $("start").disabled = false;
}

async function say(type) {
  const text = $("text").value.trim();
  if (!text || !state.sessionId) return;
  try {
    await call("POST", "/human", { sessionid: state.sessionId, text, type, interrupt: true });
    $("text").value = "";
  } catch (e) {
    setStatus("error: " + e.message);
  }
}

// --- Viewer mode (?view=SESSIONID): subscribe to the session's feed through Janus -----------

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error("cannot load " + src));
    document.head.append(s);
  });
}

// The viewer cannot go on: says why, once, and lets go of Janus.
function viewerEnded(why) {
  if (state.ended) return;
  state.ended = why;
  state.connected = false;
  setStatus(why);
  if (state.events) state.events.close();
  if (state.janus) state.janus.destroy({ cleanupHandles: true });
}

async function view(sessionId) {
  document.body.classList.add("viewer");
  state.view = sessionId;
  state.sessionId = sessionId;
  setStatus("looking up session " + sessionId);
  const jc = state.config.janus;
  if (!jc) {
    viewerEnded("this server does not publish into Janus (start it with --janus)");
    return;
  }
  if (!state.config.janus_js) {
    viewerEnded("the server has no janus.js to give (scripts/setup.sh installs it)");
    return;
  }
  let session;
  try {
    session = (await call("GET", "/sessions")).data.find((s) => String(s.sessionid) === sessionId);
  } catch (e) {
    viewerEnded("cannot ask the server about session " + sessionId + ": " + e.message);
    return;
  }
  if (!session) {
    viewerEnded("no session " + sessionId + " (it ended, or never existed)");
    return;
  }
  if (!session.janus) {
    viewerEnded("session " + sessionId + " is not published into Janus");
    return;
  }
  state.janusFeed = session.janus;
  // The avatar shown, for the page's face box (the selector is hidden in this mode).
  const sel = $("avatar");
  if (![...sel.options].some((o) => o.value === session.avatar)) {
    const o = document.createElement("option");
    o.value = o.textContent = session.avatar;
    sel.append(o);
  }
  sel.value = session.avatar;
  watchEvents(sessionId, (ev) => {
    if (ev.type === "session-end") viewerEnded("the session ended (" + ev.reason + ")");
  });
  try {
    await loadScript("adapter.js");
    await loadScript("janus.js");
  } catch (e) {
    viewerEnded(e.message);
    return;
  }
  const url = params.get("janus") || (jc.loopback
    ? (location.protocol === "https:" ? "wss" : "ws") + "://" + location.hostname + ":" + jc.port + jc.path
    : jc.url);
  setStatus("connecting to Janus (" + url + ")");
  Janus.init({
    debug: false,
    dependencies: Janus.useDefaultDependencies(),
    callback: () => {
      state.janus = new Janus({
        server: url,
        iceServers: state.config.ice_servers,
        success: () => subscribe(session.janus.room, session.janus.feed),
        // Also called when an established connection to Janus is lost.
        error: (e) => viewerEnded("Janus is gone (" + url + "): " + e),
        destroyed: () => {},
      });
    },
  });
}

function subscribe(room, feed) {
  const stream = new MediaStream();
  let tries = 0;
  const join = () => state.handle.send({
    message: { request: "join", room, ptype: "subscriber", streams: [{ feed }] },
  });
  state.janus.attach({
    plugin: "janus.plugin.videoroom",
    opaqueId: "livetalk-viewer-" + Janus.randomString(12),
    success: (handle) => {
      state.handle = handle;
      setStatus("joining feed " + feed + " in room " + room);
      join();
    },
    error: (e) => viewerEnded("Janus VideoRoom: " + e),
    onmessage: (msg, jsep) => {
      if (msg.error) {
        // 428: no such feed. A session that has just started may not publish yet: ask again
        // for a while; then it has stopped publishing. 426: no such room.
        if (msg.error_code === 428 && !state.connected && ++tries < 20) {
          setStatus("waiting for session " + state.view + " to publish into Janus");
          setTimeout(join, 1000);
          return;
        }
        viewerEnded("Janus: " + msg.error);
        return;
      }
      if (msg.videoroom === "event" && (msg.left || msg.unpublished)) {
        viewerEnded("the session's feed left Janus");
        return;
      }
      if (jsep) {
        state.handle.createAnswer({
          jsep,
          // Nothing sent: audio and video are accepted receive-only.
          tracks: [{ type: "data" }],
          success: (answer) => state.handle.send({ message: { request: "start", room }, jsep: answer }),
          error: (e) => viewerEnded("WebRTC answer: " + (e.message || e)),
        });
      }
    },
    onremotetrack: (track, mid, on) => {
      for (const t of stream.getTracks()) {
        if (t.id === track.id || (!on && t.kind === track.kind)) stream.removeTrack(t);
      }
      if (on) stream.addTrack(track);
      const video = $("video");
      if (video.srcObject !== stream) video.srcObject = stream;
      if (stream.getVideoTracks().length > 0) {
        video.play().catch((e) => { state.error = "play: " + e; });
      }
    },
    webrtcState: (up, reason) => {
      state.pc = state.handle && state.handle.webrtcStuff ? state.handle.webrtcStuff.pc : null;
      state.connected = up;
      if (up) setStatus("watching session " + state.view + " through Janus");
      else viewerEnded("the connection to Janus closed" + (reason ? " (" + reason + ")" : ""));
    },
    iceState: (s) => { if (s === "failed") viewerEnded("no network path to Janus (ICE failed)"); },
    oncleanup: () => { state.connected = false; },
  });
}

// Server-sent events of a session: subtitles, and ended sessions.
function watchEvents(sessionId, extra) {
  const token = params.get("token");
  const q = "sessionid=" + encodeURIComponent(sessionId) +
    (token ? "&token=" + encodeURIComponent(token) : "");
  state.events = new EventSource(state.apiBase + "/events?" + q);
  for (const type of ["speech", "word", "chat", "chat-error", "session-end", "transcript",
    "vad", "mic", "barge-in"]) {
    state.events.addEventListener(type, (m) => {
      const ev = JSON.parse(m.data);
      showEvent(ev);
      if (extra) extra(ev);
    });
  }
}

async function main() {
  state.config = await (await fetch("config.json")).json();
  const wsScheme = location.protocol === "https:" ? "wss" : "ws";
  state.apiBase = params.get("api") ||
    (location.protocol + "//" + location.hostname + ":" + state.config.api_port);
  state.signalling = params.get("signalling") ||
    (wsScheme + "://" + location.hostname + ":" + state.config.signalling_port);
  countFrames($("video"));
  try {
    const avatars = await call("GET", "/avatars");
    for (const a of avatars.data) {
      const o = document.createElement("option");
      o.value = a.id;
      o.textContent = a.id;
      o.selected = a.id === (params.get("avatar") || avatars.default);
      $("avatar").append(o);
    }
    state.avatars = avatars.data;
  } catch (e) {
    setStatus("error: " + e.message);
  }
  if (params.get("view")) {
    view(params.get("view"));
    return;
  }
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("say").addEventListener("submit", (e) => { e.preventDefault(); say("echo"); });
  $("chat").addEventListener("click", () => say("chat"));
  $("mic").addEventListener("click", toggleMic);
  $("interrupt").addEventListener("click", () => {
    if (state.sessionId) call("POST", "/interrupt_talk", { sessionid: state.sessionId }).catch(() => {});
  });
  window.addEventListener("pagehide", stop);
  if (params.get("autostart") === "1") start();
}

main();
