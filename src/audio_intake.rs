//! One audio intake for every element that turns audio into per-frame work (whisperfeat,
//! lipwarp, silerovad's windows, whisperasr's utterances), free of GStreamer: arrival
//! matching, GAP decoding, SEGMENT and EOS rules, timestamps, and one frame-duration function.
//!
//! Times are nanoseconds (`u64`), sample counts are per stream at `rate`. A stream is a
//! *grid*: sample 0 sits at `base`, frame `i` covers samples
//! `[frame_start(i), frame_start(i + 1))` and lasts `frame_duration(i)`; any frame rate
//! works (25 fps video frames, 32 ms VAD windows as 125/4 "fps" or [`FrameGrid::from_samples`]).
//!
//! The rules, the same in every element:
//! - **Arrival.** The first buffer of a grid anchors sample 0 at its PTS, else at the
//!   segment start, else at 0. After that the sample count rules: a buffer without PTS
//!   continues from it, and a PTS only matters when it disagrees by more than [`JITTER`]:
//!   a forward hole up to [`MAX_FILL`] is filled with silence, anything else (a jump back,
//!   or further ahead) drains the grid and anchors a new one at that PTS.
//! - **GAP.** A GAP buffer is silence: its sample count, or for an empty one its duration.
//! - **SEGMENT.** A new segment drains the grid (below); the next buffer anchors a new one
//!   (its PTS, else the new segment's start). Frame numbers start again at 0.
//! - **EOS.** Drains the grid, like a segment.
//! - **Drain.** Every frame that has received any audio comes out: the last, partial one
//!   padded with silence to its full length, so no audio is lost and a frame's duration
//!   never changes. Frame 0 of a grid is the discontinuity.

use std::ops::Range;

pub const NSEC: u64 = 1_000_000_000;
/// Timestamp disagreements up to this much are jitter, not holes (20 ms).
pub const JITTER: u64 = 20_000_000;
/// The largest forward hole filled with silence; further jumps start a new grid (10 s).
pub const MAX_FILL: u64 = 10 * NSEC;

fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    (a as u128 * b as u128 / c as u128) as u64
}

/// Samples at `rate` cut into frames at `fps_n / fps_d` per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameGrid {
    pub rate: u64,
    pub fps_n: u64,
    pub fps_d: u64,
}

impl FrameGrid {
    pub fn new(rate: u64, fps_n: u64, fps_d: u64) -> Self {
        assert!(rate > 0 && fps_n > 0 && fps_d > 0, "empty frame grid");
        Self { rate, fps_n, fps_d }
    }

    /// Frames of exactly `samples` samples (e.g. 512 at 16 kHz: 32 ms VAD windows).
    pub fn from_samples(rate: u64, samples: u64) -> Self {
        Self::new(rate, rate, samples)
    }

    /// First sample of frame `i`.
    pub fn frame_start(&self, i: u64) -> u64 {
        mul_div(i, self.rate * self.fps_d, self.fps_n)
    }

    /// Samples of frame `i` (frames of a non-integer sample length alternate).
    pub fn frame_len(&self, i: u64) -> usize {
        (self.frame_start(i + 1) - self.frame_start(i)) as usize
    }

    /// Samples of frame `i`, as a range of the grid's samples.
    pub fn frame_samples(&self, i: u64) -> Range<u64> {
        self.frame_start(i)..self.frame_start(i + 1)
    }

    /// Time of frame `i` from the grid's start.
    pub fn frame_offset(&self, i: u64) -> u64 {
        mul_div(i, self.fps_d * NSEC, self.fps_n)
    }

    /// The frame-duration function: `frame_offset(i + 1) - frame_offset(i)`, so that
    /// consecutive frames tile time exactly, over hours.
    pub fn frame_duration(&self, i: u64) -> u64 {
        self.frame_offset(i + 1) - self.frame_offset(i)
    }

    /// Frames that `samples` samples touch (the last one possibly partly).
    pub fn frames_covering(&self, samples: u64) -> u64 {
        (samples as u128 * self.fps_n as u128).div_ceil((self.rate * self.fps_d) as u128) as u64
    }

    /// Time of sample `s` from the grid's start.
    pub fn sample_offset(&self, s: u64) -> u64 {
        mul_div(s, NSEC, self.rate)
    }

    /// Samples in `ns` nanoseconds (rounded down).
    pub fn samples_in(&self, ns: u64) -> u64 {
        mul_div(ns, self.rate, NSEC)
    }
}

/// A frame grid placed in time: what stamps the frames of one grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub grid: FrameGrid,
    /// Time of sample 0.
    pub base: u64,
}

