//! Input/output contracts of the models the elements load, checked when a model is loaded.
//!
//! A contract names every input and output with its element type and its dimensions, each
//! either fixed (`8`) or symbolic (`batch`). A model that does not match is refused with a
//! message naming what was expected and what the file has.

use std::fmt;

/// Element types the contracts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F16,
    I64,
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElemType::F32 => "f32",
            ElemType::F16 => "f16",
            ElemType::I64 => "i64",
        })
    }
}

/// One dimension of a contract: fixed, or a named symbolic axis (batch, time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(&'static str),
}

/// One input or output of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub elem: ElemType,
    pub dims: &'static [Dim],
}

/// What a model file must look like to be used by an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelContract {
    /// Short name used in messages ("whisper encoder", "UNet", ...).
    pub name: &'static str,
    pub inputs: &'static [TensorSpec],
    pub outputs: &'static [TensorSpec],
}

/// A dimension as a model file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundDim {
    Fixed(i64),
    /// Dynamic, with the symbol the file gives it (may be empty).
    Dynamic(String),
}

/// An input or output as a model file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTensor {
    pub name: String,
    /// `None` when the value is not a tensor or has a type the contracts never use.
    pub elem: Option<ElemType>,
    pub elem_name: String,
    pub dims: Vec<FoundDim>,
}

pub fn format_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) => (*s).to_string(),
        })
        .collect();
    format!("[{}]", parts.join(","))
}

pub fn format_found_dims(dims: &[FoundDim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            FoundDim::Fixed(n) => n.to_string(),
            FoundDim::Dynamic(s) if s.is_empty() => "?".to_string(),
            FoundDim::Dynamic(s) => s.clone(),
        })
        .collect();
    format!("[{}]", parts.join(","))
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' {} {}",
            self.name,
            self.elem,
            format_dims(self.dims)
        )
    }
}

impl fmt::Display for FoundTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' {} {}",
            self.name,
            self.elem_name,
            format_found_dims(&self.dims)
        )
    }
}

fn list(found: &[FoundTensor]) -> String {
    found
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_side(
    contract: &ModelContract,
    side: &str,
    expected: &[TensorSpec],
    found: &[FoundTensor],
) -> Result<(), String> {
    for spec in expected {
        let Some(t) = found.iter().find(|t| t.name == spec.name) else {
            return Err(format!(
                "{} model has no {side} '{}' (expected {spec}); its {side}s are: {}",
                contract.name,
                spec.name,
                list(found)
            ));
        };
        let shape_ok = t.dims.len() == spec.dims.len()
            && spec.dims.iter().zip(&t.dims).all(|(e, f)| match (e, f) {
                (Dim::Fixed(n), FoundDim::Fixed(m)) => n == m,
                (Dim::Fixed(_), FoundDim::Dynamic(_)) => true,
                (Dim::Symbolic(_), _) => true,
            });
        if t.elem != Some(spec.elem) || !shape_ok {
            return Err(format!(
                "{} model {side} '{}' has type {} and shape {}, expected {} {}",
                contract.name,
                spec.name,
                t.elem_name,
                format_found_dims(&t.dims),
                spec.elem,
                format_dims(spec.dims)
            ));
        }
    }
    if side == "input"
        && let Some(extra) = found
            .iter()
            .find(|t| !expected.iter().any(|s| s.name == t.name))
    {
        return Err(format!(
            "{} model has an unexpected input {extra}; expected exactly: {}",
            contract.name,
            expected
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

impl ModelContract {
    /// Checks a model's declared inputs and outputs against this contract.
    ///
    /// Fixed contract dims must match fixed model dims (a dynamic model dim is accepted);
    /// symbolic contract dims accept anything. Extra outputs are ignored, extra inputs are not
    /// (the element could not feed them).
    pub fn check(&self, inputs: &[FoundTensor], outputs: &[FoundTensor]) -> Result<(), String> {
        check_side(self, "input", self.inputs, inputs)?;
        check_side(self, "output", self.outputs, outputs)
    }

    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }
}

use Dim::{Fixed, Symbolic};

/// Whisper encoder: log-mel in, all hidden states out (embedding + 4 layers, last after the
/// final layer norm), `steps = frames / 2`.
pub const WHISPER_ENCODER: ModelContract = ModelContract {
    name: "whisper encoder",
    inputs: &[TensorSpec {
        name: "input_features",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(80), Symbolic("frames")],
    }],
    outputs: &[TensorSpec {
        name: "hidden_states",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Symbolic("steps"), Fixed(5), Fixed(384)],
    }],
};

/// MuseTalk v1.5 UNet: masked + reference latent, timestep 0, audio features -> latent.
pub const UNET: ModelContract = ModelContract {
    name: "UNet",
    inputs: &[
        TensorSpec {
            name: "sample",
            elem: ElemType::F32,
            dims: &[Symbolic("batch"), Fixed(8), Fixed(32), Fixed(32)],
        },
        TensorSpec {
            name: "timestep",
            elem: ElemType::I64,
            dims: &[Symbolic("batch")],
        },
        TensorSpec {
            name: "encoder_hidden_states",
            elem: ElemType::F32,
            dims: &[Symbolic("batch"), Fixed(50), Fixed(384)],
        },
    ],
    outputs: &[TensorSpec {
        name: "latent",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(4), Fixed(32), Fixed(32)],
    }],
};

/// sd-vae-ft-mse decoder: unscaled latent (already divided by 0.18215) -> image in [-1, 1].
pub const VAE_DECODER: ModelContract = ModelContract {
    name: "VAE decoder",
    inputs: &[TensorSpec {
        name: "latent",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(4), Fixed(32), Fixed(32)],
    }],
    outputs: &[TensorSpec {
        name: "image",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(3), Fixed(256), Fixed(256)],
    }],
};

