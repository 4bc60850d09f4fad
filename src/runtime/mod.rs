//! ONNX Runtime: finding the shared library, loading it once per process,
//! choosing the execution provider and opening one session per model.
//!
//! The library is not linked at build time (`ort` with `load-dynamic`): a
//! run finds `libonnxruntime.so` at start-up ([`locate_library`]) and every
//! failure — missing file, wrong version, no CUDA — is a [`RuntimeError`]
//! with the fix in its message, never a panic. `ort` allows one
//! environment per process and cannot unload or swap the library, so the
//! first successful [`Runtime::load`] is shared by every later one.

use std::ffi::{c_char, c_int, CStr};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::logging::LogLevel;
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::AsPointer;

use crate::infer::ModelSession;
use crate::model::{Layout, VerifiedModel};

mod graph;
mod locate;

use graph::{dims, f32_tensor_shape, names};
use locate::{library_version, version_from_build_info, version_from_file_name};
pub use locate::{locate_library, locate_library_with, ort_dylib_path_env, search_dirs};

/// The ONNX Runtime minor version `ort`'s `api-31` feature needs.
pub const MIN_ORT_MINOR: u32 = 31;

/// Names ONNX Runtime uses for the execution providers we choose between.
pub const CPU_PROVIDER: &str = "CPUExecutionProvider";
pub const CUDA_PROVIDER: &str = "CUDAExecutionProvider";

/// Where the project keeps its own copy of the library (`make ort`).
pub const PROJECT_LIB_DIR: &str = ".deps/onnxruntime";

/// How to get the library, repeated wherever it is missing.
const HOW_TO_GET: &str = "run `make ort` (which runs `tools/fetch_ort.sh .deps/onnxruntime`), \
or set ORT_DYLIB_PATH to a libonnxruntime.so taken from the `onnxruntime` PyPI wheel (version 1.31 or newer; \
`onnxruntime-gpu` for CUDA)";

/// Which hardware runs the models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// CUDA, or an error if this ONNX Runtime build or machine cannot run it.
    Cuda,
    /// CUDA when it works here, else CPU.
    Auto,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why ONNX Runtime or a model session cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("ORT_DYLIB_PATH is set to {path}, but there is no file there; fix the path or unset it to use the project's copy")]
    EnvPathMissing { path: PathBuf },
    #[error(
        "ONNX Runtime library (libonnxruntime.so) not found; looked in {}; to get it, {HOW_TO_GET}",
        list_paths(searched)
    )]
    LibraryNotFound { searched: Vec<PathBuf> },
    #[error("cannot load ONNX Runtime from {path}: {reason}; {HOW_TO_GET}")]
    Load { path: PathBuf, reason: String },
    #[error("ONNX Runtime from {path} could not start")]
    Environment {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error(
        "--device cuda was requested, but CUDA cannot be used: {reason} (ONNX Runtime {library}, available providers: {}); \
         use --device cpu or auto, or point ORT_DYLIB_PATH at libonnxruntime.so from the `onnxruntime-gpu` wheel on a machine with CUDA and cuDNN",
        available.join(", ")
    )]
    CudaUnavailable { library: PathBuf, available: Vec<String>, reason: String },
    #[error("model {id}: ONNX Runtime cannot open {path}")]
    Session {
        id: String,
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("model {id} ({path}) does not match its card: {problem}")]
    ModelMismatch { id: String, path: PathBuf, problem: String },
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no places".into();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// What stays loaded for the life of the process.
struct Loaded {
    library_path: PathBuf,
    version: String,
    build_info: String,
    available_providers: Vec<String>,
    load_time: Duration,
    env: Environment,
}

/// `ort` cannot build a second environment in one process, nor load a
/// second library, so the first successful load is kept here.
static LOADED: Mutex<Option<Arc<Loaded>>> = Mutex::new(None);

