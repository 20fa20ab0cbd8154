//! ONNX Runtime for every element: one environment per process, sessions shared.
//!
//! The runtime library is loaded at run time (`ort`'s `load-dynamic`), looked for in this
//! order: the path an element property gives, `ORT_DYLIB_PATH`, the set-up cache
//! ([`crate::paths::cached_onnxruntime`]), then the system's library search path. The first
//! library that loads stays for the life of the process.
//!
//! Sessions are cached by (model path, device, precision, threads): two elements naming the
//! same model hold one [`SharedSession`], as LiveTalking shares one model across sessions.
//! A GPU device that cannot be used falls back to the CPU and says so in
//! [`SharedSession::fallback`], which the element turns into a warning on the bus.

pub mod contract;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

pub use contract::{Dim, ElemType, FoundDim, FoundTensor, ModelContract, TensorSpec};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA execution provider on the given GPU.
    Cuda(u32),
    /// TensorRT execution provider on the given GPU (CUDA for nodes TensorRT cannot take).
    TensorRt(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::TensorRt(n) => write!(f, "tensorrt:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    /// `cpu`, `cuda`, `cuda:N`, `tensorrt`, `tensorrt:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => (
                k.to_string(),
                Some(i.parse::<u32>().map_err(|_| {
                    format!("device '{s}': '{i}' is not a GPU number (expected e.g. cuda:0)")
                })?),
            ),
            None => (s.clone(), None),
        };
        match (kind.as_str(), index) {
            ("cpu", None) => Ok(Device::Cpu),
            ("cuda", i) => Ok(Device::Cuda(i.unwrap_or(0))),
            ("tensorrt" | "trt", i) => Ok(Device::TensorRt(i.unwrap_or(0))),
            _ => Err(format!(
                "unknown device '{s}': expected cpu, cuda, cuda:N, tensorrt or tensorrt:N"
            )),
        }
    }
}

/// Numeric precision of the computation. `Fp16` turns on TensorRT's fp16 kernels; on CPU and
/// CUDA it selects nothing by itself (load an fp16 model file for that: its inputs and outputs
/// stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "fp16" | "float16" | "half" => Ok(Precision::Fp16),
            other => Err(format!(
                "unknown precision '{other}': expected fp32 or fp16"
            )),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    #[error("{0}")]
    Runtime(String),
    #[error("model file {path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("model file {path}: {message}")]
    Contract { path: PathBuf, message: String },
    #[error("inference failed: {0}")]
    Run(String),
}

/// The process's ONNX Runtime, once loaded.
pub struct Runtime {
    env: ort::environment::Environment,
    /// The library file that was loaded.
    pub library: PathBuf,
    /// ONNX Runtime's version string.
    pub version: String,
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The candidate library paths, in search order, with where each came from.
pub fn runtime_candidates(explicit: Option<&Path>) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(("element property".to_string(), p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(("ORT_DYLIB_PATH".to_string(), PathBuf::from(p)));
    }
    out.push((
        "set-up cache".to_string(),
        crate::paths::cached_onnxruntime(),
    ));
    for dir in ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu"] {
        out.push((
            "system".to_string(),
            Path::new(dir).join("libonnxruntime.so"),
        ));
    }
    // A bare name: the dynamic linker's own search (LD_LIBRARY_PATH, ld.so.cache).
    out.push(("system".to_string(), PathBuf::from("libonnxruntime.so")));
    out
}

