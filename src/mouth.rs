//! A lip driver without weights: mouth opening and shape from the audio of each video frame,
//! and a smooth mesh warp that opens the jaw and lips of the avatar's own face crop.
//!
//! Per frame (40 ms at 25 fps): the level (RMS, dBFS) sets how far the jaw drops, the
//! spectral centroid sets how wide the lips spread (low: rounded "oo", high: spread "ee").
//! A fast attack and a slower release smooth it, as mouths move. The warp is a backward
//! map on the 256x256 crop: below the lip line pixels move down by the opening (the jaw),
//! fading out towards the neck; a lens-shaped gap between the lips shows the mouth's dark
//! interior with a hint of teeth.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::avatar::Image;
use crate::imageops::sample_bilinear;

/// What the audio of one frame says about the mouth.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MouthShape {
    /// 0 (closed) ..= 1 (fully open).
    pub open: f32,
    /// 0 (rounded) ..= 1 (spread).
    pub width: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthConfig {
    /// Level at which the mouth starts to open (dBFS).
    pub floor_db: f32,
    /// Level of a fully open mouth (dBFS).
    pub full_db: f32,
    /// Per-frame smoothing towards a larger / smaller opening (0..1, 1 = immediate).
    pub attack: f32,
    pub release: f32,
}

impl Default for MouthConfig {
    fn default() -> Self {
        Self {
            floor_db: -45.0,
            full_db: -15.0,
            attack: 0.7,
            release: 0.45,
        }
    }
}

/// Turns each frame's samples into a [`MouthShape`].
pub struct MouthAnalyzer {
    cfg: MouthConfig,
    fft: Arc<dyn RealToComplex<f32>>,
    buf: Vec<f32>,
    spec: Vec<realfft::num_complex::Complex<f32>>,
    state: MouthShape,
    rate: f32,
}

const FFT_LEN: usize = 1024;

impl MouthAnalyzer {
    pub fn new(cfg: MouthConfig, rate: u32) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT_LEN);
        Self {
            cfg,
            buf: fft.make_input_vec(),
            spec: fft.make_output_vec(),
            fft,
            state: MouthShape::default(),
            rate: rate as f32,
        }
    }

    /// The target shape of a frame's samples, before smoothing.
    pub fn target(&mut self, samples: &[f32]) -> MouthShape {
        if samples.is_empty() {
            return MouthShape::default();
        }
        let power = samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32;
        let db = 10.0 * power.max(1e-12).log10();
        let open =
            ((db - self.cfg.floor_db) / (self.cfg.full_db - self.cfg.floor_db)).clamp(0.0, 1.0);
        // Spectral centroid over 100..4000 Hz of the (Hann-windowed) frame.
        let n = samples.len().min(FFT_LEN);
        self.buf.fill(0.0);
        for (i, (b, s)) in self.buf.iter_mut().zip(samples).enumerate().take(n) {
            let w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos();
            *b = s * w;
        }
        let _ = self.fft.process(&mut self.buf, &mut self.spec);
        let bin_hz = self.rate / FFT_LEN as f32;
        let (mut num, mut den) = (0.0f32, 0.0f32);
        for (k, c) in self.spec.iter().enumerate() {
            let f = k as f32 * bin_hz;
            if (100.0..4000.0).contains(&f) {
                let p = c.norm_sqr();
                num += f * p;
                den += p;
            }
        }
        let centroid = if den > 0.0 { num / den } else { 1000.0 };
        let width = ((centroid - 500.0) / 1500.0).clamp(0.0, 1.0);
        MouthShape {
            open: open.sqrt(),
            width,
        }
    }

    /// The smoothed shape of the next frame.
    pub fn next(&mut self, samples: &[f32]) -> MouthShape {
        let t = self.target(samples);
        let k = if t.open > self.state.open {
            self.cfg.attack
        } else {
            self.cfg.release
        };
        self.state.open += (t.open - self.state.open) * k;
        if t.open > 0.05 {
            self.state.width += (t.width - self.state.width) * 0.5;
        }
        self.state
    }

    pub fn reset(&mut self) {
        self.state = MouthShape::default();
    }
}