/// A loaded ONNX Runtime with its execution provider chosen.
#[derive(Clone)]
pub struct Runtime {
    pub library_path: PathBuf,
    /// Library version, e.g. "1.32.0".
    pub version: String,
    /// ONNX Runtime's build string (git branch, commit, flags).
    pub build_info: String,
    /// Execution providers compiled into this library.
    pub available_providers: Vec<String>,
    /// What was asked for.
    pub device: Device,
    /// The provider sessions will run on, e.g. "CPUExecutionProvider".
    pub provider: String,
    /// How long finding, loading and starting the library took (the first
    /// time in this process; later loads reuse it).
    pub load_time: Duration,
    loaded: Arc<Loaded>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library_path", &self.library_path)
            .field("version", &self.version)
            .field("available_providers", &self.available_providers)
            .field("device", &self.device)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Finds and loads ONNX Runtime (once per process) and picks the
    /// execution provider for `device`.
    ///
    /// # Errors
    /// The library is missing or unusable, or `device` is
    /// [`Device::Cuda`] and CUDA cannot run here (no silent CPU fallback).
    pub fn load(device: Device) -> Result<Runtime, RuntimeError> {
        let loaded = load_shared()?;
        let cuda = if device == Device::Cpu { Err("not requested".to_string()) } else { probe_cuda(&loaded) };
        let provider = match (device, cuda) {
            (Device::Cpu, _) => CPU_PROVIDER,
            (_, Ok(())) => CUDA_PROVIDER,
            (Device::Auto, Err(reason)) => {
                log::info!("--device auto: using CPU ({reason})");
                CPU_PROVIDER
            }
            (Device::Cuda, Err(reason)) => {
                return Err(RuntimeError::CudaUnavailable {
                    library: loaded.library_path.clone(),
                    available: loaded.available_providers.clone(),
                    reason,
                })
            }
        };
        Ok(Runtime {
            library_path: loaded.library_path.clone(),
            version: loaded.version.clone(),
            build_info: loaded.build_info.clone(),
            available_providers: loaded.available_providers.clone(),
            device,
            provider: provider.to_string(),
            load_time: loaded.load_time,
            loaded,
        })
    }

    /// Whether this library was built with the CUDA execution provider
    /// (it may still fail to start without a GPU or cuDNN).
    pub fn has_cuda(&self) -> bool {
        self.available_providers.iter().any(|p| p == CUDA_PROVIDER)
    }

