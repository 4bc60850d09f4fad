//! DICOM SR results: one Comprehensive 3D SR per screened study under
//! `OUT/sr/<study pseudonym>.dcm`, in the shape of TID 1500 as the IHE AI
//! Results profile uses it (preliminary, unverified; the algorithm
//! identified; per finding a measurement group with its grade as codes,
//! the probabilities behind it and its source images; the band and the
//! reason in words). Identifiable, like the worklist: it files into the
//! study by its Study Instance UID, for `nightscreen send` to store.
//!
//! An [`Output`]: [`Output::file`] appends each scored instance's
//! references to the evidence journal ([`evidence`]), [`Output::commit`]
//! syncs it and records its length in the checkpoint, and
//! [`Output::publish`] writes each ranked study's document. A study that
//! cannot get one (no Study Instance UID, header values DICOM refuses) is
//! logged by pseudonym with the reason and counted in `sr-summary.json`;
//! the run goes on.

pub mod codes;
mod content;
pub mod document;
pub mod evidence;
mod items;
pub mod uids;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use codes::{Code, GradeCodes, LocalScheme};
pub use content::{NOT_FOR_CLINICAL_USE, SHADOW_TEXT};
pub use document::{NoDocument, Report, COMPREHENSIVE_3D_SR};
pub use uids::{sr_uids, SrUids};

use self::evidence::{EvidenceIndex, ImageEvidence, Journal};
use super::{sync_dir, write_atomically, write_json, ModelStamp, OutPaths, Output, Published, RunStamp};
use crate::error::{Error, Result};
use crate::privacy::Kind;
use crate::run::checkpoint::Checkpoint;
use crate::run::ledger::CompleteFile;
use crate::triage::StudyResult;

/// The SR folder under OUT (shared by a sharded run's shards).
pub const DIR: &str = "sr";
/// What the SR writer did, in the run's folder.
pub const SUMMARY: &str = "sr-summary.json";

/// The `[sr]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrConfig {
    /// The SR series' number in the study. Default: 9901.
    pub series_number: i32,
    /// TID 1500 "Procedure reported". Default: (DES, 99NSDESP, "Diabetic
    /// eye screening"), a local placeholder until the programme chooses a
    /// SNOMED CT code.
    pub procedure: Code,
    /// The local coding scheme the SR declares (`[sr.scheme]`).
    pub scheme: LocalScheme,
    /// The coded DESP grades (`[sr.grades]`).
    pub grades: GradeCodes,
    /// Device Observer UID of this installation; empty: derived from the
    /// software version. Default: empty.
    pub device_observer_uid: String,
}

impl Default for SrConfig {
    fn default() -> Self {
        Self {
            series_number: 9901,
            procedure: Code::new("DES", "99NSDESP", "Diabetic eye screening"),
            scheme: LocalScheme::default(),
            grades: GradeCodes::default(),
            device_observer_uid: String::new(),
        }
    }
}

impl SrConfig {
    /// The table's problems, for `Config::validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = codes::problems(&self.procedure, &self.scheme, &self.grades);
        if !self.device_observer_uid.is_empty() && !uids::is_valid_uid(&self.device_observer_uid) {
            out.push(format!("sr: device_observer_uid {:?} is not a valid UID", self.device_observer_uid));
        }
        if !(1..=99_999).contains(&self.series_number) {
            out.push(format!("sr: series_number {} must be 1–99999", self.series_number));
        }
        out
    }
}

/// What the SR writer needs beyond the sinks' shared arguments.
#[derive(Debug, Clone, Default)]
pub struct SrSetup {
    pub config: SrConfig,
    /// "id version" of each model whose card is not for clinical use.
    pub not_for_clinical_use: BTreeSet<String>,
}

/// `OUT/sr/`: the SR output component.
pub struct SrReports {
    dir: PathBuf,
    run_dir: PathBuf,
    /// Whether this process owns all of `dir` (not a shard of a run).
    whole_run: bool,
    journal: Journal,
    run: RunStamp,
    models: Vec<ModelStamp>,
    setup: SrSetup,
}

/// What `sr-summary.json` says.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SrSummary {
    pub written: u64,
    /// Studies without a document, by [`NoDocument::key`].
    pub no_document: BTreeMap<String, u64>,
}

impl SrReports {
    /// Creates `OUT/sr/` and opens the evidence journal at its committed length.
    ///
    /// # Errors
    /// The folder cannot be created or the journal opened.
    pub fn create(
        paths: &OutPaths,
        run: &RunStamp,
        models: &[ModelStamp],
        setup: &SrSetup,
        state: &Checkpoint,
    ) -> Result<Self> {
        let dir = paths.tables.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Output { path: dir.clone(), source })?;
        let journal = Journal::open(&paths.run, state.sr_evidence_bytes)?;
        Ok(Self {
            dir,
            run_dir: paths.run.clone(),
            whole_run: paths.shard.is_none(),
            journal,
            run: run.clone(),
            models: models.to_vec(),
            setup: setup.clone(),
        })
    }

    /// Removes SRs a previous run of this OUT wrote for studies this one did
    /// not (a `--force` rerun over other inputs); a shard leaves the folder
    /// to the other shards.
    fn remove_stale(&self, written: &BTreeSet<PathBuf>) -> Result<()> {
        if !self.whole_run {
            return Ok(());
        }
        let entries =
            std::fs::read_dir(&self.dir).map_err(|source| Error::Output { path: self.dir.clone(), source })?;
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_some_and(|x| x == "dcm") && !written.contains(&path) {
                std::fs::remove_file(&path).map_err(|source| Error::Output { path, source })?;
            }
        }
        Ok(())
    }
}

