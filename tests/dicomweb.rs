//! DICOMweb in: runs of the real binary against a real Orthanc
//! ([`crate::pacs::Orthanc`]) holding synthetic studies, compared with
//! folder runs over the same files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::pacs::Orthanc;
use crate::tls::{make_ca, TlsProxy};
use crate::{resume, util};

/// Every study synth writes, whatever its date.
const ALL_DATES: &str = "StudyDate=19000101-20991231";

/// The desp config (models found from anywhere), committing every
/// `checkpoint` seconds, with a `[sources.pacs]` table for `orthanc`.
fn config(dir: &Path, orthanc: &Orthanc, checkpoint: f64, extra: &str) -> PathBuf {
    config_at(dir, orthanc, &format!("{}/dicom-web", orthanc.root()), checkpoint, extra)
}

/// The same, reaching `orthanc` at `url`.
fn config_at(dir: &Path, orthanc: &Orthanc, url: &str, checkpoint: f64, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(util::root().join("configs/desp.toml")).expect("config");
    let models = util::root().join("models");
    let text = text
        .replace("models_dir = \"../models\"", &format!("models_dir = {:?}", models.display().to_string()))
        .replace("checkpoint_seconds = 30\n", &format!("checkpoint_seconds = {checkpoint}\n"));
    let table = orthanc.source_table("pacs", dir, url, &format!("modalities = [\"OP\"]\n{extra}"));
    let path = dir.join("pacs.toml");
    std::fs::write(&path, format!("{text}{table}")).expect("write config");
    path
}

fn run(config: &Path, input: &str, out: &Path, more: &[&str]) -> Command {
    let mut cmd = util::nightscreen();
    cmd.args(["run", "--quiet", "--config"]).arg(config).args(["--input", input, "--out"]).arg(out).args(more);
    cmd
}

fn output(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run nightscreen");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A table's rows without the columns that name the input (file
/// pseudonyms: a path there, a `dicomweb://` name here), the run or the
/// config's digest (configs here differ in their source table only).
fn rows(out: &Path, table: &str) -> Vec<String> {
    let mut lines: Vec<String> = resume::rows(out, table)
        .into_iter()
        .map(|line| {
            let kept =
                line.split('|').filter(|c| !c.starts_with("file_pseudonym=") && !c.starts_with("config_sha256="));
            kept.collect::<Vec<_>>().join("|")
        })
        .collect();
    lines.sort();
    lines
}

fn assert_same_rows(a: &Path, b: &Path) {
    for table in ["images", "studies", "errors", "skipped"] {
        assert_eq!(rows(a, table), rows(b, table), "table {table} differs between {} and {}", a.display(), b.display());
    }
    let worklist = |out: &Path| std::fs::read_to_string(out.join("worklist.csv")).expect("worklist");
    assert_eq!(worklist(a), worklist(b), "worklist.csv");
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("source-manifest.json")).expect("manifest")).expect("json")
}

fn planned_sops(out: &Path) -> Vec<String> {
    let mut sops: Vec<String> = manifest(out)["manifests"][0]["studies"]
        .as_array()
        .expect("studies")
        .iter()
        .flat_map(|st| st["series"].as_array().expect("series").clone())
        .flat_map(|se| se["instances"].as_array().expect("instances").clone())
        .map(|i| i["sop"].as_str().expect("sop").to_string())
        .collect();
    sops.sort();
    sops
}

fn sop_of(file: &Path) -> String {
    let obj = dicom_object::open_file(file).expect("open");
    obj.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .expect("sop")
        .to_str()
        .expect("str")
        .trim_end_matches('\0')
        .to_string()
}