/// Loads ONNX Runtime (once per process) and returns it.
///
/// `explicit` is an element's `ort-library` property. When a runtime is already loaded, it is
/// returned whatever `explicit` says (one library per process).
pub fn runtime(explicit: Option<&Path>) -> Result<Arc<Runtime>, InferenceError> {
    let mut guard = RUNTIME.lock().unwrap();
    if let Some(rt) = guard.as_ref() {
        return Ok(rt.clone());
    }
    let mut tried = Vec::new();
    for (origin, path) in runtime_candidates(explicit) {
        let is_bare = path.components().count() == 1;
        if !is_bare && !path.exists() {
            tried.push(format!("  {} ({origin}): no such file", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder.with_name("livetalk").build().map_err(|e| {
                    InferenceError::Runtime(format!(
                        "ONNX Runtime loaded from {} but its environment failed: {e}",
                        path.display()
                    ))
                })?;
                let version = ort::info()
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let rt = Arc::new(Runtime {
                    env,
                    library: path,
                    version,
                });
                *guard = Some(rt.clone());
                return Ok(rt);
            }
            Err(e) => tried.push(format!("  {} ({origin}): {e}", path.display())),
        }
    }
    Err(InferenceError::Runtime(format!(
        "ONNX Runtime library not found. Looked in:\n{}\nRun scripts/setup.sh (it puts \
         libonnxruntime.so.{} from the PyPI onnxruntime wheel into the set-up cache), or set \
         ORT_DYLIB_PATH or the element's ort-library property to a libonnxruntime.so",
        tried.join("\n"),
        crate::paths::ONNXRUNTIME_VERSION
    )))
}

/// What identifies a shared session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub model: PathBuf,
    pub device: Device,
    pub precision: Precision,
    /// Intra-op threads (0: ONNX Runtime's default).
    pub threads: usize,
    /// On TensorRT, the largest batch its optimisation profile covers (`None` elsewhere:
    /// other devices take any batch with one session).
    pub profile_batch: Option<usize>,
}

/// What an element asks for.
#[derive(Debug, Clone)]
pub struct SessionRequest<'a> {
    pub model: &'a Path,
    pub contract: &'static ModelContract,
    pub device: Device,
    pub precision: Precision,
    pub threads: usize,
    /// The element's `ort-library` property, if set.
    pub runtime_library: Option<&'a Path>,
    /// The largest batch the element runs: on TensorRT the optimisation profile covers
    /// batches 1 to this ([`tensorrt_profile`]); ignored on other devices.
    pub max_batch: Option<usize>,
}

impl<'a> SessionRequest<'a> {
    pub fn new(model: &'a Path, contract: &'static ModelContract) -> Self {
        Self {
            model,
            contract,
            device: Device::Cpu,
            precision: Precision::Fp32,
            threads: 0,
            runtime_library: None,
            max_batch: None,
        }
    }
}

/// A loaded model, shared by every element that names the same (model, device, precision).
pub struct SharedSession {
    pub key: SessionKey,
    pub contract: &'static ModelContract,
    /// The device the session really runs on.
    pub device: Device,
    /// Why the requested device was not used, when it was not.
    pub fallback: Option<String>,
    pub inputs: Vec<FoundTensor>,
    pub outputs: Vec<FoundTensor>,
    session: Mutex<Session>,
}

impl fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSession")
            .field("key", &self.key)
            .field("device", &self.device)
            .field("fallback", &self.fallback)
            .finish()
    }
}

static SESSIONS: LazyLock<Mutex<HashMap<SessionKey, Weak<SharedSession>>>> =
    LazyLock::new(Default::default);

fn elem_type(t: TensorElementType) -> Option<ElemType> {
    match t {
        TensorElementType::Float32 => Some(ElemType::F32),
        TensorElementType::Float16 => Some(ElemType::F16),
        TensorElementType::Int64 => Some(ElemType::I64),
        _ => None,
    }
}

fn found_tensors(outlets: &[ort::value::Outlet]) -> Vec<FoundTensor> {
    outlets
        .iter()
        .map(|o| match o.dtype() {
            ValueType::Tensor {
                ty,
                shape,
                dimension_symbols,
            } => FoundTensor {
                name: o.name().to_string(),
                elem: elem_type(*ty),
                elem_name: format!("{ty}"),
                dims: shape
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        if d >= 0 {
                            FoundDim::Fixed(d)
                        } else {
                            FoundDim::Dynamic(
                                dimension_symbols
                                    .get(i)
                                    .map(|s| s.to_string())
                                    .unwrap_or_default(),
                            )
                        }
                    })
                    .collect(),
            },
            other => FoundTensor {
                name: o.name().to_string(),
                elem: None,
                elem_name: format!("{other}"),
                dims: Vec::new(),
            },
        })
        .collect()
}

