//! Kill and resume: a run killed with SIGKILL at random moments and started
//! again with the same command ends with exactly the rows of a run that was
//! never interrupted — no study lost, none doubled.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use crate::util;

/// Columns that differ between any two runs, interrupted or not (a
/// resumed run's rows must all carry its one run id: checked apart).
const VOLATILE: &[&str] = &["run_id", "scored_at", "recorded_at"];

/// The desp config with its models found from anywhere and a commit every
/// 50 ms, so a kill lands between commits.
pub fn config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(util::root().join("configs/desp.toml")).expect("config");
    let models = util::root().join("models");
    let text = text
        .replace("models_dir = \"../models\"", &format!("models_dir = {:?}", models.display().to_string()))
        .replace("checkpoint_seconds = 30\n", "checkpoint_seconds = 0.05\n");
    assert!(text.contains("checkpoint_seconds = 0.05"), "desp.toml sets checkpoint_seconds");
    let path = dir.join("resume.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `dir/in`: synthetic studies plus one unreadable file (so errors/ has a
/// row that must be kept exactly once too), and the commit-often config.
pub fn studies_and_a_broken_file(dir: &Path, studies: u32, seed: u64) -> (PathBuf, PathBuf) {
    let input = dir.join("in");
    util::synth_studies(&input, studies, seed);
    std::fs::write(input.join("broken.dcm"), b"DICM but not really").expect("write");
    (input, config(dir))
}

fn command(config: &Path, input: &Path, out: &Path) -> Command {
    let mut cmd = util::nightscreen();
    cmd.args(["run", "--quiet", "--config"]).arg(config).arg("--input").arg(input).arg("--out").arg(out);
    cmd
}

/// One value as text; floats rounded, since inference in other batches may
/// differ in the last bits.
fn cell(col: &dyn Array, i: usize) -> String {
    if col.is_null(i) {
        return "null".into();
    }
    match col.data_type() {
        DataType::Float32 => format!("{:.5}", col.as_primitive::<arrow_array::types::Float32Type>().value(i)),
        DataType::Float64 => format!("{:.5}", col.as_primitive::<arrow_array::types::Float64Type>().value(i)),
        DataType::List(_) => {
            let list = col.as_list::<i32>().value(i);
            let items: Vec<String> = (0..list.len()).map(|j| cell(list.as_ref(), j)).collect();
            format!("[{}]", items.join(","))
        }
        _ => arrow_cast_free_display(col, i),
    }
}

fn arrow_cast_free_display(col: &dyn Array, i: usize) -> String {
    match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
        DataType::Int32 => col.as_primitive::<arrow_array::types::Int32Type>().value(i).to_string(),
        DataType::Boolean => col.as_boolean().value(i).to_string(),
        DataType::Timestamp(..) => {
            col.as_primitive::<arrow_array::types::TimestampMicrosecondType>().value(i).to_string()
        }
        other => panic!("no display for {other:?}"),
    }
}

/// A table's rows as sorted text lines, volatile columns left out.
pub fn rows(out: &Path, table: &str) -> Vec<String> {
    let batches: Vec<RecordBatch> = util::read_table(out, table);
    let mut lines = Vec::new();
    for batch in &batches {
        let schema = batch.schema();
        let columns: Vec<usize> =
            (0..batch.num_columns()).filter(|&c| !VOLATILE.contains(&schema.field(c).name().as_str())).collect();
        for i in 0..batch.num_rows() {
            let line: Vec<String> = columns
                .iter()
                .map(|&c| format!("{}={}", schema.field(c).name(), cell(batch.column(c).as_ref(), i)))
                .collect();
            lines.push(line.join("|"));
        }
    }
    lines.sort();
    lines
}

