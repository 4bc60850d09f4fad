//! The output folder: what a run may touch in it, and whether it starts a
//! new run there or resumes an unfinished one.
//!
//! nightscreen only ever replaces files it wrote. A folder holding our
//! output names without our `run.json` / `audit.jsonl` is someone else's
//! and refused. A folder with a `checkpoint.json` holds an unfinished run:
//! the same command resumes it, after deleting whatever that run wrote
//! past its last commit. A finished run (`run.json`) is replaced only with
//! `--force`.

use std::path::Path;

use super::checkpoint::{Checkpoint, Fingerprint};
use crate::error::{Error, Result};
use crate::sink::names::{
    AUDIT, CHECKPOINT, DOCUMENTS, FAILED_FILES, RETRY_STATE, RUN_JSON, SOURCE_MANIFEST, SR_EVIDENCE, SR_SUMMARY,
    THUMBNAILS, WORKLIST_CSV, WORKLIST_HTML, WORKLIST_JSON,
};
use crate::sink::tables::Table;
use crate::sink::{thumbnails, OutPaths};

/// Folders a run writes into OUT; in them, only the entries [`is_ours`]
/// recognises are ours. With [`OUR_FILES`], all that is ever replaced;
/// `audit.jsonl` is not among them: it is only ever appended to.
pub const OUR_FOLDERS: &[&str] = &[
    Table::Images.dir(),
    Table::Studies.dir(),
    Table::Errors.dir(),
    Table::Skipped.dir(),
    THUMBNAILS,
    DOCUMENTS[0].0,
    DOCUMENTS[1].0,
    DOCUMENTS[2].0,
];

/// The files a run writes into OUT: what `--force` deletes whole.
pub const OUR_FILES: &[&str] = &[
    WORKLIST_CSV,
    WORKLIST_JSON,
    WORKLIST_HTML,
    FAILED_FILES,
    RUN_JSON,
    CHECKPOINT,
    SOURCE_MANIFEST,
    RETRY_STATE,
    SR_EVIDENCE,
    SR_SUMMARY,
];

fn is_part_file(name: &str) -> bool {
    name.starts_with("part-") || name.starts_with(".part-")
}

/// Whether an entry of one of our folders is a file we write there.
fn is_ours(folder: &str, name: &str) -> bool {
    if folder == THUMBNAILS {
        return thumbnails::is_ours(name);
    }
    match DOCUMENTS.iter().find(|(dir, _)| *dir == folder) {
        Some((_, ext)) => crate::sink::fhir::is_document_name(name, ext),
        None => is_part_file(name),
    }
}

/// Deletes our result documents (SR, FHIR, HL7) under `out`, for `--force`.
fn remove_documents(out: &Path) -> Result<()> {
    for (dir, ext) in DOCUMENTS {
        let Ok(entries) = std::fs::read_dir(out.join(dir)) else { continue };
        for entry in entries.flatten() {
            if crate::sink::fhir::is_document_name(&entry.file_name().to_string_lossy(), ext) {
                std::fs::remove_file(entry.path()).map_err(|source| Error::Output { path: entry.path(), source })?;
            }
        }
    }
    Ok(())
}

/// Our output names already in `out` that no nightscreen run accounts for.
fn foreign_outputs(out: &Path) -> Vec<String> {
    if out.join(RUN_JSON).exists() || out.join(AUDIT).exists() || out.join(CHECKPOINT).exists() {
        return Vec::new();
    }
    OUR_FOLDERS
        .iter()
        .chain(OUR_FILES)
        .filter(|name| {
            let path = out.join(name);
            if path.is_dir() {
                std::fs::read_dir(&path)
                    .map(|entries| entries.flatten().any(|e| !e.file_name().to_str().is_some_and(|n| is_ours(name, n))))
                    .unwrap_or(true)
            } else {
                path.exists()
            }
        })
        .map(|name| name.to_string())
        .collect()
}