/// TensorRT's optimisation profile for a model whose inputs are all fixed but for their
/// first dimension, `batch`: the shapes at batch 1 (the profile's min) and at `max_batch`
/// (its opt and max) in ONNX Runtime's form (`name:1x8x32x32,...`). `None` when an input has
/// another dynamic dimension (the whisper encoder's `frames`): TensorRT then makes its
/// profiles from the shapes it meets.
///
/// Without a profile TensorRT builds an engine for the first shape it meets and rebuilds it
/// whenever a batch falls outside: a live stream would stall for a build with each new
/// batch size. With one covering 1..=max every batch runs on the one engine, which the
/// engine cache keeps across runs.
pub fn tensorrt_profile(contract: &ModelContract, max_batch: usize) -> Option<(String, String)> {
    let shapes = |batch: usize| -> Option<String> {
        let mut parts = Vec::new();
        for spec in contract.inputs {
            let mut dims = Vec::new();
            for (i, d) in spec.dims.iter().enumerate() {
                match d {
                    Dim::Fixed(n) => dims.push(n.to_string()),
                    Dim::Symbolic("batch") if i == 0 => dims.push(batch.to_string()),
                    Dim::Symbolic(_) => return None,
                }
            }
            parts.push(format!("{}:{}", spec.name, dims.join("x")));
        }
        Some(parts.join(","))
    };
    Some((shapes(1)?, shapes(max_batch.max(1))?))
}

fn gpu_providers(
    device: Device,
    precision: Precision,
    profile: Option<(String, String)>,
) -> Result<Vec<ep::ExecutionProviderDispatch>, String> {
    let available = |ok: ort::Result<bool>, name: &str| -> Result<(), String> {
        match ok {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "this ONNX Runtime library has no {name} execution provider (use the \
                 libonnxruntime from the PyPI onnxruntime-gpu wheel)"
            )),
            Err(e) => Err(format!("cannot query {name} support: {e}")),
        }
    };
    match device {
        Device::Cpu => Ok(Vec::new()),
        Device::Cuda(n) => {
            available(ep::CUDA::is_available(), "CUDA")?;
            Ok(vec![cuda_provider(n)?])
        }
        Device::TensorRt(n) => {
            available(ep::TensorRT::is_available(), "TensorRT")?;
            let cache = crate::paths::cache_dir().join("tensorrt");
            let _ = std::fs::create_dir_all(&cache);
            let mut trt = ep::TensorRT::default()
                .with_device_id(n as i32)
                .with_fp16(precision == Precision::Fp16)
                .with_engine_cache(true)
                .with_engine_cache_path(cache.display())
                .with_timing_cache(true)
                .with_timing_cache_path(cache.display());
            if let Some((min, max)) = profile {
                trt = trt
                    .with_profile_min_shapes(min)
                    .with_profile_opt_shapes(&max)
                    .with_profile_max_shapes(max);
            }
            Ok(vec![trt.build().error_on_failure(), cuda_provider(n)?])
        }
    }
}

/// How cuDNN picks its convolution algorithms: `LIVETALK_CUDNN_CONV_SEARCH` = `heuristic`
/// (the default here), `exhaustive` (ONNX Runtime's own default) or `default`.
///
/// Exhaustive search times every algorithm the first time a convolution meets a new input
/// shape. A live element meets a new shape with every new batch size, so each first batch of
/// a size would stall the stream while it searches; the heuristic choice costs no such stall.
pub const CUDNN_CONV_SEARCH_ENV: &str = "LIVETALK_CUDNN_CONV_SEARCH";

