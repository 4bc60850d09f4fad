//! The evaluation's outputs: `evaluation.json` (every figure),
//! `operating_points.parquet` (for analysts' own cut-offs), the plots as
//! PNGs and `report.html`, one self-contained page for a programme board
//! (the plots are embedded, so it can be mailed or opened from a share).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use base64::Engine as _;
use parquet::arrow::ArrowWriter;

use super::compare::{Figures, TARGETS};
use super::metrics::Proportion;
use super::plots::{self, number};
use super::{Error, Evaluation};
use crate::sink::html::escape;

/// The bands in worklist order, then what a reference may add.
const BANDS: [&str; 5] = ["URGENT", "ROUTINE", "UNGRADABLE", "REVIEW", "NO_DISEASE"];
/// Sensitivities the report's operating-point excerpt is read at.
const SENSITIVITY_LEVELS: [f64; 5] = [0.99, 0.97, 0.95, 0.90, 0.85];

pub fn write(dir: &Path, evaluation: &Evaluation) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    let json = serde_json::to_vec_pretty(evaluation)
        .map_err(|e| Error::Plot { path: dir.join("evaluation.json"), what: e.to_string() })?;
    put(&dir.join("evaluation.json"), &json)?;
    write_operating_points(&dir.join("operating_points.parquet"), evaluation)?;

    let (rows, columns) = band_labels(&evaluation.band_confusion);
    let plots = [
        ("roc_eye.png", "ROC curves per eye", plots::roc("ROC per eye", &evaluation.per_eye)),
        ("roc_study.png", "ROC curves per study", plots::roc("ROC per study", &evaluation.per_study)),
        ("calibration_eye.png", "Calibration per eye", plots::calibration("Calibration per eye", &evaluation.per_eye)),
        (
            "confusion_bands.png",
            "Band confusion",
            plots::confusion("Study band vs reference outcome", &rows, &columns, &evaluation.band_confusion),
        ),
    ];
    let mut embedded = Vec::new();
    for (name, alt, png) in plots {
        let path = dir.join(name);
        let png = png.map_err(|what| Error::Plot { path: path.clone(), what })?;
        put(&path, &png)?;
        embedded.push((alt, base64::engine::general_purpose::STANDARD.encode(&png)));
    }
    put(&dir.join("report.html"), html(evaluation, &embedded, &rows, &columns).as_bytes())
}

