//! Timestamps of a raw audio stream derived from its sample count, as the elements that turn
//! audio into video frames need them: exact over hours, robust to jittery or missing PTS.
//!
//! The first buffer anchors sample 0 (its PTS, else the segment start). After that the sample
//! count rules; a buffer's PTS only matters when it disagrees by more than [`JITTER`]: a
//! forward hole up to [`MAX_FILL`] is filled with silence, anything else restarts the grid.

use gst::ClockTime;

pub const JITTER: ClockTime = ClockTime::from_mseconds(20);
pub const MAX_FILL: ClockTime = ClockTime::from_seconds(10);

/// What a new buffer means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In sequence.
    Continue,
    /// This many samples are missing before it: insert silence.
    FillSilence(u64),
    /// A jump back, or too far ahead: finish what is pending, then [`AudioClock::restart`].
    Restart(ClockTime),
}

#[derive(Debug, Clone)]
pub struct AudioClock {
    rate: u64,
    base: Option<ClockTime>,
}

impl AudioClock {
    pub fn new(rate: u64) -> Self {
        Self { rate, base: None }
    }

    pub fn is_anchored(&self) -> bool {
        self.base.is_some()
    }

    pub fn base(&self) -> ClockTime {
        self.base.unwrap_or(ClockTime::ZERO)
    }

    /// Forget the anchor (the next buffer anchors anew).
    pub fn reset(&mut self) {
        self.base = None;
    }

    pub fn restart(&mut self, at: ClockTime) {
        self.base = Some(at);
    }

    /// Time of stream sample `s`.
    pub fn sample_time(&self, s: u64) -> ClockTime {
        self.base()
            + ClockTime::from_nseconds((s as u128 * 1_000_000_000 / self.rate as u128) as u64)
    }

    /// Time of video frame `i` at `fps_n / fps_d`.
    pub fn frame_time(&self, i: u64, fps_n: u64, fps_d: u64) -> ClockTime {
        self.base()
            + ClockTime::from_nseconds(
                (i as u128 * fps_d as u128 * 1_000_000_000 / fps_n as u128) as u64,
            )
    }

    /// Samples in `d`.
    pub fn samples_in(&self, d: ClockTime) -> u64 {
        (d.nseconds() as u128 * self.rate as u128 / 1_000_000_000) as u64
    }

    /// A buffer with `pts` arrives when `received` samples have come so far.
    pub fn arrive(
        &mut self,
        pts: Option<ClockTime>,
        segment_start: Option<ClockTime>,
        received: u64,
    ) -> Arrival {
        let Some(_) = self.base else {
            self.base = Some(pts.or(segment_start).unwrap_or(ClockTime::ZERO));
            return Arrival::Continue;
        };
        let Some(pts) = pts else {
            return Arrival::Continue;
        };
        let expected = self.sample_time(received);
        if pts > expected + JITTER && pts - expected <= MAX_FILL {
            Arrival::FillSilence(self.samples_in(pts - expected))
        } else if pts + JITTER < expected || pts > expected + MAX_FILL {
            Arrival::Restart(pts)
        } else {
            Arrival::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_then_follows_the_sample_count() {
        let mut c = AudioClock::new(16_000);
        assert_eq!(
            c.arrive(None, Some(ClockTime::from_seconds(3)), 0),
            Arrival::Continue
        );
        assert_eq!(c.sample_time(16_000), ClockTime::from_seconds(4));
        // 10 ms of jitter is ignored.
        assert_eq!(
            c.arrive(Some(ClockTime::from_mseconds(4010)), None, 16_000),
            Arrival::Continue
        );
        // A 500 ms hole is silence.
        assert_eq!(
            c.arrive(Some(ClockTime::from_mseconds(4500)), None, 16_000),
            Arrival::FillSilence(8000)
        );
        // Backwards, or a minute ahead: restart.
        assert_eq!(
            c.arrive(Some(ClockTime::from_seconds(1)), None, 16_000),
            Arrival::Restart(ClockTime::from_seconds(1))
        );
        assert!(matches!(
            c.arrive(Some(ClockTime::from_seconds(70)), None, 16_000),
            Arrival::Restart(_)
        ));
        assert_eq!(c.frame_time(25, 25, 1), ClockTime::from_seconds(4));
    }
}
