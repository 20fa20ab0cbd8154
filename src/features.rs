//! Streaming whisper features for MuseTalk, free of GStreamer.
//!
//! Audio (16 kHz mono f32) goes in; for every video frame `i` comes out either silence or the
//! `[50, 384]` audio feature MuseTalk v1.5 feeds its UNet: encoder steps `[a-4, a+6)` with
//! `a = floor(i * 50 / fps)`, the 5 hidden states of each, rows in (step, layer) order; steps
//! before the start of the stream (and after its end) are zeros, as MuseTalk pads them.
//!
//! The encoder runs on windows, in one of two modes ([`WindowMode`]):
//! - **chunk** (default): as MuseTalk's `audio_processor` cuts the audio into 30 s chunks and
//!   encodes each whole, a window starts at the start of the 30 s chunk of its steps (so
//!   whisper's positional embedding counts from there) and holds all audio of that chunk up
//!   to the batch's end plus `context_right` of lookahead; a batch whose steps cross a chunk
//!   boundary runs one window per chunk.
//! - **short**: the frames of a batch plus `context_left` audio before and `context_right`
//!   after (LiveTalking's strides); cheap, but positions restart at each window, far from
//!   the features MuseTalk was trained on.
//!
//! A frame is silent when its whole feature window is below the threshold: it costs no
//! encoder run.

use crate::mel::{self, LogMel};

pub const SAMPLE_RATE: u64 = 16_000;
/// Whisper encoder steps per second (one per 20 ms).
pub const STEPS_PER_SECOND: u64 = 50;
pub const SAMPLES_PER_STEP: u64 = SAMPLE_RATE / STEPS_PER_SECOND;
pub const LAYERS: usize = 5;
pub const DIM: usize = 384;
/// Steps before / after a frame's own step that its feature covers (MuseTalk v1.5: 2*2, 2*3).
pub const STEPS_BEFORE: u64 = 4;
pub const STEPS_AFTER: u64 = 6;
pub const STEPS_PER_FRAME: usize = (STEPS_BEFORE + STEPS_AFTER) as usize;
/// Rows of a frame's feature: 10 steps x 5 layers.
pub const ROWS: usize = STEPS_PER_FRAME * LAYERS;
pub const FRAME_LEN: usize = ROWS * DIM;
/// Whisper's input length: 30 s of mel frames.
pub const MAX_MEL_FRAMES: usize = 3000;
/// Encoder steps in one of MuseTalk's 30 s chunks.
pub const CHUNK_STEPS: u64 = (MAX_MEL_FRAMES / 2) as u64;
/// GStreamer media type of the features (one buffer per video frame).
pub const CAPS_NAME: &str = "application/x-livetalk-features";

/// How encoder windows are cut (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowMode {
    /// Batch plus left and right context; positions restart at each window.
    Short,
    /// From the start of the 30 s chunk to the batch's end plus the right context.
    #[default]
    Chunk,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub window: WindowMode,
    pub fps_n: u64,
    pub fps_d: u64,
    /// Audio before a batch's first frame given to the encoder, in samples (>= 80 ms).
    pub context_left: u64,
    /// Audio after a batch's last frame given to the encoder, in samples (>= 80 ms).
    pub context_right: u64,
    pub batch_frames: usize,
    /// Mean square below which a frame's audio is silence.
    pub silence_power: f32,
    /// Pad every encoder window to whisper's 30 s with silence (as MuseTalk and LiveTalking
    /// do). Slower, closer to what the MuseTalk UNet was trained on.
    pub pad_to_30s: bool,
    /// Pad shorter windows with silence to this many mel frames (0: no padding; whisper's
    /// 30 s is 3000). `pad_to_30s` is the same as 3000.
    pub min_mel_frames: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            window: WindowMode::Chunk,
            fps_n: 25,
            fps_d: 1,
            context_left: ms_to_samples(200),
            context_right: ms_to_samples(200),
            batch_frames: 8,
            silence_power: db_to_power(-50.0),
            pad_to_30s: false,
            min_mel_frames: 0,
        }
    }
}

pub fn ms_to_samples(ms: u64) -> u64 {
    ms * SAMPLE_RATE / 1000
}

/// Mean square of a level in dBFS; -200 dB and below turns the level check off (0).
pub fn db_to_power(db: f64) -> f32 {
    if db <= -200.0 {
        0.0
    } else {
        10f64.powf(db / 10.0) as f32
    }
}

