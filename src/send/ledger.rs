//! `OUT/sent.jsonl`: one line per send attempt of one SR to one
//! destination, appended and synced, so a resumed `send` skips what the
//! server already acknowledged and the record of what went where stays.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "sent.jsonl";

/// What became of one SR at one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The server lists it as stored (a repeat counts: it keeps one copy).
    Stored,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub at: chrono::DateTime<chrono::Utc>,
    /// The source name the SR went to, and its URL.
    pub destination: String,
    pub url: String,
    /// The SR file under `OUT/sr/`.
    pub file: String,
    pub study_uid: String,
    pub sop_instance_uid: String,
    pub http_status: Option<u16>,
    pub outcome: Outcome,
    /// The server's reason for a failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Why the ledger cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read {path} line {line}: {error}")]
    Read { path: PathBuf, line: usize, error: String },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

/// The SOP Instance UIDs already stored at `destination`.
///
/// # Errors
/// The file exists but cannot be read or a line is not an entry.
pub fn stored(out: &Path, destination: &str) -> Result<BTreeSet<String>, LedgerError> {
    let path = out.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(LedgerError::Read { path, line: 0, error: e.to_string() }),
    };
    let mut done = BTreeSet::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let entry: Entry = serde_json::from_str(line).map_err(|e| LedgerError::Read {
            path: path.clone(),
            line: i + 1,
            error: e.to_string(),
        })?;
        if entry.destination == destination && entry.outcome == Outcome::Stored {
            done.insert(entry.sop_instance_uid);
        }
    }
    Ok(done)
}

/// Appends one entry and syncs it.
///
/// # Errors
/// The file cannot be written.
pub fn append(out: &Path, entry: &Entry) -> Result<(), LedgerError> {
    let path = out.join(FILE_NAME);
    let write = |error| LedgerError::Write { path: path.clone(), error };
    let mut line = serde_json::to_vec(entry).map_err(|e| write(std::io::Error::other(e)))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(write)?;
    file.write_all(&line).map_err(write)?;
    file.sync_all().map_err(write)
}
