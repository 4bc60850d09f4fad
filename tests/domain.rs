//! Domain gates (issue 16 item 3), through the real binary: a card's
//! `[domain]` names a companion model that scores the host's own tensor; an
//! image it does not recognise is never scored or graded, its row and its
//! study say why, and nothing else changes.
//!
//! The gate here is the fixture `red-gate` (sigmoid(40 (mean R − mean B −
//! 0.1)), an exact function), so each verdict can be checked by hand. The
//! shipped fundus gate is checked on real photographs in `photos.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

use crate::util::{self, f32s, read_table, strings};

/// A shipped card's text without its `[domain]` table, if it has one.
fn card_without_domain(card: &str) -> String {
    let Some(start) = card.find("\n[domain]\n") else { return card.to_string() };
    let rest = &card[start + 1..];
    let end = rest[1..].find("\n[").map_or(card.len(), |i| start + 1 + i + 2);
    format!("{}\n{}", &card[..start], &card[end..])
}

/// A models folder `dir/name` holding `host`'s card, without its shipped
/// gate, and its ONNX file.
fn models_without_gate(dir: &Path, name: &str, host: &str) -> PathBuf {
    let models = dir.join(name);
    std::fs::create_dir_all(&models).expect("mkdir");
    let root = util::root().join("models");
    let card = std::fs::read_to_string(root.join(format!("{host}.toml"))).expect("host card");
    let card = card_without_domain(&card);
    assert!(!card.contains("[domain]"), "{card}");
    // The host's second look, if its card names one, comes along unchanged.
    if let Some(look) = card.split("\n[second_look]\n").nth(1) {
        let id = look.lines().find_map(|l| l.strip_prefix("model = ")).expect("second_look.model").trim_matches('"');
        for ext in ["toml", "onnx"] {
            std::fs::copy(root.join(format!("{id}.{ext}")), models.join(format!("{id}.{ext}"))).expect("copy look");
        }
    }
    std::fs::write(models.join(format!("{host}.toml")), card).expect("write card");
    std::fs::copy(root.join(format!("{host}.onnx")), models.join(format!("{host}.onnx"))).expect("copy model");
    models
}

/// A models folder in `dir` holding `host`'s card (with the fixture gate as
/// its `[domain]`) and ONNX file, and the gate `red-gate.onnx` under a card
/// whose `[input]` is `gate_input` (the host's own, unless a test wants a
/// mismatch).
fn models_with_gate(dir: &Path, host: &str, gate_input: &str) -> PathBuf {
    let models = models_without_gate(dir, "models", host);
    let root = util::root().join("models");
    let card = std::fs::read_to_string(models.join(format!("{host}.toml"))).expect("host card");
    let card = format!(
        "{card}\n[domain]\nmodel = \"gate\"\nlabel = \"reddish\"\noutside = \"not recognised as a reddish image\"\n"
    );
    std::fs::write(models.join(format!("{host}.toml")), card).expect("write card");
    std::fs::copy(root.join("red-gate.onnx"), models.join("red-gate.onnx")).expect("copy gate");
    // The fixture config's second model, ungated.
    for file in ["grey-means-nhwc.toml", "grey-means-nhwc.onnx"] {
        std::fs::copy(root.join(file), models.join(file)).expect("copy fixture");
    }
    let gate = std::fs::read_to_string(root.join("red-gate.toml")).expect("gate card");
    let start = gate.find("[input]").expect("[input]");
    let end = gate.find("[output]").expect("[output]");
    let gate =
        format!("{}{gate_input}\n{}", &gate[..start], &gate[end..]).replace("id = \"red-gate\"", "id = \"gate\"");
    std::fs::write(models.join("gate.toml"), gate).expect("write gate card");
    models
}

/// The `[input]` table of a shipped card.
fn input_of(card: &str) -> String {
    let text = std::fs::read_to_string(util::root().join("models").join(card)).expect("card");
    let start = text.find("[input]").expect("[input]");
    let end = text.find("[output]").expect("[output]");
    text[start..end].to_string()
}

/// A shipped config with its models folder moved to `models`.
fn config(dir: &Path, shipped: &str, models: &Path) -> PathBuf {
    let text = std::fs::read_to_string(util::root().join("configs").join(shipped)).expect("config");
    let text = text.replace("models_dir = \"../models\"", &format!("models_dir = {:?}", models.display().to_string()));
    let path = dir.join(shipped);
    std::fs::write(&path, text).expect("write config");
    path
}

fn run(config: &Path, input: &Path, out: &Path) -> Output {
    util::run_with_config(config, input, out, &[])
}

