//! A finished run's predictions, read back from the analyst `studies` table
//! (so evaluation needs nothing identifiable beyond the reference itself)
//! and its provenance from `run.json`.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow_array::{Array, Float32Array, Int32Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Error;
use crate::dicom::laterality::Laterality;
use crate::run::RunReport;
use crate::sink::names::RUN_JSON;
use crate::triage::desp::{Grade, RGrade};

/// What the pipeline said about one eye.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EyePrediction {
    /// DESP grade; `None` when the eye had no image.
    pub grade: Option<Grade>,
    pub p_referable: Option<f64>,
    pub p_r3: Option<f64>,
    pub p_m1: Option<f64>,
    pub p_gradable: Option<f64>,
}

impl EyePrediction {
    pub fn called_ungradable(&self) -> bool {
        self.grade == Some(Grade::Ungradable)
    }

    /// Retinopathy grade of a graded eye.
    pub fn retinopathy(&self) -> Option<RGrade> {
        self.grade?.retinopathy()
    }

    pub fn maculopathy(&self) -> bool {
        self.grade.is_some_and(Grade::maculopathy)
    }

    /// Referred for R2, R3 or M1. An eye called U is not counted as
    /// referred: conservative for sensitivity, since re-imaging is not a
    /// grade.
    pub fn called_referable(&self) -> bool {
        self.grade.is_some_and(Grade::is_referable)
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
    /// The prediction for the right or left eye (the reference grades
    /// nothing else).
    pub fn eye(&self, eye: Laterality) -> Option<&EyePrediction> {
        match eye {
            Laterality::Right => Some(&self.right),
            Laterality::Left => Some(&self.left),
            Laterality::Both | Laterality::Unknown => None,
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
    /// The run's `[triage.desp]` referral thresholds, from its config.
    pub referral: ReferralThresholds,
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
    let predict = |e: &(&StringArray, &Float32Array, &Float32Array, &Float32Array, &Float32Array), i: usize| {
        let grade = match text(e.0, i).as_str() {
            "" => None,
            grade => Some(grade.parse::<Grade>().map_err(|e| format!("row {i}: {e}"))?),
        };
        Ok::<_, String>(EyePrediction {
            grade,
            p_referable: value(e.1, i),
            p_r3: value(e.2, i),
            p_m1: value(e.3, i),
            p_gradable: value(e.4, i),
        })
    };
    for i in 0..batch.num_rows() {
        if pseudonym.is_null(i) {
            return Err(format!("row {i} has no study_pseudonym"));
        }
        let study = StudyPrediction {
            rank: rank.value(i),
            band: text(band, i),
            right: predict(&right, i)?,
            left: predict(&left, i)?,
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

/// The operating point a DESP run referred by: an eye is referred when
/// p(r2)+p(r3), p(m1) or p(r3) reaches its threshold.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReferralThresholds {
    pub referable_at_least: f64,
    pub m1_at_least: f64,
    pub r3_at_least: f64,
}

impl ReferralThresholds {
    /// A score that ranks eyes as the referral decision does, so the ROC
    /// of "referable" includes M1: each of the three probabilities is
    /// rescaled piecewise linearly so that its threshold sits at 0.5
    /// (0 → 0, threshold → 0.5, 1 → 1), and the score is the highest of
    /// them. An eye is referred exactly when its score is at least 0.5. It
    /// is not a probability, so no calibration is drawn for it.
    pub fn score(&self, p: &EyePrediction) -> Option<f64> {
        let rescale = |p: f64, t: f64| {
            if p < t {
                0.5 * p / t
            } else if t < 1.0 {
                0.5 + 0.5 * (p - t) / (1.0 - t)
            } else {
                1.0
            }
        };
        let referable = rescale(p.p_referable?, self.referable_at_least);
        let m1 = p.p_m1.map_or(0.0, |v| rescale(v, self.m1_at_least));
        let r3 = p.p_r3.map_or(0.0, |v| rescale(v, self.r3_at_least));
        Some(referable.max(m1).max(r3))
    }
}

/// Provenance of the run from its `run.json`; a run without one never
/// finished and is not evaluated.
pub fn read_run(out: &Path) -> Result<RunInfo, Error> {
    let path = out.join(RUN_JSON);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Unfinished { path: path.clone(), source })?;
    let run: RunReport =
        serde_json::from_str(&text).map_err(|e| Error::Table { path: path.clone(), what: e.to_string() })?;
    let config = crate::config::Config::from_toml(&run.config, &path)
        .map_err(|e| Error::Table { path: path.clone(), what: format!("its config: {e}") })?;
    let desp = &config.triage.desp;
    let referral = ReferralThresholds {
        referable_at_least: f64::from(desp.referable_at_least),
        m1_at_least: f64::from(desp.m1_at_least),
        r3_at_least: f64::from(desp.r3_at_least),
    };
    Ok(RunInfo {
        referral,
        models: run.models.iter().map(|m| format!("{} {} ({})", m.id, m.version, m.sha256)).collect(),
        run_id: run.run_id,
        software_version: run.software_version,
        config_sha256: run.config_sha256,
        pseudonym_key_id: run.pseudonym_key_id,
        shadow: run.shadow,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::ArrayRef;

    use super::*;

    fn batch(right_grade: Option<&str>) -> RecordBatch {
        let text = |v: Option<&str>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let float = |v: Option<f32>| Arc::new(Float32Array::from(vec![v])) as ArrayRef;
        let mut columns: Vec<(String, ArrayRef)> = vec![
            ("study_pseudonym".into(), text(Some("s1"))),
            ("rank".into(), Arc::new(Int32Array::from(vec![1]))),
            ("band".into(), text(Some("URGENT"))),
            ("right_eye_grade".into(), text(right_grade)),
            ("left_eye_grade".into(), text(None)),
        ];
        for side in ["right", "left"] {
            for p in ["referable", "r3", "m1", "gradable"] {
                columns.push((format!("{side}_eye_p_{p}"), float(Some(0.5))));
            }
        }
        RecordBatch::try_from_iter(columns).expect("batch")
    }

    #[test]
    fn eye_grades_are_read_with_the_one_grade_parser() {
        let mut studies = HashMap::new();
        read_batch(&batch(Some("R3M1")), &mut studies).expect("read");
        let study = &studies["s1"];
        assert_eq!(study.right.retinopathy(), Some(RGrade::R3));
        assert!(study.right.maculopathy() && study.right.called_referable() && !study.right.called_ungradable());
        assert_eq!(study.left.grade, None, "no grade: the eye had no image");
        assert!(!study.left.called_referable());
        assert!(study.eye(Laterality::Both).is_none());

        read_batch(&batch(Some("U")), &mut studies).expect("read");
        assert!(studies["s1"].right.called_ungradable() && !studies["s1"].right.called_referable());

        let err = read_batch(&batch(Some("R2X")), &mut studies).expect_err("not a grade");
        assert!(err.contains("R2X") && err.contains("row 0"), "{err}");
    }

    #[test]
    fn the_referral_score_calls_exactly_the_referred_eyes_m1_included() {
        let t = ReferralThresholds { referable_at_least: 0.2, m1_at_least: 0.5, r3_at_least: 0.3 };
        let eye = |r: f64, m1: f64, r3: f64| EyePrediction {
            p_referable: Some(r),
            p_m1: Some(m1),
            p_r3: Some(r3),
            ..EyePrediction::default()
        };
        let score = |e: EyePrediction| t.score(&e).expect("scored");
        assert!(score(eye(0.05, 0.6, 0.0)) >= 0.5, "M1 alone refers");
        assert!(score(eye(0.2, 0.0, 0.0)) >= 0.5, "referable at its threshold refers");
        assert!(score(eye(0.19, 0.49, 0.1)) < 0.5, "below every threshold");
        assert!(score(eye(0.1, 0.2, 0.0)) < score(eye(0.15, 0.2, 0.0)), "monotone");
        assert_eq!(score(eye(1.0, 0.0, 0.0)), 1.0);
        let ungradable = EyePrediction { p_m1: None, ..EyePrediction::default() };
        assert_eq!(t.score(&ungradable), None, "an eye called U has no score");
    }
}