/// sd-vae-ft-mse encoder: image in [-1, 1] -> latent mean (to be multiplied by 0.18215).
pub const VAE_ENCODER: ModelContract = ModelContract {
    name: "VAE encoder",
    inputs: &[TensorSpec {
        name: "image",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(3), Fixed(256), Fixed(256)],
    }],
    outputs: &[TensorSpec {
        name: "latent",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(4), Fixed(32), Fixed(32)],
    }],
};

/// BiSeNet face parsing (MuseTalk's paste-back mask): ImageNet-normalised RGB in, logits of
/// the 19 CelebAMask-HQ classes out, both at 512x512.
pub const FACE_PARSING: ModelContract = ModelContract {
    name: "face parsing",
    inputs: &[TensorSpec {
        name: "image",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(3), Fixed(512), Fixed(512)],
    }],
    outputs: &[TensorSpec {
        name: "logits",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Fixed(19), Fixed(512), Fixed(512)],
    }],
};

const PIPER_INPUTS: [TensorSpec; 3] = [
    TensorSpec {
        name: "input",
        elem: ElemType::I64,
        dims: &[Symbolic("batch"), Symbolic("phonemes")],
    },
    TensorSpec {
        name: "input_lengths",
        elem: ElemType::I64,
        dims: &[Symbolic("batch")],
    },
    TensorSpec {
        name: "scales",
        elem: ElemType::F32,
        dims: &[Fixed(3)],
    },
];

const PIPER_OUTPUTS: &[TensorSpec] = &[TensorSpec {
    name: "output",
    elem: ElemType::F32,
    dims: &[Symbolic("batch"), Fixed(1), Fixed(1), Symbolic("samples")],
}];

/// Piper voice (VITS), one speaker: phoneme ids, their count, and the scales
/// `[noise_scale, length_scale, noise_w]` -> audio in [-1, 1] at the voice's rate.
pub const PIPER_VOICE: ModelContract = ModelContract {
    name: "Piper voice",
    inputs: &PIPER_INPUTS,
    outputs: PIPER_OUTPUTS,
};

/// Piper voice with several speakers: as [`PIPER_VOICE`] plus the speaker id `sid`.
pub const PIPER_VOICE_MULTI: ModelContract = ModelContract {
    name: "Piper voice (multi-speaker)",
    inputs: &[
        PIPER_INPUTS[0],
        PIPER_INPUTS[1],
        PIPER_INPUTS[2],
        TensorSpec {
            name: "sid",
            elem: ElemType::I64,
            dims: &[Symbolic("batch")],
        },
    ],
    outputs: PIPER_OUTPUTS,
};