/// Where the mouth is in the 256x256 crop, and how far it may open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthGeometry {
    /// Lip line, as a fraction of the crop height.
    pub lip_y: f32,
    /// Chin, as a fraction of the crop height.
    pub chin_y: f32,
    /// Half-width of the mouth, as a fraction of the crop width.
    pub half_width: f32,
    /// Largest jaw drop, as a fraction of the crop height.
    pub max_open: f32,
}

impl Default for MouthGeometry {
    /// For MuseTalk-style crops (face box from the brows to the chin plus a margin).
    fn default() -> Self {
        Self {
            lip_y: 0.72,
            chin_y: 0.93,
            half_width: 0.16,
            max_open: 0.085,
        }
    }
}

/// Opens the mouth of a face crop (RGB). `shape.open == 0` returns the crop unchanged.
pub fn warp_mouth(crop: &Image, shape: MouthShape, g: &MouthGeometry) -> Image {
    let mut out = crop.clone();
    if shape.open <= 0.0 {
        return out;
    }
    let (w, h) = (crop.width as f32, crop.height as f32);
    let cx = w / 2.0;
    let lip = g.lip_y * h;
    let chin = g.chin_y * h;
    let drop = shape.open * g.max_open * h;
    let lift = 0.25 * drop;
    let mw = g.half_width * w * (0.75 + 0.5 * shape.width);
    // Across the face: flat to 0.6 width, cosine taper to zero at 1.2 width, nothing beyond.
    let across = |x: f32, width: f32| {
        let d = (x - cx).abs() / width;
        if d <= 0.6 {
            1.0
        } else if d >= 1.2 {
            0.0
        } else {
            0.5 + 0.5 * ((d - 0.6) / 0.6 * std::f32::consts::PI).cos()
        }
    };
    let y_top = (lip - lift - 2.0).max(0.0) as usize;
    let y_bot = (h as usize).min(crop.height as usize);
    for y in y_top..y_bot {
        let yf = y as f32 + 0.5;
        for x in 0..crop.width as usize {
            let xf = x as f32 + 0.5;
            // The gap between the lips is lens-shaped: an ellipse profile across the mouth.
            let lips = (1.0 - ((xf - cx) / (1.1 * mw)).powi(2)).max(0.0).sqrt();
            let gap_top = lip - lift * lips;
            let gap_bot = lip + drop * lips;
            let idx = (y * crop.width as usize + x) * 3;
            let (sx, sy, interior) = if yf < lip {
                if yf >= gap_top {
                    (xf, yf, true)
                } else {
                    // Upper lip lifts, fading over 10% of the height above the line.
                    let t = ((lip - yf) / (0.1 * h)).clamp(0.0, 1.0);
                    (xf, yf + lift * lips * (1.0 - t), false)
                }
            } else if yf < gap_bot {
                (xf, yf, true)
            } else {
                // The jaw: wider than the lips further down; fades out below the chin.
                let t = ((yf - lip) / (chin - lip)).clamp(0.0, 1.0);
                let jaw = across(xf, mw * (1.0 + 0.6 * t));
                let fade = if yf > chin {
                    ((h - yf) / (h - chin)).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                let d = drop * (lips * (1.0 - t) + jaw * t) * fade;
                (xf, yf - d, false)
            };
            if interior {
                // Dark mouth, teeth towards the upper lip, soft at the lip edges.
                let depth = ((yf - gap_top) / (gap_bot - gap_top).max(1.0)).clamp(0.0, 1.0);
                let teeth = if depth < 0.3 && drop > 6.0 {
                    1.0 - depth / 0.3
                } else {
                    0.0
                };
                let base = [
                    48.0 + 150.0 * teeth,
                    18.0 + 150.0 * teeth,
                    22.0 + 140.0 * teeth,
                ];
                let edge = ((yf - gap_top).min(gap_bot - yf) / 2.0).clamp(0.0, 1.0) * lips.min(1.0);
                for (c, b) in base.iter().enumerate() {
                    let orig = sample_bilinear(crop, xf - 0.5, yf - 0.5, c);
                    out.data[idx + c] =
                        (b * edge + orig * (1.0 - edge)).round().clamp(0.0, 255.0) as u8;
                }
            } else {
                for c in 0..3 {
                    out.data[idx + c] = sample_bilinear(crop, sx - 0.5, sy - 0.5, c).round() as u8;
                }
            }
        }
    }
    out
}

/// Mean absolute difference of two same-sized images over rows `y0..y1` and columns
/// `x0..x1`: how much a region moved (used by tests and the A/V sync measurement).
pub fn region_difference(a: &Image, b: &Image, x0: u32, y0: u32, x1: u32, y1: u32) -> f64 {
    let c = a.channels as usize;
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in y0..y1 {
        for x in x0..x1 {
            let i = (y as usize * a.width as usize + x as usize) * c;
            for k in 0..c {
                sum += (a.data[i + k] as i32 - b.data[i + k] as i32).unsigned_abs() as u64;
                n += 1;
            }
        }
    }
    sum as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / 16000.0).sin() * amp)
            .collect()
    }

    #[test]
    fn louder_opens_more_and_silence_closes() {
        let mut a = MouthAnalyzer::new(MouthConfig::default(), 16000);
        let quiet = a.target(&tone(300.0, 0.01, 640)).open;
        let loud = a.target(&tone(300.0, 0.3, 640)).open;
        assert!(loud > quiet, "{loud} {quiet}");
        assert_eq!(a.target(&[0.0; 640]).open, 0.0);
        assert!(a.target(&tone(300.0, 0.8, 640)).open > 0.99);
    }

    #[test]
    fn brighter_sound_spreads_the_lips() {
        let mut a = MouthAnalyzer::new(MouthConfig::default(), 16000);
        let low = a.target(&tone(350.0, 0.2, 640)).width;
        let high = a.target(&tone(2500.0, 0.2, 640)).width;
        assert!(high > low + 0.5, "{high} {low}");
    }

    #[test]
    fn smoothing_attacks_fast_and_releases_slower() {
        let mut a = MouthAnalyzer::new(MouthConfig::default(), 16000);
        let s1 = a.next(&tone(300.0, 0.8, 640)).open;
        assert!((s1 - 0.7).abs() < 1e-3, "{s1}");
        let s2 = a.next(&[0.0; 640]).open;
        assert!((s2 - 0.7 * 0.55).abs() < 1e-3, "{s2}");
    }

    #[test]
    fn warp_opens_the_mouth_region_only() {
        let crop = Image::from_fn(256, 256, 3, |x, y, c| {
            ((x * 3 + y * 7 + c as u32 * 50) % 256) as u8
        });
        let closed = warp_mouth(
            &crop,
            MouthShape {
                open: 0.0,
                width: 0.5,
            },
            &MouthGeometry::default(),
        );
        assert_eq!(closed, crop);
        let open = warp_mouth(
            &crop,
            MouthShape {
                open: 1.0,
                width: 0.5,
            },
            &MouthGeometry::default(),
        );
        // Forehead and cheeks far from the mouth do not move.
        assert_eq!(region_difference(&open, &crop, 0, 0, 256, 150), 0.0);
        assert_eq!(region_difference(&open, &crop, 0, 150, 40, 256), 0.0);
        assert_eq!(region_difference(&open, &crop, 216, 150, 256, 256), 0.0);
        // The mouth does, a lot.
        let mouth = region_difference(&open, &crop, 98, 175, 158, 205);
        assert!(mouth > 30.0, "{mouth}");
        // Half open moves less than fully open.
        let half = warp_mouth(
            &crop,
            MouthShape {
                open: 0.4,
                width: 0.5,
            },
            &MouthGeometry::default(),
        );
        assert!(region_difference(&half, &crop, 98, 175, 158, 205) < mouth);
    }
}
