//! `nightscreen send OUT --to NAME`: stores a finished run's DICOM SRs
//! (`OUT/sr/*.dcm`) into their studies on a DICOMweb server with STOW-RS,
//! one study per request, recording each in `OUT/sent.jsonl`. Sending
//! again stores nothing new: acknowledged SRs are skipped, and their UIDs
//! are derived from the result, so a server already holding one keeps one.
//! A shadow run is refused unless asked for: its results must not reach
//! the clinicians the pilot is measuring.

pub mod ledger;
mod stow;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::source::dicomweb::{self, Client, DicomWebConfig};

/// Where the SRs a run writes are.
pub const SR_DIR: &str = "sr";

/// What `send` did.
#[derive(Debug, Default)]
pub struct SendSummary {
    pub stored: u64,
    pub already: u64,
    /// Per failed SR: its study's file name and the server's reason.
    pub failed: Vec<(String, String)>,
}

/// Options of one send.
pub struct SendOptions<'a> {
    pub out: &'a Path,
    pub destination: &'a str,
    pub source: &'a DicomWebConfig,
    pub shadow_ok: bool,
}

/// One SR found under `OUT/sr/`.
struct Report {
    study: String,
    sop: String,
    bytes: std::sync::Arc<[u8]>,
}

fn read_report(path: &Path) -> std::result::Result<Report, String> {
    use dicom_dictionary_std::tags;
    let bytes: std::sync::Arc<[u8]> = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?.into();
    let blob = crate::source::Blob::bytes(std::sync::Arc::clone(&bytes));
    let obj = blob.object(None).map_err(|e| format!("not a DICOM file: {e}"))?;
    let text = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty())
    };
    let study = text(tags::STUDY_INSTANCE_UID).ok_or("no StudyInstanceUID")?;
    let sop = text(tags::SOP_INSTANCE_UID).ok_or("no SOPInstanceUID")?;
    Ok(Report { study, sop, bytes })
}

/// Sends every SR of the finished run in `opts.out`.
///
/// # Errors
/// OUT holds no finished run, a shadow run without `shadow_ok`, the server
/// refuses our credentials or cannot be reached, or the ledger cannot be
/// written. A study the server refuses is a failure in the summary, not an error.
pub fn send(opts: &SendOptions<'_>) -> Result<SendSummary> {
    let out = opts.out;
    let refuse = |problem: String| Error::OutDir { path: out.to_path_buf(), problem };
    let report = crate::run::RunReport::read(out)?
        .ok_or_else(|| refuse(format!("holds no finished run ({}) to send", crate::sink::names::RUN_JSON)))?;
    if report.shadow && !opts.shadow_ok {
        return Err(refuse(
            "is a shadow run: its results must not reach clinical systems; pass --shadow-ok to send it \
             to a destination that is not clinical"
                .into(),
        ));
    }
    let source_error = |problem: String| Error::Source { source_name: opts.destination.to_string(), problem };
    let client = Client::new(opts.destination, opts.source).map_err(|e| source_error(e.to_string()))?;
    dicomweb::probe(&client)
        .map_err(|e| source_error(format!("{} does not answer as it should: {e}", opts.source.url)))?;
    let dir = out.join(SR_DIR);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "dcm")).collect()
        }
        Err(e) => return Err(refuse(format!("has no {SR_DIR}/ folder of results to send: {e}"))),
    };
    files.sort();
    let done = ledger::stored(out, opts.destination).map_err(|e| refuse(e.to_string()))?;
    let mut summary = SendSummary::default();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let report = match read_report(&path) {
            Ok(report) => report,
            Err(problem) => {
                summary.failed.push((name, problem));
                continue;
            }
        };
        if done.contains(&report.sop) {
            summary.already += 1;
            continue;
        }
        let sent = stow::store(&client, &report.study, &report.sop, &report.bytes);
        let (outcome, status, reason) = match sent {
            Ok(status) => (ledger::Outcome::Stored, Some(status), String::new()),
            Err(stow::StowFailure { status, reason }) => (ledger::Outcome::Failed, status, reason),
        };
        ledger::append(
            out,
            &ledger::Entry {
                at: chrono::Utc::now(),
                destination: opts.destination.to_string(),
                url: opts.source.url.clone(),
                file: name.clone(),
                study_uid: report.study.clone(),
                sop_instance_uid: report.sop.clone(),
                http_status: status,
                outcome,
                reason: reason.clone(),
            },
        )
        .map_err(|e| refuse(e.to_string()))?;
        match outcome {
            ledger::Outcome::Stored => summary.stored += 1,
            ledger::Outcome::Failed => summary.failed.push((name, reason)),
        }
    }
    Ok(summary)
}