/// pydicom-data's colour bars (red, green, blue, grey: red and blue weigh
/// the same) as an OP image of the right eye, the way a mislabelled
/// photograph would reach the DR model.
fn colour_bars_as_op(testdata: &Path, to: &Path) {
    let mut obj = dicom_object::open_file(testdata.join("pydicom-data/SC_rgb.dcm")).expect("open SC_rgb");
    obj.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("OP")));
    obj.put(DataElement::new(tags::IMAGE_LATERALITY, VR::CS, PrimitiveValue::from("R")));
    obj.write_to_file(to).expect("write OP copy");
}

fn study_uid(file: &Path) -> String {
    let obj = dicom_object::open_file(file).expect("open");
    let uid = obj.element(tags::STUDY_INSTANCE_UID).expect("StudyInstanceUID").to_str().expect("text");
    uid.trim_end_matches(['\0', ' ']).to_string()
}

fn column_bools(out: &Path, table: &str, column: &str) -> Vec<Option<bool>> {
    use arrow_array::cast::AsArray;
    read_table(out, table)
        .iter()
        .flat_map(|b| b.column_by_name(column).expect("column").as_boolean().iter().collect::<Vec<_>>())
        .collect()
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn an_image_outside_the_gate_is_never_scored_and_its_study_says_why() {
    let Some(testdata) = util::testdata() else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input.join("fundus"), 2, 5);
    colour_bars_as_op(&testdata, &input.join("bars.dcm"));
    let models = models_with_gate(dir.path(), "channel-means", &input_of("channel-means.toml"));
    let cfg = config(dir.path(), "fixtures.toml", &models);
    let out = dir.path().join("out");
    let done = run(&cfg, &input, &out);
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));

    let images = read_table(&out, "images");
    let paths = util::file_paths(&images, util::every_entry(&input));
    let inside = column_bools(&out, "images", "in_domain");
    let scores = f32s(&images, "domain_score");
    let outputs = util::outputs(&images);
    let gates = strings(&images, "domain_model_id");
    let bands = strings(&images, "band");
    let models_seen = strings(&images, "model_id");
    let mut outside = 0;
    for i in 0..paths.len() {
        let path = paths[i].as_deref().unwrap_or("?");
        if models_seen[i].as_deref() != Some("channel-means") {
            continue;
        }
        assert_eq!(gates[i].as_deref(), Some("gate"), "{path}: every row of a gated model names its gate");
        let score = f64::from(scores[i].expect("domain_score"));
        if path.ends_with("bars.dcm") {
            assert_eq!(inside[i], Some(false), "{path}: colour bars are not reddish (p={score})");
        }
        if inside[i] == Some(true) {
            // Scored, and the gate's verdict is the function of the very
            // means the model reported.
            assert!(score >= 0.5, "{path}: {score}");
            let means = &outputs[i];
            let expected = logistic(40.0 * (f64::from(means[0]) - f64::from(means[2]) - 0.1));
            assert!((score - expected).abs() < 1e-4, "{path}: gate {score}, from the means {expected}");
        } else {
            // (Dark synthetic fundus photographs are not "reddish" either:
            // this fixture gate measures colour, not fundus.)
            outside += 1;
            assert_eq!(inside[i], Some(false), "{path}");
            assert!(score < 0.5, "{path}: {score}");
            assert!(outputs[i].is_empty(), "{path}: an image outside the domain is never scored");
            assert_eq!(bands[i], None, "{path}: no rule fires on it");
        }
    }
    assert!(outside >= 1 && outside < paths.len() / 2, "{outside} of {} rows outside", paths.len());

    let worklist = std::fs::read_to_string(out.join("worklist.csv")).expect("worklist.csv");
    let bars_uid = study_uid(&input.join("bars.dcm"));
    let bars_study = worklist
        .lines()
        .find(|l| l.contains(&bars_uid))
        .unwrap_or_else(|| panic!("no row for the colour bars' study:\n{worklist}"));
    assert!(bars_study.contains("REVIEW"), "incomplete band, never the default: {bars_study}");
    assert!(bars_study.contains("outside the model's domain — not recognised as a reddish image"), "{bars_study}");

    // Provenance: run.json and the audit trail name the gate with its digest.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
    let host = report["models"].as_array().expect("models").iter().find(|m| m["id"] == "channel-means").expect("host");
    assert_eq!(host["domain"]["id"], "gate");
    assert_eq!(host["domain"]["sha256"], "b08d3248fc52b9844175f05418aedaefd88552edb30a5b5d84f221009348db94");
    let audit = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
    assert!(audit.lines().next().is_some_and(|l| l.contains("\"gate\"")), "{audit}");
}