#[test]
fn a_dicomweb_run_equals_a_folder_run_over_the_same_files_and_fetches_the_stored_bytes() {
    let (Some(_), Some(testdata)) = (util::onnxruntime(), util::testdata()) else { return };
    let Some(orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 6, 15);
    let uploaded = orthanc.upload_all(&input);
    // The folder run reads only what the server holds (not synth's truth table).
    for entry in std::fs::read_dir(&input).expect("ls").flatten() {
        if entry.path().is_file() {
            std::fs::remove_file(entry.path()).expect("rm");
        }
    }
    // A decoy of another modality: its series is never fetched.
    orthanc.upload(&testdata.join("pydicom/CT_small.dcm"));
    let config = config(dir.path(), &orthanc, 30.0, "");

    let (web, folder) = (dir.path().join("web"), dir.path().join("folder"));
    let done = output(run(&config, &format!("dicomweb:pacs?{ALL_DATES}"), &web, &[]));
    assert_eq!(done.status.code(), Some(0));
    let done = output(run(&config, input.to_str().expect("utf-8"), &folder, &[]));
    assert_eq!(done.status.code(), Some(0));
    assert_same_rows(&web, &folder);

    let mut expected: Vec<String> = uploaded.iter().map(|f| sop_of(f)).collect();
    expected.sort();
    assert_eq!(planned_sops(&web), expected, "the manifest lists exactly the OP instances");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(web.join("run.json")).expect("run.json")).expect("json");
    let source = &report["inputs"]["sources"][0];
    assert_eq!(source["name"], "pacs");
    assert_eq!(source["url"], format!("{}/dicom-web", orthanc.root()));
    assert_eq!(source["instances"], uploaded.len() as u64);
    let everything = std::fs::read_dir(&web).expect("ls").flatten().map(|e| e.path()).collect::<Vec<_>>();
    for path in util::every_entry(&web).into_iter().chain(everything) {
        if path.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
            assert!(!text.contains(&orthanc.password), "{} holds the password", path.display());
        }
    }

    // The bytes the source hands the pipeline are the uploaded file's.
    use nightscreen::source::Source;
    let cfg = nightscreen::Config::load(&config).expect("config");
    let Some(nightscreen::source::dicomweb::SourceConfig::Dicomweb(table)) = cfg.sources.get("pacs") else {
        panic!("no pacs source")
    };
    let client = nightscreen::source::dicomweb::Client::new("pacs", table).expect("client");
    let planned: nightscreen::source::dicomweb::Manifest =
        serde_json::from_value(manifest(&web)["manifests"][0].clone()).expect("manifest");
    let source = nightscreen::source::dicomweb::DicomWeb::new(client, table, planned, 1 << 30);
    let listed = source.list().instances;
    source.prepare(&listed);
    let by_sop: std::collections::BTreeMap<String, &PathBuf> = uploaded.iter().map(|f| (sop_of(f), f)).collect();
    for item in &listed {
        let mut fetched = Vec::new();
        std::io::Read::read_to_end(&mut source.open(&item.id).expect("fetch").reader(), &mut fetched).expect("read");
        let sop = item.expected_sop.as_ref().expect("sop").as_str().to_string();
        assert_eq!(fetched, std::fs::read(by_sop[&sop]).expect("file"), "bytes of {sop}");
        source.release(&item.id);
    }
}

#[test]
fn wrong_credentials_or_no_server_exit_2_before_anything_is_written() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(mut orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &orthanc, 30.0, "retries = 0");
    std::fs::write(dir.path().join("pacs.password"), "not-the-password\n").expect("write");
    let out = dir.path().join("out");
    let done = output(run(&config, "dicomweb:pacs", &out, &[]));
    assert_eq!(done.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("401") && !stderr.contains("not-the-password"), "{stderr}");
    assert!(!out.exists(), "nothing written");
    orthanc.stop();
    let done = output(run(&config, "dicomweb:pacs", &out, &[]));
    assert_eq!(done.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&done.stderr).contains("connection"), "names the failure");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_server_behind_tls_is_read_with_the_hospital_ca_in_ca_file_and_refused_without_it() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(orthanc) = Orthanc::start() else { return };
    let Some(proxy) = TlsProxy::start(&orthanc) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 3, 17);
    orthanc.upload_all(&input);
    let query = format!("dicomweb:pacs?{ALL_DATES}");

    let trusted = config_at(dir.path(), &orthanc, &proxy.url(), 30.0, &format!("ca_file = {:?}", proxy.ca));
    let out = dir.path().join("trusted");
    assert_eq!(output(run(&trusted, &query, &out, &[])).status.code(), Some(0));
    let folder = dir.path().join("folder");
    assert_eq!(output(run(&trusted, input.to_str().expect("utf-8"), &folder, &[])).status.code(), Some(0));
    for table in ["images", "studies", "errors"] {
        assert_eq!(rows(&out, table), rows(&folder, table), "table {table}");
    }

    // The system's roots do not know the hospital's CA, nor does another CA.
    let untrusted = config_at(dir.path(), &orthanc, &proxy.url(), 30.0, "retries = 0");
    let other_ca = make_ca(dir.path(), "another-ca");
    let other = config_at(dir.path(), &orthanc, &proxy.url(), 30.0, &format!("retries = 0\nca_file = {other_ca:?}"));
    for (config, name) in [(&untrusted, "no-ca"), (&other, "other-ca")] {
        let out = dir.path().join(name);
        let done = output(run(config, &query, &out, &[]));
        assert_eq!(done.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&done.stderr).to_lowercase();
        assert!(stderr.contains("certificate") || stderr.contains("issuer"), "{name} names the TLS failure: {stderr}");
        assert!(!out.exists(), "{name}: nothing written");
    }
}

