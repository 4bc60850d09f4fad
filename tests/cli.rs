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
    let run = || util::nightscreen().args(["run", "--quiet", "--input"]).arg(&input).arg("--out").arg(&out).output().expect("run");
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let second = run();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("--overwrite"));
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
