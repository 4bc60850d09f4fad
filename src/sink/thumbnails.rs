//! `OUT/thumbnails/`: the JPEG thumbnails the HTML worklist shows, and the
//! index that says which study each belongs to.
//!
//! File names are made only of keyed pseudonyms — the input file's
//! pseudonym and the frame number — never of UIDs, paths or other header
//! values, so a hostile header cannot steer a write outside OUT, and the
//! names reveal nobody. The same key, file and frame always give the same
//! name, so a resumed run rewrites what an interrupted attempt left half
//! done instead of adding to it. The index ([`ThumbEntry`]) travels in the
//! checkpoint with the files it covers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dicom::laterality::{FundusField, Laterality};
use crate::error::{Error, Result};
use crate::message::{Attention, Header, Scored, SourceId};
use crate::privacy::{Kind, PseudonymKey};

/// The folder under OUT.
pub const DIR: &str = "thumbnails";

/// One thumbnail of the index: what the page needs to show and order it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThumbEntry {
    /// [`study_group`] of the study the image belongs to.
    pub study: String,
    /// File name under [`DIR`].
    pub file: String,
    /// Laterality and fundus field, for the caption and the order (serialised
    /// as "R"/"L"/"B"/"" and "macula"/"disc"/"", as before).
    pub eye: Laterality,
    pub field: FundusField,
    pub frame: u32,
    pub width: u32,
    pub height: u32,
    /// The model's occlusion map of this frame, when its card asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionMap>,
    /// The model's domain gate did not recognise the frame: the page says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside_domain: bool,
}

/// What the page draws over a thumbnail: `grid` × `grid` cells, row by row,
/// each the fall in p(`explains`) when the model could not see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionMap {
    pub explains: String,
    pub score: f32,
    pub grid: usize,
    pub cells: Vec<f32>,
}

impl From<&Attention> for AttentionMap {
    fn from(a: &Attention) -> Self {
        Self { explains: a.explains.clone(), score: a.score, grid: a.grid, cells: a.cells.clone() }
    }
}

/// The file name of one frame's thumbnail: `<file pseudonym>-<frame>.jpg`.
pub fn file_name(key: &PseudonymKey, source: &SourceId, frame: u32) -> String {
    format!("{}-{frame:05}.jpg", key.file_pseudonym(source))
}

/// Whether `name` is a thumbnail (or its temporary) that we wrote: 32 hex
/// digits, a dash, five or more digits, `.jpg`. Anything else in the folder
/// is someone else's and is never touched.
pub fn is_ours(name: &str) -> bool {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    let Some(stem) = name.strip_suffix(".jpg") else { return false };
    let Some((pseudonym, frame)) = stem.split_once('-') else { return false };
    pseudonym.len() == 32
        && pseudonym.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && frame.len() >= 5
        && frame.bytes().all(|b| b.is_ascii_digit())
}

/// Which study a thumbnail belongs to, as the worklist page looks it up:
/// the study's pseudonym, or for an object without a StudyInstanceUID
/// (a study of its own) its instance's. `None` when neither UID is known.
pub fn study_group(key: &PseudonymKey, header: &Header) -> Option<String> {
    match key.pseudonym(Kind::Study, header.study_uid.as_str()) {
        Some(p) => Some(format!("s{p}")),
        None => key.pseudonym(Kind::Instance, header.sop_instance_uid.as_str()).map(|p| format!("i{p}")),
    }
}

/// Writes one frame's thumbnail into `dir` and returns its index entry, or
/// `None` when the frame has none (or belongs to no study).
///
/// Not synced here: the caller queues the path on its [`Syncer`].
///
/// # Errors
/// The file cannot be written.
pub fn write(dir: &Path, key: &PseudonymKey, scored: &Scored) -> Result<Option<(ThumbEntry, PathBuf)>> {
    let meta = &scored.meta;
    let (Some(thumb), Some(study)) = (&meta.thumbnail, study_group(key, &meta.instance.header)) else {
        return Ok(None);
    };
    let file = file_name(key, &meta.instance.source, meta.frame_index);
    let path = dir.join(&file);
    std::fs::write(&path, &thumb.jpeg).map_err(|source| Error::Output { path: path.clone(), source })?;
    let header = &meta.instance.header;
    let entry = ThumbEntry {
        study,
        file,
        eye: header.laterality,
        field: header.field,
        frame: meta.frame_index,
        width: thumb.width,
        height: thumb.height,
        attention: scored.attention.as_ref().map(AttentionMap::from),
        outside_domain: scored.outside_domain(),
    };
    Ok(Some((entry, path)))
}

