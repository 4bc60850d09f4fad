//! Ingest: input folders and DICOMDIRs → [`Instance`]s, grouped by study.
//!
//! Reads headers only (stopping before pixel data), so every file is
//! classified before it is decoded: images go on to decode in study →
//! series → instance order (within each chunk of files, see [`run`]);
//! everything else becomes a counted skip or an error row here, so no file
//! is ever silently passed over.

mod dicomdir;
pub mod guard;
mod header;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Sender;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use header::{looks_like_dicom, probe, study_datetime, Probe};

use crate::message::{Header, Instance, Msg, RejectKind, Rejected, Stage};
use crate::model::VerifiedModel;
use crate::shard::Shard;

/// The `[ingest]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Follow symbolic links while walking (loops are detected). Default: false.
    pub follow_symlinks: bool,
    /// Skip hidden files and folders (names starting with '.'). Default: true.
    pub skip_hidden: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { follow_symlinks: false, skip_hidden: true }
    }
}

/// One file found under an input, with the path shown in reports.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub rel_path: String,
}

/// Everything ingest found, in the order it will be sent downstream.
#[derive(Debug, Default)]
pub struct Inventory {
    pub items: Vec<Msg<Instance>>,
    /// Files looked at (each ends as one item above).
    pub files_seen: usize,
    pub instances: usize,
}

fn reject(found: &Found, kind: RejectKind, reason: String, header: Option<Header>) -> Rejected {
    Rejected { path: found.path.clone(), stage: Stage::Ingest, kind, reason, header: header.map(Arc::new), frame: None }
}

/// Lists the files under each input: a folder is walked, a DICOMDIR is
/// followed, a plain file is taken as is. Unreadable entries become errors.
pub fn discover(cfg: &IngestConfig, inputs: &[PathBuf]) -> (Vec<Found>, Vec<Rejected>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |path: PathBuf, root: &Path, files: &mut Vec<Found>| {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            files.push(Found { path, rel_path: rel });
        }
    };
    for input in inputs {
        let root =
            if input.is_dir() { input.clone() } else { input.parent().map(Path::to_path_buf).unwrap_or_default() };
        if dicomdir::is_dicomdir(input) {
            match dicomdir::referenced_files(input) {
                Ok(list) => list.into_iter().for_each(|p| push(p, &root, &mut files)),
                Err(reason) => errors.push(Rejected {
                    path: input.clone(),
                    stage: Stage::Ingest,
                    kind: RejectKind::Error,
                    reason,
                    header: None,
                    frame: None,
                }),
            }
            continue;
        }
        let walker = walkdir::WalkDir::new(input).follow_links(cfg.follow_symlinks).sort_by_file_name();
        let skip_hidden = cfg.skip_hidden;
        let walker = walker
            .into_iter()
            .filter_entry(move |e| !(skip_hidden && e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.')));
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_file() => push(e.into_path(), &root, &mut files),
                Ok(e) if e.path_is_symlink() => errors.push(Rejected {
                    path: e.into_path(),
                    stage: Stage::Ingest,
                    kind: RejectKind::Skip("symlink_not_followed"),
                    reason: "symbolic link not followed (set ingest.follow_symlinks)".into(),
                    header: None,
                    frame: None,
                }),
                Ok(e) if e.file_type().is_dir() => {}
                // A named pipe, socket or device would block or never end if
                // read: counted, never opened.
                Ok(e) => errors.push(Rejected {
                    path: e.into_path(),
                    stage: Stage::Ingest,
                    kind: RejectKind::Skip("not_a_regular_file"),
                    reason: "not a regular file (pipe, socket or device): not read".into(),
                    header: None,
                    frame: None,
                }),
                Err(err) => errors.push(Rejected {
                    path: err.path().map(Path::to_path_buf).unwrap_or_else(|| input.clone()),
                    stage: Stage::Ingest,
                    kind: RejectKind::Error,
                    reason: walk_error_reason(&err),
                    header: None,
                    frame: None,
                }),
            }
        }
    }
    (files, errors)
}

/// The reason names no path: folder names may hold patient names, and
/// reasons reach the analyst tables (the row's path goes to the
/// identifiable `failed_files.csv`).
fn walk_error_reason(err: &walkdir::Error) -> String {
    if let Some(ancestor) = err.loop_ancestor() {
        let levels = err.path().map_or(0, |p| p.components().count().saturating_sub(ancestor.components().count()));
        return format!("symbolic link loop back to an ancestor folder {levels} level(s) up");
    }
    match err.io_error() {
        Some(io) => format!("cannot read: {io}"),
        None => "cannot walk this entry".to_string(),
    }
}

/// Reads every file's header (in parallel), routes images to models and
/// orders them by study, series and instance number.
pub fn scan(files: Vec<Found>, models: &[VerifiedModel]) -> Inventory {
    let files_seen = files.len();
    let mut items: Vec<Msg<Instance>> = files.into_par_iter().map(|found| classify(found, models)).collect();
    items.sort_by_key(order_key);
    let instances = items.iter().filter(|i| i.is_ok()).count();
    Inventory { items, files_seen, instances }
}

