//! Sharded runs without a cluster: four shard processes over one input
//! into one OUT, one of them killed and run again, then `merge`, against a
//! single process's outputs, row for row.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::resume::{kill_when, page_body, rows, studies_and_a_broken_file, thumbnails};
use crate::util;

fn shard_command(config: &Path, input: &Path, out: &Path, shard: usize) -> Command {
    let mut cmd = util::nightscreen();
    cmd.args(["run", "--quiet", "--threads", "1", "--shard", &format!("{shard}/4"), "--config"])
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out);
    cmd
}

fn merge(out: &Path) -> std::process::Output {
    util::nightscreen().arg("merge").arg(out).output().expect("merge")
}

#[test]
fn four_shards_merge_to_the_rows_of_one_process_even_with_a_shard_killed_and_rerun() {
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The unreadable file is placed by path: it must be reported exactly once.
    let (input, config) = studies_and_a_broken_file(dir.path(), 16, 41);

    let whole = dir.path().join("whole");
    let r = util::nightscreen()
        .args(["run", "--quiet", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&whole)
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(1), "one broken file: {}", String::from_utf8_lossy(&r.stderr));
    let tables = ["images", "errors", "skipped", "studies"];
    let expected: Vec<Vec<String>> = tables.iter().map(|t| rows(&whole, t)).collect();

    let out = dir.path().join("sharded");
    let others: Vec<Child> =
        [0, 2, 3].iter().map(|&i| shard_command(&config, &input, &out, i).spawn().expect("spawn shard")).collect();
    // Shard 1 is killed soon after its first commit.
    let checkpoint = out.join("shards/shard-01-of-04/checkpoint.json");
    let killed = kill_when(shard_command(&config, &input, &out, 1).spawn().expect("spawn shard 1"), |elapsed| {
        checkpoint.exists() || elapsed > Duration::from_secs(60)
    });
    for mut child in others {
        let status = child.wait().expect("shard");
        assert!(matches!(status.code(), Some(0 | 1)), "shard: {status}");
    }
    if killed {
        let refused = merge(&out);
        assert_eq!(refused.status.code(), Some(3), "merge with a shard unfinished");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("shard-01-of-04: unfinished") && !stderr.contains("shard-00-of-04"), "{stderr}");
        assert!(!out.join("worklist.csv").exists() && !out.join("run.json").exists(), "a refused merge writes nothing");
    } else {
        eprintln!("shard 1 finished before it could be killed: the resume half is not exercised this time");
    }
    let rerun = shard_command(&config, &input, &out, 1).output().expect("re-run shard 1");
    assert!(matches!(rerun.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&rerun.stderr));

    // Before the merge the shards' parts already read as the union.
    for (table, want) in tables.iter().zip(&expected).take(3) {
        assert_eq!(&rows(&out, table), want, "{table}: the shards' union differs before merge");
    }
    assert_eq!(rows(&out, "studies").len(), expected[3].len(), "every study in exactly one shard");
    for index in 0..4 {
        let parts = std::fs::read_dir(out.join("images"))
            .expect("images")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("part-shard-{index:02}-of-04-")))
            .count();
        assert!(parts > 0, "shard {index} wrote no image part named for it");
    }

    let merged = merge(&out);
    assert_eq!(
        merged.status.code(),
        Some(1),
        "the broken file is an error: {}",
        String::from_utf8_lossy(&merged.stderr)
    );
    for (table, want) in tables.iter().zip(&expected) {
        assert_eq!(&rows(&out, table), want, "{table} differs after merge");
    }
    let worklist = |o: &Path| std::fs::read_to_string(o.join("worklist.csv")).expect("worklist.csv");
    assert_eq!(worklist(&out), worklist(&whole), "merged worklist differs");
    assert_eq!(page_body(&out), page_body(&whole), "merged worklist.html rows differ");
    assert_eq!(thumbnails(&out), thumbnails(&whole), "merged thumbnails differ");
    let failed = |o: &Path| std::fs::read_to_string(o.join("failed_files.csv")).expect("failed_files.csv");
    assert_eq!(failed(&out), failed(&whole));

    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).expect("run.json")).expect("json");
    let single: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.join("run.json")).expect("run.json")).expect("json");
    assert_eq!(run["shards"].as_array().map(Vec::len), Some(4));
    for count in ["studies", "errors", "frames_scored", "image_rows", "bands"] {
        assert_eq!(run["counts"][count], single["counts"][count], "counts.{count}");
    }
    if killed {
        assert!(run["shards"][1]["attempts"].as_u64() >= Some(2), "shard 1 ran twice: {}", run["shards"][1]);
    }
    let audit = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
    assert!(audit.lines().any(|l| l.contains("\"run_merged\"")));
}
