//! The analyst tables' columns, built from stage messages.
//!
//! Each `*_batch` function is the single definition of a table's schema:
//! arrow infers it from the arrays, so the order and types here are what
//! DuckDB, pyarrow and polars see. Analyst tables carry no patient
//! identifiers (names, IDs, accession numbers, birth dates, UIDs, file
//! paths): patients, studies, series, instances and files appear only as
//! keyed pseudonyms ([`crate::privacy`]). Identifiers stay in the worklist.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::types::Float32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use crate::error::{Error, Result};
use crate::message::{Header, LookAnswer, Rejected};
use crate::privacy::{Kind, PseudonymKey};
use crate::triage::desp::EyeOutcome;
use crate::triage::{Bands, Finding, StudyResult};

/// The analyst tables, each a folder of Parquet parts under OUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// One row per (frame, model).
    Images,
    /// One row per file (or frame) that could not be read.
    Errors,
    /// One row per file skipped by design.
    Skipped,
    /// One row per study, in worklist order, written once every image is in.
    Studies,
}

impl Table {
    /// The tables written row by row as files complete.
    pub const ROWS: [Table; 3] = [Table::Images, Table::Errors, Table::Skipped];
    /// Every table.
    pub const ALL: [Table; 4] = [Table::Images, Table::Errors, Table::Skipped, Table::Studies];

    /// The table's folder under OUT (also its key in `checkpoint.json`).
    pub const fn dir(self) -> &'static str {
        match self {
            Table::Images => "images",
            Table::Errors => "errors",
            Table::Skipped => "skipped",
            Table::Studies => "studies",
        }
    }
}

/// Values every row of a run shares (provenance), and the key its
/// pseudonyms are made with.
#[derive(Debug, Clone)]
pub struct RunStamp {
    pub run_id: String,
    pub software_version: String,
    pub config_sha256: String,
    pub key: PseudonymKey,
}

