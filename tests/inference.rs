//! Inference core: runtime loading, contract checks, shared sessions, CPU runs of the tiny
//! models that `scripts/setup.sh` makes (`models/make_test_models.py`).

use std::path::PathBuf;
use std::sync::Arc;

use gstlivetalk::inference::{
    self, Device, InferenceError, Input, InputData, Precision, SessionRequest, contract,
};

fn model(name: &str) -> PathBuf {
    let p = gstlivetalk::paths::test_models_dir().join(name);
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 * scale - scale / 2.0)
        .collect()
}

#[test]
fn runtime_loads_from_the_setup_cache() {
    let rt = inference::runtime(None).unwrap();
    assert!(rt.library.exists(), "{}", rt.library.display());
    assert!(!rt.version.is_empty());
}

#[test]
fn whisper_encoder_runs_with_dynamic_batch_and_time() {
    let path = model("whisper_encoder.onnx");
    let s =
        inference::load_session(&SessionRequest::new(&path, &contract::WHISPER_ENCODER)).unwrap();
    for (batch, frames) in [(1usize, 100usize), (2, 36)] {
        let mel = ramp(batch * 80 * frames, 2.0);
        let out = s
            .run(&[Input {
                name: "input_features",
                shape: &[batch, 80, frames],
                data: InputData::F32(&mel),
            }])
            .unwrap();
        assert_eq!(out[0].shape, vec![batch, frames / 2, 5, 384]);
        assert!(out[0].data.iter().all(|v| v.is_finite()));
    }
    // Different input, different output.
    let a = s
        .run(&[Input {
            name: "input_features",
            shape: &[1, 80, 20],
            data: InputData::F32(&vec![0.0; 1600]),
        }])
        .unwrap();
    let b = s
        .run(&[Input {
            name: "input_features",
            shape: &[1, 80, 20],
            data: InputData::F32(&vec![0.5; 1600]),
        }])
        .unwrap();
    assert_ne!(a[0].data, b[0].data);
}

#[test]
fn unet_and_vae_run_at_batch_3() {
    let unet_path = model("unet.onnx");
    let unet = inference::load_session(&SessionRequest::new(&unet_path, &contract::UNET)).unwrap();
    let sample = ramp(3 * 8 * 32 * 32, 1.0);
    let audio = ramp(3 * 50 * 384, 1.0);
    let out = unet
        .run(&[
            Input {
                name: "sample",
                shape: &[3, 8, 32, 32],
                data: InputData::F32(&sample),
            },
            Input {
                name: "timestep",
                shape: &[3],
                data: InputData::I64(&[0, 0, 0]),
            },
            Input {
                name: "encoder_hidden_states",
                shape: &[3, 50, 384],
                data: InputData::F32(&audio),
            },
        ])
        .unwrap();
    assert_eq!(out[0].shape, vec![3, 4, 32, 32]);

    let dec_path = model("vae_decoder.onnx");
    let dec =
        inference::load_session(&SessionRequest::new(&dec_path, &contract::VAE_DECODER)).unwrap();
    let img = dec
        .run(&[Input {
            name: "latent",
            shape: &[3, 4, 32, 32],
            data: InputData::F32(&out[0].data),
        }])
        .unwrap();
    assert_eq!(img[0].shape, vec![3, 3, 256, 256]);
    assert!(img[0].data.iter().all(|v| (-1.0..=1.0).contains(v)));

    let enc_path = model("vae_encoder.onnx");
    let enc =
        inference::load_session(&SessionRequest::new(&enc_path, &contract::VAE_ENCODER)).unwrap();
    let lat = enc
        .run(&[Input {
            name: "image",
            shape: &[3, 3, 256, 256],
            data: InputData::F32(&img[0].data),
        }])
        .unwrap();
    assert_eq!(lat[0].shape, vec![3, 4, 32, 32]);
}

#[test]
fn two_users_of_one_model_share_one_session() {
    let path = model("vae_encoder.onnx");
    let a = inference::load_session(&SessionRequest::new(&path, &contract::VAE_ENCODER)).unwrap();
    // The same file through another path spelling.
    let other = path.parent().unwrap().join(".").join("vae_encoder.onnx");
    let b = inference::load_session(&SessionRequest::new(&other, &contract::VAE_ENCODER)).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // Another precision is another session.
    let mut req = SessionRequest::new(&path, &contract::VAE_ENCODER);
    req.precision = Precision::Fp16;
    let c = inference::load_session(&req).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    // Once every user is gone the session is freed, and a new load makes a new one.
    let weak = Arc::downgrade(&a);
    drop((a, b));
    assert!(weak.upgrade().is_none());
}

