//! Whisper's log-mel front end: 16 kHz mono in, 80 log-mel bins per 10 ms out.
//!
//! STFT with a periodic Hann window of 400 samples, hop 160, centred frames (reflect padding
//! of 200 samples at both ends), power spectrum, 80 triangular mel filters on the Slaney scale
//! with Slaney area normalisation (0-8 kHz), `log10(max(mel, 1e-10))`, clamped to
//! `max - 8`, then `(x + 4) / 4`. The last STFT frame is dropped, as whisper does, so `n`
//! samples give `n / 160` frames. Output layout is `[80, frames]` (mel-major), as the encoder
//! takes it.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::imageops::reflect_index as reflect;

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
const N_BINS: usize = N_FFT / 2 + 1;

fn hz_to_mel_slaney(f: f64) -> f64 {
    let (f_sp, min_log_hz, min_log_mel) = (200.0 / 3.0, 1000.0, 15.0);
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz_slaney(m: f64) -> f64 {
    let (f_sp, min_log_hz, min_log_mel) = (200.0 / 3.0, 1000.0, 15.0);
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// One triangular filter, stored sparsely: its first FFT bin and its weights.
#[derive(Debug, Clone)]
struct Filter {
    first_bin: usize,
    weights: Vec<f32>,
}

fn mel_filters() -> Vec<Filter> {
    let mel_max = hz_to_mel_slaney(SAMPLE_RATE as f64 / 2.0);
    let edges: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz_slaney(mel_max * i as f64 / (N_MELS + 1) as f64))
        .collect();
    (0..N_MELS)
        .map(|m| {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = 2.0 / (hi - lo);
            let dense: Vec<f32> = (0..N_BINS)
                .map(|k| {
                    let f = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
                    let up = (f - lo) / (mid - lo);
                    let down = (hi - f) / (hi - mid);
                    (up.min(down).max(0.0) * norm) as f32
                })
                .collect();
            let first = dense.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = dense.iter().rposition(|&w| w > 0.0).unwrap_or(first);
            Filter {
                first_bin: first,
                weights: dense[first..=last].to_vec(),
            }
        })
        .collect()
}

/// `log10(x)` for positive normal `x`, to about 1e-6: exponent bits plus the atanh series of
/// the mantissa (`ln m = 2 atanh((m-1)/(m+1))`, five terms for `m` in [1, 2)). Written so
/// that a loop over it vectorises; `f32::log10` was a quarter of the front end's time.
#[inline]
fn fast_log10(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let ln_m =
        2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0)))));
    (e as f32 + ln_m * std::f32::consts::LOG2_E) * std::f32::consts::LOG10_2
}

/// Reusable log-mel computer (FFT plan, window, filters).
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    filters: Vec<Filter>,
    frame: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    power: Vec<f32>,
    energies: [f32; N_MELS],
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let window = (0..N_FFT)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        Self {
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            frame: fft.make_input_vec(),
            fft,
            window,
            filters: mel_filters(),
            power: vec![0.0; N_BINS],
            energies: [0.0; N_MELS],
        }
    }

    /// Number of frames `samples` samples give.
    pub fn frames_for(samples: usize) -> usize {
        samples / HOP
    }

    /// `log10` mel energies (before clamping and scaling), `[80, frames]`.
    pub fn log_mel_raw(&mut self, samples: &[f32]) -> Vec<f32> {
        let frames = Self::frames_for(samples.len());
        let mut out = vec![0.0f32; N_MELS * frames];
        if frames == 0 {
            return out;
        }
        let n = samples.len();
        let half = (N_FFT / 2) as isize;
        for t in 0..frames {
            let start = (t * HOP) as isize - half;
            if start >= 0 && start as usize + N_FFT <= n {
                let s = &samples[start as usize..start as usize + N_FFT];
                for ((f, &x), &w) in self.frame.iter_mut().zip(s).zip(&self.window) {
                    *f = x * w;
                }
            } else {
                for (k, (f, &w)) in self.frame.iter_mut().zip(&self.window).enumerate() {
                    *f = samples[reflect(start + k as isize, n)] * w;
                }
            }
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .expect("FFT buffers have the planned sizes");
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
            for (e, filt) in self.energies.iter_mut().zip(&self.filters) {
                let bins = &self.power[filt.first_bin..filt.first_bin + filt.weights.len()];
                *e = bins
                    .iter()
                    .zip(&filt.weights)
                    .map(|(p, w)| p * w)
                    .sum::<f32>();
            }
            for e in self.energies.iter_mut() {
                *e = fast_log10(e.max(1e-10));
            }
            for (m, e) in self.energies.iter().enumerate() {
                out[m * frames + t] = *e;
            }
        }
        out
    }

    /// Whisper's normalised log-mel, `[80, frames]` mel-major.
    pub fn compute(&mut self, samples: &[f32]) -> Vec<f32> {
        let mut out = self.log_mel_raw(samples);
        normalize(&mut out);
        out
    }
}