    /// Opens a session for a verified model on the chosen provider and
    /// checks the graph against the card: input and output names, element
    /// type f32, and every static dimension.
    ///
    /// `intra_threads` is ONNX Runtime's intra-op pool size; 0 lets it
    /// choose (one per core).
    ///
    /// # Errors
    /// The file cannot be opened as a model, the provider cannot be
    /// registered, or the graph does not match the card.
    pub fn session(&self, model: &VerifiedModel, intra_threads: usize) -> Result<ModelSession, RuntimeError> {
        let card = &model.card;
        let ort_err =
            |source: ort::Error| RuntimeError::Session { id: card.id.clone(), path: model.onnx_path.clone(), source };
        let mut builder = Session::builder(&self.loaded.env).map_err(ort_err)?;
        if intra_threads > 0 {
            builder = builder.with_intra_threads(intra_threads).map_err(|e| ort_err(e.into()))?;
        }
        // Spinning intra-op threads would burn the cores decode workers share.
        builder = builder.with_intra_op_spinning(false).map_err(|e| ort_err(e.into()))?;
        if self.provider == CUDA_PROVIDER {
            append_cuda(&mut builder).map_err(ort_err)?;
        }
        let session = builder.commit_from_file(&model.onnx_path).map_err(ort_err)?;
        let mismatch = |problem: String| RuntimeError::ModelMismatch {
            id: card.id.clone(),
            path: model.onnx_path.clone(),
            problem,
        };

        let spec = &card.input;
        let (c, h, w) = (spec.channels as i64, spec.height as i64, spec.width as i64);
        let expected_in: [i64; 3] = match spec.layout {
            Layout::NCHW => [c, h, w],
            Layout::NHWC => [h, w, c],
        };
        let input = session.inputs().iter().find(|o| o.name() == spec.name).ok_or_else(|| {
            mismatch(format!("no input named {:?} (the graph has {})", spec.name, names(session.inputs())))
        })?;
        if session.inputs().len() > 1 {
            return Err(mismatch(format!(
                "the graph has {} inputs ({}); only one is supported",
                session.inputs().len(),
                names(session.inputs())
            )));
        }
        let in_shape = f32_tensor_shape(input.dtype()).map_err(|e| mismatch(format!("input {:?} {e}", spec.name)))?;
        let layout_name = format!("{:?}", spec.layout);
        if in_shape.len() != 4 {
            return Err(mismatch(format!(
                "input {:?} has rank {} {}, the card's {layout_name} layout needs rank 4",
                spec.name,
                in_shape.len(),
                dims(&in_shape)
            )));
        }
        for (i, (&got, &want)) in in_shape[1..].iter().zip(&expected_in).enumerate() {
            if got >= 0 && got != want {
                return Err(mismatch(format!(
                    "input {:?} has shape {}, the card says {layout_name} {} (dimension {} is {got}, not {want})",
                    spec.name,
                    dims(&in_shape),
                    dims(&[-1, expected_in[0], expected_in[1], expected_in[2]]),
                    i + 1
                )));
            }
        }
        let fixed_batch = (in_shape[0] > 0).then_some(in_shape[0] as usize);

        let out_spec = &card.output;
        let output = session.outputs().iter().find(|o| o.name() == out_spec.name).ok_or_else(|| {
            mismatch(format!("no output named {:?} (the graph has {})", out_spec.name, names(session.outputs())))
        })?;
        let out_shape =
            f32_tensor_shape(output.dtype()).map_err(|e| mismatch(format!("output {:?} {e}", out_spec.name)))?;
        if out_shape.is_empty() {
            return Err(mismatch(format!("output {:?} is a scalar; it needs a batch dimension", out_spec.name)));
        }
        let per_image = &out_shape[1..];
        if per_image.iter().all(|&d| d >= 0) {
            let n: i64 = per_image.iter().product();
            if n != out_spec.labels.len() as i64 {
                return Err(mismatch(format!(
                    "output {:?} has shape {} ({n} values per image), the card lists {} labels",
                    out_spec.name,
                    dims(&out_shape),
                    out_spec.labels.len()
                )));
            }
        }

        log::debug!(
            "model {}: session on {} with {} intra-op threads, input {} {}, output {} {}",
            card.id,
            self.provider,
            intra_threads,
            spec.name,
            dims(&in_shape),
            out_spec.name,
            dims(&out_shape)
        );
        let item_shape = expected_in.map(|d| d as usize);
        Ok(ModelSession::new(session, card, item_shape, fixed_batch, self.provider.clone()))
    }
}

/// Loads the library and environment, or returns the ones already loaded.
fn load_shared() -> Result<Arc<Loaded>, RuntimeError> {
    let mut slot = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(loaded) = slot.as_ref() {
        return Ok(loaded.clone());
    }
    let started = Instant::now();
    let path = locate_library()?;
    // `ort` has `expect`s on some failure paths (e.g. a library that
    // exports no API); a panic must still become an error, not a crash.
    let result = std::panic::catch_unwind(|| init(&path)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(RuntimeError::Load { path: path.clone(), reason: format!("ort panicked: {reason}") })
    });
    let mut loaded = result?;
    loaded.load_time = started.elapsed();
    log::debug!(
        "loaded ONNX Runtime {} from {} in {:.0?}",
        loaded.version,
        loaded.library_path.display(),
        loaded.load_time
    );
    let loaded = Arc::new(loaded);
    *slot = Some(loaded.clone());
    Ok(loaded)
}