#[test]
fn a_run_killed_while_fetching_resumes_from_its_manifest_without_asking_again() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 12, 16);
    orthanc.upload_all(&input);
    let config = config(dir.path(), &orthanc, 0.05, "fetch_workers = 1\nfetch_budget_mib = 1");
    let query = format!("dicomweb:pacs?{ALL_DATES}");
    let reference = dir.path().join("reference");
    assert_eq!(output(run(&config, &query, &reference, &[])).status.code(), Some(0));

    let out = dir.path().join("killed");
    let checkpoint = out.join("checkpoint.json");
    let child = run(&config, &query, &out, &[]).spawn().expect("start");
    let killed = resume::kill_when(child, |_| checkpoint.exists());
    assert!(killed, "the run finished before its first commit could be seen");
    let planned = std::fs::read(out.join("source-manifest.json")).expect("manifest");
    // A study arriving now is not part of this run: the manifest is frozen.
    let late = dir.path().join("late");
    util::synth_studies(&late, 1, 99);
    orthanc.upload_all(&late);
    assert_eq!(output(run(&config, &query, &out, &[])).status.code(), Some(0));
    assert_eq!(std::fs::read(out.join("source-manifest.json")).expect("manifest"), planned, "not planned again");
    assert_same_rows(&out, &reference);
    let audit = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
    assert!(audit.contains("run_resumed"), "resumed, not started over");
}

#[test]
fn a_server_stopped_mid_run_gives_error_rows_and_a_retry_completes_them() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(mut orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 24, 17);
    orthanc.upload_all(&input);
    let config =
        config(dir.path(), &orthanc, 0.05, "fetch_workers = 1\nfetch_budget_mib = 1\nretries = 1\nretry_wait_ms = 20");
    let query = format!("dicomweb:pacs?{ALL_DATES}");
    let reference = dir.path().join("reference");
    assert_eq!(output(run(&config, &query, &reference, &[])).status.code(), Some(0));

    let out = dir.path().join("out");
    let manifest_file = out.join("source-manifest.json");
    let mut child = run(&config, &query, &out, &[]).spawn().expect("start");
    let started = std::time::Instant::now();
    while !manifest_file.exists() {
        assert!(child.try_wait().expect("wait").is_none(), "the run ended before planning was seen");
        assert!(started.elapsed().as_secs() < 60, "no manifest");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    orthanc.stop();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1), "finished with error rows");
    let failed = std::fs::read_to_string(out.join("failed_files.csv")).expect("failed_files.csv");
    let missing: Vec<&str> = failed.lines().skip(1).filter(|l| l.contains("dicomweb://pacs/studies/")).collect();
    assert!(!missing.is_empty(), "error rows name the missing instances: {failed}");
    assert!(failed.contains("fetch"), "{failed}");
    assert!(out.join("retry-state.json").exists());
    let before = sr_uids(&out);

    orthanc.restart();
    let done = output(run(&config, &query, &out, &["--retry-failed"]));
    assert_eq!(done.status.code(), Some(0));
    assert_same_rows(&out, &reference);
    // The SRs are the uninterrupted run's, each study's in the series it
    // had before the retry (a study whose result changed gets a new
    // instance UID: the unit tests of `sr_uids`; here the studies the
    // stop cut short were mostly not fetched at all, so had no SR).
    let after = sr_uids(&out);
    assert_eq!(after, sr_uids(&reference), "the SRs of an uninterrupted run");
    assert!(before.iter().all(|(study, (series, _))| after[study].0 == *series), "same series");
    assert!(!out.join("retry-state.json").exists(), "nothing left to retry");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).expect("run.json")).expect("json");
    assert_eq!(report["counts"]["errors"], 0);
    assert_eq!(
        report["counts"]["image_rows"],
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(reference.join("run.json")).expect("ref"))
            .expect("json")["counts"]["image_rows"]
    );
}

