//! MuseTalk v1.5 inference for a batch of frames, free of GStreamer.
//!
//! Per frame: the avatar latent `[8,32,32]` (masked-lower-half latent ++ reference latent,
//! already scaled by 0.18215), the audio feature `[50,384]` plus sinusoidal positional
//! encoding (d_model 384), the UNet at timestep 0 -> latent `[4,32,32]`, divided by 0.18215,
//! the VAE decoder -> image `[3,256,256]` in [-1,1] -> `((x/2+0.5).clamp(0,1)*255).round()`
//! as u8, channel 0 = red (MuseTalk flips to BGR for OpenCV afterwards; we keep RGB).
//!
//! [`planner`] decides which queued frames run together, which are skipped as late and how
//! long to wait for a fuller batch.

use std::sync::Arc;

pub mod batcher;
pub mod encoder;
pub mod planner;

use crate::avatar::{Avatar, LATENT_LEN};
use crate::features::{self, FRAME_LEN};
use crate::inference::{InferenceError, Input, InputData, SharedSession};

/// sd-vae-ft-mse's `scaling_factor`.
pub const LATENT_SCALE: f32 = 0.18215;
pub const OUT_LATENT_LEN: usize = 4 * 32 * 32;
pub const IMAGE_SIDE: usize = 256;
pub const IMAGE_LEN: usize = 3 * IMAGE_SIDE * IMAGE_SIDE;
/// Bytes of one packed RGB output crop.
pub const RGB_LEN: usize = IMAGE_LEN;

/// One frame to make.
#[derive(Debug, Clone, Copy)]
pub struct FrameInput<'a> {
    /// `[8,32,32]`.
    pub latent: &'a [f32],
    /// `[50,384]`, without positional encoding.
    pub audio: &'a [f32],
}

/// The UNet inputs of a batch: `sample` `[B,8,32,32]` and `encoder_hidden_states`
/// `[B,50,384]` with the positional encoding added.
pub fn unet_inputs(frames: &[FrameInput<'_>]) -> (Vec<f32>, Vec<f32>) {
    let mut sample = Vec::with_capacity(frames.len() * LATENT_LEN);
    let mut audio = Vec::with_capacity(frames.len() * FRAME_LEN);
    for f in frames {
        assert_eq!(f.latent.len(), LATENT_LEN);
        assert_eq!(f.audio.len(), FRAME_LEN);
        sample.extend_from_slice(f.latent);
        let start = audio.len();
        audio.extend_from_slice(f.audio);
        features::add_positional_encoding(&mut audio[start..]);
    }
    (sample, audio)
}

/// Converts one decoded image `[3,256,256]` (planar, [-1,1]) to packed RGB u8, `stride` bytes
/// a row, rounding half to even like torch.
pub fn image_to_rgb(image: &[f32], out: &mut [u8], stride: usize) {
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    assert!(image.len() >= IMAGE_LEN);
    assert!(stride >= IMAGE_SIDE * 3 && out.len() >= (IMAGE_SIDE - 1) * stride + IMAGE_SIDE * 3);
    for y in 0..IMAGE_SIDE {
        let row = &mut out[y * stride..y * stride + IMAGE_SIDE * 3];
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                let s = image[c * plane + y * IMAGE_SIDE + x];
                let u = (s / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0;
                *v = u.round_ties_even() as u8;
            }
        }
    }
}

/// The two models of MuseTalk's per-frame inference.
#[derive(Debug, Clone)]
pub struct MuseTalk {
    pub unet: Arc<SharedSession>,
    pub vae_decoder: Arc<SharedSession>,
}

