//! `OUT/checkpoint.json`: what an unfinished run has committed, so that the
//! same command started again after a crash carries on where it stopped.
//!
//! A commit is: close the open part files (synced, renamed), then replace
//! this file atomically. The checkpoint is the single source of truth: a
//! part file it does not list was written after the last commit and is
//! deleted on resume, and every file it lists as committed is skipped. So a
//! kill at any instant loses at most the work since the last commit, and
//! never doubles a row. The file names studies and holds their headers: it
//! is identifiable, like the worklist, and removed once the run finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::message::SourceId;
use crate::sink::{names, Counts};
use crate::triage::BookSnapshot;

/// File name under OUT.
pub const FILE_NAME: &str = names::CHECKPOINT;

/// Bumped when the layout or the meaning of a value changes; an older
/// checkpoint is not resumed. 3 (issue 14): counting keys are SHA-256 based
/// ([`crate::message::count_key`]), no longer `DefaultHasher`, and the
/// study book keeps typed bands, grades and the programme's evidence.
const FORMAT: u32 = 3;

/// What must match for a run to be resumed rather than recomputed: rows of
/// one run come from one software version, config and set of models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub software_version: String,
    pub config_sha256: String,
    /// "id version sha256" per model, in config order.
    pub models: Vec<String>,
    /// Pseudonyms made under another key would not join.
    pub pseudonym_key_id: String,
}

/// A run's committed state.
#[derive(Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    pub run_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub fingerprint: Fingerprint,
    /// 1 for the first attempt, +1 per resume.
    pub attempt: u32,
    pub commits: u64,
    /// Committed part file names per table folder.
    pub parts: BTreeMap<String, Vec<String>>,
    /// [`file_key`] of every committed input file.
    pub files: BTreeSet<String>,
    /// Committed files that were image instances.
    pub instances: u64,
    pub counts: Counts,
    /// Distinct scored frames and files (64-bit keys), for the counts.
    pub frame_keys: Vec<u64>,
    pub file_keys: Vec<u64>,
    pub book: BookSnapshot,
    /// Committed error rows with their paths, for `failed_files.csv`.
    pub failures: Vec<crate::sink::failures::FailedFile>,
    /// Thumbnails of the committed files, for `worklist.html` (format 2).
    pub thumbnails: Vec<crate::sink::thumbnails::ThumbEntry>,
    /// Committed length of the SR evidence journal ([`crate::sink::sr::evidence`]);
    /// a resumed run cuts the journal back to it.
    #[serde(default)]
    pub sr_evidence_bytes: u64,
}

impl Checkpoint {
    /// The state of a run that has committed nothing yet.
    pub fn new(run_id: String, started_at: chrono::DateTime<chrono::Utc>, fingerprint: Fingerprint) -> Self {
        Self {
            format: FORMAT,
            run_id,
            started_at,
            fingerprint,
            attempt: 1,
            commits: 0,
            parts: BTreeMap::new(),
            files: BTreeSet::new(),
            instances: 0,
            counts: Counts::default(),
            frame_keys: Vec::new(),
            file_keys: Vec::new(),
            book: BookSnapshot::default(),
            failures: Vec::new(),
            thumbnails: Vec::new(),
            sr_evidence_bytes: 0,
        }
    }

    /// Reads `OUT/checkpoint.json`, if there is one.
    ///
    /// # Errors
    /// The file exists but cannot be read or is not a checkpoint this
    /// version writes.
    pub fn load(out: &Path) -> Result<Option<Self>> {
        Self::load_from(&out.join(FILE_NAME))
    }

