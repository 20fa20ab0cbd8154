//! Which audio to transcribe: utterances between VAD start and end, or, without VAD, bounded
//! windows; utterances longer than whisper's 30 s are cut into pieces at the quietest moment
//! near the limit.
//!
//! Positions are sample counts at 16 kHz on the running-time axis (running time x 16000), so
//! that VAD events (which carry running times) and audio line up. VAD events may refer to
//! audio that has already passed (a start is decided after the speech began): the collector
//! keeps [`HISTORY`] samples of the audio before an utterance. An end may also lie ahead of
//! the audio received; the utterance is then closed when the audio reaches it.
//!
//! Arrival (jitter, holes, jumps, GAP, segments and EOS) follows the project's one audio
//! intake ([`crate::audio_intake`]), fed with running times: a hole is silence, a jump back
//! or far ahead ends the grid, and what was open is transcribed where the audio stopped.

use crate::audio_intake::{AudioIntake, FrameGrid, Input};

/// Nanoseconds per sample at 16 kHz (exact).
pub const NS_PER_SAMPLE: u64 = 62_500;

/// Audio kept while no utterance is open (VAD mode), so that a start in the past is honoured.
pub const HISTORY: usize = 16_000;
/// How far back from the limit a long utterance may be cut (at its quietest 100 ms).
pub const SPLIT_SEARCH: usize = 5 * 16_000;
const SPLIT_FRAME: usize = 1_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bounded windows, until the first VAD event.
    Auto,
    /// Only between VAD start and end.
    Vad,
    /// Bounded windows; VAD events are ignored.
    Windows,
}

/// Audio to transcribe.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub samples: Vec<f32>,
    /// Position of the first sample.
    pub start: u64,
    /// Position after the last sample.
    pub end: u64,
    /// False for a piece of an utterance that goes on.
    pub is_final: bool,
}

#[derive(Debug, Clone)]
pub struct Collector {
    mode: Mode,
    /// Longest piece transcribed at once (samples, at most 30 s).
    max_len: usize,
    /// Samples from position `base` on.
    buf: Vec<f32>,
    base: u64,
    anchored: bool,
    /// VAD mode: the open utterance's start, and an end ahead of the audio.
    open: Option<u64>,
    pending_end: Option<u64>,
    vad_seen: bool,
    /// Arrival of the audio, on the running-time axis.
    intake: AudioIntake,
}

impl Collector {
    pub fn new(mode: Mode, max_len: usize) -> Self {
        Self {
            mode,
            max_len: max_len.max(SPLIT_FRAME),
            buf: Vec::new(),
            base: 0,
            anchored: false,
            open: None,
            pending_end: None,
            vad_seen: false,
            intake: AudioIntake::new(FrameGrid::from_samples(16_000, 1)),
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.mode, self.max_len);
    }

    fn uses_vad(&self) -> bool {
        match self.mode {
            Mode::Vad => true,
            Mode::Windows => false,
            Mode::Auto => self.vad_seen,
        }
    }

    /// Position after the last sample received.
    pub fn position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Whether an utterance is open (VAD mode).
    pub fn in_utterance(&self) -> bool {
        self.open.is_some()
    }

    fn drop_before(&mut self, pos: u64) {
        let n = (pos.saturating_sub(self.base) as usize).min(self.buf.len());
        self.buf.drain(..n);
        self.base += n as u64;
    }

    fn take(&mut self, end: u64, is_final: bool) -> Job {
        let n = (end.saturating_sub(self.base) as usize).min(self.buf.len());
        let samples: Vec<f32> = self.buf.drain(..n).collect();
        let job = Job {
            samples,
            start: self.base,
            end: self.base + n as u64,
            is_final,
        };
        self.base += n as u64;
        job
    }