impl MuseTalk {
    /// The largest batch the model files take: `None` when their batch dimension is dynamic,
    /// else the batch size they fix (1 for a model exported with a fixed batch of 1).
    pub fn max_batch(&self) -> Option<usize> {
        match (self.unet.fixed_batch(), self.vae_decoder.fixed_batch()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs a batch; returns one `[3,256,256]` image in [-1,1] per frame. A batch larger than
    /// [`MuseTalk::max_batch`] runs in parts of that size. A frame whose latent is not
    /// `[8,32,32]` or whose features are not `[50,384]` is refused with an error.
    pub fn run(&self, frames: &[FrameInput<'_>]) -> Result<Vec<f32>, InferenceError> {
        for (k, f) in frames.iter().enumerate() {
            check_frame(f.latent.len(), f.audio.len())
                .map_err(|e| InferenceError::Run(format!("frame {k} of the batch: {e}")))?;
        }
        match self.max_batch() {
            Some(m) if frames.len() > m => {
                let mut out = Vec::with_capacity(frames.len() * IMAGE_LEN);
                for part in frames.chunks(m) {
                    out.extend(self.run_batch(part)?);
                }
                Ok(out)
            }
            _ => self.run_batch(frames),
        }
    }

    fn run_batch(&self, frames: &[FrameInput<'_>]) -> Result<Vec<f32>, InferenceError> {
        let b = frames.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        let (sample, audio) = unet_inputs(frames);
        let timestep = vec![0i64; b];
        let out = self.unet.run(&[
            Input {
                name: "sample",
                shape: &[b, 8, 32, 32],
                data: InputData::F32(&sample),
            },
            Input {
                name: "timestep",
                shape: &[b],
                data: InputData::I64(&timestep),
            },
            Input {
                name: "encoder_hidden_states",
                shape: &[b, features::ROWS, features::DIM],
                data: InputData::F32(&audio),
            },
        ])?;
        let mut latent = out.into_iter().next().expect("contract has one output");
        if latent.data.len() != b * OUT_LATENT_LEN {
            return Err(InferenceError::Run(format!(
                "UNet gave shape {:?}, expected [{b},4,32,32]",
                latent.shape
            )));
        }
        // MuseTalk multiplies by the reciprocal (computed in double, applied in float).
        let inv = (1.0f64 / LATENT_SCALE as f64) as f32;
        for v in &mut latent.data {
            *v *= inv;
        }
        let out = self.vae_decoder.run(&[Input {
            name: "latent",
            shape: &[b, 4, 32, 32],
            data: InputData::F32(&latent.data),
        }])?;
        let image = out.into_iter().next().expect("contract has one output");
        if image.data.len() != b * IMAGE_LEN {
            return Err(InferenceError::Run(format!(
                "VAE decoder gave shape {:?}, expected [{b},3,256,256]",
                image.shape
            )));
        }
        Ok(image.data)
    }
}

/// Whether a frame's latent (`latent` values) and features (`audio` values) have the shapes
/// the model takes (`[8,32,32]`, `[50,384]`); the error says what differs.
pub fn check_frame(latent: usize, audio: usize) -> Result<(), String> {
    if latent != LATENT_LEN {
        return Err(format!(
            "the avatar's latent has {latent} values, the model takes [8,32,32] ({LATENT_LEN}): \
             avatars of another latent shape cannot share this model's batches"
        ));
    }
    if audio != FRAME_LEN {
        return Err(format!(
            "the features have {audio} values, the model takes [{},{}] ({FRAME_LEN})",
            features::ROWS,
            features::DIM
        ));
    }
    Ok(())
}

/// One frame for the batching service: the avatar (whose latent it takes), the avatar frame
/// index and the audio features `[50,384]`. The avatar travels with the frame, so a frame
/// cannot be made with another session's avatar.
pub struct MuseFrame {
    pub avatar: Arc<Avatar>,
    pub index: usize,
    pub audio: Vec<f32>,
}

/// MuseTalk as a [`batcher::BatchModel`]: one `[3,256,256]` image in [-1,1] per frame.
pub struct MuseBatchModel(pub MuseTalk);

impl batcher::BatchModel for MuseBatchModel {
    type Input = MuseFrame;
    type Output = Vec<f32>;

    fn max_batch(&self) -> Option<usize> {
        self.0.max_batch()
    }

    fn check(&self, f: &MuseFrame) -> Result<(), String> {
        if f.index >= f.avatar.len() {
            return Err(format!(
                "avatar frame {} is out of range (the avatar has {} frames)",
                f.index,
                f.avatar.len()
            ));
        }
        check_frame(f.avatar.latent(f.index).len(), f.audio.len())
    }

    fn run(&self, inputs: &[MuseFrame]) -> Result<Vec<Vec<f32>>, String> {
        let frames: Vec<FrameInput<'_>> = inputs
            .iter()
            .map(|f| FrameInput {
                latent: f.avatar.latent(f.index),
                audio: &f.audio,
            })
            .collect();
        let images = self.0.run(&frames).map_err(|e| e.to_string())?;
        Ok(images
            .chunks_exact(IMAGE_LEN)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// The process's batching services, one per (UNet, VAE decoder) session pair.
static SERVICES: batcher::Registry<MuseBatchModel> = batcher::Registry::new();

/// The batching service of `muse`'s model pair, started on first use; every element that
/// loaded the same sessions gets the same service. It stops when its last session ends.
pub fn shared_batcher(muse: &MuseTalk) -> std::io::Result<Arc<batcher::Batcher<MuseBatchModel>>> {
    let key = vec![
        Arc::as_ptr(&muse.unet) as usize,
        Arc::as_ptr(&muse.vae_decoder) as usize,
    ];
    SERVICES.get_or_start(key, "musetalk-batcher", || MuseBatchModel(muse.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_conversion_rounds_like_torch_and_keeps_rgb_order() {
        let mut img = vec![0f32; IMAGE_LEN];
        let plane = 256 * 256;
        img[0] = 1.0; // R of pixel 0
        img[plane] = -1.0; // G
        img[2 * plane] = 2.0 * (0.4 / 255.0) - 1.0; // B: 0.4 -> 0
        img[1] = 2.0 * (1.6 / 255.0) - 1.0; // R of pixel 1: 1.6 -> 2
        img[2] = -3.0; // clamped
        let mut out = vec![0u8; 256 * 768];
        image_to_rgb(&img, &mut out, 768);
        assert_eq!(&out[..3], &[255, 0, 0]);
        assert_eq!(out[3], 2);
        assert_eq!(out[6], 0);
        assert_eq!(out[4], 128); // 0.0 -> 127.5 -> 128 (half to even)
    }

    #[test]
    fn unet_inputs_add_the_positional_encoding_per_frame() {
        let latent = vec![0.5f32; LATENT_LEN];
        let audio = vec![0f32; FRAME_LEN];
        let f = FrameInput {
            latent: &latent,
            audio: &audio,
        };
        let (s, a) = unet_inputs(&[f, f]);
        assert_eq!(s.len(), 2 * LATENT_LEN);
        assert_eq!(a.len(), 2 * FRAME_LEN);
        // Row 0: sin(0)=0, cos(0)=1; row 1 dim 0: sin(1).
        assert_eq!(a[0], 0.0);
        assert_eq!(a[1], 1.0);
        assert!((a[384] - 1f32.sin()).abs() < 1e-6);
        // The second frame gets the same encoding (positions restart).
        assert_eq!(a[FRAME_LEN..], a[..FRAME_LEN]);
    }
}