/// Minimum context: the feature of a frame reaches 80 ms before its start and after its end.
pub const MIN_CONTEXT: u64 = STEPS_BEFORE * SAMPLES_PER_STEP;

impl StreamConfig {
    /// The configuration a stream runs with: contexts of at least 80 ms, batches of at least
    /// one frame.
    pub fn with_minimums(mut self) -> Self {
        self.context_left = self.context_left.max(MIN_CONTEXT);
        self.context_right = self.context_right.max(MIN_CONTEXT);
        self.batch_frames = self.batch_frames.max(1);
        self
    }
    /// First sample of frame `i`.
    pub fn frame_start(&self, i: u64) -> u64 {
        mul_div(i, SAMPLE_RATE * self.fps_d, self.fps_n)
    }
    /// The frame's own step `a` (MuseTalk's `floor(i * 50 / fps)`).
    pub fn frame_step(&self, i: u64) -> u64 {
        mul_div(i, STEPS_PER_SECOND * self.fps_d, self.fps_n)
    }
    /// Frames that `samples` samples of audio cover (the last one partly).
    pub fn frames_covering(&self, samples: u64) -> u64 {
        let den = SAMPLE_RATE * self.fps_d;
        ((samples as u128 * self.fps_n as u128).div_ceil(den as u128)) as u64
    }
    /// How far past a frame's start the audio must reach before the frame is made, in
    /// samples, for the first frame of a full batch (the element's added latency).
    pub fn latency_samples(&self) -> u64 {
        self.frame_start(self.batch_frames as u64) + self.context_right.max(MIN_CONTEXT)
    }
}

fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    (a as u128 * b as u128 / c as u128) as u64
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Frame `i` is silent: no features.
    Silent(u64),
    /// Run the encoder on this window, then hand its output to [`FeatureStream::complete`].
    Encode(EncoderJob),
}

/// One encoder input: normalised log-mel of the audio from step `first_step` on.
#[derive(Debug)]
pub struct Window {
    pub first_step: u64,
    /// Steps of audio in the window (the encoder gives more when it is padded).
    pub steps: usize,
    /// Normalised log-mel, `[80, mel_frames]`.
    pub mel: Vec<f32>,
    pub mel_frames: usize,
}

/// The encoder runs for frames `[first_frame, end_frame)`: one per window (two when a
/// chunk-aligned batch crosses a 30 s boundary).
#[derive(Debug)]
pub struct EncoderJob {
    pub first_frame: u64,
    pub end_frame: u64,
    pub windows: Vec<Window>,
}

/// Counters, for the element's `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub encoder_runs: u64,
    pub speech_frames: u64,
    pub silent_frames: u64,
    pub interrupted_frames: u64,
}

/// The streaming state: held audio, the next frame to make.
pub struct FeatureStream {
    cfg: StreamConfig,
    mel: LogMel,
    /// Held samples; `samples[0]` is stream sample `base`.
    samples: Vec<f32>,
    base: u64,
    total: u64,
    next_frame: u64,
    /// Frames before this one were interrupted: silent whatever their audio.
    silent_until: u64,
    finished: bool,
    pub stats: Stats,
}