/// The pseudonym columns of the objects `headers` name.
fn pseudonyms<'h>(
    key: &PseudonymKey,
    headers: impl Iterator<Item = Option<&'h Header>> + Clone,
) -> [(&'static str, ArrayRef); 4] {
    let column = |kind: Kind, pick: fn(&Header) -> &str| -> ArrayRef {
        Arc::new(StringArray::from(
            headers.clone().map(|h| h.and_then(|h| key.pseudonym(kind, pick(h)))).collect::<Vec<_>>(),
        ))
    };
    [
        ("patient_pseudonym", column(Kind::Patient, |h| h.patient_id.as_str())),
        ("study_pseudonym", column(Kind::Study, |h| h.study_uid.as_str())),
        ("series_pseudonym", column(Kind::Series, |h| h.series_uid.as_str())),
        ("instance_pseudonym", column(Kind::Instance, |h| h.sop_instance_uid.as_str())),
    ]
}

pub use crate::model::ModelStamp;

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn repeat(value: &str, n: usize) -> ArrayRef {
    strings(std::iter::repeat_n(value, n))
}

fn string_lists<'a>(rows: impl IntoIterator<Item = &'a [String]>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for row in rows {
        for v in row {
            b.values().append_value(v);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn micros(t: &chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

fn naive_micros(t: &chrono::NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// The batch of `table` from its columns.
///
/// # Errors
/// The columns differ in length: a bug in the builders above, not bad
/// input, reported rather than written as an empty batch that drops rows.
fn batch(table: Table, columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    // Every column is declared nullable: the schema must not depend on
    // whether the first batch (often an empty one) happened to hold nulls.
    RecordBatch::try_from_iter_with_nullable(columns.into_iter().map(|(name, array)| (name, array, true)))
        .map_err(|source| Error::Batch { table: table.dir(), source })
}

/// `images/`: one row per (frame, model).
///
/// # Errors
/// As [`batch`].
pub fn images_batch(rows: &[Finding], run: &RunStamp, models: &[ModelStamp], bands: &Bands) -> Result<RecordBatch> {
    let n = rows.len();
    let h = |f: &Finding| Arc::clone(&f.scored.meta.instance.header);
    let heads: Vec<_> = rows.iter().map(h).collect();
    let stamps: Vec<&ModelStamp> = rows
        .iter()
        .map(|f| {
            let model = f.scored.model;
            models.get(model.index()).ok_or(Error::UnknownModel { table: Table::Images.dir(), model })
        })
        .collect::<Result<_>>()?;
    let top: Vec<(Option<&str>, Option<f32>)> = rows
        .iter()
        .zip(&stamps)
        .map(|(f, stamp)| {
            let best = f.scored.outputs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
            match best {
                Some((i, v)) => (stamp.labels.get(i).map(String::as_str), Some(*v)),
                None => (None, None),
            }
        })
        .collect();
    let grades: Vec<Option<String>> = rows.iter().map(|f| f.grade.map(|g| g.grade.to_string())).collect();
    let gates: Vec<Option<&ModelStamp>> = stamps.iter().map(|m| m.domain.as_deref()).collect();
    let looks: Vec<Option<&ModelStamp>> = stamps.iter().map(|m| m.second_look.as_deref()).collect();
    let files: Vec<String> = rows.iter().map(|f| run.key.file_pseudonym(&f.scored.meta.instance.source)).collect();
    let mut columns = vec![("run_id", repeat(&run.run_id, n))];
    columns.extend(pseudonyms(&run.key, heads.iter().map(|h| Some(h.as_ref()))));
    columns.extend([
        (
            "frame",
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|f| f.scored.meta.frame_index as i32))) as ArrayRef,
        ),
        ("file_pseudonym", strings(files.iter().map(String::as_str))),
        ("sop_class_uid", strings(heads.iter().map(|h| h.sop_class_uid.as_str()))),
        ("modality", strings(heads.iter().map(|h| h.modality.as_str()))),
        ("photometric", strings(heads.iter().map(|h| h.photometric.as_str()))),
        ("transfer_syntax", strings(heads.iter().map(|h| h.transfer_syntax.as_str()))),
        ("laterality", strings(heads.iter().map(|h| h.laterality.as_str()))),
        ("field", strings(heads.iter().map(|h| h.field.as_str()))),
        (
            "study_datetime",
            Arc::new(TimestampMicrosecondArray::from(
                heads.iter().map(|h| h.study_datetime.as_ref().map(naive_micros)).collect::<Vec<_>>(),
            )),
        ),
        ("width", Arc::new(Int32Array::from_iter_values(rows.iter().map(|f| f.scored.meta.width as i32)))),
        ("height", Arc::new(Int32Array::from_iter_values(rows.iter().map(|f| f.scored.meta.height as i32)))),
        ("stored_mean", Arc::new(Float64Array::from_iter_values(rows.iter().map(|f| f.scored.meta.stored.mean)))),
        ("stored_min", Arc::new(Float64Array::from_iter_values(rows.iter().map(|f| f.scored.meta.stored.min)))),
        ("stored_max", Arc::new(Float64Array::from_iter_values(rows.iter().map(|f| f.scored.meta.stored.max)))),
        ("model_id", strings(stamps.iter().map(|m| m.id.as_str()))),
        ("model_version", strings(stamps.iter().map(|m| m.version.as_str()))),
        ("model_sha256", strings(stamps.iter().map(|m| m.sha256.as_str()))),
        ("labels", string_lists(stamps.iter().map(|m| m.labels.as_slice()))),
        (
            "outputs",
            // Null for an image its gate ruled out: the model never scored it.
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(rows.iter().map(|f| {
                (!f.scored.outside_domain()).then(|| f.scored.outputs.iter().map(|v| Some(*v)).collect::<Vec<_>>())
            }))),
        ),
        ("top_label", opt_strings(top.iter().map(|t| t.0))),
        ("top_score", Arc::new(Float32Array::from(top.iter().map(|t| t.1).collect::<Vec<_>>()))),
        ("band", opt_strings(rows.iter().map(|f| f.band().and_then(|b| bands.get(b))))),
        ("image_grade", opt_strings(grades.iter().map(Option::as_deref))),
        // The domain gate's verdict and identity; null where the card names no gate.
        (
            "in_domain",
            Arc::new(BooleanArray::from(rows.iter().map(|f| f.scored.domain.map(|d| d.inside)).collect::<Vec<_>>())),
        ),
        (
            "domain_score",
            Arc::new(Float32Array::from(rows.iter().map(|f| f.scored.domain.map(|d| d.score)).collect::<Vec<_>>())),
        ),
        ("domain_model_id", opt_strings(gates.iter().map(|g| g.map(|g| g.id.as_str())))),
        ("domain_model_version", opt_strings(gates.iter().map(|g| g.map(|g| g.version.as_str())))),
        ("domain_model_sha256", opt_strings(gates.iter().map(|g| g.map(|g| g.sha256.as_str())))),
        // The second look's answer, for images the programme picked; its
        // identity wherever the card names one.
        (
            "second_look_score",
            Arc::new(Float32Array::from(
                rows.iter()
                    .map(|f| match f.scored.second_look {
                        Some(LookAnswer::Scored(p)) => Some(p),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "second_look_error",
            opt_strings(rows.iter().map(|f| match &f.scored.second_look {
                Some(LookAnswer::Failed(why)) => Some(why.as_str()),
                _ => None,
            })),
        ),
        ("second_look_model_id", opt_strings(looks.iter().map(|g| g.map(|g| g.id.as_str())))),
        ("second_look_model_version", opt_strings(looks.iter().map(|g| g.map(|g| g.version.as_str())))),
        ("second_look_model_sha256", opt_strings(looks.iter().map(|g| g.map(|g| g.sha256.as_str())))),
        (
            "scored_at",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|f| micros(&f.scored.scored_at)))
                    .with_timezone("UTC"),
            ),
        ),
        ("software_version", repeat(&run.software_version, n)),
        ("config_sha256", repeat(&run.config_sha256, n)),
    ]);
    batch(Table::Images, columns)
}

/// `errors/` and `skipped/` (`table`): one row per file (or frame) that gave no result.
///
/// # Errors
/// As [`batch`].
pub fn rejected_batch(
    table: Table,
    rows: &[(Rejected, chrono::DateTime<chrono::Utc>)],
    run: &RunStamp,
) -> Result<RecordBatch> {
    let n = rows.len();
    let files: Vec<String> = rows.iter().map(|(r, _)| run.key.file_pseudonym(&r.source)).collect();
    let mut columns =
        vec![("run_id", repeat(&run.run_id, n)), ("file_pseudonym", strings(files.iter().map(String::as_str)))];
    columns.extend(pseudonyms(&run.key, rows.iter().map(|(r, _)| r.header.as_deref())));
    columns.extend([
        ("stage", strings(rows.iter().map(|(r, _)| r.stage.as_str()))),
        (
            "reason_key",
            strings(rows.iter().map(|(r, _)| match r.kind {
                crate::message::RejectKind::Skip(reason) => reason.as_str(),
                crate::message::RejectKind::Error => "error",
            })),
        ),
        ("message", strings(rows.iter().map(|(r, _)| r.reason.as_str()))),
        ("frame", Arc::new(Int32Array::from(rows.iter().map(|(r, _)| r.frame.map(|f| f as i32)).collect::<Vec<_>>()))),
        (
            "recorded_at",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(_, t)| micros(t))).with_timezone("UTC"),
            ),
        ),
        ("software_version", repeat(&run.software_version, n)),
    ]);
    batch(table, columns)
}

