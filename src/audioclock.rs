//! The GStreamer side of [`crate::audio_intake`]: what an F32LE mono buffer means for the
//! intake (its PTS, its samples, or silence when it is a GAP).

use crate::audio_intake::Input;

/// One input buffer, read.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferAudio {
    pub pts: Option<u64>,
    samples: Vec<f32>,
    /// Samples of silence, for a GAP buffer.
    gap: Option<u64>,
}

impl BufferAudio {
    /// Reads an F32LE mono buffer at `rate`. A GAP buffer is silence: as many samples as it
    /// holds, or for an empty one as many as its duration covers. `None` if it cannot be
    /// mapped.
    pub fn read(buffer: &gst::BufferRef, rate: u64) -> Option<Self> {
        let pts = buffer.pts().map(|t| t.nseconds());
        if buffer.flags().contains(gst::BufferFlags::GAP) {
            let n = if buffer.size() == 0 {
                buffer.duration().map_or(0, |d| {
                    (d.nseconds() as u128 * rate as u128 / 1_000_000_000) as u64
                })
            } else {
                (buffer.size() / 4) as u64
            };
            return Some(Self {
                pts,
                samples: Vec::new(),
                gap: Some(n),
            });
        }
        let map = buffer.map_readable().ok()?;
        Some(Self {
            pts,
            samples: map
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            gap: None,
        })
    }

    pub fn input(&self) -> Input<'_> {
        match self.gap {
            Some(n) => Input::Gap(n),
            None => Input::Samples(&self.samples),
        }
    }
}

/// Stamps the buffer of frame `index` of a grid: PTS, duration, offsets (the frame number),
/// and DISCONT on frame 0, where a grid starts.
pub fn stamp_frame(buf: &mut gst::BufferRef, index: u64, pts: u64, duration: u64) {
    buf.set_pts(clock_time(pts));
    buf.set_duration(clock_time(duration));
    buf.set_offset(index);
    buf.set_offset_end(index + 1);
    if index == 0 {
        buf.set_flags(gst::BufferFlags::DISCONT);
    }
}

/// Nanoseconds as a clock time.
pub fn clock_time(ns: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(ns)
}

/// The start of a TIME segment, in nanoseconds.
pub fn segment_start(event: &gst::event::Segment) -> Option<u64> {
    event
        .segment()
        .downcast_ref::<gst::ClockTime>()
        .and_then(|s| s.start())
        .map(|t| t.nseconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_buffers_are_silence() {
        gst::init().unwrap();
        let mut b = gst::Buffer::new();
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(7));
            b.set_duration(gst::ClockTime::from_mseconds(20));
            b.set_flags(gst::BufferFlags::GAP);
        }
        let a = BufferAudio::read(&b, 16_000).unwrap();
        assert_eq!((a.pts, a.input()), (Some(7_000_000), Input::Gap(320)));
        // A GAP with data: its samples, silent.
        let mut b = gst::Buffer::from_mut_slice(1.0f32.to_le_bytes().repeat(10));
        b.get_mut().unwrap().set_flags(gst::BufferFlags::GAP);
        assert_eq!(
            BufferAudio::read(&b, 16_000).unwrap().input(),
            Input::Gap(10)
        );
        let b = gst::Buffer::from_mut_slice(0.5f32.to_le_bytes().repeat(3));
        let a = BufferAudio::read(&b, 16_000).unwrap();
        assert_eq!((a.pts, a.input()), (None, Input::Samples(&[0.5; 3])));
    }
}
