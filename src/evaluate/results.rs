//! A finished run's predictions, read back from the analyst `studies` table
//! (so evaluation needs nothing identifiable beyond the reference itself)
//! and its provenance from `run.json`.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow_array::{Array, Float32Array, Int32Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::reference::Eye;
use super::Error;
use crate::run::RunReport;
use crate::sink::names::RUN_JSON;

/// What the pipeline said about one eye.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EyePrediction {
    /// DESP grade such as "R2M0" or "U"; empty when the eye had no image.
    pub grade: String,
    pub p_referable: Option<f64>,
    pub p_r3: Option<f64>,
    pub p_m1: Option<f64>,
    pub p_gradable: Option<f64>,
}

impl EyePrediction {
    pub fn called_ungradable(&self) -> bool {
        self.grade == "U"
    }

    /// Retinopathy grade of a graded eye ("R2M0" → 2).
    pub fn retinopathy(&self) -> Option<u8> {
        self.grade.strip_prefix('R')?.get(..1)?.parse().ok()
    }

    pub fn maculopathy(&self) -> bool {
        self.grade.ends_with("M1")
    }

    /// Referred for R2, R3 or M1. An eye called U is not counted as
    /// referred: conservative for sensitivity, since re-imaging is not a
    /// grade.
    pub fn called_referable(&self) -> bool {
        self.retinopathy().is_some_and(|r| r >= 2) || self.maculopathy()
    }
}

/// One study's row of the worklist, as the analysts see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyPrediction {
    pub rank: i32,
    pub band: String,
    pub right: EyePrediction,
    pub left: EyePrediction,
}

impl StudyPrediction {
    pub fn eye(&self, eye: Eye) -> &EyePrediction {
        match eye {
            Eye::Right => &self.right,
            Eye::Left => &self.left,
        }
    }
}

/// The run being evaluated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub software_version: String,
    pub config_sha256: String,
    pub pseudonym_key_id: String,
    pub shadow: bool,
    /// "id version (sha256)" of each model.
    pub models: Vec<String>,
}

/// Study pseudonym → prediction, for every study the run banded.
pub fn read_studies(out: &Path) -> Result<HashMap<String, StudyPrediction>, Error> {
    let dir = out.join(crate::sink::Table::Studies.dir());
    let mut parts: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|source| Error::Read { path: dir.clone(), source })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
        })
        .collect();
    parts.sort();
    let mut studies = HashMap::new();
    for part in &parts {
        let file = File::open(part).map_err(|source| Error::Read { path: part.clone(), source })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|source| Error::Parquet { path: part.clone(), source })?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::Table { path: part.clone(), what: e.to_string() })?;
            read_batch(&batch, &mut studies).map_err(|what| Error::Table { path: part.clone(), what })?;
        }
    }
    Ok(studies)
}

fn read_batch(batch: &RecordBatch, studies: &mut HashMap<String, StudyPrediction>) -> Result<(), String> {
    let pseudonym = strings(batch, "study_pseudonym")?;
    let rank = column::<Int32Array>(batch, "rank")?;
    let band = strings(batch, "band")?;
    let eye = |side: &str| -> Result<_, String> {
        Ok((
            strings(batch, &format!("{side}_eye_grade"))?,
            floats(batch, &format!("{side}_eye_p_referable"))?,
            floats(batch, &format!("{side}_eye_p_r3"))?,
            floats(batch, &format!("{side}_eye_p_m1"))?,
            floats(batch, &format!("{side}_eye_p_gradable"))?,
        ))
    };
    let (right, left) = (eye("right")?, eye("left")?);
    let value = |c: &Float32Array, i: usize| (!c.is_null(i)).then(|| f64::from(c.value(i)));
    let text = |c: &StringArray, i: usize| if c.is_null(i) { String::new() } else { c.value(i).to_string() };
    let predict = |e: &(&StringArray, &Float32Array, &Float32Array, &Float32Array, &Float32Array), i| EyePrediction {
        grade: text(e.0, i),
        p_referable: value(e.1, i),
        p_r3: value(e.2, i),
        p_m1: value(e.3, i),
        p_gradable: value(e.4, i),
    };
    for i in 0..batch.num_rows() {
        if pseudonym.is_null(i) {
            return Err(format!("row {i} has no study_pseudonym"));
        }
        let study = StudyPrediction {
            rank: rank.value(i),
            band: text(band, i),
            right: predict(&right, i),
            left: predict(&left, i),
        };
        studies.insert(pseudonym.value(i).to_string(), study);
    }
    Ok(())
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column {name}"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has an unexpected type"))
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    column(batch, name)
}

fn floats<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Float32Array, String> {
    column(batch, name)
}

/// Provenance of the run from its `run.json`; a run without one never
/// finished and is not evaluated.
pub fn read_run(out: &Path) -> Result<RunInfo, Error> {
    let path = out.join(RUN_JSON);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Unfinished { path: path.clone(), source })?;
    let run: RunReport =
        serde_json::from_str(&text).map_err(|e| Error::Table { path: path.clone(), what: e.to_string() })?;
    Ok(RunInfo {
        models: run.models.iter().map(|m| format!("{} {} ({})", m.id, m.version, m.sha256)).collect(),
        run_id: run.run_id,
        software_version: run.software_version,
        config_sha256: run.config_sha256,
        pseudonym_key_id: run.pseudonym_key_id,
        shadow: run.shadow,
    })
}
