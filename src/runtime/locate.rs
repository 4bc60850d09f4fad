//! Finding `libonnxruntime.so` and telling its version, before and after
//! it is loaded. Kept apart from loading so the search order can be tested
//! without touching the process environment or loading anything.

use std::ffi::{CStr, OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{RuntimeError, PROJECT_LIB_DIR};

/// The folders searched after `ORT_DYLIB_PATH`, in order: beside the
/// running executable, then `.deps/onnxruntime/` under the current folder
/// and under the source tree this binary was built from.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        dirs.push(dir);
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join(PROJECT_LIB_DIR));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(PROJECT_LIB_DIR));
    dirs.dedup();
    dirs
}

/// Finds `libonnxruntime.so`: `ORT_DYLIB_PATH` if set, else the first of
/// [`search_dirs`] holding it.
///
/// # Errors
/// `ORT_DYLIB_PATH` names a missing file, or no folder holds the library.
pub fn locate_library() -> Result<PathBuf, RuntimeError> {
    locate_library_with(std::env::var_os("ORT_DYLIB_PATH").as_deref(), &search_dirs())
}

/// [`locate_library`] with the value of `ORT_DYLIB_PATH` and the folders
/// given, so it can be tested without touching the process environment.
/// An empty value counts as unset (as `ort` itself does).
///
/// # Errors
/// As [`locate_library`].
pub fn locate_library_with(ort_dylib_path: Option<&OsStr>, dirs: &[PathBuf]) -> Result<PathBuf, RuntimeError> {
    if let Some(value) = ort_dylib_path.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if path.is_file() { Ok(absolute(path)) } else { Err(RuntimeError::EnvPathMissing { path }) };
    }
    for dir in dirs {
        if let Some(found) = library_in(dir) {
            return Ok(absolute(found));
        }
    }
    Err(RuntimeError::LibraryNotFound { searched: dirs.to_vec() })
}

/// `dir/libonnxruntime.so`, else the newest-looking `libonnxruntime.so.*`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join("libonnxruntime.so");
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(OsStr::to_str).is_some_and(|n| n.starts_with("libonnxruntime.so.")) && p.is_file()
        })
        .collect();
    versioned.sort_by_key(|p| version_key(p));
    versioned.pop()
}

/// Numeric version from a `libonnxruntime.so.1.32.0` file name, for sorting.
fn version_key(path: &Path) -> Vec<u32> {
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or_default();
    name.trim_start_matches("libonnxruntime.so.").split('.').map(|part| part.parse().unwrap_or(0)).collect()
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The version string the library reports (`OrtGetApiBase()->GetVersionString()`).
pub(super) fn library_version(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: RTLD_NOLOAD only returns a handle to the already loaded
    // library (no constructors run); the symbol has the C API's signature;
    // the handle is closed, which only drops the extra reference.
    unsafe {
        let handle = libc::dlopen(cpath.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if sym.is_null() {
            None
        } else {
            let get_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase = std::mem::transmute(sym);
            let base = get_base();
            if base.is_null() {
                None
            } else {
                let v = ((*base).GetVersionString)();
                (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
            }
        };
        libc::dlclose(handle);
        version
    }
}

/// "1.32.0" from "... git-branch=rel-1.32.0, ...".
pub(super) fn version_from_build_info(info: &str) -> Option<String> {
    let rest = info.split("git-branch=rel-").nth(1)?;
    let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    (!v.is_empty()).then_some(v)
}

/// "1.32.0" from "libonnxruntime.so.1.32.0" (after resolving a symlink).
pub(super) fn version_from_file_name(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name()?.to_str()?;
    name.strip_prefix("libonnxruntime.so.").map(str::to_string)
}

/// The value of `ORT_DYLIB_PATH`, for reports.
pub fn ort_dylib_path_env() -> Option<OsString> {
    std::env::var_os("ORT_DYLIB_PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_path_must_exist() {
        let err = locate_library_with(Some(OsStr::new("/nonexistent/libonnxruntime.so")), &[]).unwrap_err();
        assert!(matches!(err, RuntimeError::EnvPathMissing { .. }));
        assert!(err.to_string().contains("/nonexistent/libonnxruntime.so"), "{err}");
    }

    #[test]
    fn not_found_says_how_to_get_it() {
        let dir = std::env::temp_dir().join("nightscreen-no-ort-here");
        let err = locate_library_with(None, std::slice::from_ref(&dir)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("make ort") && msg.contains("ORT_DYLIB_PATH") && msg.contains(&dir.display().to_string()),
            "{msg}"
        );
        // An empty value counts as unset.
        let err = locate_library_with(Some(OsStr::new("")), &[]).unwrap_err();
        assert!(matches!(err, RuntimeError::LibraryNotFound { .. }));
    }

    #[test]
    fn finds_versioned_file_in_dir() {
        let dir = std::env::temp_dir().join(format!("nightscreen-ort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.9.0"), b"").unwrap();
        std::fs::write(dir.join("libonnxruntime.so.1.32.0"), b"").unwrap();
        let found = locate_library_with(None, &[dir.join("missing"), dir.clone()]).unwrap();
        assert_eq!(found.file_name().unwrap(), "libonnxruntime.so.1.32.0");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn versions_from_strings() {
        assert_eq!(
            version_from_build_info("ORT Build Info: git-branch=rel-1.32.0, git-commit-id=abc").as_deref(),
            Some("1.32.0")
        );
        assert_eq!(version_from_build_info("nothing"), None);
    }
}