/// Silero VAD v5 (the `silero-vad` package's `silero_vad.onnx`): one window of audio with its
/// context before it (64 + 512 samples at 16 kHz), the recurrent state, the sample rate ->
/// speech probability and the next state.
pub const SILERO_VAD: ModelContract = ModelContract {
    name: "Silero VAD",
    inputs: &[
        TensorSpec {
            name: "input",
            elem: ElemType::F32,
            dims: &[Symbolic("batch"), Symbolic("samples")],
        },
        TensorSpec {
            name: "state",
            elem: ElemType::F32,
            dims: &[Fixed(2), Symbolic("batch"), Fixed(128)],
        },
        TensorSpec {
            name: "sr",
            elem: ElemType::I64,
            dims: &[],
        },
    ],
    outputs: &[
        TensorSpec {
            name: "output",
            elem: ElemType::F32,
            dims: &[Symbolic("batch"), Fixed(1)],
        },
        TensorSpec {
            name: "stateN",
            elem: ElemType::F32,
            dims: &[Fixed(2), Symbolic("batch"), Fixed(128)],
        },
    ],
};

/// Whisper cross-attention keys and values (made by `models/convert_whisper.py --decoder`):
/// the encoder's last hidden state -> keys and values of every decoder layer's
/// cross-attention, `kv = 2 * layers` (layer-major, keys then values).
pub const WHISPER_CROSS_KV: ModelContract = ModelContract {
    name: "whisper cross-attention",
    inputs: &[TensorSpec {
        name: "encoder_output",
        elem: ElemType::F32,
        dims: &[Symbolic("batch"), Symbolic("steps"), Symbolic("d_model")],
    }],
    outputs: &[TensorSpec {
        name: "cross_kv",
        elem: ElemType::F32,
        dims: &[
            Symbolic("kv"),
            Symbolic("batch"),
            Symbolic("heads"),
            Symbolic("steps"),
            Symbolic("head_dim"),
        ],
    }],
};

/// Whisper decoder with a self-attention cache: new tokens, the cache of the tokens before
/// them, the cross-attention keys and values -> logits of the next token at each new position
/// and the grown cache.
pub const WHISPER_DECODER: ModelContract = ModelContract {
    name: "whisper decoder",
    inputs: &[
        TensorSpec {
            name: "tokens",
            elem: ElemType::I64,
            dims: &[Symbolic("batch"), Symbolic("tokens")],
        },
        TensorSpec {
            name: "self_kv",
            elem: ElemType::F32,
            dims: &[
                Symbolic("kv"),
                Symbolic("batch"),
                Symbolic("heads"),
                Symbolic("past"),
                Symbolic("head_dim"),
            ],
        },
        TensorSpec {
            name: "cross_kv",
            elem: ElemType::F32,
            dims: &[
                Symbolic("kv"),
                Symbolic("batch"),
                Symbolic("heads"),
                Symbolic("steps"),
                Symbolic("head_dim"),
            ],
        },
    ],
    outputs: &[
        TensorSpec {
            name: "logits",
            elem: ElemType::F32,
            dims: &[Symbolic("batch"), Symbolic("tokens"), Symbolic("vocab")],
        },
        TensorSpec {
            name: "new_self_kv",
            elem: ElemType::F32,
            dims: &[
                Symbolic("kv"),
                Symbolic("batch"),
                Symbolic("heads"),
                Symbolic("total"),
                Symbolic("head_dim"),
            ],
        },
    ],
};