impl Timeline {
    pub fn frame_pts(&self, i: u64) -> u64 {
        self.base + self.grid.frame_offset(i)
    }
    pub fn frame_duration(&self, i: u64) -> u64 {
        self.grid.frame_duration(i)
    }
    pub fn sample_pts(&self, s: u64) -> u64 {
        self.base + self.grid.sample_offset(s)
    }
}

/// The content of one input buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input<'a> {
    Samples(&'a [f32]),
    /// This many samples of silence (a GAP buffer).
    Gap(u64),
}

impl Input<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Input::Samples(s) => s.len() as u64,
            Input::Gap(n) => *n,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a consumer does with one buffer, in this order: drain the previous grid (stamping
/// with the timeline given), insert `fill` samples of silence, then take `audio`.
#[derive(Debug, Clone, PartialEq)]
pub struct Intake<'a> {
    pub drain: Option<Timeline>,
    pub fill: u64,
    pub audio: Input<'a>,
}

/// Arrival, anchoring and timestamps of one audio stream (see the module rules). Consumers
/// that cut frames themselves (windows with context) use this; [`FrameCutter`] adds the
/// frames for the others.
#[derive(Debug, Clone)]
pub struct AudioIntake {
    grid: FrameGrid,
    base: Option<u64>,
    segment_start: Option<u64>,
    received: u64,
}

impl AudioIntake {
    pub fn new(grid: FrameGrid) -> Self {
        Self {
            grid,
            base: None,
            segment_start: None,
            received: 0,
        }
    }

    pub fn grid(&self) -> FrameGrid {
        self.grid
    }

    /// Samples of the current grid so far (filled silence included).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether a grid is running (a buffer came since the last drain).
    pub fn is_anchored(&self) -> bool {
        self.base.is_some()
    }

    /// The current grid in time (before the first buffer: at the segment start, else 0).
    pub fn timeline(&self) -> Timeline {
        Timeline {
            grid: self.grid,
            base: self.base.or(self.segment_start).unwrap_or(0),
        }
    }

    /// Ends the grid: returns the timeline to stamp its remaining frames with, if it had
    /// any audio.
    fn end_grid(&mut self) -> Option<Timeline> {
        let tl = self.timeline();
        let had = self.base.is_some() && self.received > 0;
        self.base = None;
        self.received = 0;
        had.then_some(tl)
    }

    /// A buffer with `pts` (ns) arrives.
    pub fn push<'a>(&mut self, pts: Option<u64>, audio: Input<'a>) -> Intake<'a> {
        let mut intake = Intake {
            drain: None,
            fill: 0,
            audio,
        };
        match (self.base, pts) {
            (None, _) => self.base = Some(pts.or(self.segment_start).unwrap_or(0)),
            (Some(_), None) => {}
            (Some(base), Some(pts)) => {
                let expected = base + self.grid.sample_offset(self.received);
                if pts > expected + JITTER && pts - expected <= MAX_FILL {
                    intake.fill = self.grid.samples_in(pts - expected);
                } else if pts + JITTER < expected || pts > expected + MAX_FILL {
                    intake.drain = self.end_grid();
                    self.base = Some(pts);
                }
            }
        }
        self.received += intake.fill + audio.len();
        intake
    }

    /// A new segment starting at `start` (ns): drain, then re-anchor (see the module rules).
    pub fn segment(&mut self, start: Option<u64>) -> Option<Timeline> {
        let drain = self.end_grid();
        self.segment_start = start;
        drain
    }

    /// End of stream: drain.
    pub fn eos(&mut self) -> Option<Timeline> {
        self.end_grid()
    }

    /// Back to the state before the first buffer (flush), keeping the segment.
    pub fn reset(&mut self) {
        self.base = None;
        self.received = 0;
    }
}

/// One frame of audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Number in its grid; frame 0 starts a grid (a discontinuity).
    pub index: u64,
    pub pts: u64,
    pub duration: u64,
    /// Its samples in the grid.
    pub range: Range<u64>,
    /// `range.len()` samples; silence where GAP, a hole or an interruption was.
    pub samples: Vec<f32>,
    /// Samples that came in (less than `samples.len()` only for a drained, padded frame).
    pub received: usize,
    /// No sample of the frame was real audio (GAP, filled holes, padding, interruption).
    pub gap: bool,
}

impl Frame {
    pub fn is_discont(&self) -> bool {
        self.index == 0
    }
}

