//! Second looks (issue 16, R3), through the real binary: the DR card names
//! a companion in `[second_look]`; `[triage.desp.r3_second_look]` picks the
//! images whose p(r3) falls in its band; each is decoded again at the
//! companion's size and scored, and the answer decides R3 there.
//!
//! The companion here is the fixture `channel-means` under another id, at
//! 256 × 256, with its red mean as "the finding": an exact function of the
//! image, so which images were looked at and what each answer did can be
//! checked row by row. The shipped new-vessel look is judged by `make
//! evaluate` on held-out synthetic studies.

use std::path::{Path, PathBuf};

use crate::util::{self, f32s, read_table, strings};

/// A shipped card's text without its `[second_look]` table.
fn card_without_look(card: &str) -> String {
    let Some(start) = card.find("\n[second_look]\n") else { return card.to_string() };
    let rest = &card[start + 1..];
    let end = rest[1..].find("\n[").map_or(card.len(), |i| start + 1 + i + 2);
    format!("{}\n{}", &card[..start], &card[end..])
}

/// A models folder holding the shipped DR card (and its gate), with its
/// `[second_look]` naming `look` instead: the fixture channel-means under
/// that id at 256 × 256.
fn models_with_look(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    let root = util::root().join("models");
    for file in ["dr-screen.onnx", "fundus-gate.toml", "fundus-gate.onnx", "channel-means.onnx"] {
        std::fs::copy(root.join(file), models.join(file)).expect("copy model");
    }
    let card = card_without_look(&std::fs::read_to_string(root.join("dr-screen.toml")).expect("DR card"));
    assert!(!card.contains("[second_look]") && card.contains("[explain]"), "{card}");
    let card = format!("{card}\n[second_look]\nmodel = \"look\"\nlabel = \"red_mean\"\nfinding = \"redness\"\n");
    std::fs::write(models.join("dr-screen.toml"), card).expect("write DR card");
    let look = std::fs::read_to_string(root.join("channel-means.toml")).expect("fixture card");
    let look = look
        .replace("id = \"channel-means\"", "id = \"look\"")
        .replace("height = 64", "height = 256")
        .replace("width = 64", "width = 256");
    std::fs::write(models.join("look.toml"), look).expect("write look card");
    models
}

/// The shipped DESP config on `models`, without its own
/// `[triage.desp.r3_second_look]` and with `extra` appended.
fn config(dir: &Path, models: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(util::root().join("configs/desp.toml")).expect("config");
    let text = match text.find("\n[triage.desp.r3_second_look]\n") {
        Some(start) => {
            let rest = &text[start + 1..];
            let end = rest[1..].find("\n[").map_or(text.len(), |i| start + 1 + i + 2);
            format!("{}\n{}", &text[..start], &text[end..])
        }
        None => text,
    };
    let text = text.replace("models_dir = \"../models\"", &format!("models_dir = {:?}", models.display().to_string()));
    let path = dir.join("desp.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).expect("write config");
    path
}

/// `[triage.desp]`'s value of `name`.
fn threshold(config: &Path, name: &str) -> f32 {
    let text = std::fs::read_to_string(config).expect("config");
    let line = text.lines().find(|l| l.trim_start().starts_with(name)).expect(name);
    line.split('=').nth(1).and_then(|v| v.split('#').next()).expect("value").trim().parse().expect("number")
}

#[test]
fn the_images_in_the_band_are_looked_at_again_and_the_answer_decides_r3() {
    if util::testdata().is_none() || util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 4, 11);
    let models = models_with_look(dir.path());
    // Every gradable image below r3_at_least is looked at; a red mean of
    // 0.3 or more makes it R3 (this batch straddles it: 0.24-0.37).
    let cfg = config(dir.path(), &models, "[triage.desp.r3_second_look]\nfrom = 0.0\nat_least = 0.3\n");
    let (r3_at_least, gradable_at_least) = (threshold(&cfg, "r3_at_least"), threshold(&cfg, "gradable_at_least"));
    let out = dir.path().join("out");
    let done = util::run_with_config(&cfg, &input, &out, &[]);
    assert_eq!(done.status.code(), Some(0), "{}", String::from_utf8_lossy(&done.stderr));

    let images = read_table(&out, "images");
    let outputs = util::outputs(&images);
    let looks = f32s(&images, "second_look_score");
    let errors = strings(&images, "second_look_error");
    let ids = strings(&images, "second_look_model_id");
    let grades = strings(&images, "image_grade");
    let (mut looked, mut made_r3, mut cleared) = (0, 0, 0);
    for i in 0..outputs.len() {
        assert_eq!(ids[i].as_deref(), Some("look"), "row {i}: every DR row names the card's second look");
        assert_eq!(errors[i], None, "row {i}: no look failed");
        let (p3, gradable) = (outputs[i][3], outputs[i][5]);
        let in_band = gradable >= gradable_at_least && p3 < r3_at_least;
        assert_eq!(looks[i].is_some(), in_band, "row {i}: p(r3) {p3}, p(gradable) {gradable}");
        let grade = grades[i].as_deref().unwrap_or("");
        match looks[i] {
            Some(red) => {
                looked += 1;
                assert!((0.0..=1.0).contains(&red), "row {i}: {red}");
                if red >= 0.3 {
                    made_r3 += 1;
                    assert!(grade.starts_with("R3"), "row {i}: look {red} made it R3, got {grade}");
                } else {
                    cleared += 1;
                    assert!(!grade.starts_with("R3"), "row {i}: look {red} ruled R3 out, got {grade}");
                }
            }
            None if gradable >= gradable_at_least => {
                assert!(grade.starts_with("R3"), "row {i}: sure R3 without a look, got {grade}")
            }
            None => {}
        }
    }
    assert!(looked >= 8 && made_r3 >= 1 && cleared >= 1, "looked {looked}, R3 {made_r3}, cleared {cleared}: {looks:?}");

    // The worklist says why a look made a study urgent; run.json names the look.
    let worklist = std::fs::read_to_string(out.join("worklist.csv")).expect("worklist.csv");
    assert!(worklist.contains("R3 suspected: redness on a second look, p="), "{worklist}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
    let dr = report["models"].as_array().expect("models").iter().find(|m| m["id"] == "dr-screen").expect("DR");
    assert_eq!(dr["second_look"]["id"], "look");
    assert_eq!(report["counts"]["second_looks"], looked, "run.json counts the looks");
    assert_eq!(report["counts"]["second_looks_failed"], 0);
}

#[test]
fn a_look_rule_without_a_look_on_the_card_stops_the_run_before_anything_is_written() {
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 1, 3);
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    let root = util::root().join("models");
    for file in ["dr-screen.onnx", "fundus-gate.toml", "fundus-gate.onnx"] {
        std::fs::copy(root.join(file), models.join(file)).expect("copy model");
    }
    let card = card_without_look(&std::fs::read_to_string(root.join("dr-screen.toml")).expect("DR card"));
    std::fs::write(models.join("dr-screen.toml"), card).expect("write DR card");
    let cfg = config(dir.path(), &models, "[triage.desp.r3_second_look]\nfrom = 0.05\nat_least = 0.5\n");
    let out = dir.path().join("out");
    let done = util::run_with_config(&cfg, &input, &out, &[]);
    assert_eq!(done.status.code(), Some(2), "{}", String::from_utf8_lossy(&done.stderr));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("names no [second_look]"), "{stderr}");
    assert!(!out.join("images").exists(), "nothing written");
}