fn cudnn_conv_search() -> Result<ep::cuda::ConvAlgorithmSearch, String> {
    use ep::cuda::ConvAlgorithmSearch as S;
    match std::env::var(CUDNN_CONV_SEARCH_ENV).as_deref() {
        Err(_) | Ok("") | Ok("heuristic") => Ok(S::Heuristic),
        Ok("exhaustive") => Ok(S::Exhaustive),
        Ok("default") => Ok(S::Default),
        Ok(other) => Err(format!(
            "{CUDNN_CONV_SEARCH_ENV}='{other}': expected heuristic, exhaustive or default"
        )),
    }
}

fn cuda_provider(n: u32) -> Result<ep::ExecutionProviderDispatch, String> {
    Ok(ep::CUDA::default()
        .with_device_id(n as i32)
        .with_conv_algorithm_search(cudnn_conv_search()?)
        .build()
        .error_on_failure())
}

fn build_session(
    rt: &Runtime,
    model: &Path,
    threads: usize,
    providers: Vec<ep::ExecutionProviderDispatch>,
) -> Result<Session, String> {
    let mut builder = Session::builder(&rt.env).map_err(|e| e.to_string())?;
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| e.to_string())?
            .with_inter_threads(1)
            .map_err(|e| e.to_string())?;
    }
    if !providers.is_empty() {
        builder = builder
            .with_execution_providers(providers)
            .map_err(|e| e.to_string())?;
    }
    builder.commit_from_file(model).map_err(|e| e.to_string())
}

/// [`load_session`] for an element: a failure becomes a GStreamer error message naming
/// `what` ("whisper encoder", "Piper voice", ...), and a fallback from the requested GPU to
/// the CPU becomes a warning on the element's bus.
pub fn load_for_element(
    element: &impl gst::prelude::IsA<gst::Element>,
    req: &SessionRequest<'_>,
    what: &str,
) -> Result<Arc<SharedSession>, gst::ErrorMessage> {
    let session = load_session(req).map_err(|e| {
        gst::error_msg!(
            gst::ResourceError::OpenRead,
            ("Cannot load the {what}: {e}")
        )
    })?;
    if let Some(why) = &session.fallback {
        gst::element_warning!(element, gst::ResourceError::Settings, ("{why}"));
    }
    Ok(session)
}

/// Loads (or finds already loaded) the session for a model, checked against its contract.
pub fn load_session(req: &SessionRequest<'_>) -> Result<Arc<SharedSession>, InferenceError> {
    let model_err = |message: String| InferenceError::Model {
        path: req.model.to_path_buf(),
        message,
    };
    if !req.model.is_file() {
        return Err(model_err(format!(
            "not found (the {} model; see models/README.md for how to make it)",
            req.contract.name
        )));
    }
    let canonical = req
        .model
        .canonicalize()
        .map_err(|e| model_err(e.to_string()))?;
    let key = SessionKey {
        model: canonical,
        device: req.device,
        precision: req.precision,
        threads: req.threads,
        profile_batch: req
            .max_batch
            .filter(|_| matches!(req.device, Device::TensorRt(_))),
    };
    let rt = runtime(req.runtime_library)?;

    // Held while loading, so that two elements asking at once load the model once.
    let mut sessions = SESSIONS.lock().unwrap();
    sessions.retain(|_, w| w.strong_count() > 0);
    if let Some(shared) = sessions.get(&key).and_then(Weak::upgrade) {
        if shared.contract != req.contract {
            req.contract
                .check(&shared.inputs, &shared.outputs)
                .map_err(|message| InferenceError::Contract {
                    path: req.model.to_path_buf(),
                    message,
                })?;
        }
        return Ok(shared);
    }

    let mut fallback = None;
    let mut device = req.device;
    let profile = key
        .profile_batch
        .and_then(|b| tensorrt_profile(req.contract, b));
    let session = match gpu_providers(req.device, req.precision, profile) {
        Ok(providers) if !providers.is_empty() => {
            match build_session(&rt, req.model, req.threads, providers) {
                Ok(s) => s,
                Err(e) => {
                    fallback = Some(format!(
                        "device {} could not be used ({e}); running on the CPU",
                        req.device
                    ));
                    device = Device::Cpu;
                    build_session(&rt, req.model, req.threads, Vec::new()).map_err(model_err)?
                }
            }
        }
        Ok(_) => build_session(&rt, req.model, req.threads, Vec::new()).map_err(model_err)?,
        Err(why) => {
            fallback = Some(format!(
                "device {} is not available ({why}); running on the CPU",
                req.device
            ));
            device = Device::Cpu;
            build_session(&rt, req.model, req.threads, Vec::new()).map_err(model_err)?
        }
    };

    let inputs = found_tensors(session.inputs());
    let outputs = found_tensors(session.outputs());
    req.contract
        .check(&inputs, &outputs)
        .map_err(|message| InferenceError::Contract {
            path: req.model.to_path_buf(),
            message,
        })?;

    let shared = Arc::new(SharedSession {
        key: key.clone(),
        contract: req.contract,
        device,
        fallback,
        inputs,
        outputs,
        session: Mutex::new(session),
    });
    sessions.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}