/// One eye's outcome per study (right or left), `None` where the study has none.
type EyePick = fn(&StudyResult) -> Option<&EyeOutcome>;

fn right_eye(s: &StudyResult) -> Option<&EyeOutcome> {
    s.detail.eyes().0
}

fn left_eye(s: &StudyResult) -> Option<&EyeOutcome> {
    s.detail.eyes().1
}

/// The DESP eye columns: each eye's grade and the probabilities behind it,
/// null where the eye was not graded (or the run has no DESP programme).
fn eye_columns(rows: &[StudyResult]) -> Vec<(&'static str, ArrayRef)> {
    let grade = |eye: EyePick| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(|s| eye(s).map(|e| e.grade.to_string())).collect::<Vec<_>>()))
    };
    let prob = |eye: EyePick, pick: fn(&EyeOutcome) -> Option<f32>| -> ArrayRef {
        Arc::new(Float32Array::from(rows.iter().map(|s| eye(s).and_then(pick)).collect::<Vec<_>>()))
    };
    vec![
        ("right_eye_grade", grade(right_eye)),
        ("left_eye_grade", grade(left_eye)),
        ("right_eye_p_referable", prob(right_eye, |e| e.probs.referable)),
        ("right_eye_p_r3", prob(right_eye, |e| e.probs.r3)),
        ("right_eye_p_m1", prob(right_eye, |e| e.probs.m1)),
        ("right_eye_p_gradable", prob(right_eye, EyeOutcome::p_gradable)),
        ("left_eye_p_referable", prob(left_eye, |e| e.probs.referable)),
        ("left_eye_p_r3", prob(left_eye, |e| e.probs.r3)),
        ("left_eye_p_m1", prob(left_eye, |e| e.probs.m1)),
        ("left_eye_p_gradable", prob(left_eye, EyeOutcome::p_gradable)),
    ]
}