impl FeatureStream {
    pub fn new(cfg: StreamConfig) -> Self {
        Self {
            cfg: cfg.with_minimums(),
            mel: LogMel::new(),
            samples: Vec::new(),
            base: 0,
            total: 0,
            next_frame: 0,
            silent_until: 0,
            finished: false,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &StreamConfig {
        &self.cfg
    }

    /// Samples received so far.
    pub fn total_samples(&self) -> u64 {
        self.total
    }

    /// The next frame that will be made.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    pub fn push(&mut self, samples: &[f32]) {
        debug_assert!(!self.finished, "audio after finish()");
        self.samples.extend_from_slice(samples);
        self.total += samples.len() as u64;
    }

    /// Silence (a GAP, or a hole in the timestamps).
    pub fn push_silence(&mut self, n: u64) {
        self.samples.resize(self.samples.len() + n as usize, 0.0);
        self.total += n;
    }

    /// Drops pending speech: held audio becomes silence, and every frame that has started
    /// is made silent (and can be emitted at once).
    pub fn interrupt(&mut self) {
        self.samples.fill(0.0);
        self.silent_until = self.cfg.frames_covering(self.total);
    }

    /// No more audio: the remaining frames are made with silence after the end.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// End frame once finished.
    fn end_frame(&self) -> u64 {
        self.cfg.frames_covering(self.total)
    }

    fn ready(&self, i: u64) -> bool {
        if self.finished {
            return i < self.end_frame();
        }
        self.total >= self.cfg.frame_start(i + 1) + self.cfg.context_right
    }

    fn sample(&self, s: u64) -> f32 {
        if s < self.base || s >= self.total {
            0.0
        } else {
            self.samples[(s - self.base) as usize]
        }
    }

    /// Feature window of frame `i` in samples, clipped to the audio.
    fn feature_span(&self, i: u64) -> (u64, u64) {
        let a = self.cfg.frame_step(i);
        let lo = a.saturating_sub(STEPS_BEFORE) * SAMPLES_PER_STEP;
        let hi = ((a + STEPS_AFTER) * SAMPLES_PER_STEP).min(self.total);
        (lo.max(self.base), hi)
    }

    fn silent(&self, i: u64) -> bool {
        if i < self.silent_until {
            return true;
        }
        let (lo, hi) = self.feature_span(i);
        if hi <= lo {
            return true;
        }
        let s = &self.samples[(lo - self.base) as usize..(hi - self.base) as usize];
        let power = s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32;
        power < self.cfg.silence_power
    }

    /// The next thing to do, or `None` until more audio arrives.
    pub fn next_step(&mut self) -> Option<Step> {
        let i = self.next_frame;
        if self.finished && i >= self.end_frame() {
            return None;
        }
        if i < self.silent_until || (self.ready(i) && self.silent(i)) {
            self.next_frame += 1;
            if i < self.silent_until {
                self.stats.interrupted_frames += 1;
            }
            self.stats.silent_frames += 1;
            self.trim();
            return Some(Step::Silent(i));
        }
        if !self.ready(i) {
            return None;
        }
        let mut j = i + 1;
        while j < i + self.cfg.batch_frames as u64 {
            if !self.ready(j) {
                if self.finished {
                    break;
                }
                return None; // wait for a full batch
            }
            if self.silent(j) {
                break;
            }
            j += 1;
        }
        Some(Step::Encode(self.job(i, j)))
    }

    fn job(&mut self, first: u64, end: u64) -> EncoderJob {
        let c = &self.cfg;
        let need_lo = c.frame_step(first).saturating_sub(STEPS_BEFORE);
        let need_hi = c.frame_step(end - 1) + STEPS_AFTER;
        let ctx_hi = (c.frame_start(end) + c.context_right)
            .div_ceil(SAMPLES_PER_STEP)
            .max(need_hi);
        let mut spans = Vec::new();
        match c.window {
            WindowMode::Short => {
                let ctx_lo = c.frame_start(first).saturating_sub(c.context_left) / SAMPLES_PER_STEP;
                // The encoder takes at most 30 s.
                let lo = ctx_lo.min(need_lo).max(ctx_hi.saturating_sub(CHUNK_STEPS));
                spans.push((lo, ctx_hi));
            }
            WindowMode::Chunk => {
                let mut chunk = need_lo / CHUNK_STEPS;
                while chunk * CHUNK_STEPS < need_hi {
                    let lo = chunk * CHUNK_STEPS;
                    spans.push((lo, ctx_hi.min(lo + CHUNK_STEPS)));
                    chunk += 1;
                }
            }
        }
        let windows = spans
            .into_iter()
            .map(|(lo, hi)| self.window(lo, hi))
            .collect();
        EncoderJob {
            first_frame: first,
            end_frame: end,
            windows,
        }
    }

    /// The encoder input for steps `[first_step, end_step)`.
    fn window(&mut self, first_step: u64, end_step: u64) -> Window {
        let steps = (end_step - first_step) as usize;
        let audio: Vec<f32> = (first_step * SAMPLES_PER_STEP..end_step * SAMPLES_PER_STEP)
            .map(|s| self.sample(s))
            .collect();
        let mut log_mel = self.mel.log_mel_raw(&audio);
        let mut mel_frames = steps * 2;
        let pad_to = if self.cfg.pad_to_30s {
            MAX_MEL_FRAMES
        } else {
            self.cfg.min_mel_frames.min(MAX_MEL_FRAMES) & !1
        };
        if mel_frames < pad_to {
            // As if the window were followed by digital silence.
            let max = log_mel.iter().copied().fold(-10.0f32, f32::max);
            let pad = mel::silence_value(max);
            mel::normalize(&mut log_mel);
            let mut padded = vec![pad; mel::N_MELS * pad_to];
            for m in 0..mel::N_MELS {
                padded[m * pad_to..m * pad_to + mel_frames]
                    .copy_from_slice(&log_mel[m * mel_frames..(m + 1) * mel_frames]);
            }
            log_mel = padded;
            mel_frames = pad_to;
        } else {
            mel::normalize(&mut log_mel);
        }
        Window {
            first_step,
            steps,
            mel: log_mel,
            mel_frames,
        }
    }

    /// Takes the encoder's hidden states, one `[steps_out, 5, 384]` per window
    /// (`steps_out >= window.steps`), and returns the features of the job's frames, in order.
    pub fn complete(&mut self, job: &EncoderJob, hidden: &[Vec<f32>]) -> Vec<(u64, Vec<f32>)> {
        let step_len = LAYERS * DIM;
        assert_eq!(hidden.len(), job.windows.len(), "one output per window");
        for (h, w) in hidden.iter().zip(&job.windows) {
            assert!(h.len() >= w.steps * step_len, "encoder output too short");
        }
        // As MuseTalk: the steps of the audio are floor(samples / 320); later ones are zeros.
        let audio_steps = if self.finished {
            self.total / SAMPLES_PER_STEP
        } else {
            u64::MAX
        };
        let out = (job.first_frame..job.end_frame)
            .map(|i| {
                let mut feat = vec![0.0f32; FRAME_LEN];
                let a = self.cfg.frame_step(i);
                for r in 0..STEPS_PER_FRAME as u64 {
                    let Some(step) = (a + r).checked_sub(STEPS_BEFORE) else {
                        continue; // before the stream: zeros
                    };
                    if step >= audio_steps {
                        continue; // after its end: zeros
                    }
                    let Some((w, h)) = job.windows.iter().zip(hidden).find(|(w, _)| {
                        step >= w.first_step && step < w.first_step + w.steps as u64
                    }) else {
                        continue; // not in any window: cannot happen, zeros
                    };
                    let k = (step - w.first_step) as usize;
                    let dst = r as usize * step_len;
                    feat[dst..dst + step_len].copy_from_slice(&h[k * step_len..(k + 1) * step_len]);
                }
                (i, feat)
            })
            .collect();
        self.stats.encoder_runs += 1;
        self.stats.speech_frames += job.end_frame - job.first_frame;
        self.next_frame = job.end_frame;
        self.trim();
        out
    }

    /// Forgets audio no later frame can need.
    fn trim(&mut self) {
        let c = &self.cfg;
        let need_lo = c.frame_step(self.next_frame).saturating_sub(STEPS_BEFORE);
        let keep_from = match c.window {
            WindowMode::Short => (c
                .frame_start(self.next_frame)
                .saturating_sub(c.context_left)
                / SAMPLES_PER_STEP)
                .min(need_lo),
            WindowMode::Chunk => need_lo / CHUNK_STEPS * CHUNK_STEPS,
        } * SAMPLES_PER_STEP;
        if keep_from > self.base + 16_000 {
            let drop = ((keep_from - self.base) as usize).min(self.samples.len());
            self.samples.drain(..drop);
            self.base += drop as u64;
        }
    }
}

/// MuseTalk's sinusoidal positional encoding (d_model 384) added to a `[rows, 384]` feature:
/// `pe[p, 2k] = sin(p / 10000^(2k/384))`, `pe[p, 2k+1] = cos(...)`.
pub fn add_positional_encoding(feature: &mut [f32]) {
    for (p, row) in feature.chunks_exact_mut(DIM).enumerate() {
        for k in 0..DIM / 2 {
            let div = (-((2 * k) as f64) * (10000f64.ln() / DIM as f64)).exp();
            let angle = p as f64 * div;
            row[2 * k] += angle.sin() as f32;
            row[2 * k + 1] += angle.cos() as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake encoder: hidden state of step s, layer l, dim d = s*1000 + l*10 + d%10 (one
    /// step per two mel frames, like whisper), s counted from the window's start (its
    /// position) plus 100_000 * the window's chunk, so tests see which run a step came from.
    fn fake_window(w: &Window) -> Vec<f32> {
        let steps = w.mel_frames / 2;
        let mut h = vec![0.0; steps * LAYERS * DIM];
        for k in 0..steps {
            for l in 0..LAYERS {
                for d in 0..DIM {
                    h[(k * LAYERS + l) * DIM + d] =
                        ((w.first_step + k as u64) * 1000 + l as u64 * 10 + (d % 10) as u64) as f32;
                }
            }
        }
        h
    }

    fn fake_encode(job: &EncoderJob) -> Vec<Vec<f32>> {
        job.windows.iter().map(fake_window).collect()
    }

    fn short() -> StreamConfig {
        StreamConfig {
            window: WindowMode::Short,
            ..Default::default()
        }
    }

    fn run(stream: &mut FeatureStream, out: &mut Vec<(u64, Option<Vec<f32>>)>) {
        while let Some(step) = stream.next_step() {
            match step {
                Step::Silent(i) => out.push((i, None)),
                Step::Encode(job) => {
                    let h = fake_encode(&job);
                    for (i, f) in stream.complete(&job, &h) {
                        out.push((i, Some(f)));
                    }
                }
            }
        }
    }

    fn loud(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| if i % 2 == 0 { 0.5 } else { -0.5 })
            .collect()
    }

    #[test]
    fn frames_take_musetalk_steps_with_zero_padding_at_the_start() {
        let mut s = FeatureStream::new(StreamConfig::default());
        s.push(&loud(16_000));
        s.finish();
        let mut out = Vec::new();
        run(&mut s, &mut out);
        assert_eq!(out.len(), 25);
        assert!(out.iter().enumerate().all(|(k, (i, _))| *i == k as u64));
        // Frame 0: steps -4..6: four zero rows-groups, then steps 0..5.
        let f0 = out[0].1.as_ref().unwrap();
        assert!(f0[..4 * LAYERS * DIM].iter().all(|&v| v == 0.0));
        let at = |f: &Vec<f32>, r: usize, l: usize, d: usize| f[(r * LAYERS + l) * DIM + d];
        assert_eq!(at(f0, 4, 0, 0), 0.0 * 1000.0);
        assert_eq!(at(f0, 5, 3, 7), 1000.0 + 30.0 + 7.0);
        // Frame 10: a = 20, steps 16..26.
        let f10 = out[10].1.as_ref().unwrap();
        for r in 0..10 {
            assert_eq!(at(f10, r, 2, 3), ((16 + r) * 1000 + 20 + 3) as f32);
        }
        // Last frame 24: a = 48, steps 44..54; steps >= 50 are past the end: zeros.
        // (MuseTalk keeps floor(samples / 320) steps.)
        let f24 = out[24].1.as_ref().unwrap();
        assert_eq!(at(f24, 5, 0, 0), 49_000.0);
        assert!(f24[6 * LAYERS * DIM..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn silence_costs_no_encoder_run() {
        let mut s = FeatureStream::new(StreamConfig::default());
        s.push_silence(32_000);
        s.push(&vec![1e-4; 16_000]); // -80 dB: below -50 dB
        s.finish();
        let mut out = Vec::new();
        run(&mut s, &mut out);
        assert_eq!(out.len(), 75);
        assert!(out.iter().all(|(_, f)| f.is_none()));
        assert_eq!(s.stats.encoder_runs, 0);
        assert_eq!(s.stats.silent_frames, 75);
    }

    #[test]
    fn speech_between_silences_is_batched() {
        let cfg = StreamConfig {
            batch_frames: 4,
            ..Default::default()
        };
        let mut s = FeatureStream::new(cfg);
        s.push_silence(16_000); // frames 0..25 silent (their windows end before 1 s)
        s.push(&loud(640 * 10)); // 10 frames of speech
        s.push_silence(16_000);
        s.finish();
        let mut out = Vec::new();
        run(&mut s, &mut out);
        let speech: Vec<u64> = out
            .iter()
            .filter(|(_, f)| f.is_some())
            .map(|(i, _)| *i)
            .collect();
        // Speech is samples [16000, 22400); frame i's window is [320(2i-4), 320(2i+6)):
        // frames 23..=36 hear it.
        assert_eq!(speech, (23..37).collect::<Vec<_>>());
        assert_eq!(s.stats.encoder_runs, 4); // 14 frames in batches of at most 4
        assert_eq!(out.len(), 60); // 38400 samples / 640
    }

    #[test]
    fn frames_wait_for_right_context_and_batch() {
        let cfg = short(); // batch 8, right context 200 ms
        let mut s = FeatureStream::new(cfg.clone());
        // Frame 0 needs audio up to frame 8's start + 200 ms = 8*640 + 3200 samples.
        let need = cfg.latency_samples() as usize;
        assert_eq!(need, 8 * 640 + 3200);
        s.push(&loud(need - 1));
        assert!(s.next_step().is_none());
        s.push(&loud(1));
        match s.next_step() {
            Some(Step::Encode(job)) => {
                assert_eq!((job.first_frame, job.end_frame), (0, 8));
                // Window: from the stream start to frame 8 + 200 ms, in steps.
                let w = &job.windows[0];
                assert_eq!(job.windows.len(), 1);
                assert_eq!(w.first_step, 0);
                assert_eq!(w.steps as u64, (8 * 640 + 3200) / 320);
                assert_eq!(w.mel_frames, w.steps * 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn windows_include_left_context() {
        let mut s = FeatureStream::new(StreamConfig {
            batch_frames: 2,
            ..short()
        });
        s.push(&loud(64_000));
        let mut jobs = Vec::new();
        while let Some(Step::Encode(job)) = s.next_step() {
            let h = fake_encode(&job);
            s.complete(&job, &h);
            jobs.push((
                job.first_frame,
                job.windows[0].first_step,
                job.windows[0].steps,
            ));
        }
        // Frame 20 starts at step 40; 200 ms left context = 10 steps before.
        let &(_, first_step, steps) = jobs.iter().find(|j| j.0 == 20).unwrap();
        assert_eq!(first_step, 30);
        // 2 frames (4 steps) + 10 steps of right context.
        assert_eq!(steps, 10 + 4 + 10);
    }

    #[test]
    fn padded_mode_gives_30_seconds_of_mel() {
        let mut s = FeatureStream::new(StreamConfig {
            pad_to_30s: true,
            ..Default::default()
        });
        s.push(&loud(16_000));
        s.finish();
        let Some(Step::Encode(job)) = s.next_step() else {
            panic!()
        };
        assert_eq!(job.windows[0].mel_frames, MAX_MEL_FRAMES);
        assert_eq!(job.windows[0].mel.len(), 80 * MAX_MEL_FRAMES);
        let h = fake_encode(&job);
        assert_eq!(s.complete(&job, &h).len(), 8);
    }

    #[test]
    fn interrupt_silences_started_frames_at_once() {
        let mut s = FeatureStream::new(StreamConfig::default());
        s.push(&loud(640 * 5 + 100)); // frames 0..=5 have started, none is ready
        assert!(s.next_step().is_none());
        s.interrupt();
        let mut out = Vec::new();
        run(&mut s, &mut out);
        assert_eq!(
            out.iter()
                .map(|(i, f)| (*i, f.is_some()))
                .collect::<Vec<_>>(),
            (0..6).map(|i| (i, false)).collect::<Vec<_>>()
        );
        assert_eq!(s.stats.interrupted_frames, 6);
        // Silence keeps coming: the following frames are silent too.
        s.push_silence(16_000);
        s.finish();
        run(&mut s, &mut out);
        assert!(out.iter().all(|(_, f)| f.is_none()));
        assert_eq!(s.stats.encoder_runs, 0);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut s = FeatureStream::new(short());
        let mut out = Vec::new();
        for _ in 0..600 {
            s.push(&loud(1600));
            run(&mut s, &mut out);
            out.clear();
        }
        assert!(
            s.samples.len() < 3 * 16_000,
            "{} samples held",
            s.samples.len()
        );
        assert_eq!(
            s.next_frame() + 8 + 5,
            s.cfg.frames_covering(s.total_samples()) + 1
        );
    }

    #[test]
    fn chunk_windows_start_at_the_chunk_and_split_at_its_end() {
        let mut s = FeatureStream::new(StreamConfig {
            batch_frames: 10,
            window: WindowMode::Chunk,
            ..Default::default()
        });
        let mut windows = Vec::new();
        let mut out = Vec::new();
        // 32 s of sound, in 100 ms buffers.
        for _ in 0..320 {
            s.push(&loud(1600));
            while let Some(step) = s.next_step() {
                let Step::Encode(job) = step else { panic!() };
                let h = fake_encode(&job);
                for w in &job.windows {
                    windows.push((job.first_frame, w.first_step, w.steps));
                }
                out.extend(s.complete(&job, &h));
            }
        }
        // Batch of frames 20..30 (steps 36..64): the window starts at 0 and reaches 10 steps
        // (200 ms) past frame 30's start.
        assert!(windows.contains(&(20, 0, 70)), "{windows:?}");
        // Frames 740..750 need steps 1476..1504: the rest of chunk 0 (all of it), and chunk 1
        // from its start to 200 ms past frame 750.
        let at_740: Vec<_> = windows.iter().filter(|w| w.0 == 740).collect();
        assert_eq!(at_740, [&(740, 0, 1500), &(740, 1500, 10)]);
        // Frame 748 (a = 1496): steps 1492..1500 from chunk 0, 1500..1502 from chunk 1.
        let f = &out.iter().find(|(i, _)| *i == 748).unwrap().1;
        let step_of = |r: usize| (f[r * LAYERS * DIM] / 1000.0) as u64;
        assert_eq!(
            (0..10).map(step_of).collect::<Vec<_>>(),
            (1492..1502).collect::<Vec<_>>()
        );
        // Audio of the running chunk is kept, not more.
        assert!(
            s.samples.len() <= (2 * 16_000) + 1600 * 30,
            "{}",
            s.samples.len()
        );
    }

    #[test]
    fn chunk_window_padded_to_30_s() {
        let mut s = FeatureStream::new(StreamConfig {
            pad_to_30s: true,
            window: WindowMode::Chunk,
            ..Default::default()
        });
        s.push(&loud(32_000 * 16));
        let Some(Step::Encode(job)) = s.next_step() else {
            panic!()
        };
        assert_eq!(job.windows.len(), 1);
        assert_eq!(job.windows[0].mel_frames, MAX_MEL_FRAMES);
    }

    #[test]
    fn short_chunk_windows_are_padded_to_the_minimum() {
        let mut s = FeatureStream::new(StreamConfig {
            min_mel_frames: 1000,
            ..Default::default()
        });
        s.push(&loud(16_000));
        let Some(Step::Encode(job)) = s.next_step() else {
            panic!()
        };
        let w = &job.windows[0];
        assert_eq!((w.mel_frames, w.mel.len()), (1000, 80 * 1000));
        // The audio part first, then the same silence value in every padded frame.
        assert_eq!(w.steps, 26); // 8 frames + 200 ms
        let row = &w.mel[79 * 1000..80 * 1000]; // the loud test tone is near 8 kHz
        assert!(row[52..].windows(2).all(|p| p[0] == p[1]));
        assert_ne!(row[0], row[999]);
        // Longer windows are left as they are.
        s.push(&loud(16_000 * 20));
        let mut longest = 0;
        while let Some(Step::Encode(job)) = s.next_step() {
            longest = longest.max(job.windows[0].mel_frames);
            let h = fake_encode(&job);
            s.complete(&job, &h);
        }
        assert!(longest > 1000 && longest < MAX_MEL_FRAMES, "{longest}");
    }

    #[test]
    fn positional_encoding_matches_musetalk_formula() {
        let mut f = vec![0.0f32; ROWS * DIM];
        add_positional_encoding(&mut f);
        assert_eq!(f[0], 0.0); // sin(0)
        assert_eq!(f[1], 1.0); // cos(0)
        // Row 3, dims 10/11: angle = 3 / 10000^(10/384).
        let angle = 3.0 / 10000f64.powf(10.0 / 384.0);
        assert!((f[3 * DIM + 10] as f64 - angle.sin()).abs() < 1e-6);
        assert!((f[3 * DIM + 11] as f64 - angle.cos()).abs() < 1e-6);
    }

    #[test]
    fn other_frame_rates_use_musetalk_step_index() {
        let cfg = StreamConfig {
            fps_n: 30,
            fps_d: 1,
            ..Default::default()
        };
        // floor(i * 50 / 30)
        assert_eq!(
            (0..7).map(|i| cfg.frame_step(i)).collect::<Vec<_>>(),
            [0, 1, 3, 5, 6, 8, 10]
        );
        assert_eq!(cfg.frames_covering(16_000), 30);
        assert_eq!(cfg.frames_covering(16_001), 31);
    }
}