/// Number of distinct sessions alive in the process (for tests and stats).
pub fn live_sessions() -> usize {
    SESSIONS
        .lock()
        .unwrap()
        .values()
        .filter(|w| w.strong_count() > 0)
        .count()
}

/// Input data for [`SharedSession::run`].
#[derive(Debug, Clone, Copy)]
pub enum InputData<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// One input for [`SharedSession::run`]: name, shape, data (row-major).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub name: &'static str,
    pub shape: &'a [usize],
    pub data: InputData<'a>,
}

/// One f32 output, copied out of the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Stops a [`SharedSession::run_cancellable`] in flight (ONNX Runtime's terminate flag).
pub struct RunCancel(ort::session::RunOptions);

impl RunCancel {
    pub fn new() -> Result<Self, InferenceError> {
        ort::session::RunOptions::new()
            .map(Self)
            .map_err(|e| InferenceError::Run(e.to_string()))
    }

    /// The run stops as soon as the runtime sees the flag (between operators).
    pub fn cancel(&self) {
        let _ = self.0.terminate();
    }
}

impl SharedSession {
    /// The batch size the model file fixes, if it fixes one: the smallest fixed first
    /// dimension among the inputs whose contract names that dimension `batch`. `None`: the
    /// batch dimension is dynamic (any batch runs).
    pub fn fixed_batch(&self) -> Option<usize> {
        self.contract
            .inputs
            .iter()
            .filter(|spec| spec.dims.first() == Some(&Dim::Symbolic("batch")))
            .filter_map(|spec| self.inputs.iter().find(|t| t.name == spec.name))
            .filter_map(|t| match t.dims.first() {
                Some(FoundDim::Fixed(n)) if *n > 0 => Some(*n as usize),
                _ => None,
            })
            .min()
    }

    /// A custom entry of the model's metadata (ONNX `metadata_props`), if it has one.
    pub fn metadata(&self, key: &str) -> Option<String> {
        let session = self.session.lock().unwrap();
        session.metadata().ok()?.custom(key)
    }