fn put(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

/// One row per (level, target, threshold).
fn write_operating_points(path: &Path, evaluation: &Evaluation) -> Result<(), Error> {
    let (mut level, mut target, mut run) = (Vec::new(), Vec::new(), Vec::new());
    let (mut threshold, mut sensitivity, mut specificity, mut saved) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (name, figures) in [("eye", &evaluation.per_eye), ("study", &evaluation.per_study)] {
        for (t, f) in figures {
            for p in &f.operating_points {
                level.push(name);
                target.push(*t);
                run.push(evaluation.run.run_id.as_str());
                threshold.push(p.threshold);
                sensitivity.push(p.sensitivity);
                specificity.push(p.specificity);
                saved.push(p.workload_saved);
            }
        }
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("run_id", Arc::new(StringArray::from(run))),
        ("level", Arc::new(StringArray::from(level))),
        ("target", Arc::new(StringArray::from(target))),
        ("threshold", Arc::new(Float64Array::from(threshold))),
        ("sensitivity", Arc::new(Float64Array::from(sensitivity))),
        ("specificity", Arc::new(Float64Array::from(specificity))),
        ("workload_saved", Arc::new(Float64Array::from(saved))),
    ];
    let parquet = |source| Error::WriteParquet { path: path.to_path_buf(), source };
    let batch = RecordBatch::try_from_iter(columns).map_err(|e| parquet(e.into()))?;
    let file = std::fs::File::create(path).map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(parquet)?;
    writer.write(&batch).map_err(parquet)?;
    writer.close().map_err(parquet)?;
    Ok(())
}

/// Rows (reference outcomes) and columns (bands) of the confusion matrix:
/// known bands in worklist order, then anything else seen.
fn band_labels(counts: &BTreeMap<String, BTreeMap<String, u64>>) -> (Vec<String>, Vec<String>) {
    let ordered = |seen: Vec<&String>| {
        let mut labels: Vec<String> =
            BANDS.iter().filter(|b| seen.iter().any(|s| s == *b)).map(|b| b.to_string()).collect();
        labels.extend(seen.into_iter().filter(|s| !BANDS.contains(&s.as_str())).cloned());
        labels.dedup();
        labels
    };
    let mut columns: Vec<&String> = counts.values().flat_map(|c| c.keys()).collect();
    columns.sort();
    columns.dedup();
    (ordered(counts.keys().collect()), ordered(columns))
}

fn proportion(p: &Proportion) -> String {
    if p.denominator == 0 {
        return "n/a (0 cases)".into();
    }
    format!(
        "{:.1} % ({}/{}; {:.1}–{:.1})",
        100.0 * p.value,
        p.numerator,
        p.denominator,
        100.0 * p.lower,
        100.0 * p.upper
    )
}

fn html(e: &Evaluation, plots: &[(&str, String)], rows: &[String], columns: &[String]) -> String {
    let mut page = String::with_capacity(64 * 1024 + plots.iter().map(|p| p.1.len()).sum::<usize>());
    let title = format!("Evaluation of run {}", escape(&e.run.run_id));
    let _ = write!(page, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{}</style></head><body>", include_str!("report.css"));
    if e.run.shadow {
        page.push_str("<div class=\"shadow\" id=\"shadow-banner\">SHADOW — not for clinical use. This run was made beside human graders; these figures describe the pilot.</div>");
    }
    let _ = write!(page, "<h1>{title}</h1><dl class=\"provenance\">");
    let models = e.run.models.iter().map(|m| escape(m)).collect::<Vec<_>>().join("<br>");
    for (k, v) in [
        ("Results", escape(&e.results.display().to_string())),
        ("Models", models),
        ("Software", format!("nightscreen {} (run), {} (evaluation)", escape(&e.run.software_version), e.software_version)),
        ("Config SHA-256", escape(&e.run.config_sha256)),
        ("Pseudonym key id", escape(&e.run.pseudonym_key_id)),
        ("Reference", format!("{} (SHA-256 {}), {} eyes in {} studies", escape(&e.reference.path.display().to_string()), e.reference.sha256, e.reference.eyes, e.reference.studies)),
        ("Matched", format!("{} eyes ({} without a result, {} outside the model's domain), {} studies ({} without a result); {} result studies not in the reference", e.matched.eyes, e.matched.eyes_without_result, e.matched.eyes_outside_domain, e.matched.studies, e.matched.studies_without_result, e.matched.result_studies_without_reference)),
        ("AUC interval", format!("95 % percentile bootstrap, {} resamples, seed {}", e.bootstrap.resamples, e.bootstrap.seed)),
        ("Evaluated at", escape(&e.evaluated_at)),
    ] {
        let _ = write!(page, "<dt>{k}</dt><dd>{v}</dd>");
    }
    page.push_str("</dl><p class=\"note\">Intervals are 95 % Wilson intervals. An eye the pipeline called ungradable counts as not referred, and has no probability for the disease targets, so it is in the counts but not on those ROC curves.</p>");
    for (level, figures) in [("eye", &e.per_eye), ("study", &e.per_study)] {
        figure_table(&mut page, level, figures);
    }
    operating_excerpt(&mut page, &e.per_study);
    confusion_table(&mut page, rows, columns, &e.band_confusion);
    page.push_str("<h2>Plots</h2><div class=\"plots\">");
    for (alt, data) in plots {
        let _ = write!(
            page,
            "<figure><img alt=\"{alt}\" src=\"data:image/png;base64,{data}\"><figcaption>{alt}</figcaption></figure>"
        );
    }
    page.push_str(
        "</div><p class=\"note\">Every threshold is in operating_points.parquet; every figure in evaluation.json.</p>",
    );
    // Records on <body> how many plots decoded, for whoever checks the page
    // (the headless-browser test reads it from the rendered DOM).
    page.push_str("<script>window.addEventListener('load',function(){var i=document.images,n=0;for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}document.body.dataset.imagesLoaded=n;document.body.dataset.images=i.length;});</script></body></html>\n");
    page
}

fn figure_table(page: &mut String, level: &str, figures: &BTreeMap<&'static str, Figures>) {
    let _ = write!(page, "<h2>Per {level}</h2><table class=\"figures\" id=\"per-{level}\"><tr><th>Target</th><th>Cases</th><th>Positive</th><th>TP / FP / TN / FN</th><th>Sensitivity</th><th>Specificity</th><th>PPV</th><th>NPV</th><th>AUC (95 % CI)</th></tr>");
    // In the order of TARGETS (referable first), not the map's alphabetical one.
    for (name, f) in TARGETS.iter().filter_map(|t| figures.get(t.name).map(|f| (t.name, f))) {
        let c = &f.confusion;
        let auc = if f.auc.auc.is_finite() {
            format!("{} ({}–{})", number(f.auc.auc), number(f.auc.lower), number(f.auc.upper))
        } else {
            "n/a".into()
        };
        let _ = write!(
            page,
            "<tr data-target=\"{name}\"><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{auc}</td></tr>",
            f.title, f.cases, f.positives, c.true_positive, c.false_positive, c.true_negative, c.false_negative,
            proportion(&f.sensitivity), proportion(&f.specificity), proportion(&f.ppv), proportion(&f.npv)
        );
    }
    page.push_str("</table>");
}

/// For each sensitivity level, the highest threshold that reaches it on the
/// study-level referable score: what a programme would set to let the model
/// clear studies from first grading.
fn operating_excerpt(page: &mut String, per_study: &BTreeMap<&'static str, Figures>) {
    let Some(referable) = per_study.get("referable") else { return };
    page.push_str("<h2>Operating points: referable disease per study</h2><table id=\"operating-points\"><tr><th>Sensitivity at least</th><th>Threshold</th><th>Sensitivity</th><th>Specificity</th><th>Workload saved</th></tr>");
    for level in SENSITIVITY_LEVELS {
        // Points run from the strictest threshold down: the first to reach
        // the level is the highest threshold that does.
        match referable.operating_points.iter().find(|p| p.sensitivity >= level) {
            Some(p) => {
                let _ = write!(
                    page,
                    "<tr><td>{:.0} %</td><td>{:.4}</td><td>{:.1} %</td><td>{:.1} %</td><td>{:.1} %</td></tr>",
                    level * 100.0,
                    p.threshold,
                    p.sensitivity * 100.0,
                    p.specificity * 100.0,
                    p.workload_saved * 100.0
                );
            }
            None => {
                let _ = write!(page, "<tr><td>{:.0} %</td><td colspan=\"4\">not reached</td></tr>", level * 100.0);
            }
        }
    }
    page.push_str("</table><p class=\"note\">Workload saved: the share of scored studies below the threshold, which would need no first human grade if the programme let the model clear them.</p>");
}

fn confusion_table(
    page: &mut String,
    rows: &[String],
    columns: &[String],
    counts: &BTreeMap<String, BTreeMap<String, u64>>,
) {
    if rows.is_empty() {
        return;
    }
    page.push_str(
        "<h2>Study band against reference outcome</h2><table id=\"band-confusion\"><tr><th>Reference \\ pipeline</th>",
    );
    for c in columns {
        let _ = write!(page, "<th>{}</th>", escape(c));
    }
    page.push_str("</tr>");
    for r in rows {
        let _ = write!(page, "<tr><th>{}</th>", escape(r));
        for c in columns {
            let n = counts.get(r).and_then(|m| m.get(c)).copied().unwrap_or(0);
            let _ = write!(page, "<td>{n}</td>");
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
}
