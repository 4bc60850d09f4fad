//! Ingest on real and hostile trees: every file is classified, nothing panics.

use std::collections::BTreeMap;

use nightscreen::ingest::{self, IngestConfig};
use nightscreen::message::{RejectKind, SourceId};
use nightscreen::source::{FileSystem, Listing, Source};

use crate::util;

fn outcomes(inputs: &[std::path::PathBuf], cfg: &IngestConfig) -> BTreeMap<String, String> {
    let source = FileSystem::new(cfg, inputs);
    let Listing { instances: files, rejected: walk_rejects } = source.list();
    let models = nightscreen::model::Models::default();
    let inventory = ingest::scan(files, &source, &models);
    let mut out = BTreeMap::new();
    for r in walk_rejects.into_iter().chain(inventory.items.into_iter().filter_map(Result::err)) {
        let SourceId::File(path) = &r.source else { panic!("a file") };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let kind = match r.kind {
            RejectKind::Skip(key) => key.to_string(),
            RejectKind::Error => format!("error: {}", r.reason),
        };
        out.insert(name, kind);
    }
    out
}

#[test]
fn non_dicom_empty_and_truncated_files_are_classified_not_fatal() {
    let Some(data) = util::testdata() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("empty.dcm"), b"").expect("write");
    std::fs::write(d.join("notes.dcm"), b"this is not DICOM at all, despite the name").expect("write");
    let real = std::fs::read(data.join("pydicom/CT_small.dcm")).expect("CT_small");
    std::fs::write(d.join("truncated.dcm"), &real[..400]).expect("write");
    std::fs::write(d.join(".hidden.dcm"), &real).expect("write");
    let got = outcomes(&[d.to_path_buf()], &IngestConfig::default());
    assert_eq!(got.get("empty.dcm").map(String::as_str), Some("error: empty file (0 bytes)"));
    assert!(got.get("notes.dcm").is_some_and(|k| k.starts_with("error: named .dcm but not a DICOM file")), "{got:?}");
    // Cut at an element boundary or inside one: an error either way, never a skip.
    assert!(got.get("truncated.dcm").is_some_and(|k| k.starts_with("error: ")), "{got:?}");
    assert!(!got.contains_key(".hidden.dcm"), "hidden files are skipped by default");
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_reported_once_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("a/b")).expect("mkdir");
    std::os::unix::fs::symlink(d.join("a"), d.join("a/b/loop")).expect("symlink");
    std::fs::write(d.join("a/b/file.txt"), b"text").expect("write");
    // Not following links: the link is a counted skip.
    let got = outcomes(&[d.to_path_buf()], &IngestConfig::default());
    assert_eq!(got.get("loop").map(String::as_str), Some("symlink_not_followed"), "{got:?}");
    assert_eq!(got.get("file.txt").map(String::as_str), Some("not_dicom"));
    // Following links: the loop is an error row naming the loop.
    let cfg = IngestConfig { follow_symlinks: true, ..IngestConfig::default() };
    let got = outcomes(&[d.to_path_buf()], &cfg);
    assert!(got.get("loop").is_some_and(|k| k.contains("symbolic link loop")), "{got:?}");
    assert_eq!(got.get("file.txt").map(String::as_str), Some("not_dicom"));
}

#[test]
fn pydicom_non_image_objects_are_skipped_with_their_kind() {
    let Some(data) = util::testdata() else { return };
    let got = outcomes(&[data.join("pydicom")], &IngestConfig::default());
    assert_eq!(got.get("rtplan.dcm").map(String::as_str), Some("rt_plan"));
    assert_eq!(got.get("DICOMDIR").map(String::as_str), Some("dicomdir"));
    assert!(got.values().any(|k| k == "structured_report"), "{got:?}");
    // With no model configured, images are skipped as unrouted, never dropped.
    assert_eq!(got.get("CT_small.dcm").map(String::as_str), Some("no_model_accepts"));
}

