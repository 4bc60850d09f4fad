//! Keyed pseudonyms for the analyst tables.
//!
//! Analysts follow patients over years without ever seeing who they are:
//! every patient, study, series, instance and file appears in `images/`,
//! `studies/`, `errors/` and `skipped/` as HMAC-SHA256 under the
//! programme's secret key, so the same key gives the same pseudonym on
//! every run and machine, and without the key nobody can go back (UIDs and
//! patient IDs are guessable enough that an unkeyed hash would not do).
//! The key is never written to an output or a log: outputs name it by
//! [`PseudonymKey::key_id`], a digest that reveals nothing of it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::message::SourceId;

/// Environment variable holding the key itself (64 hex digits).
pub const KEY_ENV: &str = "NIGHTSCREEN_KEY";
/// Environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "NIGHTSCREEN_KEY_FILE";

const KEY_BYTES: usize = 32;

/// What a pseudonym stands for; part of the HMAC input, so a study UID and
/// an instance UID that happen to be equal still get different pseudonyms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Patient,
    Study,
    Series,
    Instance,
    File,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Patient => b"patient",
            Kind::Study => b"study",
            Kind::Series => b"series",
            Kind::Instance => b"instance",
            Kind::File => b"file",
        }
    }
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "no pseudonymisation key: the analyst tables carry patients and studies only as keyed pseudonyms. \
         Make a key once per programme with `nightscreen keygen --out FILE`, keep it safe, \
         and pass it with --key-file FILE (or {KEY_FILE_ENV}=FILE, or the key itself in {KEY_ENV})"
    )]
    Missing,
    #[error("cannot read the key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} does not hold a key: expected {} hex digits", 2 * KEY_BYTES)]
    Malformed { origin: String },
    #[error("{path} already exists; nightscreen keygen never replaces a key (analysts' pseudonyms depend on it)")]
    Exists { path: PathBuf },
    #[error("cannot write the key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// The programme's secret.
#[derive(Clone)]
pub struct PseudonymKey {
    bytes: [u8; KEY_BYTES],
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PseudonymKey(id {})", self.key_id())
    }
}

impl PseudonymKey {
    /// Parses 64 hex digits (surrounding whitespace allowed).
    ///
    /// # Errors
    /// Anything else; `origin` names where the text came from.
    pub fn from_hex(text: &str, origin: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed { origin: origin.to_string() };
        let raw = hex::decode(text.trim()).map_err(|_| malformed())?;
        let bytes: [u8; KEY_BYTES] = raw.try_into().map_err(|_| malformed())?;
        Ok(Self { bytes })
    }

    /// Reads a key file written by [`PseudonymKey::generate_file`].
    ///
    /// # Errors
    /// The file cannot be read or holds no key.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_path_buf(), source })?;
        warn_if_readable_by_others(path);
        Self::from_hex(&text, &path.display().to_string())
    }

    /// The key from `--key-file`, else `NIGHTSCREEN_KEY`, else
    /// `NIGHTSCREEN_KEY_FILE`.
    ///
    /// # Errors
    /// None of them is set, or the one used holds no key.
    pub fn resolve(key_file: Option<&Path>) -> Result<Self, KeyError> {
        if let Some(path) = key_file {
            return Self::from_file(path);
        }
        if let Some(text) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
            return Self::from_hex(&text.to_string_lossy(), KEY_ENV);
        }
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
            return Self::from_file(Path::new(&path));
        }
        Err(KeyError::Missing)
    }

    /// Makes a new random key in a new file readable by its owner only.
    ///
    /// # Errors
    /// The file exists, or cannot be written, or no randomness.
    pub fn generate_file(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        let write_err = |source| KeyError::Write { path: path.to_path_buf(), source };
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::Exists { path: path.to_path_buf() }
                } else {
                    write_err(e)
                }
            })?;
        file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        Ok(Self { bytes })
    }

    /// The pseudonym of `value` as a `kind`: 32 hex digits (128 bits of
    /// HMAC-SHA256), or `None` for an empty value, which stands for nobody.
    pub fn pseudonym(&self, kind: Kind, value: &str) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        Some(self.digest(kind.label(), value.as_bytes()))
    }

    /// An input's pseudonym (`file_pseudonym` in the tables): for a file,
    /// from its path's bytes, as `tools/pseudonym.py` computes it.
    pub fn file_pseudonym(&self, source: &SourceId) -> String {
        self.digest(Kind::File.label(), source.key_bytes())
    }

    /// Names the key in outputs (16 hex digits): the same key, the same id.
    pub fn key_id(&self) -> String {
        self.digest(b"key-id", b"nightscreen")[..16].to_string()
    }

    fn digest(&self, label: &[u8], value: &[u8]) -> String {
        // An HMAC key of 32 bytes is always accepted.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.bytes) else { return String::new() };
        mac.update(label);
        mac.update(&[0]);
        mac.update(value);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// A key others can read is a key others may have copied: say so (not an
/// error, since mounted secrets are often 0644 inside a container).
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            log::warn!("key file {} is readable by others (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn pseudonyms_are_keyed_hmac_sha256_with_the_kind_in_the_input() {
        let key = PseudonymKey::from_hex(KEY, "test").expect("key");
        // HMAC-SHA256(key, "study\0" + "1.2.3"), first 16 bytes, as Python's
        // hmac module computes it (see tools/pseudonym.py).
        assert_eq!(key.pseudonym(Kind::Study, "1.2.3").as_deref(), Some("1aae6e50e63819a4006efa4a2187e382"));
        assert_ne!(key.pseudonym(Kind::Study, "1.2.3"), key.pseudonym(Kind::Instance, "1.2.3"));
        assert_eq!(key.pseudonym(Kind::Patient, ""), None);
        let other = PseudonymKey::from_hex(&KEY.replace("00", "ff"), "test").expect("key");
        assert_ne!(key.pseudonym(Kind::Study, "1.2.3"), other.pseudonym(Kind::Study, "1.2.3"));
        assert!(!format!("{key:?}").contains("0102"), "Debug never shows the key");
    }

    #[test]
    fn keygen_writes_an_owner_only_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("programme.key");
        let made = PseudonymKey::generate_file(&path).expect("keygen");
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        let read = PseudonymKey::from_file(&path).expect("read back");
        assert_eq!(made.key_id(), read.key_id());
        assert!(matches!(PseudonymKey::generate_file(&path), Err(KeyError::Exists { .. })));
        assert!(matches!(PseudonymKey::from_hex("abc", "x"), Err(KeyError::Malformed { .. })));
    }
}
