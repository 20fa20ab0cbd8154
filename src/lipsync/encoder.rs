//! The whisper encoder on the batching service ([`super::batcher`]): every whisperfeat
//! element of the process that loaded the same encoder submits its windows to one service,
//! which runs windows of the same length (from one or several elements) as one batch.
//! Free of GStreamer.

use std::sync::Arc;

use super::batcher::{self, BatchModel};
use crate::inference::{Input, InputData, SharedSession};

/// Mel bins of the encoder input.
pub const MEL_BINS: usize = 80;
/// Hidden states per encoder step: 5 layers of 384.
pub const STEP_LEN: usize = 5 * 384;

/// One encoder window: normalised log-mel `[80, mel_frames]`.
pub struct EncoderWindow {
    pub mel: Vec<f32>,
    pub mel_frames: usize,
}

/// The whisper encoder as a [`BatchModel`]: one window in, its hidden states
/// `[mel_frames/2, 5, 384]` out. Windows of different lengths never share a batch.
pub struct EncoderModel(pub Arc<SharedSession>);

impl BatchModel for EncoderModel {
    type Input = EncoderWindow;
    type Output = Vec<f32>;

    fn max_batch(&self) -> Option<usize> {
        self.0.fixed_batch()
    }

    fn check(&self, w: &EncoderWindow) -> Result<(), String> {
        if w.mel_frames == 0
            || !w.mel_frames.is_multiple_of(2)
            || w.mel.len() != MEL_BINS * w.mel_frames
        {
            return Err(format!(
                "encoder window of {} values for {} mel frames (expected [80,T], T even)",
                w.mel.len(),
                w.mel_frames
            ));
        }
        Ok(())
    }

    fn batch_key(&self, w: &EncoderWindow) -> u64 {
        w.mel_frames as u64
    }

    fn run(&self, inputs: &[EncoderWindow]) -> Result<Vec<Vec<f32>>, String> {
        let b = inputs.len();
        let Some(t) = inputs.first().map(|w| w.mel_frames) else {
            return Ok(Vec::new());
        };
        if inputs.iter().any(|w| w.mel_frames != t) {
            return Err("encoder windows of different lengths in one batch".into());
        }
        let mut mel = Vec::with_capacity(b * MEL_BINS * t);
        for w in inputs {
            mel.extend_from_slice(&w.mel);
        }
        let out = self
            .0
            .run(&[Input {
                name: "input_features",
                shape: &[b, MEL_BINS, t],
                data: InputData::F32(&mel),
            }])
            .map_err(|e| e.to_string())?;
        let hidden = out.into_iter().next().ok_or("the encoder gave no output")?;
        let per = hidden.data.len() / b.max(1);
        if hidden.shape.len() != 4
            || hidden.shape[0] != b
            || hidden.shape[1] < t / 2
            || per * b != hidden.data.len()
            || !per.is_multiple_of(STEP_LEN)
        {
            return Err(format!(
                "the encoder gave shape {:?} for a batch of {b} windows of {t} mel frames",
                hidden.shape
            ));
        }
        Ok(hidden.data.chunks_exact(per).map(<[f32]>::to_vec).collect())
    }
}

/// The process's encoder batching services, one per loaded encoder session.
static SERVICES: batcher::Registry<EncoderModel> = batcher::Registry::new();

/// The batching service of `encoder`, started on first use; every element that loaded the
/// same session gets the same service. It stops when its last session ends.
pub fn shared_encoder(
    encoder: &Arc<SharedSession>,
) -> std::io::Result<Arc<batcher::Batcher<EncoderModel>>> {
    let key = vec![Arc::as_ptr(encoder) as usize];
    SERVICES.get_or_start(key, "whisper-batcher", || EncoderModel(encoder.clone()))
}
