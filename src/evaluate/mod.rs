//! Shadow-mode evaluation (`nightscreen evaluate`): a finished run's
//! predictions against a programme's reference grades, as the figures a
//! programme board asks for before a pilot may scale.
//!
//! The predictions come from the analyst `studies` table, joined to the
//! reference by study pseudonym (the programme key turns the reference's
//! UIDs into the table's pseudonyms), so nothing identifiable is read from
//! the run. Figures follow scikit-learn's definitions ([`metrics`]) and are
//! checked against it in the tests.

pub mod compare;
pub mod metrics;
mod plots;
pub mod reference;
mod report;
pub mod results;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::privacy::{Kind, PseudonymKey};
use crate::triage::desp::Grade;
use compare::{eye_cases, figures, study_cases, Bootstrap, Figures, MatchedEye, TARGETS};
use results::{RunInfo, StudyPrediction};

/// Why an evaluation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is missing: is this the output folder of a finished run?")]
    Unfinished {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading Parquet {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {what}")]
    Table { path: PathBuf, what: String },
    #[error("reading reference {path}")]
    ReferenceCsv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("reference {path}, line {line}: {what}")]
    Reference { path: PathBuf, line: u64, what: String },
    #[error(
        "the run's pseudonyms were made with key {run} but this key is {given}: \
         evaluate with the programme key the run used"
    )]
    KeyMismatch { run: String, given: String },
    #[error("none of the reference's {0} studies is in the run's results")]
    NothingMatched(usize),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet {path}")]
    WriteParquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("drawing {path}: {what}")]
    Plot { path: PathBuf, what: String },
}

/// What to evaluate, and where the report goes.
#[derive(Debug, Clone)]
pub struct Options {
    pub results: PathBuf,
    pub reference: PathBuf,
    pub report: PathBuf,
    pub resamples: usize,
    pub seed: u64,
}

/// The whole evaluation, as written to `evaluation.json`.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub software_version: &'static str,
    pub evaluated_at: String,
    pub results: PathBuf,
    pub run: RunInfo,
    pub reference: ReferenceInfo,
    pub matched: Matched,
    pub bootstrap: Bootstrap,
    /// Target name ("referable", "r3", "m1", "ungradable") → figures.
    pub per_eye: BTreeMap<&'static str, Figures>,
    pub per_study: BTreeMap<&'static str, Figures>,
    /// Reference outcome → pipeline band → studies ("MISSING": no result).
    pub band_confusion: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Serialize)]
pub struct ReferenceInfo {
    pub path: PathBuf,
    pub sha256: String,
    pub eyes: usize,
    pub studies: usize,
}

/// How well the two sides joined; unmatched cases are left out of every
/// figure, so they are counted here for the reader to weigh.
#[derive(Debug, Serialize)]
pub struct Matched {
    pub eyes: usize,
    pub eyes_without_result: usize,
    /// Matched eyes the DR model's domain gate did not recognise (graded
    /// `OOD`): counted as neither referred nor ungradable.
    pub eyes_outside_domain: usize,
    pub studies: usize,
    pub studies_without_result: usize,
    pub result_studies_without_reference: usize,
}

/// Evaluates and writes the report: `evaluation.json`,
/// `operating_points.parquet`, the PNG plots and `report.html`.
///
/// # Errors
/// Unreadable or malformed inputs, a key other than the run's, no overlap
/// between the two, or an unwritable report folder.
pub fn run(options: &Options, key: &PseudonymKey) -> Result<Evaluation, Error> {
    let run = results::read_run(&options.results)?;
    if run.pseudonym_key_id != key.key_id() {
        return Err(Error::KeyMismatch { run: run.pseudonym_key_id, given: key.key_id() });
    }
    let reference = reference::read(&options.reference)?;
    let predictions = results::read_studies(&options.results)?;
    let evaluation = evaluate(options, run, &reference, &predictions, key)?;
    report::write(&options.report, &evaluation)?;
    Ok(evaluation)
}

fn evaluate(
    options: &Options,
    run: RunInfo,
    reference: &reference::Reference,
    predictions: &HashMap<String, StudyPrediction>,
    key: &PseudonymKey,
) -> Result<Evaluation, Error> {
    let pseudonyms: HashMap<&str, String> = reference
        .eyes
        .iter()
        .filter_map(|e| Some((e.study_uid.as_str(), key.pseudonym(Kind::Study, &e.study_uid)?)))
        .collect();
    let study_of = |uid: &str| pseudonyms.get(uid).and_then(|p| predictions.get(p));
    let mut eyes = Vec::new();
    for eye in &reference.eyes {
        match study_of(&eye.study_uid).and_then(|s| s.eye(eye.eye)) {
            Some(predicted) if predicted.grade.is_some() => eyes.push(MatchedEye { reference: eye, predicted }),
            _ => {}
        }
    }
    let reference_studies: BTreeMap<&str, ()> = reference.eyes.iter().map(|e| (e.study_uid.as_str(), ())).collect();
    let studies_without_result = reference_studies.keys().filter(|uid| study_of(uid).is_none()).count();
    if studies_without_result == reference_studies.len() {
        return Err(Error::NothingMatched(reference_studies.len()));
    }
    let known: std::collections::HashSet<&String> = pseudonyms.values().collect();
    let bootstrap = Bootstrap { resamples: options.resamples, seed: options.seed };
    let referral = run.referral;
    let mut band_confusion: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (uid, outcome) in &reference.outcomes {
        let band = study_of(uid).map_or_else(|| "MISSING".to_string(), |s| s.band.clone());
        *band_confusion.entry(outcome.clone()).or_default().entry(band).or_default() += 1;
    }
    Ok(Evaluation {
        software_version: env!("CARGO_PKG_VERSION"),
        evaluated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        results: options.results.clone(),
        run,
        reference: ReferenceInfo {
            path: options.reference.clone(),
            sha256: sha256_of(&options.reference)?,
            eyes: reference.eyes.len(),
            studies: reference_studies.len(),
        },
        matched: Matched {
            eyes: eyes.len(),
            eyes_without_result: reference.eyes.len() - eyes.len(),
            eyes_outside_domain: eyes.iter().filter(|e| e.predicted.grade == Some(Grade::OutOfDomain)).count(),
            studies: reference_studies.len() - studies_without_result,
            studies_without_result,
            result_studies_without_reference: predictions.keys().filter(|p| !known.contains(p)).count(),
        },
        bootstrap,
        per_eye: TARGETS.iter().map(|t| (t.name, figures(t, &eye_cases(&eyes, t, &referral), bootstrap))).collect(),
        per_study: TARGETS.iter().map(|t| (t.name, figures(t, &study_cases(&eyes, t, &referral), bootstrap))).collect(),
        band_confusion,
    })
}

fn sha256_of(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    Ok(hex::encode(Sha256::digest(bytes)))
}