fn classify(found: Found, models: &[VerifiedModel]) -> Msg<Instance> {
    if std::fs::metadata(&found.path).is_ok_and(|m| m.len() == 0) {
        // A zero-byte file in an imaging folder is a failed transfer, not a stray file.
        return Err(reject(&found, RejectKind::Error, "empty file (0 bytes)".into(), None));
    }
    match probe(&found.path) {
        Err(e) => Err(reject(&found, RejectKind::Error, e.0, None)),
        Ok(Probe::NotDicom(detail)) if named_dicom(&found.path) => {
            Err(reject(&found, RejectKind::Error, format!("named .dcm but not a DICOM file: {detail}"), None))
        }
        Ok(Probe::NotDicom(detail)) => Err(reject(&found, RejectKind::Skip("not_dicom"), detail, None)),
        Ok(Probe::NoImage { reason, detail, header }) => {
            Err(reject(&found, RejectKind::Skip(reason), detail, Some(header)))
        }
        Ok(Probe::MissingPixels { detail, header }) => Err(reject(&found, RejectKind::Error, detail, Some(header))),
        Ok(Probe::Image(header)) => {
            let routed: Vec<usize> = (0..models.len()).filter(|&i| models[i].accepts(&header)).collect();
            if routed.is_empty() {
                let detail = format!(
                    "no configured model accepts modality {:?}, photometric {:?}, SOP class {}",
                    header.modality,
                    header.photometric.as_str(),
                    header.sop_class_uid
                );
                return Err(reject(&found, RejectKind::Skip("no_model_accepts"), detail, Some(header)));
            }
            Ok(Instance { path: found.path, rel_path: found.rel_path, header: Arc::new(header), models: routed })
        }
    }
}

/// A `.dcm` name promises DICOM: breaking the promise is an error, where a
/// README or thumbnail beside the images is only a skip.
fn named_dicom(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
}

/// Images in study → series → instance order; rejects first, by path.
fn order_key(item: &Msg<Instance>) -> (u8, String, String, i64, String) {
    match item {
        Err(r) => (0, String::new(), String::new(), 0, r.path.to_string_lossy().into_owned()),
        Ok(i) => (
            1,
            i.header.study_uid.0.clone(),
            i.header.series_uid.0.clone(),
            i.header.instance_number.map_or(i64::MAX, i64::from),
            i.rel_path.clone(),
        ),
    }
}

/// What places a file in a shard: its study, so a study's images stay
/// together; for an object without one, its instance; for a file whose
/// header could not be read, its path.
fn shard_key(item: &Msg<Instance>) -> String {
    let header = match item {
        Ok(i) => Some(&*i.header),
        Err(r) => r.header.as_deref(),
    };
    let path = || match item {
        Ok(i) => i.path.to_string_lossy().into_owned(),
        Err(r) => r.path.to_string_lossy().into_owned(),
    };
    match header {
        Some(h) if !h.study_uid.0.is_empty() => h.study_uid.0.clone(),
        Some(h) if !h.sop_instance_uid.0.is_empty() => h.sop_instance_uid.0.clone(),
        _ => path(),
    }
}

/// Files whose headers are read (in parallel) and ordered together before
/// any is sent: large enough to keep the header readers busy, small enough
/// that decoding starts within milliseconds instead of after the whole night's
/// headers. Folders are walked in name order, so a study's files are
/// neighbours and land in one chunk or two adjacent ones.
const CHUNK: usize = 128;

/// What the ingest stage saw, for the run report.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestCounts {
    pub files_seen: usize,
    pub instances: usize,
}

/// The ingest stage: walk rejects first, then each chunk of files scanned
/// and sent downstream as it is done, so header reading overlaps decoding.
/// Rejected files travel on as errors, so decode accounts for every file.
pub fn run(
    files: Vec<Found>,
    walk_rejects: Vec<Rejected>,
    models: &[VerifiedModel],
    shard: Option<Shard>,
    tx: &Sender<Msg<Instance>>,
) -> IngestCounts {
    let mut counts = IngestCounts { files_seen: files.len() + walk_rejects.len(), instances: 0 };
    let walk =
        Inventory { files_seen: walk_rejects.len(), instances: 0, items: walk_rejects.into_iter().map(Err).collect() };
    let mut files = files.into_iter();
    let mut next = Some(walk);
    while let Some(inventory) = next.take() {
        counts.instances += inventory.instances;
        for item in inventory.items {
            // Another shard's file: not ours to read, count or report.
            if shard.is_some_and(|s| !s.owns(&shard_key(&item))) {
                continue;
            }
            if tx.send(item).is_err() {
                return counts; // downstream stopped: the pipeline is shutting down
            }
        }
        let chunk: Vec<Found> = files.by_ref().take(CHUNK).collect();
        if !chunk.is_empty() {
            next = Some(scan(chunk, models));
        }
    }
    counts
}