/// Deletes our part files (those named `part-<prefix>…`: a shard's own)
/// in the tables under `tables` except those `keep` lists (committed parts
/// of the run being resumed).
fn remove_parts(tables: &Path, prefix: &str, keep: Option<&Checkpoint>) -> Result<usize> {
    let mut removed = 0;
    let (mine, mine_tmp) = (format!("part-{prefix}"), format!(".part-{prefix}"));
    for table in Table::ALL {
        let dir = tables.join(table.dir());
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let kept = keep.and_then(|k| k.parts.get(table.dir()));
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(&mine) || name.starts_with(&mine_tmp);
            if !ours || kept.is_some_and(|k| k.contains(&name)) {
                continue;
            }
            std::fs::remove_file(entry.path()).map_err(|source| Error::Output { path: entry.path(), source })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Makes `out` ready for a run and returns the checkpoint to resume from,
/// if any.
///
/// # Errors
/// `out` holds files nightscreen did not write; holds a finished run and
/// `force` is off; holds an unfinished run of other software, config or
/// models; or cannot be created or cleaned.
pub fn prepare(paths: &OutPaths, force: bool, fingerprint: &Fingerprint) -> Result<Option<Checkpoint>> {
    let out = paths.run.as_path();
    let io = |source| Error::Output { path: out.to_path_buf(), source };
    let refuse = |problem: String| Error::OutDir { path: out.to_path_buf(), problem };
    let foreign = foreign_outputs(out);
    if !foreign.is_empty() {
        return Err(refuse(format!(
            "already holds {} that no nightscreen run wrote (no {RUN_JSON} or {AUDIT}); \
             nightscreen never overwrites files it did not write: choose another --out",
            foreign.join(", ")
        )));
    }
    if force {
        for name in OUR_FILES {
            match std::fs::remove_file(out.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
        }
        remove_parts(&paths.tables, &paths.part_prefix, None)?;
        thumbnails::remove_except(out, &Default::default())?;
        if paths.shard.is_none() {
            remove_documents(out)?;
        }
        std::fs::create_dir_all(out).map_err(io)?;
        return Ok(None);
    }
    if out.join(RUN_JSON).exists() {
        return Err(refuse(format!(
            "already holds a finished run ({RUN_JSON}); choose another --out, or pass --force to compute it again"
        )));
    }
    std::fs::create_dir_all(out).map_err(io)?;
    let resumed = Checkpoint::load(out)?;
    if let Some(state) = &resumed {
        if &state.fingerprint != fingerprint {
            return Err(refuse(format!(
                "holds an unfinished run ({}) made with other software, config, models or key \
                 ({:?}, now {:?}); resume it with those, or pass --force to start again",
                state.run_id, state.fingerprint, fingerprint
            )));
        }
    }
    // Parts written after the last commit (or by an attempt that never
    // committed) would double rows that the resumed run writes again.
    let removed = remove_parts(&paths.tables, &paths.part_prefix, resumed.as_ref())?;
    if removed > 0 {
        log::info!("removed {removed} uncommitted part file(s) left by an interrupted run");
    }
    // Likewise thumbnails: those of uncommitted files are made again.
    let committed = resumed.iter().flat_map(|r| r.thumbnails.iter().map(|t| t.file.as_str())).collect();
    let removed = thumbnails::remove_except(out, &committed)?;
    if removed > 0 {
        log::info!("removed {removed} thumbnail(s) of uncommitted files left by an interrupted run");
    }
    Ok(resumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint() -> Fingerprint {
        Fingerprint {
            software_version: "1".into(),
            config_sha256: "c".into(),
            models: vec![],
            pseudonym_key_id: "k".into(),
        }
    }

    #[test]
    fn resume_keeps_committed_parts_and_drops_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        std::fs::create_dir_all(out.join("images")).expect("mkdir");
        for name in ["part-r-00001.parquet", "part-r-00002.parquet", ".part-r-00003.parquet.tmp", "notes.txt"] {
            std::fs::write(out.join("images").join(name), b"x").expect("write");
        }
        let mut state = Checkpoint::new("r".into(), chrono::Utc::now(), fingerprint());
        state.parts.insert("images".into(), vec!["part-r-00001.parquet".into()]);
        state.save(out).expect("save");
        let resumed =
            prepare(&OutPaths::single(out), false, &fingerprint()).expect("prepare").expect("a run to resume");
        assert_eq!(resumed.run_id, "r");
        let mut left: Vec<String> = std::fs::read_dir(out.join("images"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "part-r-00001.parquet"]);
        let other = Fingerprint { config_sha256: "d".into(), ..fingerprint() };
        let err = prepare(&OutPaths::single(out), false, &other).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--force"), "{err}");
        assert!(prepare(&OutPaths::single(out), true, &other).expect("force").is_none());
        assert!(!out.join(CHECKPOINT).exists() && !out.join("images/part-r-00001.parquet").exists());
        assert!(out.join("images/notes.txt").exists(), "files we did not write stay");
    }

    #[test]
    fn thumbnails_of_uncommitted_files_go_on_resume_and_all_ours_go_with_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        let thumbs = out.join(THUMBNAILS);
        std::fs::create_dir_all(&thumbs).expect("mkdir");
        let (kept, dropped) = (format!("{}-00000.jpg", "a".repeat(32)), format!("{}-00000.jpg", "b".repeat(32)));
        for name in [kept.as_str(), dropped.as_str(), "x.jpg"] {
            std::fs::write(thumbs.join(name), b"x").expect("write");
        }
        // Without any run of ours there, x.jpg makes the folder someone else's.
        assert!(prepare(&OutPaths::single(out), false, &fingerprint()).is_err());
        std::fs::remove_file(thumbs.join("x.jpg")).expect("rm");
        let mut state = Checkpoint::new("r".into(), chrono::Utc::now(), fingerprint());
        state.thumbnails.push(thumbnails::ThumbEntry {
            study: "s".into(),
            file: kept.clone(),
            eye: crate::dicom::laterality::Laterality::Right,
            field: crate::dicom::laterality::FundusField::Unknown,
            frame: 0,
            width: 1,
            height: 1,
            attention: None,
            outside_domain: false,
        });
        state.save(out).expect("save");
        std::fs::write(thumbs.join("x.jpg"), b"x").expect("write");
        prepare(&OutPaths::single(out), false, &fingerprint()).expect("resume");
        assert!(thumbs.join(&kept).exists() && !thumbs.join(&dropped).exists());
        prepare(&OutPaths::single(out), true, &fingerprint()).expect("force");
        assert!(!thumbs.join(&kept).exists(), "--force starts thumbnails afresh");
        assert!(thumbs.join("x.jpg").exists(), "files we did not write stay");
    }
}
