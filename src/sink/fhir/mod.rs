//! FHIR R4 results: per screened study, `fhir/<study pseudonym>.json`, a
//! transaction Bundle for the electronic record ([`bundle`]).
//!
//! Written at publish, once the studies are ranked, into the tables folder
//! ([`crate::sink::OutPaths::tables`]): OUT for a single run and for every
//! shard of a sharded one, each shard writing its own studies. A study that
//! cannot have a document (no usable StudyInstanceUID or PatientID,
//! [`identity::NoDocument`]) gets none; the count per reason is logged,
//! without identifiers, and the run goes on. These files are identifiable,
//! like the worklist: they name the patient and the study.

pub mod bundle;
pub mod identity;
pub mod model;
pub mod observation;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sink::{ModelStamp, Output, Published, RunStamp};
use crate::triage::StudyResult;
use identity::{DocumentSeed, DocumentSubject, NoDocument};

/// The folder under OUT.
pub const DIR: &str = "fhir";

/// A code as the config names it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodeConfig {
    pub system: String,
    pub code: String,
    pub display: String,
}

/// The `[fhir]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FhirConfig {
    /// Identifier system claimed for a PatientID that passes the NHS number
    /// modulus-11 check. Default: `https://fhir.nhs.uk/Id/nhs-number`.
    pub nhs_number_system: String,
    /// Identifier system for any other PatientID: the programme's local
    /// one. Default: `urn:nightscreen:patient-id`.
    pub patient_id_system: String,
    /// Identifier system of accession numbers (the assigning RIS); empty:
    /// the identifier is typed ACSN without a system. Default: empty.
    pub accession_system: String,
    /// DiagnosticReport.code. Default: a local code
    /// (`urn:nightscreen:code` `screening-ai-triage`); a programme sets
    /// its own (a NICIP or SNOMED CT code).
    pub report_code: CodeConfig,
    /// Code system of the DESP grades (R0M0 … R3M1, U). Default:
    /// `urn:nightscreen:desp-grade`, a local system (README).
    pub grade_system: String,
}

impl Default for FhirConfig {
    fn default() -> Self {
        Self {
            nhs_number_system: "https://fhir.nhs.uk/Id/nhs-number".into(),
            patient_id_system: "urn:nightscreen:patient-id".into(),
            accession_system: String::new(),
            report_code: CodeConfig {
                system: bundle::NIGHTSCREEN_CODES.into(),
                code: "screening-ai-triage".into(),
                display: "Screening triage by machine (AI)".into(),
            },
            grade_system: "urn:nightscreen:desp-grade".into(),
        }
    }
}

/// The models that scored `study`, grading model first: `study.models`
/// names them "id version", in the run's model order.
pub fn study_models<'m>(study: &StudyResult, models: &'m [ModelStamp], grading: Option<&str>) -> Vec<&'m ModelStamp> {
    let mut used: Vec<&ModelStamp> =
        models.iter().filter(|m| study.models.iter().any(|s| *s == format!("{} {}", m.id, m.version))).collect();
    if let Some(grading) = grading {
        used.sort_by_key(|m| m.id != grading);
    }
    used
}

