//! HL7 v2.4 results: per screened study, `hl7/<study pseudonym>.hl7`, an
//! ORU^R01 message ([`oru`]) for the RIS's integration engine to pick up
//! (files, not MLLP). Written when `[sinks] hl7 = true`.
//!
//! Like the FHIR bundles: written at publish into the tables folder (OUT,
//! for single and sharded runs), identifiable, and a study without a usable
//! StudyInstanceUID or PatientID gets no message (counted and logged by
//! reason, never with identifiers).

pub mod oru;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sink::fhir::identity::NoDocument;
use crate::sink::fhir::{DocumentFolder, DocumentRun};
use crate::sink::{Output, Published};
use crate::triage::StudyResult;

/// The folder under OUT.
pub const DIR: &str = "hl7";

/// MSH-11: how the receiver should treat the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessingId {
    #[default]
    Production,
    Training,
    Debugging,
}

impl ProcessingId {
    /// The HL7 table 0103 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Production => "P",
            Self::Training => "T",
            Self::Debugging => "D",
        }
    }
}

/// The `[hl7]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hl7Config {
    /// MSH-3. Default: "NIGHTSCREEN".
    pub sending_application: String,
    /// MSH-4. Default: "DESP-AI".
    pub sending_facility: String,
    /// MSH-5. Default: "RIS".
    pub receiving_application: String,
    /// MSH-6. Default: "TRUST".
    pub receiving_facility: String,
    /// MSH-11 ("production", "training", "debugging"). Default: production.
    pub processing_id: ProcessingId,
    /// PID-3 assigning authority of an NHS number (type NH). Default: "NHS".
    pub nhs_assigning_authority: String,
    /// PID-3 assigning authority of any other PatientID (type MR).
    /// Default: "NIGHTSCREEN".
    pub local_assigning_authority: String,
    /// OBR-4, a local code (coding system L). Default: "NSAI".
    pub service_code: String,
    /// OBR-4's text. Default: "Screening triage by machine (AI)".
    pub service_text: String,
}

impl Default for Hl7Config {
    fn default() -> Self {
        Self {
            sending_application: "NIGHTSCREEN".into(),
            sending_facility: "DESP-AI".into(),
            receiving_application: "RIS".into(),
            receiving_facility: "TRUST".into(),
            processing_id: ProcessingId::Production,
            nhs_assigning_authority: "NHS".into(),
            local_assigning_authority: "NIGHTSCREEN".into(),
            service_code: "NSAI".into(),
            service_text: "Screening triage by machine (AI)".into(),
        }
    }
}

/// `hl7/`: one ORU^R01 per study.
pub struct OruMessages {
    folder: DocumentFolder,
    cfg: Hl7Config,
    doc: DocumentRun,
}

impl OruMessages {
    /// Creates `tables/hl7/`.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn create(tables: &Path, cfg: &Hl7Config, doc: &DocumentRun) -> Result<Self> {
        Ok(Self {
            folder: DocumentFolder::create(tables, DIR, "hl7", "HL7 ORU message", doc.owns_dirs)?,
            cfg: cfg.clone(),
            doc: doc.clone(),
        })
    }

    /// One study's message and its file name, or why it has none.
    ///
    /// # Errors
    /// The study cannot have a document.
    pub fn message(&self, study: &StudyResult, run: &Published<'_>) -> Result<(String, String), NoDocument> {
        let (subject, seed) = self.doc.identify(study, run.page.shadow)?;
        let equipment = self.doc.models_of(study).first().map(|m| format!("{} {}", m.id, m.version));
        let input = oru::OruInput {
            study,
            subject: &subject,
            seed: &seed,
            band: run.page.bands.name(study.band),
            shadow: run.page.shadow,
            started_at: run.page.started_at,
            software_version: &self.doc.run.software_version,
            equipment,
        };
        Ok((format!("{}.hl7", subject.study_pseudonym), oru::build(&self.cfg, &input)))
    }
}

impl Output for OruMessages {
    fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        self.folder
            .publish(run.studies, |study| Ok(self.message(study, run).map(|(name, text)| (name, text.into_bytes()))))
    }
}