    /// Audio whose first sample plays at running time `running_time` (ns; `None`: right
    /// after the audio before), placed by the audio intake's rules.
    pub fn push(&mut self, running_time: Option<u64>, audio: Input) -> Vec<Job> {
        let mut jobs = Vec::new();
        let new_grid = !self.intake.is_anchored();
        let arrival = self.intake.push(running_time, audio);
        if arrival.drain.is_some() {
            // a jump: what was open ends where the audio stopped
            jobs.extend(self.close());
        }
        if new_grid || arrival.drain.is_some() {
            self.start_grid(self.intake.timeline().base / NS_PER_SAMPLE);
        }
        let silence = arrival.fill
            + match audio {
                Input::Gap(n) => n,
                Input::Samples(_) => 0,
            };
        self.buf.resize(self.buf.len() + silence as usize, 0.0);
        if let Input::Samples(samples) = audio {
            self.buf.extend_from_slice(samples);
        }
        jobs.extend(self.cut());
        jobs
    }

    /// The audio of a new grid starts at `pos`. Audio kept from before is already closed; an
    /// utterance opened before any audio came stays open.
    fn start_grid(&mut self, pos: u64) {
        self.buf.clear();
        self.base = pos;
        self.anchored = true;
    }

    /// The jobs the audio now allows.
    fn cut(&mut self) -> Vec<Job> {
        let mut jobs = Vec::new();
        if !self.uses_vad() {
            while self.buf.len() >= self.max_len {
                let end = self.base + split_point(&self.buf, self.max_len) as u64;
                jobs.push(self.take(end, true));
            }
            return jobs;
        }
        if let Some(start) = self.open {
            self.drop_before(start);
            if let Some(end) = self.pending_end
                && self.position() >= end
            {
                self.open = None;
                self.pending_end = None;
                jobs.push(self.take(end, true));
            }
        }
        if self.open.is_some() {
            while self.buf.len() >= self.max_len {
                let end = self.base + split_point(&self.buf, self.max_len) as u64;
                jobs.push(self.take(end, false));
                self.open = Some(self.base);
            }
        } else if self.buf.len() > HISTORY {
            let keep_from = self.position() - HISTORY as u64;
            self.drop_before(keep_from);
        }
        jobs
    }

    /// VAD: speech starts at `pos`.
    pub fn vad_start(&mut self, pos: u64) -> Vec<Job> {
        if self.mode == Mode::Windows {
            return Vec::new();
        }
        let mut jobs = Vec::new();
        if !self.vad_seen {
            // from windows to VAD: what came before was not speech
            self.vad_seen = true;
        }
        if self.open.is_some() {
            // a start without an end: close the open one where this starts
            self.pending_end = Some(pos);
            jobs.extend(self.cut());
        }
        if !self.anchored {
            self.anchored = true;
            self.base = pos;
        }
        self.open = Some(pos.max(self.base));
        self.pending_end = None;
        jobs.extend(self.cut());
        jobs
    }

    /// VAD: speech ended before `pos`.
    pub fn vad_end(&mut self, pos: u64) -> Vec<Job> {
        if self.mode == Mode::Windows {
            return Vec::new();
        }
        self.vad_seen = true;
        if self.open.is_none() {
            return Vec::new();
        }
        self.pending_end = Some(pos);
        self.cut()
    }

    /// End of stream, or a new segment (the intake's rule: both end the grid): what is open
    /// or pending is transcribed as it is; the next audio starts a new grid.
    pub fn finish(&mut self) -> Vec<Job> {
        self.intake.eos();
        self.close()
    }

    /// What is open or pending, transcribed as it is.
    fn close(&mut self) -> Vec<Job> {
        let mut jobs = Vec::new();
        if self.uses_vad() {
            if self.open.take().is_some() {
                let end = self.pending_end.take().unwrap_or(self.position());
                jobs.push(self.take(end, true));
            }
            self.buf.clear();
        } else if !self.buf.is_empty() {
            let end = self.position();
            jobs.push(self.take(end, true));
        }
        jobs.retain(|j| !j.samples.is_empty());
        jobs
    }
}

