// SPDX-License-Identifier: MPL-2.0
//! The fixed-choice properties of the elements, as GEnums (so `gst-inspect-1.0` lists their
//! values and the interface file records them), and their conversions to the inference core's
//! own types.

use gst::glib;

use crate::inference;

/// Where a model runs (`device` property). The GPU number is the `device-id` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLivetalkDevice")]
pub enum Device {
    #[default]
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "CUDA execution provider (NVIDIA GPU)", nick = "cuda")]
    Cuda = 1,
    #[enum_value(
        name = "TensorRT execution provider (NVIDIA GPU; CUDA for what TensorRT cannot take)",
        nick = "tensorrt"
    )]
    Tensorrt = 2,
}

impl Device {
    /// The inference core's device for this kind on GPU `id` (ignored for the CPU).
    pub fn with_id(self, id: u32) -> inference::Device {
        match self {
            Device::Cpu => inference::Device::Cpu,
            Device::Cuda => inference::Device::Cuda(id),
            Device::Tensorrt => inference::Device::TensorRt(id),
        }
    }

    /// Kind and GPU number of an inference-core device.
    pub fn split(d: inference::Device) -> (Device, u32) {
        match d {
            inference::Device::Cpu => (Device::Cpu, 0),
            inference::Device::Cuda(n) => (Device::Cuda, n),
            inference::Device::TensorRt(n) => (Device::Tensorrt, n),
        }
    }

    pub fn nick(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Tensorrt => "tensorrt",
        }
    }
}

/// Numeric precision (`precision` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLivetalkPrecision")]
pub enum Precision {
    #[default]
    #[enum_value(name = "32-bit float", nick = "fp32")]
    Fp32 = 0,
    #[enum_value(
        name = "16-bit float (the *_fp16.onnx models where present; TensorRT fp16 kernels)",
        nick = "fp16"
    )]
    Fp16 = 1,
}

impl From<Precision> for inference::Precision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Fp32 => inference::Precision::Fp32,
            Precision::Fp16 => inference::Precision::Fp16,
        }
    }
}

impl From<inference::Precision> for Precision {
    fn from(p: inference::Precision) -> Self {
        match p {
            inference::Precision::Fp32 => Precision::Fp32,
            inference::Precision::Fp16 => Precision::Fp16,
        }
    }
}

impl Precision {
    pub fn nick(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }
}

/// The lip driver of `avatarbin` (`driver` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLivetalkDriver")]
pub enum Driver {
    #[default]
    #[enum_value(
        name = "musetalk when its models and the avatar's latents are there, else lipwarp",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "MuseTalk v1.5 (whisperfeat ! musetalk)", nick = "musetalk")]
    Musetalk = 1,
    #[enum_value(name = "lipwarp (weight-free, CPU)", nick = "lipwarp")]
    Lipwarp = 2,
}

/// The MuseTalk model files `model-dir` must hold.
pub const MUSETALK_FILES: [&str; 2] = ["unet.onnx", "vae_decoder.onnx"];

impl Driver {
    /// The driver to run and why: `Auto` becomes musetalk when `model_dir` holds the MuseTalk
    /// models and the avatar has latents, else lipwarp. Asking for musetalk without either is an
    /// error that says what is missing.
    pub fn resolve(
        self,
        model_dir: &std::path::Path,
        avatar_has_latents: bool,
    ) -> Result<(Driver, String), String> {
        let missing: Vec<&str> = MUSETALK_FILES
            .iter()
            .copied()
            .filter(|f| !model_dir.join(f).is_file())
            .collect();
        match self {
            Driver::Lipwarp => Ok((Driver::Lipwarp, "asked for".into())),
            Driver::Musetalk if !missing.is_empty() => Err(format!(
                "musetalk asked for, but {} has no {} (see models/README.md)",
                model_dir.display(),
                missing.join(" and ")
            )),
            Driver::Musetalk if !avatar_has_latents => Err(
                "musetalk asked for, but the avatar has no latents: prepare it with --vae-encoder"
                    .into(),
            ),
            Driver::Musetalk => Ok((Driver::Musetalk, "asked for".into())),
            Driver::Auto if !missing.is_empty() => Ok((
                Driver::Lipwarp,
                format!("no MuseTalk models in {}", model_dir.display()),
            )),
            Driver::Auto if !avatar_has_latents => {
                Ok((Driver::Lipwarp, "the avatar has no MuseTalk latents".into()))
            }
            Driver::Auto => Ok((
                Driver::Musetalk,
                format!("MuseTalk models found in {}", model_dir.display()),
            )),
        }
    }

    pub fn nick(self) -> &'static str {
        match self {
            Driver::Auto => "auto",
            Driver::Musetalk => "musetalk",
            Driver::Lipwarp => "lipwarp",
        }
    }
}

/// Registers the enums as plugin API, so the documentation lists them.
pub fn mark_as_plugin_api() {
    #[cfg(feature = "doc")]
    {
        use gst::prelude::*;
        Device::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
        Precision::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
        Driver::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    }
}

/// The `device` and `device-id` properties of an element that runs models (`what`: "the
/// voice", "the encoder", ...).
pub fn device_properties(what: &str) -> [glib::ParamSpec; 2] {
    use gst::prelude::*;
    [
        glib::ParamSpecEnum::builder_with_default("device", Device::Cpu)
            .nick("Device")
            .blurb(&format!(
                "Where {what} runs (a GPU that cannot be used falls back to the CPU with a warning)"
            ))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("device-id")
            .nick("GPU number")
            .blurb("Which GPU, for device=cuda or tensorrt")
            .maximum(64)
            .default_value(0)
            .mutable_ready()
            .build(),
    ]
}

/// The `precision` property.
pub fn precision_property(blurb: &str) -> glib::ParamSpec {
    use gst::prelude::*;
    glib::ParamSpecEnum::builder_with_default("precision", Precision::Fp32)
        .nick("Precision")
        .blurb(blurb)
        .mutable_ready()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_musetalk_only_with_models_and_latents() {
        let dir = tempfile::tempdir().unwrap();
        let (d, why) = Driver::Auto.resolve(dir.path(), true).unwrap();
        assert_eq!(d, Driver::Lipwarp);
        assert!(why.contains("no MuseTalk models"), "{why}");
        let err = Driver::Musetalk.resolve(dir.path(), true).unwrap_err();
        assert!(err.contains("unet.onnx and vae_decoder.onnx"), "{err}");
        for f in MUSETALK_FILES {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        assert_eq!(
            Driver::Auto.resolve(dir.path(), true).unwrap().0,
            Driver::Musetalk
        );
        let (d, why) = Driver::Auto.resolve(dir.path(), false).unwrap();
        assert_eq!(
            (d, why.as_str()),
            (Driver::Lipwarp, "the avatar has no MuseTalk latents")
        );
        assert!(
            Driver::Musetalk
                .resolve(dir.path(), false)
                .unwrap_err()
                .contains("latents")
        );
        assert_eq!(
            Driver::Lipwarp.resolve(dir.path(), true).unwrap().0,
            Driver::Lipwarp
        );
    }

    #[test]
    fn devices_keep_their_gpu_number() {
        for d in [
            inference::Device::Cpu,
            inference::Device::Cuda(2),
            inference::Device::TensorRt(1),
        ] {
            let (k, id) = Device::split(d);
            assert_eq!(k.with_id(id), d);
        }
    }
}