/// `studies/`: one row per study, in worklist order. The generic columns,
/// with the DESP eye columns between `reason` and `images_scored`.
///
/// # Errors
/// As [`batch`].
pub fn studies_batch(rows: &[StudyResult], bands: &Bands, run: &RunStamp) -> Result<RecordBatch> {
    let n = rows.len();
    let [patient, study, ..] = pseudonyms(&run.key, rows.iter().map(|s| Some(s.header.as_ref())));
    let mut columns = vec![
        ("run_id", repeat(&run.run_id, n)),
        ("rank", Arc::new(Int32Array::from_iter_values(rows.iter().map(|s| s.rank as i32))) as ArrayRef),
        patient,
        study,
        (
            "study_datetime",
            Arc::new(TimestampMicrosecondArray::from(
                rows.iter().map(|s| s.header.study_datetime.as_ref().map(naive_micros)).collect::<Vec<_>>(),
            )),
        ),
        ("modalities", string_lists(rows.iter().map(|s| s.modalities.as_slice()))),
        ("band", strings(rows.iter().map(|s| bands.name(s.band)))),
        ("score", Arc::new(Float32Array::from(rows.iter().map(|s| s.score).collect::<Vec<_>>()))),
        ("reason", strings(rows.iter().map(|s| s.reason.as_str()))),
    ];
    columns.extend(eye_columns(rows));
    columns.extend([
        (
            "images_scored",
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|s| s.images_scored as i32))) as ArrayRef,
        ),
        ("files_failed", Arc::new(Int32Array::from_iter_values(rows.iter().map(|s| s.files_failed as i32)))),
        ("files_skipped", Arc::new(Int32Array::from_iter_values(rows.iter().map(|s| s.files_skipped as i32)))),
        ("models", string_lists(rows.iter().map(|s| s.models.as_slice()))),
        ("software_version", repeat(&run.software_version, n)),
        ("config_sha256", repeat(&run.config_sha256, n)),
    ]);
    batch(Table::Studies, columns)
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;

    use super::*;
    use crate::triage::desp::{EyeOutcome, EyeProbs};
    use crate::triage::StudyDetail;

    fn study(band: crate::triage::Band, detail: StudyDetail) -> StudyResult {
        StudyResult {
            rank: 1,
            band,
            score: None,
            reason: "why".into(),
            header: Arc::new(Header { study_uid: crate::message::StudyUid::new("1.2"), ..Header::default() }),
            modalities: vec!["OP".into()],
            images_scored: 1,
            files_failed: 0,
            files_skipped: 0,
            models: vec![],
            detail,
        }
    }

    #[test]
    fn the_studies_table_names_bands_and_takes_desp_eye_columns_from_the_detail() {
        let bands = Bands::new(vec!["URGENT".into(), "NO_DISEASE".into()]);
        let run = RunStamp {
            run_id: "r".into(),
            software_version: "0".into(),
            config_sha256: "c".into(),
            key: PseudonymKey::from_hex(&"ab".repeat(32), "test").expect("key"),
        };
        let right = EyeOutcome {
            grade: "R3M0".parse().expect("grade"),
            probs: EyeProbs { referable: Some(0.9), r3: Some(0.8), m1: Some(0.1), gradable: 0.95 },
        };
        let rows = [
            study(bands.find("URGENT").expect("band"), StudyDetail::Desp { right: Some(right), left: None }),
            study(bands.find("NO_DISEASE").expect("band"), StudyDetail::None),
        ];
        let batch = studies_batch(&rows, &bands, &run).expect("studies batch");
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let at = |name: &str| names.iter().position(|n| *n == name).expect(name);
        assert_eq!(
            names[at("reason")..=at("images_scored")],
            [
                "reason",
                "right_eye_grade",
                "left_eye_grade",
                "right_eye_p_referable",
                "right_eye_p_r3",
                "right_eye_p_m1",
                "right_eye_p_gradable",
                "left_eye_p_referable",
                "left_eye_p_r3",
                "left_eye_p_m1",
                "left_eye_p_gradable",
                "images_scored"
            ]
        );
        let text = |name: &str| {
            let col = batch.column(at(name)).as_any().downcast_ref::<StringArray>().expect("strings").clone();
            (0..col.len()).map(|i| (!col.is_null(i)).then(|| col.value(i).to_string())).collect::<Vec<_>>()
        };
        assert_eq!(text("band"), [Some("URGENT".into()), Some("NO_DISEASE".into())]);
        assert_eq!(text("right_eye_grade"), [Some("R3M0".into()), None]);
        assert_eq!(text("left_eye_grade"), [None, None]);
        let gradable = batch.column(at("right_eye_p_gradable")).as_any().downcast_ref::<Float32Array>().expect("f32");
        assert!((gradable.value(0) - 0.95).abs() < 1e-6 && gradable.is_null(1));
    }

    #[test]
    fn columns_of_unequal_length_are_an_error_not_an_empty_batch() {
        let err = batch(Table::Images, vec![("a", strings(["x", "y"])), ("b", strings(["z"]))]).err();
        assert!(matches!(err, Some(Error::Batch { table: "images", .. })), "{err:?}");
        let ok = batch(Table::Errors, vec![("a", strings(["x"])), ("b", opt_strings([None]))]).expect("batch");
        assert_eq!((ok.num_rows(), ok.num_columns()), (1, 2));
    }

    #[test]
    fn every_table_has_its_own_folder() {
        let dirs: std::collections::BTreeSet<_> = Table::ALL.iter().map(|t| t.dir()).collect();
        assert_eq!(dirs.len(), Table::ALL.len());
        assert!(Table::ROWS.iter().all(|t| Table::ALL.contains(t)) && !Table::ROWS.contains(&Table::Studies));
    }
}
