// livetalk page: create a session through the HTTP API, watch it through gstwebrtc-api,
// send text, interrupt, talk through the microphone (the page publishes it as a producer,
// the server listens: VAD, whisper, answer, barge-in), show subtitles from the session's
// server-sent events.
// URL parameters: token (bearer token), api, signalling (override the addresses),
// avatar, autostart=1, mic=1 (start the microphone once connected), aec=0 (no echo
// cancellation, noise suppression or gain control on the microphone: for headphones).
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const state = {
  sessionId: null, api: null, consumer: null, events: null, config: null,
  frames: 0, connected: false, error: null, eventsSeen: [],
  clientId: null, mic: null, micState: "off", micError: null,
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
    const token = params.get("token");
    const q = "sessionid=" + encodeURIComponent(state.sessionId) +
      (token ? "&token=" + encodeURIComponent(token) : "");
    state.events = new EventSource(state.apiBase + "/events?" + q);
    for (const type of ["speech", "word", "chat", "chat-error", "session-end", "transcript",
      "vad", "mic", "barge-in"]) {
      state.events.addEventListener(type, (m) => showEvent(JSON.parse(m.data)));
    }
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
