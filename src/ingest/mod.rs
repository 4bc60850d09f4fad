//! Ingest: a source's listing → [`Instance`]s, grouped by study.
//!
//! Reads headers only (stopping before pixel data), so every file is
//! classified before it is decoded: images go on to decode in study →
//! series → instance order (within each chunk of files, see [`run`]);
//! everything else becomes a counted skip or an error row here, so no file
//! is ever silently passed over.

pub mod guard;
mod header;

use std::sync::Arc;

use crossbeam_channel::Sender;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use header::{looks_like_dicom, probe, study_datetime, Probe};

use crate::message::{Header, Instance, Msg, RejectKind, Rejected, SkipReason, Stage};
use crate::model::Models;
use crate::run::shard::Shard;
use crate::source::{Listed, Source};

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

/// Everything ingest found in one chunk, in the order it will be sent
/// downstream: one item per listed entry. An `Ok` item is ingest's verdict
/// that the entry is an image instance; it travels on the file
/// ([`crate::message::FileDone::instance`]) and is counted once, when the
/// file commits, so resumed and sharded runs count each instance once.
#[derive(Debug, Default)]
pub struct Inventory {
    pub items: Vec<Msg<Instance>>,
}

fn reject(listed: &Listed, kind: RejectKind, reason: String, header: Option<Header>) -> Rejected {
    Rejected {
        source: listed.id.clone(),
        stage: Stage::Ingest,
        kind,
        reason,
        header: header.map(Arc::new),
        frame: None,
    }
}

/// Reads every listed instance's header (in parallel), routes images to
/// models and orders them by study, series and instance number.
pub fn scan(listed: Vec<Listed>, source: &dyn Source, models: &Models) -> Inventory {
    let mut items: Vec<Msg<Instance>> = listed.into_par_iter().map(|listed| classify(listed, source, models)).collect();
    items.sort_by_key(order_key);
    Inventory { items }
}

/// One open of the instance: its size, the length guard and the header all
/// read from the same blob.
fn classify(listed: Listed, source: &dyn Source, models: &Models) -> Msg<Instance> {
    let blob = match source.open(&listed.id) {
        Ok(blob) => blob,
        Err(e @ crate::source::SourceError::Fetch(_)) => {
            // What the manifest says of it, so its study counts it as failed.
            let header = match &listed.id {
                crate::message::SourceId::Web(web) => Some(Header {
                    study_uid: web.study.clone(),
                    series_uid: web.series.clone(),
                    sop_instance_uid: web.sop.clone(),
                    ..Header::default()
                }),
                crate::message::SourceId::File(_) => None,
            };
            let mut rejected = reject(&listed, RejectKind::Error, e.to_string(), header);
            rejected.stage = Stage::Fetch;
            return Err(rejected);
        }
        Err(e) => return Err(reject(&listed, RejectKind::Error, crate::error::chain(&e), None)),
    };
    if blob.is_empty() {
        // A zero-byte file in an imaging folder is a failed transfer, not a stray file.
        return Err(reject(&listed, RejectKind::Error, "empty file (0 bytes)".into(), None));
    }
    match probe(&blob) {
        Err(e) => Err(reject(&listed, RejectKind::Error, e.0, None)),
        Ok(Probe::NotDicom(detail)) if named_dicom(&listed.name) => {
            Err(reject(&listed, RejectKind::Error, format!("named .dcm but not a DICOM file: {detail}"), None))
        }
        Ok(Probe::NotDicom(detail)) => Err(reject(&listed, RejectKind::Skip(SkipReason::NotDicom), detail, None)),
        Ok(Probe::NoImage { reason, detail, header }) => {
            Err(reject(&listed, RejectKind::Skip(reason), detail, Some(header)))
        }
        Ok(Probe::MissingPixels { detail, header }) => Err(reject(&listed, RejectKind::Error, detail, Some(header))),
        Ok(Probe::Image(header)) if listed.expected_sop.as_ref().is_some_and(|e| *e != header.sop_instance_uid) => {
            // No UID in the reason (it reaches the analyst tables); failed_files.csv names the instance.
            let detail = "the server sent another instance than its manifest lists (SOP Instance UID differs)";
            Err(reject(&listed, RejectKind::Error, detail.to_string(), Some(header)))
        }
        Ok(Probe::Image(header)) => {
            let routed = models.route(&header);
            if routed.is_empty() {
                let detail = format!(
                    "no configured model accepts modality {:?}, photometric {:?}, SOP class {}",
                    header.modality,
                    header.photometric.as_str(),
                    header.sop_class_uid
                );
                return Err(reject(&listed, RejectKind::Skip(SkipReason::NoModelAccepts), detail, Some(header)));
            }
            Ok(Instance { source: listed.id, name: listed.name, header: Arc::new(header), models: routed })
        }
    }
}

/// A `.dcm` name promises DICOM: breaking the promise is an error, where a
/// README or thumbnail beside the images is only a skip.
fn named_dicom(name: &str) -> bool {
    std::path::Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
}

/// Images in study → series → instance order; rejects first, by path.
fn order_key(item: &Msg<Instance>) -> (u8, String, String, i64, String) {
    match item {
        Err(r) => (0, String::new(), String::new(), 0, r.source.locator()),
        Ok(i) => (
            1,
            i.header.study_uid.0.clone(),
            i.header.series_uid.0.clone(),
            i.header.instance_number.map_or(i64::MAX, i64::from),
            i.name.clone(),
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
        Ok(i) => i.source.locator(),
        Err(r) => r.source.locator(),
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

/// The ingest stage: walk rejects first, then each chunk of files scanned
/// and sent downstream as it is done, so header reading overlaps decoding.
/// Rejected files travel on as errors, so decode accounts for every file.
pub fn run(
    files: Vec<Listed>,
    walk_rejects: Vec<Rejected>,
    source: &dyn Source,
    models: &Models,
    shard: Option<Shard>,
    tx: &Sender<Msg<Instance>>,
) {
    let walk = Inventory { items: walk_rejects.into_iter().map(Err).collect() };
    let mut files = files.into_iter();
    let mut next = Some(walk);
    while let Some(inventory) = next.take() {
        for item in inventory.items {
            // Another shard's file: not ours to read, count or report.
            if shard.is_some_and(|s| !s.owns(&shard_key(&item))) {
                continue;
            }
            if tx.send(item).is_err() {
                return; // downstream stopped: the pipeline is shutting down
            }
        }
        let chunk: Vec<Listed> = files.by_ref().take(CHUNK).collect();
        if !chunk.is_empty() {
            next = Some(scan(chunk, source, models));
        }
    }
}