#[test]
fn dicomdir_records_are_followed_and_cannot_escape_its_folder() {
    let Some(data) = util::testdata() else { return };
    let dicomdir = data.join("pydicom/dicomdirtests/DICOMDIR");
    let listing = FileSystem::new(&IngestConfig::default(), std::slice::from_ref(&dicomdir)).list();
    assert!(listing.rejected.is_empty(), "{:?}", listing.rejected);
    assert!(!listing.instances.is_empty());
    let base = dicomdir.parent().expect("parent");
    for f in &listing.instances {
        let SourceId::File(path) = &f.id else { panic!("a file") };
        assert!(path.starts_with(base), "{} outside {}", path.display(), base.display());
        assert!(path.is_file(), "{} listed but missing", path.display());
    }
}

/// The stage streams a tree larger than one chunk: every file arrives
/// exactly once and each file that stops at ingest is counted once for
/// progress.
#[test]
fn run_streams_every_file_once_and_counts_rejects() {
    let Some(data) = util::testdata() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let real = std::fs::read(data.join("pydicom/CT_small.dcm")).expect("CT_small");
    // More than one chunk of files: 300 text files and 3 images.
    for i in 0..300 {
        std::fs::write(dir.path().join(format!("note-{i:03}.dcm")), b"not DICOM").expect("write");
    }
    for i in 0..3 {
        std::fs::write(dir.path().join(format!("zz-image-{i}.dcm")), &real).expect("write");
    }
    let cfg = IngestConfig::default();
    let source = FileSystem::new(&cfg, &[dir.path().to_path_buf()]);
    let listing = source.list();
    let (tx, rx) = crossbeam_channel::unbounded();
    assert_eq!(listing.len(), 303, "every file listed");
    ingest::run(listing.instances, listing.rejected, &source, &nightscreen::model::Models::default(), None, &tx);
    drop(tx);
    let items: Vec<_> = rx.iter().collect();
    assert_eq!(items.len(), 303);
    // No model is configured, so the images are counted skips too: ingest
    // calls none of them an instance.
    assert_eq!(items.iter().filter(|m| m.is_err()).count(), 303);
    assert_eq!(items.iter().filter(|m| m.is_ok()).count(), 0);
    let mut paths: Vec<_> = items.iter().filter_map(|m| m.as_ref().err()).map(|r| r.source.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 303, "every file exactly once");
}

/// Inputs the fuzzer (fuzz/) found making the DICOM parser reserve
/// gigabytes from a length the length guard had not checked: the guard
/// must refuse them, with a reason naming what is wrong, before dicom-rs
/// reads them. Every file in tests/data/fuzz/ is refused; the ones listed
/// also have their reason checked. (That none of them still allocates
/// gigabytes is checked by the fuzz target: see fuzz/findings/README.md.)
#[test]
fn fuzzer_found_huge_allocations_are_refused_by_the_guard() {
    // What the parser allocated from, and what the guard now says.
    let reasons: &[(&str, &str)] = &[
        // A fragment length of encapsulated pixel data.
        ("oom-0774b429699c.dcm", "declares"),
        // Bytes after defined-length pixel data, read by the parser as
        // elements (unknown VRs, which it reads with a 32-bit length).
        ("oom-189b79024894.dcm", "(FF80,8080) declares 2164228224 bytes"),
        ("oom-2c7c06c8147e.dcm", "declares 4278503172 bytes"),
        ("oom-5f3ecac27f6f.dcm", "declares 2164260736 bytes"),
        ("oom-80bb326f7c3c.dcm", "declares 4294967040 bytes"),
        ("oom-9523e4e47fb7.dcm", "declares 4211335683 bytes"),
        ("oom-c6c59f2ca6cd.dcm", "declares 4278255615 bytes"),
        ("oom-e219e25206c3.dcm", "declares 2425080753 bytes"),
        ("oom-f2f6c29f7a34.dcm", "declares 2139029504 bytes"),
        // (7FE0,5700) with an unknown VR: a 32-bit length to the parser.
        ("oom-8e1114e8fbd5.dcm", "(7FE0,5700) declares 4294902015 bytes"),
        // A length inside a deflated data set, past the inflated end.
        ("oom-8ce3bdd4c94b.dcm", "deflated data set:"),
    ];
    let dir = util::root().join("tests/data/fuzz");
    let mut checked = 0;
    let mut passed = Vec::new();
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/data/fuzz") {
        let path = entry.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match ingest::guard::check(&nightscreen::source::Blob::open_file(&path).expect("open")) {
            Ok(()) => passed.push(name),
            Err(e) => {
                if let Some((_, want)) = reasons.iter().find(|(f, _)| *f == name) {
                    if !e.contains(want) {
                        wrong.push(format!("{name}: {e:?} lacks {want:?}"));
                    }
                }
            }
        }
        checked += 1;
    }
    assert!(passed.is_empty(), "passed the guard: {passed:?}");
    assert!(wrong.is_empty(), "unexpected reasons: {wrong:#?}");
    assert!(checked >= reasons.len(), "regression inputs present");
}