fn audit_events(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("audit.jsonl"))
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The rows of `worklist.html` (its table body: the header names the run
/// and its times, which differ between any two runs).
pub fn page_body(out: &Path) -> String {
    let page = std::fs::read_to_string(out.join("worklist.html")).expect("worklist.html");
    let start = page.find("<tbody>").expect("table body");
    let end = page.find("</tbody>").expect("table body end");
    page[start..end].to_string()
}

/// Every thumbnail's name and bytes, by name.
pub fn thumbnails(out: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    util::every_entry(&out.join("thumbnails"))
        .into_iter()
        .map(|p| {
            (
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                std::fs::read(&p).expect("thumbnail"),
            )
        })
        .collect()
}

/// Starts a run and SIGKILLs it once `when` says so; true if it was
/// killed, false if it finished first.
pub fn kill_when(mut child: Child, when: impl Fn(Duration) -> bool) -> bool {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        if when(started.elapsed()) {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A small xorshift, seeded from the clock: each run of the test kills at
/// other moments, and the seed is printed to replay a failure.
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % max.max(1)
    }
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_rows_of_an_uninterrupted_run() {
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, config) = studies_and_a_broken_file(dir.path(), 24, 31);

    let whole = dir.path().join("whole");
    let started = Instant::now();
    let r = command(&config, &input, &whole).output().expect("run");
    assert_eq!(r.status.code(), Some(1), "one broken file: {}", String::from_utf8_lossy(&r.stderr));
    let took_ms = started.elapsed().as_millis() as u64;
    let tables = ["images", "errors", "skipped", "studies"];
    let expected: Vec<Vec<String>> = tables.iter().map(|t| rows(&whole, t)).collect();
    let expected_worklist = std::fs::read_to_string(whole.join("worklist.csv")).expect("worklist");
    let expected_page = page_body(&whole);
    let expected_thumbnails = thumbnails(&whole);
    assert_eq!(expected_thumbnails.len(), 96, "one thumbnail per scored image");
    assert_eq!(expected_page.matches("<img ").count(), 96, "every thumbnail on the page");
    assert!(
        expected[0].len() >= 96 && expected[1].len() == 1,
        "{} image rows, {} errors",
        expected[0].len(),
        expected[1].len()
    );

    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    eprintln!("kill moments seed: {seed}");
    let mut moments = Moments(seed);
    let mut resumed_with_work_done = 0;
    // Kills at a random moment of the whole run (possibly during set-up),
    // kills after the first commit, and a run killed twice.
    for (n, (case, kills)) in
        [("any moment", 1u64), ("after a commit", 1), ("after a commit", 1), ("twice", 2)].into_iter().enumerate()
    {
        let out = dir.path().join(format!("killed-{n}"));
        for _ in 0..kills {
            let delay =
                Duration::from_millis(moments.next_ms(if case == "any moment" { took_ms } else { took_ms / 3 }));
            let child = command(&config, &input, &out).spawn().expect("spawn");
            let checkpoint = out.join("checkpoint.json");
            let committed_at = std::cell::Cell::new(None);
            kill_when(child, |elapsed| {
                if case == "any moment" {
                    return elapsed >= delay;
                }
                if committed_at.get().is_none() && checkpoint.exists() {
                    committed_at.set(Some(elapsed));
                }
                committed_at.get().is_some_and(|t| elapsed >= t + delay)
            });
        }
        if out.join("run.json").exists() {
            continue; // finished before the kill
        }
        let r = command(&config, &input, &out).output().expect("resume");
        assert_eq!(r.status.code(), Some(1), "{case}: {}", String::from_utf8_lossy(&r.stderr));
        for (table, want) in tables.iter().zip(&expected) {
            let got = rows(&out, table);
            assert_eq!(
                got.len(),
                want.len(),
                "{case}: {table} has {} rows, the uninterrupted run {}",
                got.len(),
                want.len()
            );
            assert_eq!(&got, want, "{case}: {table} differs");
        }
        let worklist = std::fs::read_to_string(out.join("worklist.csv")).expect("worklist");
        assert_eq!(worklist, expected_worklist, "{case}: worklist differs");
        assert_eq!(page_body(&out), expected_page, "{case}: worklist.html rows differ");
        assert_eq!(thumbnails(&out), expected_thumbnails, "{case}: thumbnails differ");
        assert!(!out.join("checkpoint.json").exists(), "the checkpoint goes once run.json is written");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
        let events = audit_events(&out);
        let resumed: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "run_resumed").collect();
        // An attempt killed before its first commit leaves nothing to
        // resume, so the run that finished is the one started last.
        let started = events.iter().rev().find(|e| e["event"] == "run_started").expect("run_started");
        assert_eq!(started["run_id"], report["run_id"], "{case}: a resumed run keeps its run id");
        let resumed: Vec<&serde_json::Value> =
            resumed.into_iter().filter(|e| e["run_id"] == report["run_id"]).collect();
        for table in tables {
            let ids = util::strings(&util::read_table(&out, table), "run_id");
            assert!(
                ids.iter().all(|id| id.as_deref() == report["run_id"].as_str()),
                "{case}: every {table} row has the run's id"
            );
        }
        // Each resume counts once it has started (an attempt killed a
        // moment before its audit line still counts).
        let attempts = report["attempts"].as_u64().unwrap_or(0);
        assert!(
            attempts > resumed.len() as u64 && attempts <= kills + 1,
            "{case}: {attempts} attempts, {} resumes",
            resumed.len()
        );
        if resumed.iter().any(|e| e["files_committed"].as_u64().unwrap_or(0) > 0) {
            resumed_with_work_done += 1;
        }
        // Rows of an attempt that never committed are gone, not doubled.
        assert!(std::fs::read_dir(out.join("images"))
            .expect("ls")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    }
    assert!(
        resumed_with_work_done >= 2,
        "at least the runs killed after a commit resumed past committed files (seed {seed})"
    );

    // The same command on a finished run changes nothing and says why.
    let again = command(&config, &input, &whole).output().expect("again");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}
