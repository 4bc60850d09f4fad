//! ONNX Runtime: finding the shared library, loading it once per process,
//! choosing the execution provider ([`Provider`]) and opening one checked
//! session per model ([`session`]).
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

mod graph;
mod locate;
pub mod session;

use locate::{library_version, version_from_build_info, version_from_file_name};
pub use locate::{locate_library, locate_library_with, ort_dylib_path_env, search_dirs};
pub use session::{activate, sigmoid, softmax, GateSession, LookSession, ModelSession, ScoreError};

/// The ONNX Runtime minor version `ort`'s `api-31` feature needs.
pub const MIN_ORT_MINOR: u32 = 31;

/// The execution providers a run chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
}

impl Provider {
    /// The name ONNX Runtime uses, as written to run.json and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The provider sessions will run on.
    pub provider: Provider,
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
            (Device::Cpu, _) => Provider::Cpu,
            (_, Ok(())) => Provider::Cuda,
            (Device::Auto, Err(reason)) => {
                log::info!("--device auto: using CPU ({reason})");
                Provider::Cpu
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
            provider,
            load_time: loaded.load_time,
            loaded,
        })
    }

    /// Whether this library was built with the CUDA execution provider
    /// (it may still fail to start without a GPU or cuDNN).
    pub fn has_cuda(&self) -> bool {
        self.available_providers.iter().any(|p| p == Provider::Cuda.as_str())
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
        let reason = crate::error::panic_text(panic.as_ref());
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
    let cuda = Provider::Cuda.as_str();
    if !loaded.available_providers.iter().any(|p| p == cuda) {
        return Err(format!("this ONNX Runtime build has no {cuda}"));
    }
    let mut builder = Session::builder(&loaded.env).map_err(|e| format!("cannot create session options: {e}"))?;
    append_cuda(&mut builder).map_err(|e| format!("{cuda} failed to start: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_keep_onnx_runtime_names() {
        assert_eq!(Provider::Cpu.as_str(), "CPUExecutionProvider");
        assert_eq!(Provider::Cuda.as_str(), "CUDAExecutionProvider");
        assert_eq!(Provider::Cuda.to_string(), Provider::Cuda.as_str());
    }
}