/// Syncs written thumbnails on a thread of its own, so that the one fsync
/// each file needs overlaps the pipeline instead of stalling the sinks at
/// each commit (about 0.2 ms a file here: 150 ms for a 800-image batch,
/// 2 % of its run, when done at the end). [`Syncer::wait`] is the commit's
/// barrier: the thumbnails a commit covers survive a power loss as its part
/// files do.
pub struct Syncer {
    dir: PathBuf,
    tx: Option<crossbeam_channel::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Job {
    Sync(PathBuf),
    Barrier(crossbeam_channel::Sender<Result<()>>),
}

/// Files queued for syncing before the sinks wait: far more than are
/// written between two syncs, so a send blocks only if the disk stalls.
const SYNC_QUEUE: usize = 1024;

impl Syncer {
    /// Starts the thread for thumbnails in `dir`.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(dir: &Path) -> Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(SYNC_QUEUE);
        let folder = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("thumbnail-sync".into())
            .spawn(move || {
                // The first failure is kept for the next barrier; later
                // files are not synced once one has failed.
                let mut failed: Option<Error> = None;
                for job in rx {
                    match job {
                        Job::Sync(path) if failed.is_none() => {
                            let io = |source| Error::Output { path: path.clone(), source };
                            if let Err(e) =
                                std::fs::File::open(&path).map_err(io).and_then(|f| f.sync_all().map_err(io))
                            {
                                failed = Some(e);
                            }
                        }
                        Job::Sync(_) => {}
                        Job::Barrier(ack) => {
                            let result = match failed.take() {
                                Some(e) => Err(e),
                                None => super::sync_dir(&folder),
                            };
                            let _ = ack.send(result);
                        }
                    }
                }
            })
            .map_err(|source| Error::Output { path: dir.to_path_buf(), source })?;
        Ok(Self { dir: dir.to_path_buf(), tx: Some(tx), thread: Some(thread) })
    }

    /// Queues one written file.
    pub fn push(&self, path: PathBuf) {
        if let Some(tx) = &self.tx {
            // A stopped thread is reported by the next wait.
            let _ = tx.send(Job::Sync(path));
        }
    }

    /// Returns once every file queued so far, and the folder, are synced.
    ///
    /// # Errors
    /// A file or the folder could not be synced, or the thread is gone.
    pub fn wait(&self) -> Result<()> {
        let gone = || Error::Output {
            path: self.dir.clone(),
            source: std::io::Error::other("the thumbnail sync thread stopped"),
        };
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        self.tx.as_ref().ok_or_else(gone)?.send(Job::Barrier(ack_tx)).map_err(|_| gone())?;
        ack_rx.recv().map_err(|_| gone())?
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Deletes our thumbnails in `out` except those `keep` names (the
/// committed ones of a run being resumed); returns how many went.
///
/// # Errors
/// A file cannot be deleted.
pub fn remove_except(out: &Path, keep: &std::collections::HashSet<&str>) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(out.join(DIR)) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_ours(&name) && !keep.contains(name.as_str()) {
            std::fs::remove_file(entry.path()).map_err(|source| Error::Output { path: entry.path(), source })?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::from_hex(&"ab".repeat(32), "test").expect("key")
    }

    #[test]
    fn names_are_pseudonyms_only_and_recognised_as_ours() {
        let hostile = &SourceId::File("/in/../../etc/passwd/1.2.3<script>.dcm".into());
        let name = file_name(&key(), hostile, 3);
        assert!(name.ends_with("-00003.jpg") && !name.contains('/') && !name.contains("1.2.3"), "{name}");
        assert!(is_ours(&name) && is_ours(&format!("{name}.tmp")));
        assert_eq!(name, file_name(&key(), hostile, 3), "stable across runs");
        for other in ["notes.jpg", "photo-00001.jpg", &name.replace(".jpg", ".png"), &name.to_uppercase(), "-00001.jpg"]
        {
            assert!(!is_ours(other), "{other}");
        }
    }

    #[test]
    fn uid_less_objects_group_by_instance_and_nameless_ones_not_at_all() {
        let mut h = Header { study_uid: crate::message::StudyUid::new("1.2"), ..Header::default() };
        assert!(study_group(&key(), &h).is_some_and(|g| g.starts_with('s')));
        h.study_uid = Default::default();
        h.sop_instance_uid = crate::message::SopInstanceUid::new("1.3");
        assert!(study_group(&key(), &h).is_some_and(|g| g.starts_with('i')));
        h.sop_instance_uid = Default::default();
        assert_eq!(study_group(&key(), &h), None);
    }
}