/// [`AudioIntake`] plus frames: samples in, whole frames out.
#[derive(Debug, Clone)]
pub struct FrameCutter {
    intake: AudioIntake,
    /// Frame being filled.
    next: u64,
    pending: Vec<f32>,
    pending_audio: bool,
}

impl FrameCutter {
    pub fn new(grid: FrameGrid) -> Self {
        Self {
            intake: AudioIntake::new(grid),
            next: 0,
            pending: Vec::new(),
            pending_audio: false,
        }
    }

    pub fn intake(&self) -> &AudioIntake {
        &self.intake
    }

    /// A buffer with `pts` (ns) arrives: the frames it completes, in order.
    pub fn push(&mut self, pts: Option<u64>, audio: Input) -> Vec<Frame> {
        let intake = self.intake.push(pts, audio);
        let mut out = Vec::new();
        if let Some(tl) = intake.drain {
            self.drain_into(&tl, &mut out);
        }
        let tl = self.intake.timeline();
        self.feed(&tl, Input::Gap(intake.fill), &mut out);
        self.feed(&tl, intake.audio, &mut out);
        out
    }

    /// A new segment: the frames drained from the previous grid.
    pub fn segment(&mut self, start: Option<u64>) -> Vec<Frame> {
        let mut out = Vec::new();
        if let Some(tl) = self.intake.segment(start) {
            self.drain_into(&tl, &mut out);
        }
        out
    }

    /// End of stream: the frames drained.
    pub fn eos(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        if let Some(tl) = self.intake.eos() {
            self.drain_into(&tl, &mut out);
        }
        out
    }

    /// Drops pending audio: the frame being filled becomes silence.
    pub fn interrupt(&mut self) {
        self.pending.fill(0.0);
        self.pending_audio = false;
    }

    /// Flush: forget everything (the segment is kept).
    pub fn reset(&mut self) {
        self.intake.reset();
        self.next = 0;
        self.pending.clear();
        self.pending_audio = false;
    }

    fn feed(&mut self, tl: &Timeline, audio: Input, out: &mut Vec<Frame>) {
        let (mut left, total) = (audio.len() as usize, audio.len() as usize);
        while left > 0 {
            let need = tl.grid.frame_len(self.next) - self.pending.len();
            let take = need.min(left);
            match audio {
                Input::Samples(s) => {
                    let from = total - left;
                    self.pending.extend_from_slice(&s[from..from + take]);
                    self.pending_audio = true;
                }
                Input::Gap(_) => self.pending.resize(self.pending.len() + take, 0.0),
            }
            left -= take;
            if take == need {
                out.push(self.emit(tl));
            }
        }
    }

    fn emit(&mut self, tl: &Timeline) -> Frame {
        let i = self.next;
        let range = tl.grid.frame_samples(i);
        let received = self.pending.len();
        let mut samples = std::mem::take(&mut self.pending);
        samples.resize(range.clone().count(), 0.0);
        let frame = Frame {
            index: i,
            pts: tl.frame_pts(i),
            duration: tl.frame_duration(i),
            range,
            samples,
            received,
            gap: !std::mem::take(&mut self.pending_audio),
        };
        self.next += 1;
        frame
    }

