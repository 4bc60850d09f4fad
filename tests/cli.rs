//! The command line: exit codes, setup errors, `doctor`.

use std::path::Path;

use crate::util;

fn one_colour_file(dir: &Path) -> Option<std::path::PathBuf> {
    let data = util::testdata()?;
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::copy(data.join("pydicom-data/SC_rgb.dcm"), input.join("SC_rgb.dcm")).expect("copy");
    Some(input)
}

#[test]
fn a_clean_batch_exits_0_and_a_second_run_into_the_same_out_needs_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(input) = one_colour_file(dir.path()) else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let out = dir.path().join("out");
    let run = || {
        util::nightscreen()
            .args(["run", "--quiet", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run")
    };
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let second = run();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("--force"));
    let third = util::nightscreen()
        .args(["run", "--quiet", "--overwrite", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(third.status.code(), Some(0), "{}", String::from_utf8_lossy(&third.stderr));
    let parts = std::fs::read_dir(out.join("images")).expect("images").count();
    assert_eq!(parts, 1, "the previous run's part file was not replaced");
}

#[test]
fn cuda_without_a_cuda_runtime_is_a_clear_fatal_error_not_a_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(input) = one_colour_file(dir.path()) else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let out = util::nightscreen()
        .args(["run", "--quiet", "--device", "cuda", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CUDA"), "{stderr}");
    assert!(!dir.path().join("out/run.json").exists());
}

#[test]
fn a_model_that_differs_from_its_card_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(input) = one_colour_file(dir.path()) else { return };
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    for f in ["channel-means.toml", "grey-means-nhwc.toml", "grey-means-nhwc.onnx"] {
        std::fs::copy(util::root().join("models").join(f), models.join(f)).expect("copy");
    }
    // Same file name, other weights: the grey model's bytes.
    std::fs::copy(util::root().join("models/grey-means-nhwc.onnx"), models.join("channel-means.onnx")).expect("copy");
    let config = dir.path().join("config.toml");
    let text = std::fs::read_to_string(util::root().join("configs/fixtures.toml")).expect("config");
    std::fs::write(&config, text.replace("models_dir = \"../models\"", "models_dir = \"models\"")).expect("write");
    let out = util::nightscreen()
        .args(["run", "--quiet", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sha256") && stderr.contains("refusing"), "{stderr}");
}

#[test]
fn a_bad_config_names_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "models = []\n[infer]\nbatch_size = 0\n").expect("write");
    let out = util::nightscreen()
        .args(["run", "--config"])
        .arg(&config)
        .args(["--input", "/nonexistent", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no [[models]]") && stderr.contains("batch_size"), "{stderr}");
}

#[test]
fn doctor_reports_runtime_providers_and_model_digests() {
    if util::onnxruntime().is_none() {
        return;
    }
    let out = util::nightscreen().args(["doctor", "--models", "models"]).output().expect("doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("CPUExecutionProvider"), "{text}");
    assert!(text.contains("1.32"), "{text}");
    assert!(text.contains("channel-means") && text.contains("grey-means-nhwc"), "{text}");
}

#[test]
fn doctor_without_the_library_says_how_to_get_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = util::nightscreen()
        .args(["doctor", "--models", "models"])
        .env("ORT_DYLIB_PATH", dir.path().join("missing/libonnxruntime.so"))
        .output()
        .expect("doctor");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(out.status.code().is_some(), "doctor crashed: {text}");
    assert!(text.contains("ORT_DYLIB_PATH") && text.contains("NOT USABLE"), "{text}");
    // Models are still checked without the runtime.
    assert!(text.contains("channel-means"), "{text}");
}

#[test]
fn an_output_folder_holding_files_nightscreen_did_not_write_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(input) = one_colour_file(dir.path()) else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("images")).expect("mkdir");
    std::fs::write(out.join("worklist.csv"), "someone else's worklist\n").expect("write");
    std::fs::write(out.join("images/notes.txt"), "not ours").expect("write");
    for extra in [&[][..], &["--overwrite"][..]] {
        let run = util::nightscreen()
            .args(["run", "--quiet", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .expect("run");
        assert_eq!(run.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains("did not write") && stderr.contains("worklist.csv") && stderr.contains("images"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(out.join("worklist.csv")).expect("read"), "someone else's worklist\n");
    assert!(!out.join("run.json").exists() && !out.join("audit.jsonl").exists());
}

#[test]
fn the_audit_trail_is_appended_run_after_run_and_run_json_says_who_and_on_what() {
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 2, 23);
    let out = dir.path().join("out");
    let run = || {
        let r = util::nightscreen()
            .args(["run", "--quiet", "--overwrite", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run");
        assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out.join("run.json")).expect("run.json"))
            .expect("json")
    };
    let first = run();
    let after_first = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
    let second = run();
    let trail = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
    assert!(trail.starts_with(&after_first), "the first run's lines are kept as they were");
    let events: Vec<serde_json::Value> =
        trail.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap_or("")).collect();
    let expected = ["run_started", "study_banded", "study_banded", "run_finished"];
    assert_eq!(kinds, [expected, expected].concat(), "{trail}");
    for (run_json, lines) in [(&first, &events[..4]), (&second, &events[4..])] {
        assert!(lines.iter().all(|e| e["run_id"] == run_json["run_id"]));
        assert_eq!(lines[0]["file_list_sha256"], run_json["inputs"]["file_list_sha256"]);
        assert!(lines[1]["band"].is_string() && lines[1]["study_uid"].is_string());
        assert_eq!(lines[3]["outcome"], "ok");
    }
    assert_ne!(first["run_id"], second["run_id"]);
    let digest = first["inputs"]["file_list_sha256"].as_str().unwrap_or("");
    assert!(digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");
    assert_eq!(first["inputs"]["file_list_sha256"], second["inputs"]["file_list_sha256"], "same inputs, same digest");
    assert!(first["user"].as_str().is_some_and(|u| u.contains("uid ")), "{}", first["user"]);
}

#[test]
fn shadow_mode_marks_every_worklist_row_and_the_run_record() {
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 3, 25);
    let run = |out: &Path, extra: &[&str]| -> (Vec<csv::StringRecord>, serde_json::Value, serde_json::Value) {
        let r = util::nightscreen()
            .args(["run", "--quiet", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .expect("run");
        assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
        let mut csv = csv::Reader::from_path(out.join("worklist.csv")).expect("worklist.csv");
        assert_eq!(csv.headers().expect("headers").get(0), Some("notice"), "the notice is the first column");
        let rows = csv.records().map(|r| r.expect("row")).collect();
        let json =
            serde_json::from_str(&std::fs::read_to_string(out.join("worklist.json")).expect("json")).expect("json");
        let report =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
        (rows, json, report)
    };
    let (rows, json, report) = run(&dir.path().join("shadow"), &["--shadow"]);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.get(0) == Some("SHADOW — not for clinical use")), "{rows:?}");
    assert!(json
        .as_array()
        .is_some_and(|a| a.len() == 3 && a.iter().all(|r| r["notice"] == "SHADOW — not for clinical use")));
    assert_eq!(report["shadow"], true);
    let (rows, _, report) = run(&dir.path().join("clinical"), &[]);
    assert!(rows.iter().all(|r| r.get(0) == Some("")), "no notice outside shadow mode");
    assert_eq!(report["shadow"], false);
}