#[test]
fn a_gate_that_cannot_read_the_hosts_tensor_or_is_missing_stops_the_run_before_anything_is_written() {
    let Some(testdata) = util::testdata() else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    colour_bars_as_op(&testdata, &input.join("bars.dcm"));
    let other_size = input_of("channel-means.toml").replace("height = 64", "height = 32");
    let models = models_with_gate(dir.path(), "channel-means", &other_size);
    let cfg = config(dir.path(), "fixtures.toml", &models);
    let out = dir.path().join("out");
    let done = run(&cfg, &input, &out);
    assert_eq!(done.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("domain gate \"gate\"") && stderr.contains("[input] differs"), "{stderr}");
    assert!(!out.join("run.json").exists(), "nothing written");

    std::fs::remove_file(models.join("gate.toml")).expect("rm gate card");
    let done = run(&cfg, &input, &out);
    assert_eq!(done.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("no model card for \"gate\""), "{stderr}");
    assert!(!out.join("run.json").exists(), "nothing written");
}

/// Band and reason of each study in a worklist, by accession number.
fn bands_by_study(out: &Path) -> HashMap<String, (String, String)> {
    let mut reader = csv::Reader::from_path(out.join("worklist.csv")).expect("worklist.csv");
    let headers = reader.headers().expect("header").clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (uid, band, reason) = (at("study_uid"), at("band"), at("reason"));
    reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            (r[uid].to_string(), (r[band].to_string(), r[reason].to_string()))
        })
        .collect()
}

#[test]
fn under_desp_an_image_outside_the_domain_is_never_graded_and_fundus_studies_do_not_change() {
    let Some(testdata) = util::testdata() else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input.join("fundus"), 6, 5);
    colour_bars_as_op(&testdata, &input.join("bars.dcm"));

    // The same run without a gate and with one (the fixture gate reads the
    // DR model's 384 × 384 normalised tensor; every synthetic fundus is
    // reddish by far, the colour bars are not).
    let plain = dir.path().join("plain");
    let ungated = models_without_gate(dir.path(), "plain-models", "dr-screen");
    std::fs::create_dir_all(dir.path().join("plain-config")).expect("mkdir");
    let done = run(&config(&dir.path().join("plain-config"), "desp.toml", &ungated), &input, &plain);
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));
    let models = models_with_gate(dir.path(), "dr-screen", &input_of("dr-screen.toml"));
    let gated = dir.path().join("gated");
    let done = run(&config(dir.path(), "desp.toml", &models), &input, &gated);
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));

    let before = bands_by_study(&plain);
    let after = bands_by_study(&gated);
    assert_eq!((before.len(), after.len()), (7, 7));
    let bars_uid = study_uid(&input.join("bars.dcm"));
    let (band, reason) = &after[&bars_uid];
    assert_eq!(band, "REVIEW", "never a grade, never NO_DISEASE: {reason}");
    assert!(
        reason.starts_with("outside the model's domain — not recognised as a reddish image, right eye"),
        "{reason}"
    );
    let (_, reason_before) = &before[&bars_uid];
    assert!(!reason_before.contains("outside"), "without the gate the DR model graded it: {reason_before}");

    // The image rows: an image outside is not scored and is graded OOD, and
    // only such an image.
    let images = read_table(&gated, "images");
    let grades = strings(&images, "image_grade");
    let inside = column_bools(&gated, "images", "in_domain");
    let outputs = util::outputs(&images);
    for ((grade, inside), outputs) in grades.iter().zip(&inside).zip(&outputs) {
        assert_eq!(grade.as_deref() == Some("OOD"), *inside == Some(false), "{grade:?} {inside:?}");
        assert_eq!(outputs.is_empty(), *inside == Some(false), "{grade:?}: scored only when inside");
    }
    let plain_grades = strings(&read_table(&plain, "images"), "image_grade");
    assert!(plain_grades.iter().all(|g| g.as_deref().is_some_and(|g| g != "OOD")), "{plain_grades:?}");

    // A study whose images the gate all let through is placed exactly as
    // without a gate. (This fixture gate measures colour, not fundus: it also
    // rules out dark synthetic photographs, so only those studies are compared.)
    let study_of_row = strings(&images, "study_pseudonym");
    let key = util::test_key();
    let mut compared = 0;
    for (uid, result) in &after {
        let pseudonym = key.pseudonym(nightscreen::privacy::Kind::Study, uid);
        let rows: Vec<usize> = (0..study_of_row.len()).filter(|&i| study_of_row[i] == pseudonym).collect();
        assert!(!rows.is_empty(), "study {uid} has image rows");
        if rows.iter().all(|&i| inside[i] == Some(true)) {
            assert_eq!(result, &before[uid], "study {uid}: the gate changed a study it let through whole");
            compared += 1;
        } else {
            let (band, reason) = result;
            assert_ne!(band, "NO_DISEASE", "{uid}: {reason}");
            assert!(reason.contains("outside the model's domain"), "{uid}: {reason}");
        }
    }
    assert!(compared >= 3, "only {compared} studies let through whole");
    let studies = read_table(&gated, "studies");
    let right = strings(&studies, "right_eye_grade");
    assert!(right.iter().any(|g| g.as_deref() == Some("OOD")), "{right:?}");
}
