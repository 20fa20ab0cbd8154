// In-page probes the browser tests inject (page_check.py, offer_check.py): the played audio
// (peer connection stats and the samples themselves through WebAudio) and the motion of the
// mouth and of the eyes between consecutive video frames, sampled through a canvas.
// The script that injects this sets what differs between pages:
//   probe.box: the avatar's face box [x1, y1, x2, y2] in the avatar's pixels;
//   probe.frame: the avatar's [width, height] (the box is scaled to the video's size: a sender
//     may scale the video down, as webrtcsink does under congestion control);
//   probe.audioElement: the id of the element whose stream holds the audio track;
//   probe.pc: a function giving the RTCPeerConnection (or null).
window.probe = {
  box: null,
  frame: null,
  video: "video",
  audioElement: "video",
  pc: () => null,
  audioTrack() {
    const a = document.getElementById(this.audioElement);
    const tracks = a && a.srcObject ? a.srcObject.getAudioTracks() : [];
    return tracks.length ? tracks[0] : null;
  },
  // RMS of the last 1024 played samples (21 ms at 48 kHz): unlike the stats' levels, no decay.
  rms() {
    const track = this.audioTrack();
    if (!track) return null;
    if (!this.analyser) {
      const ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(new MediaStream([track]));
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
  // The inbound audio's stats (packets, level, energy), the track's state, the RMS.
  async audio() {
    const pc = this.pc();
    if (!pc) return null;
    const stats = await pc.getStats();
    let r = null;
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        r = {packets: s.packetsReceived, level: s.audioLevel || 0,
             energy: s.totalAudioEnergy || 0, samples: s.totalSamplesReceived || 0};
      }
    });
    const track = this.audioTrack();
    if (r) r.track = track ? track.readyState : "none";
    if (r && track) r.rms = this.rms();
    return r;
  },
  regions() {
    const v = document.getElementById(this.video);
    const sx = this.frame ? v.videoWidth / this.frame[0] : 1;
    const sy = this.frame ? v.videoHeight / this.frame[1] : 1;
    const [x1, y1, x2, y2] = [this.box[0] * sx, this.box[1] * sy, this.box[2] * sx, this.box[3] * sy];
    const w = x2 - x1, h = y2 - y1;
    return {
      mouth: [x1 + w / 4, y1 + h * 0.6, w / 2, h * 0.4],
      eyes: [x1 + w / 4, y1, w / 2, h * 0.4],
    };
  },
  grab() {
    const v = document.getElementById(this.video);
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
  // Mean absolute difference per pixel and channel (0-255).
  diff(a, b) {
    let s = 0;
    for (let i = 0; i < a.length; i += 4) {
      s += Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
    }
    return s / (a.length / 4) / 3;
  },
  // Once per presented video frame, for ms: mouth and eye motion against the frame before,
  // and with withRms, the played audio's RMS.
  async motion(ms, withRms) {
    const v = document.getElementById(this.video);
    const out = [];
    let prev = this.grab();
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      await new Promise((res) => v.requestVideoFrameCallback(() => res()));
      const cur = this.grab();
      out.push({t: Date.now(), mouth: this.diff(prev.mouth, cur.mouth),
                eyes: this.diff(prev.eyes, cur.eyes), rms: withRms ? this.rms() : null});
      prev = cur;
    }
    return out;
  },
};