    /// Runs the model on the inputs, returning the contract's outputs in contract order.
    pub fn run(&self, inputs: &[Input<'_>]) -> Result<Vec<Output>, InferenceError> {
        Ok(self.run_with_optional(inputs, &[])?.0)
    }

    /// [`SharedSession::run`], plus outputs outside the contract that some models have
    /// (`None` for each one this model lacks).
    #[allow(clippy::type_complexity)]
    pub fn run_with_optional(
        &self,
        inputs: &[Input<'_>],
        optional: &[&str],
    ) -> Result<(Vec<Output>, Vec<Option<Output>>), InferenceError> {
        self.run_cancellable(inputs, optional, None)
    }

    /// [`SharedSession::run_with_optional`] that [`RunCancel::cancel`] (from another thread)
    /// stops early, with an error.
    #[allow(clippy::type_complexity)]
    pub fn run_cancellable(
        &self,
        inputs: &[Input<'_>],
        optional: &[&str],
        cancel: Option<&RunCancel>,
    ) -> Result<(Vec<Output>, Vec<Option<Output>>), InferenceError> {
        let run_err = |e: ort::Error| InferenceError::Run(e.to_string());
        let mut values: Vec<(&str, ort::session::SessionInputValue<'_>)> = Vec::new();
        for input in inputs {
            let expected: usize = input.shape.iter().product();
            let len = match input.data {
                InputData::F32(d) => d.len(),
                InputData::I64(d) => d.len(),
            };
            if expected != len {
                return Err(InferenceError::Run(format!(
                    "input '{}': shape {:?} needs {expected} values, got {len}",
                    input.name, input.shape
                )));
            }
            let shape = input.shape.to_vec();
            let value: ort::session::SessionInputValue<'_> = match input.data {
                InputData::F32(d) => TensorRef::from_array_view((shape, d))
                    .map_err(run_err)?
                    .into(),
                InputData::I64(d) => TensorRef::from_array_view((shape, d))
                    .map_err(run_err)?
                    .into(),
            };
            values.push((input.name, value));
        }
        let mut session = self.session.lock().unwrap();
        let outputs = match cancel {
            Some(c) => session.run_with_options(values, &c.0),
            None => session.run(values),
        }
        .map_err(run_err)?;
        let extract = |value: &ort::value::DynValue| -> Result<Output, InferenceError> {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
            Ok(Output {
                shape: shape.iter().map(|&d| d as usize).collect(),
                data: data.to_vec(),
            })
        };
        let required = self
            .contract
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(spec.name).ok_or_else(|| {
                    InferenceError::Run(format!("model gave no output '{}'", spec.name))
                })?;
                extract(value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let optional = optional
            .iter()
            .map(|name| outputs.get(name).map(extract).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok((required, optional))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_parsing() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("CUDA".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
        assert_eq!("tensorrt".parse::<Device>().unwrap(), Device::TensorRt(0));
        assert_eq!("trt:2".parse::<Device>().unwrap(), Device::TensorRt(2));
        let err = "npu".parse::<Device>().unwrap_err();
        assert!(err.contains("unknown device 'npu'"), "{err}");
        assert!("cuda:x".parse::<Device>().is_err());
        assert!("cpu:1".parse::<Device>().is_err());
        for d in [Device::Cpu, Device::Cuda(3), Device::TensorRt(0)] {
            assert_eq!(d.to_string().parse::<Device>().unwrap(), d);
        }
    }

    #[test]
    fn tensorrt_profiles_cover_batch_one_to_max() {
        let (min, max) = tensorrt_profile(&contract::UNET, 16).unwrap();
        assert_eq!(
            min,
            "sample:1x8x32x32,timestep:1,encoder_hidden_states:1x50x384"
        );
        assert_eq!(
            max,
            "sample:16x8x32x32,timestep:16,encoder_hidden_states:16x50x384"
        );
        let (min, max) = tensorrt_profile(&contract::VAE_DECODER, 0).unwrap();
        assert_eq!(
            (min.as_str(), max.as_str()),
            ("latent:1x4x32x32", "latent:1x4x32x32")
        );
        // Another dynamic dimension: no profile.
        assert_eq!(tensorrt_profile(&contract::WHISPER_ENCODER, 8), None);
    }

    #[test]
    fn precision_parsing() {
        assert_eq!("fp16".parse::<Precision>().unwrap(), Precision::Fp16);
        assert_eq!("FP32".parse::<Precision>().unwrap(), Precision::Fp32);
        assert!("int8".parse::<Precision>().is_err());
    }

    #[test]
    fn candidates_follow_the_documented_order() {
        let c = runtime_candidates(Some(Path::new("/x/libonnxruntime.so")));
        assert_eq!(c[0].0, "element property");
        let cache = c.iter().position(|(o, _)| o == "set-up cache").unwrap();
        let system = c.iter().position(|(o, _)| o == "system").unwrap();
        assert!(cache < system);
        assert_eq!(c.last().unwrap().1, PathBuf::from("libonnxruntime.so"));
    }
}