/// Each SR file's (Series, SOP Instance) UIDs, by file name (the study's pseudonym).
fn sr_uids(out: &Path) -> std::collections::BTreeMap<String, (String, String)> {
    use dicom_dictionary_std::tags;
    let mut uids = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(out.join("sr")).expect("sr folder").flatten() {
        let sr = dicom_object::open_file(entry.path()).expect("read SR");
        let text = |tag| sr.element(tag).expect("uid").to_str().expect("text").trim_end_matches('\0').to_string();
        uids.insert(
            entry.file_name().to_string_lossy().into_owned(),
            (text(tags::SERIES_INSTANCE_UID), text(tags::SOP_INSTANCE_UID)),
        );
    }
    uids
}

fn send(config: &Path, out: &Path, more: &[&str]) -> Output {
    let mut cmd = util::nightscreen();
    cmd.args(["send"]).arg(out).args(["--to", "pacs", "--config"]).arg(config).args(more);
    output(cmd)
}

#[test]
fn send_stores_one_sr_in_each_study_and_a_second_send_stores_nothing_new() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 3, 18);
    orthanc.upload_all(&input);
    let config = config(dir.path(), &orthanc, 30.0, "");
    let query = format!("dicomweb:pacs?{ALL_DATES}");
    let out = dir.path().join("out");
    assert_eq!(output(run(&config, &query, &out, &[])).status.code(), Some(0));
    let studies: Vec<String> = orthanc
        .search("studies")
        .iter()
        .map(|s| s["0020000D"]["Value"][0].as_str().expect("study uid").to_string())
        .collect();
    assert_eq!(studies.len(), 3);
    let before = orthanc.count_instances();

    assert_eq!(send(&config, &out, &[]).status.code(), Some(0));
    for study in &studies {
        let series = orthanc.search(&format!("studies/{study}/series?Modality=SR"));
        assert_eq!(series.len(), 1, "one SR series in study {study}");
        let instances = orthanc.search(&format!("studies/{study}/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.88.34"));
        assert_eq!(instances.len(), 1, "one Comprehensive 3D SR in study {study}");
    }
    let after = orthanc.count_instances();
    assert_eq!(after, before + 3);
    let ledger = std::fs::read_to_string(out.join("sent.jsonl")).expect("sent.jsonl");
    assert_eq!(ledger.lines().filter(|l| l.contains("\"stored\"")).count(), 3, "{ledger}");

    let again = send(&config, &out, &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 stored, 3 already there"));
    assert_eq!(orthanc.count_instances(), after, "nothing new stored");
    // Even without the ledger the server keeps one copy: the SR's UIDs come from the result.
    std::fs::remove_file(out.join("sent.jsonl")).expect("rm ledger");
    assert_eq!(send(&config, &out, &[]).status.code(), Some(0));
    assert_eq!(orthanc.count_instances(), after, "a repeated SR replaces nothing and adds nothing");

    let shadow = dir.path().join("shadow");
    assert_eq!(output(run(&config, &query, &shadow, &["--shadow"])).status.code(), Some(0));
    let refused = send(&config, &shadow, &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("shadow"));
    assert_eq!(orthanc.count_instances(), after, "a shadow run's results are not sent");
}

/// Every UID the files carry (study, series, instance).
fn uids(files: &[PathBuf]) -> std::collections::BTreeSet<String> {
    use dicom_dictionary_std::tags;
    let mut found = std::collections::BTreeSet::new();
    for file in files {
        let obj = dicom_object::open_file(file).expect("open");
        for tag in [tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID, tags::SOP_INSTANCE_UID] {
            found.insert(obj.element(tag).expect("uid").to_str().expect("str").trim_end_matches('\0').to_string());
        }
    }
    found
}

#[test]
fn a_dicomweb_run_keeps_uids_urls_and_identifiers_out_of_the_analyst_tables() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(mut orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 4, 19);
    let files = orthanc.upload_all(&input);
    let mut secrets = crate::privacy::identifiers(&input);
    secrets.extend(uids(&files));
    secrets.extend(["dicomweb://".to_string(), "127.0.0.1".to_string(), orthanc.password.clone()]);
    let config = config(dir.path(), &orthanc, 0.05, "fetch_workers = 1\nfetch_budget_mib = 1\nretries = 0");
    let out = dir.path().join("out");
    // Stopped once planned, so errors/ holds fetch failures too.
    let manifest_file = out.join("source-manifest.json");
    let mut child = run(&config, &format!("dicomweb:pacs?{ALL_DATES}"), &out, &[]).spawn().expect("start");
    while !manifest_file.exists() && child.try_wait().expect("wait").is_none() {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    orthanc.stop();
    assert_eq!(child.wait().expect("wait").code(), Some(1));
    assert!(rows(&out, "errors").iter().any(|r| r.contains("stage=fetch")), "fetch failures are in errors/");
    for table in crate::privacy::ANALYST_TABLES {
        for part in std::fs::read_dir(out.join(table)).expect("table").flatten() {
            let bytes = std::fs::read(part.path()).expect("read");
            let text = String::from_utf8_lossy(&bytes);
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "{table}/{:?} holds {secret:?}", part.file_name());
            }
            for batch in util::read_table(&out, table) {
                let mut cells = Vec::new();
                crate::privacy::texts(&batch, &mut cells);
                for cell in cells {
                    assert!(!secrets.iter().any(|s| cell.contains(s.as_str())), "{table}: {cell:?}");
                }
            }
        }
    }
}