/// Every contract, for tools that list or check models.
pub const ALL: &[&ModelContract] = &[
    &WHISPER_ENCODER,
    &UNET,
    &VAE_DECODER,
    &VAE_ENCODER,
    &PIPER_VOICE,
    &PIPER_VOICE_MULTI,
    &SILERO_VAD,
    &WHISPER_CROSS_KV,
    &WHISPER_DECODER,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, elem: Option<ElemType>, dims: Vec<FoundDim>) -> FoundTensor {
        FoundTensor {
            name: name.into(),
            elem,
            elem_name: elem.map_or("string".into(), |e| e.to_string()),
            dims,
        }
    }
    use FoundDim::{Dynamic as D, Fixed as F};

    fn unet_inputs() -> Vec<FoundTensor> {
        vec![
            t(
                "sample",
                Some(ElemType::F32),
                vec![D("batch".into()), F(8), F(32), F(32)],
            ),
            t("timestep", Some(ElemType::I64), vec![D("batch".into())]),
            t(
                "encoder_hidden_states",
                Some(ElemType::F32),
                vec![D("batch".into()), F(50), F(384)],
            ),
        ]
    }

    fn unet_outputs() -> Vec<FoundTensor> {
        vec![t(
            "latent",
            Some(ElemType::F32),
            vec![F(1), F(4), F(32), F(32)],
        )]
    }

    #[test]
    fn matching_model_passes() {
        UNET.check(&unet_inputs(), &unet_outputs()).unwrap();
    }

    #[test]
    fn wrong_shape_names_expected_and_found() {
        let mut inputs = unet_inputs();
        inputs[0].dims = vec![F(1), F(4), F(32), F(32)];
        let err = UNET.check(&inputs, &unet_outputs()).unwrap_err();
        assert_eq!(
            err,
            "UNet model input 'sample' has type f32 and shape [1,4,32,32], expected f32 [batch,8,32,32]"
        );
    }

    #[test]
    fn wrong_rank_and_type_are_refused() {
        let mut inputs = unet_inputs();
        inputs[1] = t("timestep", Some(ElemType::F32), vec![D("batch".into())]);
        let err = UNET.check(&inputs, &unet_outputs()).unwrap_err();
        assert!(err.contains("'timestep' has type f32"), "{err}");
        let mut inputs = unet_inputs();
        inputs[2].dims.pop();
        assert!(UNET.check(&inputs, &unet_outputs()).is_err());
    }

    #[test]
    fn missing_and_extra_inputs_are_refused() {
        let mut inputs = unet_inputs();
        inputs.remove(1);
        let err = UNET.check(&inputs, &unet_outputs()).unwrap_err();
        assert!(err.contains("has no input 'timestep'"), "{err}");
        let mut inputs = unet_inputs();
        inputs.push(t("cond", Some(ElemType::F32), vec![F(1)]));
        let err = UNET.check(&inputs, &unet_outputs()).unwrap_err();
        assert!(err.contains("unexpected input 'cond'"), "{err}");
    }

    #[test]
    fn piper_contracts_tell_single_from_multi_speaker() {
        let i64_ = Some(ElemType::I64);
        let single = vec![
            t(
                "input",
                i64_,
                vec![D("batch_size".into()), D("phonemes".into())],
            ),
            t("input_lengths", i64_, vec![D("batch_size".into())]),
            t("scales", Some(ElemType::F32), vec![F(3)]),
        ];
        let out = vec![t(
            "output",
            Some(ElemType::F32),
            vec![D("batch_size".into()), F(1), F(1), D("time".into())],
        )];
        PIPER_VOICE.check(&single, &out).unwrap();
        let err = PIPER_VOICE_MULTI.check(&single, &out).unwrap_err();
        assert!(err.contains("has no input 'sid'"), "{err}");
        let mut multi = single.clone();
        multi.push(t("sid", i64_, vec![D("batch_size".into())]));
        PIPER_VOICE_MULTI.check(&multi, &out).unwrap();
        let err = PIPER_VOICE.check(&multi, &out).unwrap_err();
        assert!(err.contains("unexpected input 'sid'"), "{err}");
        let rank3 = vec![t(
            "output",
            Some(ElemType::F32),
            vec![D("batch_size".into()), F(1), D("time".into())],
        )];
        assert!(PIPER_VOICE.check(&single, &rank3).is_err());
    }

    #[test]
    fn missing_output_is_refused() {
        let err = UNET
            .check(
                &unet_inputs(),
                &[t(
                    "out",
                    Some(ElemType::F32),
                    vec![F(1), F(4), F(32), F(32)],
                )],
            )
            .unwrap_err();
        assert!(err.contains("has no output 'latent'"), "{err}");
        assert!(err.contains("'out' f32 [1,4,32,32]"), "{err}");
    }
}
