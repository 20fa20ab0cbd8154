// livetalk page: create a session through the HTTP API, watch it through gstwebrtc-api,
// send text, interrupt, show subtitles from the session's server-sent events.
// URL parameters: token (bearer token), api, signalling (override the addresses),
// avatar, autostart=1.
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const state = {
  sessionId: null, api: null, consumer: null, events: null, config: null,
  frames: 0, connected: false, error: null, eventsSeen: [],
};
window.livetalk = state; // read by the browser test

function setStatus(s) { $("status").textContent = s; }

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
    for (const type of ["speech", "word", "chat", "chat-error", "session-end"]) {
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
      connected: () => {
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

function stop() {
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
  $("interrupt").addEventListener("click", () => {
    if (state.sessionId) call("POST", "/interrupt_talk", { sessionid: state.sessionId }).catch(() => {});
  });
  window.addEventListener("pagehide", stop);
  if (params.get("autostart") === "1") start();
}

main();