#[test]
fn shards_take_their_studies_from_the_manifest_and_merge_to_one_process() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 6, 20);
    orthanc.upload_all(&input);
    let config = config(dir.path(), &orthanc, 30.0, "");
    let query = format!("dicomweb:pacs?{ALL_DATES}");
    let single = dir.path().join("single");
    assert_eq!(output(run(&config, &query, &single, &[])).status.code(), Some(0));
    let sharded = dir.path().join("sharded");
    let mut planned = Vec::new();
    for index in 0..2 {
        let done = output(run(&config, &query, &sharded, &["--shard", &format!("{index}/2"), "--threads", "1"]));
        assert_eq!(done.status.code(), Some(0));
        planned.push(sharded.join("shards").join(format!("shard-{index:02}-of-02")));
    }
    let mut sops: Vec<String> = Vec::new();
    for dir in &planned {
        let mine = planned_sops(dir);
        assert!(sops.iter().all(|s| !mine.contains(s)), "no instance is planned by two shards");
        sops.extend(mine);
    }
    sops.sort();
    assert_eq!(sops, planned_sops(&single), "the shards' manifests together are the single run's");
    let merged = util::nightscreen().arg("merge").arg(&sharded).output().expect("merge");
    assert_eq!(merged.status.code(), Some(0), "{}", String::from_utf8_lossy(&merged.stderr));
    assert_same_rows(&sharded, &single);
}

#[test]
fn a_full_window_is_split_until_every_study_is_planned_and_oversized_instances_are_refused_unread() {
    let Some(_) = util::onnxruntime() else { return };
    let Some(orthanc) = Orthanc::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 5, 22);
    orthanc.upload_all(&input);
    let query = format!("dicomweb:pacs?{ALL_DATES}");
    let whole = dir.path().join("whole");
    let config_whole = config(dir.path(), &orthanc, 30.0, "");
    assert_eq!(output(run(&config_whole, &query, &whole, &[])).status.code(), Some(0));
    // At most two studies per answer: windows are split by days (and by
    // time within a day) until none comes back full.
    let split = dir.path().join("split");
    let config_split = config(dir.path(), &orthanc, 30.0, "window_max_results = 2");
    assert_eq!(output(run(&config_split, &query, &split, &[])).status.code(), Some(0));
    assert_eq!(planned_sops(&split), planned_sops(&whole));
    assert_eq!(manifest(&whole)["manifests"][0]["studies"].as_array().map(Vec::len), Some(5));
    assert!(
        manifest(&split)["manifests"][0]["requests"].as_u64() > manifest(&whole)["manifests"][0]["requests"].as_u64()
    );
    assert_same_rows(&split, &whole);

    // Instances over max_file_bytes: error rows, refused by their declared
    // length before their bytes are read.
    let text = std::fs::read_to_string(&config_whole).expect("config");
    let small = dir.path().join("small.toml");
    let limited = if text.contains("max_file_bytes") {
        text.lines()
            .map(|l| if l.trim_start().starts_with("max_file_bytes") { "max_file_bytes = 4096" } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        text.replacen("[decode]", "[decode]\nmax_file_bytes = 4096", 1)
    };
    assert!(limited.contains("max_file_bytes = 4096"), "the config has a [decode] table");
    std::fs::write(&small, limited).expect("write");
    let out = dir.path().join("oversized");
    assert_eq!(output(run(&small, &query, &out, &[])).status.code(), Some(1));
    let errors = rows(&out, "errors");
    assert_eq!(errors.len(), 20, "every instance is an error row");
    assert!(errors.iter().all(|r| r.contains("stage=fetch") && r.contains("refused before reading it")), "{errors:?}");
}