/// Whether `name` is a document we write: `<study pseudonym>.<ext>`
/// (32 hex digits).
/// A name this writer (or the SR and HL7 writers) gives a document:
/// `<32 hex digits>.<ext>`.
pub fn is_document_name(name: &str, ext: &str) -> bool {
    name.strip_suffix(ext)
        .and_then(|stem| stem.strip_suffix('.'))
        .is_some_and(|stem| stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Deletes our documents in `dir` that this run did not write (`keep`):
/// those of an earlier run into the same OUT (`--force`), whose studies
/// may not be in this one. Only for a single run: shards share the folder.
///
/// # Errors
/// The folder cannot be read or a file removed.
pub fn remove_stale(dir: &Path, ext: &str, keep: &std::collections::HashSet<String>) -> Result<usize> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Output { path, source }
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_document_name(&name, ext) && !keep.contains(&name) {
            std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Studies left without a document, by reason; logged once per run.
#[derive(Debug, Default)]
pub struct Unwritten(BTreeMap<NoDocument, u64>);

impl Unwritten {
    pub fn add(&mut self, reason: NoDocument) {
        *self.0.entry(reason).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Logs the counts (no identifiers) under `what` ("FHIR bundle").
    pub fn log(&self, what: &str) {
        for (reason, n) in &self.0 {
            log::warn!("{n} study(ies) got no {what}: {}", reason.as_str());
        }
    }
}

/// The run as each per-study document writer (FHIR, HL7) sees it.
#[derive(Debug, Clone)]
pub struct DocumentRun {
    pub run: RunStamp,
    pub models: Vec<ModelStamp>,
    /// The model whose findings the documents report (DESP's grader).
    pub grading_model: Option<String>,
    /// A single run owns the document folders; shards share them.
    pub owns_dirs: bool,
}

impl DocumentRun {
    /// A study's subject and the seed of its documents' ids, or why it can
    /// have no document.
    ///
    /// # Errors
    /// The study lacks a usable StudyInstanceUID or PatientID.
    pub fn identify<'s>(
        &self,
        study: &'s StudyResult,
        shadow: bool,
    ) -> std::result::Result<(DocumentSubject<'s>, DocumentSeed), NoDocument> {
        let subject = DocumentSubject::of(study, &self.run.key)?;
        let seed = DocumentSeed::new(subject.study_uid, &self.run, &self.models, shadow);
        Ok((subject, seed))
    }

    /// The models whose findings a study's documents report.
    pub fn models_of(&self, study: &StudyResult) -> Vec<&ModelStamp> {
        study_models(study, &self.models, self.grading_model.as_deref())
    }
}

/// A folder of per-study documents (`fhir/`, `hl7/`), written once the
/// studies are ranked: one file per study that can have one, the others
/// counted by reason; a single run also removes an earlier run's documents
/// of studies it no longer has.
pub struct DocumentFolder {
    dir: PathBuf,
    /// A single run owns the folder; shards share it.
    owns_dir: bool,
    ext: &'static str,
    /// What one document is called in the log ("FHIR bundle").
    what: &'static str,
}

impl DocumentFolder {
    /// Creates `tables/name/`.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn create(tables: &Path, name: &str, ext: &'static str, what: &'static str, owns_dir: bool) -> Result<Self> {
        let dir = tables.join(name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Output { path: dir.clone(), source })?;
        Ok(Self { dir, owns_dir, ext, what })
    }

    /// Writes each study's document, as `document` makes it (its file name
    /// and bytes, or why the study has none).
    ///
    /// # Errors
    /// A document cannot be made into bytes or written, or a stale one removed.
    pub fn publish(
        &self,
        studies: &[StudyResult],
        mut document: impl FnMut(&StudyResult) -> Result<std::result::Result<(String, Vec<u8>), NoDocument>>,
    ) -> Result<()> {
        let mut unwritten = Unwritten::default();
        let mut written = std::collections::HashSet::new();
        for study in studies {
            match document(study)? {
                Ok((name, bytes)) => {
                    crate::sink::write_atomically(&self.dir.join(&name), &bytes)?;
                    written.insert(name);
                }
                Err(reason) => unwritten.add(reason),
            }
        }
        if self.owns_dir {
            remove_stale(&self.dir, self.ext, &written)?;
        }
        crate::sink::sync_dir(&self.dir)?;
        unwritten.log(self.what);
        log::info!("wrote {} {}(s), {} study(ies) without one", written.len(), self.what, unwritten.total());
        Ok(())
    }
}

/// `fhir/`: one Bundle per study.
pub struct FhirBundles {
    folder: DocumentFolder,
    cfg: FhirConfig,
    doc: DocumentRun,
}

impl FhirBundles {
    /// Creates `tables/fhir/`.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn create(tables: &Path, cfg: &FhirConfig, doc: &DocumentRun) -> Result<Self> {
        Ok(Self {
            folder: DocumentFolder::create(tables, DIR, "json", "FHIR bundle", doc.owns_dirs)?,
            cfg: cfg.clone(),
            doc: doc.clone(),
        })
    }

    /// One study's bundle and its file name, or why it has none.
    ///
    /// # Errors
    /// The study cannot have a document.
    pub fn bundle(&self, study: &StudyResult, run: &Published<'_>) -> Result<(String, model::Bundle), NoDocument> {
        let (subject, seed) = self.doc.identify(study, run.page.shadow)?;
        let issued = run.page.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let input = bundle::BundleInput {
            study,
            subject: &subject,
            seed: &seed,
            models: self.doc.models_of(study),
            band: run.page.bands.name(study.band),
            shadow: run.page.shadow,
            issued: &issued,
            software_version: &self.doc.run.software_version,
        };
        Ok((format!("{}.json", subject.study_pseudonym), bundle::build(&self.cfg, &input)))
    }
}

impl Output for FhirBundles {
    fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        self.folder.publish(run.studies, |study| match self.bundle(study, run) {
            Err(reason) => Ok(Err(reason)),
            Ok((name, bundle)) => {
                let bytes = serde_json::to_vec_pretty(&bundle)
                    .map_err(|e| Error::Output { path: name.clone().into(), source: std::io::Error::other(e) })?;
                Ok(Ok((name, bytes)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_documents_of_other_studies_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (kept, stale) = ("a".repeat(32) + ".json", "b".repeat(32) + ".json");
        for name in [kept.as_str(), stale.as_str(), "notes.json", "cccc.json", &("d".repeat(32) + ".hl7")] {
            std::fs::write(dir.path().join(name), b"{}").expect("write");
        }
        let keep = [kept.clone()].into_iter().collect();
        assert_eq!(remove_stale(dir.path(), "json", &keep).expect("remove"), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [kept, "cccc.json".into(), "d".repeat(32) + ".hl7", "notes.json".into()]);
    }
}