fn init(path: &Path) -> Result<Loaded, RuntimeError> {
    let builder =
        ort::init_from(path).map_err(|e| RuntimeError::Load { path: path.to_path_buf(), reason: e.to_string() })?;
    // ORT logs through our callback into `log` (target "onnxruntime"), so
    // its warnings follow RUST_LOG instead of going straight to stderr.
    let logger: ort::logging::LoggerFunction = Arc::new(|level, category, _id, location, message| {
        let level = match level {
            LogLevel::Verbose => log::Level::Trace,
            LogLevel::Info => log::Level::Debug,
            LogLevel::Warning => log::Level::Warn,
            LogLevel::Error | LogLevel::Fatal => log::Level::Error,
        };
        log::log!(target: "onnxruntime", level, "[{category}] {message} ({location})");
    });
    let env = builder
        .with_name("nightscreen")
        // Telemetry events are off; ORT may still write a small cache
        // under ~/.cache (or XDG_CACHE_HOME), which nothing here reads.
        .with_telemetry(false)
        .with_logger(logger)
        .build()
        .map_err(|source| RuntimeError::Environment { path: path.to_path_buf(), source })?;
    // With a custom logger ORT starts at verbose; only warnings matter.
    env.set_log_level(LogLevel::Warning);
    let build_info = ort::info().to_string();
    let version = library_version(path)
        .or_else(|| version_from_build_info(&build_info))
        .or_else(|| version_from_file_name(path))
        .unwrap_or_else(|| "unknown".into());
    let available_providers =
        available_providers().map_err(|source| RuntimeError::Environment { path: path.to_path_buf(), source })?;
    Ok(Loaded {
        library_path: path.to_path_buf(),
        version,
        build_info,
        available_providers,
        load_time: Duration::ZERO,
        env,
    })
}

/// The providers compiled into the loaded library.
fn available_providers() -> Result<Vec<String>, ort::Error> {
    let api = ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut len: c_int = 0;
    // SAFETY: out-pointers are valid; on success ORT owns `list` until
    // ReleaseAvailableProviders, which is called once below.
    unsafe { ort::Error::result_from_status((api.GetAvailableProviders)(&mut list, &mut len))? };
    if list.is_null() {
        return Ok(Vec::new());
    }
    let names = (0..len.max(0) as usize)
        .filter_map(|i| {
            // SAFETY: `list` holds `len` NUL-terminated strings.
            let p = unsafe { *list.add(i) };
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        })
        .collect();
    // SAFETY: releases exactly what GetAvailableProviders returned.
    unsafe { ort::Error::result_from_status((api.ReleaseAvailableProviders)(list, len))? };
    Ok(names)
}

/// Registers CUDA (device 0) on a session builder. Registration reports
/// its failure directly, so nothing falls back to CPU silently (the same
/// effect as `ep::CUDA::default().build().error_on_failure()`, which needs
/// `ort`'s `cuda` feature).
fn append_cuda(builder: &mut SessionBuilder) -> Result<(), ort::Error> {
    let api = ort::api();
    let mut options: *mut ort::sys::OrtCUDAProviderOptionsV2 = std::ptr::null_mut();
    // SAFETY: standard create / append / release sequence of the C API;
    // the options are copied by Append and released exactly once.
    unsafe {
        ort::Error::result_from_status((api.CreateCUDAProviderOptions)(&mut options))?;
        let appended = ort::Error::result_from_status((api.SessionOptionsAppendExecutionProvider_CUDA_V2)(
            builder.ptr_mut(),
            options,
        ));
        (api.ReleaseCUDAProviderOptions)(options);
        appended
    }
}

/// Whether CUDA can run here: compiled in, and its provider library (with
/// CUDA and cuDNN) loads. Registration on a throwaway builder loads it.
fn probe_cuda(loaded: &Loaded) -> Result<(), String> {
    if !loaded.available_providers.iter().any(|p| p == CUDA_PROVIDER) {
        return Err(format!("this ONNX Runtime build has no {CUDA_PROVIDER}"));
    }
    let mut builder = Session::builder(&loaded.env).map_err(|e| format!("cannot create session options: {e}"))?;
    append_cuda(&mut builder).map_err(|e| format!("{CUDA_PROVIDER} failed to start: {e}"))
}