impl Output for SrReports {
    fn file(&mut self, file: &CompleteFile) -> Result<()> {
        match ImageEvidence::of_file(file) {
            // A study without a UID gets no document: nothing to cite.
            Some(image) if !image.study_uid.is_empty() => self.journal.append(&image),
            _ => Ok(()),
        }
    }

    fn commit(&mut self, state: &mut Checkpoint) -> Result<()> {
        state.sr_evidence_bytes = self.journal.sync()?;
        Ok(())
    }

    fn publish(&mut self, published: &Published<'_>) -> Result<()> {
        self.journal.sync()?;
        let index = EvidenceIndex::build(self.journal.path())?;
        let device_uid = if self.setup.config.device_observer_uid.is_empty() {
            uids::device_uid(&self.run.software_version)
        } else {
            self.setup.config.device_observer_uid.clone()
        };
        let shadow = published.page.shadow;
        let mut summary = SrSummary::default();
        let mut written = BTreeSet::new();
        for study in published.studies {
            let pseudonym = self.run.key.pseudonym(Kind::Study, study.header.study_uid.as_str());
            let images = index.study(study.header.study_uid.as_str())?;
            let models: Vec<ModelStamp> = self
                .models
                .iter()
                .filter(|m| study.models.contains(&format!("{} {}", m.id, m.version)))
                .cloned()
                .collect();
            let report = Report {
                study,
                images: &images,
                band_name: published.page.bands.name(study.band),
                run: &self.run,
                models: &models,
                cfg: &self.setup.config,
                uids: sr_uids(
                    study.header.study_uid.as_str(),
                    &self.run.software_version,
                    &self.run.config_sha256,
                    &self.models,
                    shadow,
                    &content_digest(study, &images),
                ),
                device_uid: &device_uid,
                shadow,
                not_for_clinical_use: study.models.iter().any(|m| self.setup.not_for_clinical_use.contains(m)),
            };
            let logged = pseudonym.clone().unwrap_or_else(|| "(no StudyInstanceUID)".into());
            let outcome = pseudonym
                .ok_or(NoDocument::NoStudyUid)
                .and_then(|name| document::encode(&report).map(|bytes| (name, bytes)));
            match outcome {
                Ok((name, bytes)) => {
                    let path = self.dir.join(format!("{name}.dcm"));
                    write_atomically(&path, &bytes)?;
                    written.insert(path);
                    summary.written += 1;
                }
                Err(why) => {
                    log::warn!("sr: study {logged} gets no SR: {why}");
                    *summary.no_document.entry(why.key().to_string()).or_default() += 1;
                }
            }
        }
        sync_dir(&self.dir)?;
        self.remove_stale(&written)?;
        let skipped: u64 = summary.no_document.values().sum();
        log::info!("sr: {} document(s) in {}, {skipped} study(ies) without one", summary.written, self.dir.display());
        write_json(&self.run_dir.join(SUMMARY), &summary, true)
    }
}

/// Reads `sr-summary.json` from a run's folder.
///
/// # Errors
/// It cannot be read or parsed.
pub fn read_summary(run_dir: &Path) -> Result<SrSummary> {
    let path = run_dir.join(SUMMARY);
    let bytes = std::fs::read(&path).map_err(|source| Error::Output { path: path.clone(), source })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Output { path, source: std::io::Error::other(e) })
}

/// What a study's SR says, as bytes for its instance UID: the result
/// (band, score, reason, counts, eye grades) and each image's evidence
/// without the time it was scored (a re-run of the same result keeps its
/// UID).
fn content_digest(study: &StudyResult, images: &[ImageEvidence]) -> Vec<u8> {
    let mut out = format!(
        "{:?}|{:?}|{}|{}|{}|{}|",
        study.band,
        study.score.map(f32::to_bits),
        study.reason,
        study.images_scored,
        study.files_failed,
        study.files_skipped
    )
    .into_bytes();
    out.extend(serde_json::to_vec(&study.detail).unwrap_or_default());
    // In UID order: the journal holds images in the order they finished.
    let mut timeless: Vec<ImageEvidence> = images.to_vec();
    timeless.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
    for image in &mut timeless {
        image.scored_at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        out.extend(serde_json::to_vec(image).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sr_table_parses_with_its_defaults_and_names_bad_values() {
        let cfg: SrConfig = toml::from_str("series_number = 42\n").expect("parse");
        assert_eq!((cfg.series_number, cfg.procedure.value.as_str()), (42, "DES"));
        assert!(cfg.problems().is_empty());
        let text = "device_observer_uid = \"1.02\"\nseries_number = 0\n[grades]\nr3 = { value = \"59276001\", scheme = \"SCT\", meaning = \"Proliferative diabetic retinopathy\" }\n";
        let cfg: SrConfig = toml::from_str(text).expect("parse");
        assert_eq!(cfg.grades.r3.scheme, "SCT", "a grade mapped to another scheme");
        assert_eq!(cfg.grades.r0.value, "R0", "the others keep their defaults");
        let problems = cfg.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(toml::from_str::<SrConfig>("colour = 1").is_err(), "unknown keys are refused");
    }
}