    /// Reads a checkpoint from `path` (a finished run's kept final state,
    /// for `--retry-failed`), if the file exists.
    ///
    /// # Errors
    /// As [`Checkpoint::load`].
    pub fn load_from(path: &Path) -> Result<Option<Self>> {
        let path = path.to_path_buf();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Output { path, source }),
        };
        // The format first, so an older layout is refused by its number
        // rather than by whichever field no longer parses.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        if let Ok(Format { format }) = serde_json::from_slice::<Format>(&bytes) {
            if format != FORMAT {
                return Err(Error::Checkpoint {
                    path,
                    problem: format!("checkpoint format {format}, this version writes {FORMAT}"),
                });
            }
        }
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            problem: format!("not a checkpoint this version can resume ({e})"),
        })?;
        if state.format != FORMAT {
            return Err(Error::Checkpoint {
                path,
                problem: format!("checkpoint format {}, this version writes {FORMAT}", state.format),
            });
        }
        Ok(Some(state))
    }

    /// Replaces `OUT/checkpoint.json` atomically: the commit point.
    ///
    /// # Errors
    /// Writing, syncing or renaming fails.
    pub fn save(&self, out: &Path) -> Result<()> {
        let path = out.join(FILE_NAME);
        let bytes = serde_json::to_vec(self)
            .map_err(|e| Error::Output { path: path.clone(), source: std::io::Error::other(e) })?;
        crate::sink::write_atomically(&path, &bytes)?;
        crate::sink::sync_dir(out)
    }

    /// Removes the checkpoint once `run.json` records the finished run.
    ///
    /// # Errors
    /// The file exists but cannot be removed.
    pub fn remove(out: &Path) -> Result<()> {
        let path = out.join(FILE_NAME);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Output { path, source: e }),
            _ => Ok(()),
        }
    }
}

/// A stable key for an input file: the first 128 bits of the SHA-256 of
/// its path, the same on every machine and build.
pub fn file_key(source: &SourceId) -> String {
    file_key_of(source.key_bytes())
}

/// [`file_key`] of an id's key bytes ([`SourceId::key_bytes`]).
pub fn file_key_of(key_bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key_bytes);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_a_round_trip_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Checkpoint::load(dir.path()).expect("load").is_none());
        let fp = Fingerprint {
            software_version: "1".into(),
            config_sha256: "c".into(),
            models: vec!["m 1 s".into()],
            pseudonym_key_id: "k".into(),
        };
        let mut state = Checkpoint::new("run-1".into(), chrono::Utc::now(), fp.clone());
        state.files.insert(file_key(&SourceId::File("/in/a.dcm".into())));
        state.parts.insert("images".into(), vec!["part-run-1-00001.parquet".into()]);
        state.save(dir.path()).expect("save");
        let back = Checkpoint::load(dir.path()).expect("load").expect("present");
        assert_eq!((back.run_id.as_str(), &back.fingerprint, back.files.len()), ("run-1", &fp, 1));
        std::fs::write(dir.path().join(FILE_NAME), b"{\"not\": 1}").expect("write");
        assert!(Checkpoint::load(dir.path()).is_err());
        Checkpoint::remove(dir.path()).expect("remove");
        Checkpoint::remove(dir.path()).expect("removing twice is fine");
    }

    #[test]
    fn a_checkpoint_of_an_older_format_is_refused_by_its_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Format 2's study book no longer parses; the refusal must say why.
        std::fs::write(dir.path().join(FILE_NAME), b"{\"format\": 2, \"book\": [[\"1.2\", {\"fields\": []}]]}")
            .expect("write");
        let Err(err) = Checkpoint::load(dir.path()) else { panic!("an older format must be refused") };
        let err = err.to_string();
        assert!(err.contains("checkpoint format 2") && err.contains(&format!("writes {FORMAT}")), "{err}");
    }

    #[test]
    fn file_keys_are_stable_and_distinct() {
        // sha256("/a"), first 16 bytes: pinned, so a rebuild never changes keys.
        let file = |p: &str| SourceId::File(p.into());
        assert_eq!(file_key(&file("/a")), "6a50dc8584134c7de537c0052ff6d236");
        assert_ne!(file_key(&file("/a")), file_key(&file("/b")));
    }
}