#[test]
fn model_with_the_wrong_contract_is_refused_naming_shapes() {
    let path = model("vae_encoder.onnx");
    let err =
        inference::load_session(&SessionRequest::new(&path, &contract::VAE_DECODER)).unwrap_err();
    assert!(matches!(err, InferenceError::Contract { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("VAE decoder model has no input 'latent'"),
        "{msg}"
    );
    assert!(msg.contains("'image' f32 [batch,3,256,256]"), "{msg}");

    // Same names, other shape: the UNet's latent output is [B,4,32,32], not the whisper contract.
    let path = model("unet.onnx");
    let err = inference::load_session(&SessionRequest::new(&path, &contract::WHISPER_ENCODER))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("whisper encoder model has no input 'input_features'"),
        "{err}"
    );
}

#[test]
fn a_cached_session_is_still_checked_against_another_contract() {
    let path = model("vae_decoder.onnx");
    let _held =
        inference::load_session(&SessionRequest::new(&path, &contract::VAE_DECODER)).unwrap();
    let err =
        inference::load_session(&SessionRequest::new(&path, &contract::VAE_ENCODER)).unwrap_err();
    assert!(
        err.to_string()
            .contains("VAE encoder model has no input 'image'"),
        "{err}"
    );
}

#[test]
fn missing_and_corrupt_model_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    let err = inference::load_session(&SessionRequest::new(&missing, &contract::UNET)).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");

    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not a protobuf \x00\x01\x02 at all").unwrap();
    let err = inference::load_session(&SessionRequest::new(&corrupt, &contract::UNET)).unwrap_err();
    assert!(matches!(err, InferenceError::Model { .. }), "{err:?}");

    // A real model cut in half.
    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(model("unet.onnx")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err =
        inference::load_session(&SessionRequest::new(&truncated, &contract::UNET)).unwrap_err();
    assert!(matches!(err, InferenceError::Model { .. }), "{err:?}");
}

#[test]
fn unavailable_gpu_falls_back_to_cpu_and_says_why() {
    // The set-up's library is the CPU build of ONNX Runtime: no CUDA, no TensorRT.
    let path = model("unet.onnx");
    for device in [Device::Cuda(0), Device::TensorRt(0)] {
        let mut req = SessionRequest::new(&path, &contract::UNET);
        req.device = device;
        let s = inference::load_session(&req).unwrap();
        assert_eq!(s.device, Device::Cpu);
        let why = s.fallback.as_deref().expect("fallback reason");
        assert!(why.contains(&device.to_string()), "{why}");
        assert!(why.contains("running on the CPU"), "{why}");
        // It still runs.
        let out = s
            .run(&[
                Input {
                    name: "sample",
                    shape: &[1, 8, 32, 32],
                    data: InputData::F32(&vec![0.1; 8192]),
                },
                Input {
                    name: "timestep",
                    shape: &[1],
                    data: InputData::I64(&[0]),
                },
                Input {
                    name: "encoder_hidden_states",
                    shape: &[1, 50, 384],
                    data: InputData::F32(&vec![0.0; 19200]),
                },
            ])
            .unwrap();
        assert_eq!(out[0].shape, vec![1, 4, 32, 32]);
    }
    let mut req = SessionRequest::new(&path, &contract::UNET);
    req.device = Device::Cpu;
    assert!(inference::load_session(&req).unwrap().fallback.is_none());
}

#[test]
fn input_of_the_wrong_size_is_an_error_not_a_crash() {
    let path = model("vae_encoder.onnx");
    let s = inference::load_session(&SessionRequest::new(&path, &contract::VAE_ENCODER)).unwrap();
    let err = s
        .run(&[Input {
            name: "image",
            shape: &[1, 3, 256, 256],
            data: InputData::F32(&[0.0; 10]),
        }])
        .unwrap_err();
    assert!(
        err.to_string().contains("needs 196608 values, got 10"),
        "{err}"
    );
}