    fn drain_into(&mut self, tl: &Timeline, out: &mut Vec<Frame>) {
        if !self.pending.is_empty() {
            out.push(self.emit(tl));
        }
        self.next = 0;
        self.pending.clear();
        self.pending_audio = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn video() -> FrameGrid {
        FrameGrid::new(16_000, 25, 1)
    }

    fn ramp(n: usize, from: usize) -> Vec<f32> {
        (from..from + n).map(|i| 1.0 + i as f32).collect()
    }

    #[test]
    fn frame_duration_tiles_time_exactly() {
        let g = FrameGrid::new(16_000, 30000, 1001); // 29.97 fps
        let mut t = 0;
        for i in 0..100_000 {
            assert_eq!(g.frame_offset(i), t);
            t += g.frame_duration(i);
        }
        // An hour of frames at 29.97 fps ends within a nanosecond of the exact time.
        let hour = g.frames_covering(16_000 * 3600);
        assert_eq!(hour, 107_893); // ceil(3600 * 30000 / 1001)
        assert_eq!(video().frame_duration(7), 40 * MS);
        // 32 ms VAD windows.
        let vad = FrameGrid::from_samples(16_000, 512);
        assert_eq!(vad.frame_len(3), 512);
        assert_eq!(vad.frame_duration(3), 32 * MS);
        assert_eq!(vad.frames_covering(1024), 2);
        assert_eq!(vad.frames_covering(1025), 3);
        // Frames of a non-integer sample count alternate and sum exactly.
        let g = FrameGrid::new(16_000, 30, 1);
        let lens: Vec<usize> = (0..3).map(|i| g.frame_len(i)).collect();
        assert_eq!(lens, [533, 533, 534]);
    }

    #[test]
    fn first_buffer_anchors_at_pts_then_segment_then_zero() {
        let mut a = AudioIntake::new(video());
        let i = a.push(Some(3 * NSEC), Input::Samples(&[0.0; 160]));
        assert_eq!((i.drain, i.fill), (None, 0));
        assert_eq!(a.timeline().base, 3 * NSEC);
        let mut b = AudioIntake::new(video());
        assert_eq!(b.segment(Some(5 * NSEC)), None);
        b.push(None, Input::Samples(&[0.0; 160]));
        assert_eq!(b.timeline().base, 5 * NSEC);
        let mut c = AudioIntake::new(video());
        c.push(None, Input::Gap(10));
        assert_eq!(c.timeline().base, 0);
        assert_eq!(c.received(), 10);
    }

    #[test]
    fn arrival_jitter_holes_and_jumps() {
        let mut a = AudioIntake::new(video());
        a.push(Some(0), Input::Samples(&[0.0; 16_000]));
        // Buffers without PTS continue from the sample count.
        let i = a.push(None, Input::Samples(&[0.0; 16_000]));
        assert_eq!((i.drain, i.fill), (None, 0));
        // 10 ms late: jitter, ignored.
        let i = a.push(Some(2010 * MS), Input::Samples(&[0.0; 8000]));
        assert_eq!((i.drain, i.fill), (None, 0));
        // 500 ms hole: silence.
        let i = a.push(Some(3000 * MS), Input::Samples(&[0.0; 100]));
        assert_eq!((i.drain, i.fill), (None, 8000));
        assert_eq!(a.received(), 48_100);
        // Backwards: drain the grid (stamped at base 0), then a new one at 1 s.
        let i = a.push(Some(NSEC), Input::Samples(&[0.0; 100]));
        assert_eq!(i.drain.unwrap().base, 0);
        assert_eq!(a.timeline().base, NSEC);
        assert_eq!(a.received(), 100);
        // A minute ahead: new grid too.
        let i = a.push(Some(61 * NSEC), Input::Samples(&[0.0; 100]));
        assert_eq!(i.drain.unwrap().base, NSEC);
        assert_eq!(a.timeline().base, 61 * NSEC);
    }

    #[test]
    fn segment_and_eos_drain_only_a_running_grid() {
        let mut a = AudioIntake::new(video());
        assert_eq!(a.segment(Some(0)), None);
        assert_eq!(a.eos(), None);
        a.push(Some(2 * NSEC), Input::Samples(&[0.0; 10]));
        assert_eq!(
            a.segment(Some(7 * NSEC)),
            Some(Timeline {
                grid: video(),
                base: 2 * NSEC
            })
        );
        assert!(!a.is_anchored());
        a.push(None, Input::Samples(&[0.0; 10]));
        assert_eq!(a.timeline().base, 7 * NSEC);
        assert_eq!(a.eos().unwrap().base, 7 * NSEC);
        assert_eq!(a.eos(), None);
    }

    #[test]
    fn frames_come_whole_in_order_with_their_samples() {
        let mut c = FrameCutter::new(video());
        let audio = ramp(1000, 0);
        let mut out = c.push(Some(0), Input::Samples(&audio[..300]));
        assert!(out.is_empty());
        out.extend(c.push(None, Input::Samples(&audio[300..])));
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!((f.index, f.pts, f.duration), (0, 0, 40 * MS));
        assert_eq!(f.range, 0..640);
        assert_eq!(f.samples, audio[..640]);
        assert!(!f.gap && f.is_discont());
        // A long buffer completes several frames at once.
        let out = c.push(None, Input::Samples(&ramp(640 * 3, 1000)));
        assert_eq!(out.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(out[0].samples[..360], audio[640..]);
        assert_eq!(out[0].samples[360], 1001.0);
        assert_eq!(out[2].pts, 120 * MS);
    }

    #[test]
    fn gap_and_holes_are_silent_frames() {
        let mut c = FrameCutter::new(video());
        let out = c.push(Some(0), Input::Gap(640 * 2));
        assert_eq!(out.len(), 2);
        assert!(
            out.iter()
                .all(|f| f.gap && f.samples.iter().all(|&s| s == 0.0))
        );
        // A frame with some real audio is not a gap.
        let out = c.push(None, Input::Samples(&[0.5; 10]));
        assert!(out.is_empty());
        // 200 ms hole after 1290 samples (80.625 ms): 120 ms of it completes frame 2.
        let out = c.push(Some(1290 * 62_500 + 200 * MS), Input::Samples(&[0.5; 10]));
        assert_eq!(
            out.iter().map(|f| (f.index, f.gap)).collect::<Vec<_>>(),
            [(2, false), (3, true), (4, true), (5, true), (6, true)]
        );
        assert_eq!(out[0].samples[9..11], [0.5, 0.0]);
    }

    #[test]
    fn eos_drains_the_partial_frame_padded() {
        let mut c = FrameCutter::new(video());
        let out = c.push(Some(NSEC), Input::Samples(&ramp(700, 0)));
        assert_eq!(out.len(), 1);
        let out = c.eos();
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!((f.index, f.pts, f.duration), (1, NSEC + 40 * MS, 40 * MS));
        assert_eq!((f.samples.len(), f.received), (640, 60));
        assert_eq!(f.samples[59], 700.0);
        assert!(f.samples[60..].iter().all(|&s| s == 0.0));
        // Nothing more; a second EOS has nothing to drain.
        assert!(c.eos().is_empty());
        // A stream after EOS (after a flush) anchors anew.
        let out = c.push(Some(9 * NSEC), Input::Samples(&[0.1; 640]));
        assert_eq!((out[0].index, out[0].pts), (0, 9 * NSEC));
    }

    #[test]
    fn segment_mid_stream_drains_then_reanchors() {
        let mut c = FrameCutter::new(video());
        let mut out = c.push(Some(0), Input::Samples(&[0.1; 1000]));
        out.extend(c.segment(Some(10 * NSEC)));
        // Frame 1 (360 samples) drained, padded, stamped on the old grid.
        assert_eq!(
            out.iter()
                .map(|f| (f.index, f.pts, f.received))
                .collect::<Vec<_>>(),
            [(0, 0, 640), (1, 40 * MS, 360)]
        );
        // Buffers without PTS after the segment start at its start, frame 0 again.
        let out = c.push(None, Input::Samples(&[0.1; 640]));
        assert_eq!((out[0].index, out[0].pts), (0, 10 * NSEC));
        assert!(out[0].is_discont());
        // No audio lost: a segment right at a frame boundary drains nothing.
        assert!(c.segment(Some(20 * NSEC)).is_empty());
    }

    #[test]
    fn a_jump_back_drains_on_the_old_grid() {
        let mut c = FrameCutter::new(video());
        c.push(Some(5 * NSEC), Input::Samples(&[0.1; 800]));
        let out = c.push(Some(NSEC), Input::Samples(&[0.2; 640]));
        assert_eq!(
            out.iter().map(|f| (f.index, f.pts)).collect::<Vec<_>>(),
            [(1, 5 * NSEC + 40 * MS), (0, NSEC)]
        );
        assert_eq!(out[1].samples, vec![0.2; 640]);
    }

    #[test]
    fn interrupt_silences_the_pending_frame() {
        let mut c = FrameCutter::new(video());
        c.push(Some(0), Input::Samples(&[0.5; 300]));
        c.interrupt();
        let out = c.push(None, Input::Gap(340));
        assert_eq!(out.len(), 1);
        assert!(out[0].gap && out[0].samples.iter().all(|&s| s == 0.0));
    }

    #[test]
    fn vad_windows_of_32_ms() {
        let mut c = FrameCutter::new(FrameGrid::from_samples(16_000, 512));
        let out = c.push(Some(100 * MS), Input::Samples(&vec![0.3; 16_000]));
        assert_eq!(out.len(), 31); // 16000 / 512 = 31.25
        assert_eq!(out[30].pts, 100 * MS + 30 * 32 * MS);
        assert_eq!(c.eos().len(), 1);
    }

    #[test]
    fn an_hour_of_odd_buffers_keeps_the_grid() {
        let mut c = FrameCutter::new(video());
        let sizes = [1u64, 157, 4099, 333, 2048, 17, 960];
        let (mut s, mut k, mut frames) = (0u64, 0, 0u64);
        let buf = vec![0.25f32; 4099];
        while s < 16_000 * 3600 {
            let n = sizes[k % sizes.len()];
            k += 1;
            let pts = mul_div(s, NSEC, 16_000);
            for f in c.push(Some(pts), Input::Samples(&buf[..n as usize])) {
                assert_eq!((f.index, f.pts), (frames, frames * 40 * MS));
                frames += 1;
            }
            s += n;
        }
        frames += c.eos().len() as u64;
        assert_eq!(frames, c.intake().grid().frames_covering(s));
    }
}