/// Whisper's clamp to `max - 8` and `(x + 4) / 4`, in place.
pub fn normalize(log_mel: &mut [f32]) {
    let max = log_mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in log_mel.iter_mut() {
        *v = (v.max(max - 8.0) + 4.0) / 4.0;
    }
}

/// The normalised value of a frame of digital silence when the window's maximum is `max_raw`
/// (for padding a window to whisper's 30 s the way zero audio would).
pub fn silence_value(max_raw: f32) -> f32 {
    ((-10.0f32).max(max_raw - 8.0) + 4.0) / 4.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_matches_whisper() {
        let mut mel = LogMel::new();
        assert_eq!(mel.compute(&vec![0.0; 16000]).len(), 80 * 100);
        assert_eq!(mel.compute(&vec![0.0; 16159]).len(), 80 * 100);
        assert_eq!(mel.compute(&vec![0.0; 159]).len(), 0);
    }

    #[test]
    fn silence_is_floor_value() {
        let mut mel = LogMel::new();
        let out = mel.compute(&vec![0.0; 3200]);
        // log10(1e-10) = -10, max = -10: (-10 + 4) / 4 = -1.5
        assert!(out.iter().all(|&v| (v + 1.5).abs() < 1e-6));
        assert_eq!(silence_value(-10.0), -1.5);
    }

    #[test]
    fn a_tone_lands_in_the_right_mel_band() {
        let mut mel = LogMel::new();
        let tone: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let out = mel.log_mel_raw(&tone);
        let frames = 100;
        let t = 50;
        let best = (0..N_MELS)
            .max_by(|&a, &b| out[a * frames + t].total_cmp(&out[b * frames + t]))
            .unwrap();
        // 1 kHz is mel 15 on the Slaney scale; band centres are 45.25/81 apart in mel.
        let centre_hz =
            |m: usize| mel_to_hz_slaney(hz_to_mel_slaney(8000.0) * (m + 1) as f64 / 81.0);
        assert!(
            (centre_hz(best) - 1000.0).abs() < 60.0,
            "band {best} at {} Hz",
            centre_hz(best)
        );
    }

    #[test]
    fn reflect_matches_numpy() {
        // np.pad([0,1,2,3], 3, mode="reflect") -> [3,2,1,0,1,2,3,2,1,0]
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn fast_log10_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = 1e-10f32;
        while x < 1e6 {
            let err = (fast_log10(x) as f64 - (x as f64).log10()).abs();
            worst = worst.max(err);
            x *= 1.0137;
        }
        assert!(worst < 2e-6, "worst error {worst}");
    }

    #[test]
    fn slaney_scale_round_trips() {
        for f in [0.0, 300.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hz_slaney(hz_to_mel_slaney(f)) - f).abs() < 1e-6);
        }
    }
}