/// A remote source in memory: each listed instance's bytes, or why the
/// server failed to send them.
struct Served(BTreeMap<String, Result<Vec<u8>, String>>);

impl Source for Served {
    fn list(&self) -> Listing {
        Listing::default()
    }

    fn open(&self, id: &SourceId) -> Result<nightscreen::source::Blob, nightscreen::source::SourceError> {
        match self.0.get(&id.locator()) {
            Some(Ok(bytes)) => Ok(nightscreen::source::Blob::bytes(bytes.clone())),
            Some(Err(reason)) => Err(nightscreen::source::SourceError::Fetch(reason.clone())),
            None => Err(nightscreen::source::SourceError::Foreign),
        }
    }
}

#[test]
fn a_remote_instance_is_refused_when_its_bytes_are_another_instance_and_a_failed_fetch_keeps_its_study() {
    use nightscreen::message::{SeriesUid, SopInstanceUid, Stage, StudyUid, WebInstance};
    let dir = tempfile::tempdir().expect("tempdir");
    util::synth_studies(dir.path(), 1, 3);
    let file =
        util::every_entry(dir.path()).into_iter().find(|p| p.extension().is_some_and(|e| e == "dcm")).expect("a file");
    let web = |sop: &str| {
        SourceId::Web(std::sync::Arc::new(WebInstance::new(
            "pacs",
            StudyUid::new("1.2.3"),
            SeriesUid::new("1.2.3.4"),
            SopInstanceUid::new(sop),
        )))
    };
    let (other, gone) = (web("9.9.9"), web("8.8.8"));
    let served = Served(BTreeMap::from([
        (other.locator(), Ok(std::fs::read(&file).expect("read"))),
        (gone.locator(), Err("fetch failed: WADO-RS retrieve: HTTP 503".to_string())),
    ]));
    let listed = |id: &SourceId, sop: &str| nightscreen::source::Listed {
        id: id.clone(),
        name: id.locator(),
        expected_sop: Some(SopInstanceUid::new(sop)),
    };
    let models = nightscreen::model::Models::default();
    let inventory = ingest::scan(vec![listed(&other, "9.9.9"), listed(&gone, "8.8.8")], &served, &models);
    let rejected: Vec<_> = inventory.items.into_iter().filter_map(Result::err).collect();
    assert_eq!(rejected.len(), 2);
    let by = |id: &SourceId| rejected.iter().find(|r| &r.source == id).expect("rejected");
    let mismatch = by(&other);
    assert!(matches!(mismatch.kind, RejectKind::Error) && mismatch.reason.contains("another instance"), "{mismatch:?}");
    assert!(!mismatch.reason.contains("9.9.9"), "no UID in a reason");
    let failed = by(&gone);
    assert_eq!(failed.stage, Stage::Fetch);
    assert!(failed.reason.contains("503"));
    let header = failed.header.as_ref().expect("the manifest's identity");
    assert_eq!((header.study_uid.as_str(), header.sop_instance_uid.as_str()), ("1.2.3", "8.8.8"));
}