/// Where to cut a piece of at most `max_len` samples off the front of `buf`: the middle of
/// its quietest 100 ms in the last [`SPLIT_SEARCH`] samples before the limit.
pub fn split_point(buf: &[f32], max_len: usize) -> usize {
    let max_len = max_len.min(buf.len());
    let from = max_len.saturating_sub(SPLIT_SEARCH);
    let mut best = (max_len, f64::INFINITY);
    let mut at = max_len;
    while at >= from + SPLIT_FRAME && at >= SPLIT_FRAME {
        let frame = &buf[at - SPLIT_FRAME..at];
        let energy: f64 = frame.iter().map(|&x| (x as f64) * (x as f64)).sum();
        if energy < best.1 {
            best = (at - SPLIT_FRAME / 2, energy);
        }
        at -= SPLIT_FRAME;
    }
    best.0.max(1)
}

/// RMS level of audio in dBFS (-inf for digital silence).
pub fn level_db(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let power: f64 = samples
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        / samples.len() as f64;
    10.0 * power.log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, v: f32) -> Vec<f32> {
        vec![v; n]
    }

    /// The running time of sample position `pos`.
    fn at(pos: u64) -> Option<u64> {
        Some(pos * NS_PER_SAMPLE)
    }

    fn push(c: &mut Collector, pos: u64, samples: &[f32]) -> Vec<Job> {
        c.push(at(pos), Input::Samples(samples))
    }

    #[test]
    fn jittered_timestamps_keep_every_sample() {
        let mut c = Collector::new(Mode::Windows, 16_000);
        // 10 ms buffers stamped up to 5 ms early or late, as a live network source does.
        let (mut pos, mut out) = (0u64, Vec::new());
        for i in 0..200u64 {
            let jitter = [0i64, 80, -80, 40, -40][(i % 5) as usize];
            let stamped = (pos as i64 + jitter).max(0) as u64;
            let samples: Vec<f32> = (0..160).map(|k| (pos + k) as f32).collect();
            for j in push(&mut c, stamped, &samples) {
                out.extend(j.samples);
            }
            pos += 160;
        }
        for j in c.finish() {
            out.extend(j.samples);
        }
        let want: Vec<f32> = (0..pos).map(|k| k as f32).collect();
        assert_eq!(out.len(), want.len());
        assert!(out == want, "samples were dropped, repeated or zeroed");
        // A real hole is still filled with silence; audio without timestamps follows on.
        let mut c = Collector::new(Mode::Windows, 16_000);
        push(&mut c, 0, &[1.0; 1600]);
        let jobs = push(&mut c, 1600 + 800, &[1.0; 8000]);
        assert!(jobs.is_empty());
        let mut jobs = c.push(None, Input::Samples(&[1.0; 8000]));
        jobs.extend(c.finish());
        let out: Vec<f32> = jobs.into_iter().flat_map(|j| j.samples).collect();
        let mut want = vec![1.0; 1600 + 800 + 16_000];
        want[1600..2400].fill(0.0);
        assert!(
            out == want,
            "the hole is not silence, or audio went missing"
        );
    }

    #[test]
    fn vad_utterance_with_a_start_in_the_past_and_an_end_ahead() {
        let mut c = Collector::new(Mode::Auto, 30 * 16_000);
        assert!(push(&mut c, 1000, &ramp(8000, 0.1)).is_empty());
        // the start lies 2000 samples back
        assert!(c.vad_start(7000).is_empty());
        assert!(c.in_utterance());
        // the end lies ahead of the audio: nothing yet
        assert!(c.vad_end(12_000).is_empty());
        let jobs = push(&mut c, 9000, &ramp(4000, 0.2));
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!((j.start, j.end, j.is_final), (7000, 12_000, true));
        assert_eq!(j.samples.len(), 5000);
        assert_eq!(j.samples[1999], 0.1);
        assert_eq!(j.samples[2000], 0.2);
        // after the end, only history is kept and nothing is transcribed
        assert!(push(&mut c, 13_000, &ramp(40_000, 0.0)).is_empty());
        assert!(c.finish().is_empty());
    }

    #[test]
    fn windows_until_vad_appears() {
        let mut c = Collector::new(Mode::Auto, 16_000);
        let jobs = push(&mut c, 0, &ramp(20_000, 0.3));
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (jobs[0].start, jobs[0].end),
            (0, jobs[0].samples.len() as u64)
        );
        assert!(jobs[0].end <= 16_000);
        // the first VAD event switches to VAD mode: the rest is not an utterance
        assert!(c.vad_end(20_000).is_empty());
        assert!(push(&mut c, 20_000, &ramp(40_000, 0.3)).is_empty());
        assert!(c.finish().is_empty());
        // windows mode ignores VAD and gives the tail at the end
        let mut c = Collector::new(Mode::Windows, 16_000);
        assert!(c.vad_start(0).is_empty());
        assert!(push(&mut c, 0, &ramp(1000, 0.3)).is_empty());
        let jobs = c.finish();
        assert_eq!((jobs[0].start, jobs[0].end), (0, 1000));
    }

    #[test]
    fn long_utterances_are_cut_at_the_quietest_moment() {
        let max = 30 * 16_000;
        let mut audio = ramp(40 * 16_000, 0.5);
        // a pause of 100 ms around 27 s
        for x in &mut audio[27 * 16_000..27 * 16_000 + 1_600] {
            *x = 0.0;
        }
        let cut = split_point(&audio, max);
        assert!((27 * 16_000..=27 * 16_000 + 1_600).contains(&cut), "{cut}");
        let mut c = Collector::new(Mode::Vad, max);
        c.vad_start(0);
        let jobs = push(&mut c, 0, &audio);
        assert_eq!(jobs.len(), 1);
        assert!(!jobs[0].is_final);
        assert_eq!(jobs[0].end, cut as u64);
        let jobs = c.vad_end(audio.len() as u64);
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].is_final);
        assert_eq!(
            (jobs[0].start, jobs[0].end),
            (cut as u64, audio.len() as u64)
        );
    }

    #[test]
    fn gap_fills_holes_and_jumps_close_the_utterance() {
        let mut c = Collector::new(Mode::Vad, 30 * 16_000);
        push(&mut c, 0, &ramp(1000, 0.1));
        c.vad_start(0);
        c.push(at(1000), Input::Gap(500));
        // a 500-sample hole in the timestamps becomes silence
        push(&mut c, 2000, &ramp(100, 0.1));
        assert_eq!(c.position(), 2100);
        // a jump back closes what was open
        let jobs = push(&mut c, 10, &ramp(100, 0.1));
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].start, jobs[0].end), (0, 2100));
        assert!(jobs[0].samples[1200..2000].iter().all(|&x| x == 0.0));
        assert!(!c.in_utterance());
        assert_eq!(c.position(), 110);
    }

    #[test]
    fn segments_and_eos_end_the_grid_and_a_start_may_come_first() {
        let mut c = Collector::new(Mode::Vad, 30 * 16_000);
        c.vad_start(0);
        push(&mut c, 0, &ramp(1600, 0.2));
        let jobs = c.finish();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].start, jobs[0].end), (0, 1600));
        // the next audio anchors a new grid, even a little behind where the old one ended
        push(&mut c, 1500, &ramp(100, 0.1));
        assert_eq!(c.position(), 1600);
        // a start decided before its audio arrived is kept
        let mut c = Collector::new(Mode::Vad, 30 * 16_000);
        assert!(c.vad_start(800).is_empty());
        assert!(push(&mut c, 0, &ramp(1600, 0.3)).is_empty());
        let jobs = c.vad_end(1600);
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].start, jobs[0].end), (800, 1600));
    }

    #[test]
    fn level() {
        assert_eq!(level_db(&[0.0; 10]), f64::NEG_INFINITY);
        assert!((level_db(&[0.1; 10]) + 20.0).abs() < 1e-5);
    }
}
