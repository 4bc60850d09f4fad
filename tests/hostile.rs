//! Hostile input through the real binary: each bad file costs one error
//! row (or a counted skip) with a reason that names the problem, the good
//! study in the same batch is still screened, and the run stays within a
//! hard address-space limit and a time limit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util;

/// Address space the run may use: ONNX Runtime and the model fit easily;
/// one allocation of a declared multi-gigabyte image would not.
const ADDRESS_SPACE_KIB: u64 = 3 * 1024 * 1024;
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// Overwrites the length field of the first element with `tag` (explicit
/// VR little endian, as synth and CT_small write).
fn patch_length(bytes: &mut [u8], tag: (u16, u16), len: u32) {
    let needle = [tag.0.to_le_bytes(), tag.1.to_le_bytes()].concat();
    let at = bytes.windows(4).position(|w| w == needle.as_slice()).expect("tag present");
    let vr = &bytes[at + 4..at + 6];
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT" | b"UC" | b"UR" | b"OF" | b"OD" | b"OL") {
        bytes[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
    } else {
        bytes[at + 6..at + 8].copy_from_slice(&(len as u16).to_le_bytes());
    }
}

/// A Part 10 file whose data set is `depth` nested sequences of undefined length.
fn deeply_nested(depth: usize) -> Vec<u8> {
    let ts = b"1.2.840.10008.1.2.1\0";
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    f.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
    f.extend_from_slice(&(ts.len() as u16).to_le_bytes());
    f.extend_from_slice(ts);
    for _ in 0..depth {
        // (0008,1115) SQ, undefined length, then an item of undefined length.
        f.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        f.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    f
}

/// A synthetic photograph with Rows × Columns × frames declaring ~12 TB.
fn huge_declared(src: &Path, dst: &Path) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut obj = dicom_object::open_file(src).expect("open synthetic image");
    obj.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(65535u16)));
    obj.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(65535u16)));
    obj.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("1000")));
    obj.write_to_file(dst).expect("write");
}

fn write_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(util::root().join("configs/desp.toml")).expect("desp.toml");
    let models = util::root().join("models");
    let text = text
        .replace("models_dir = \"../models\"", &format!("models_dir = {:?}", models.display().to_string()))
        .replace("follow_symlinks = false", "follow_symlinks = true");
    let path = dir.join("hostile.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn every_hostile_file_is_one_clear_row_and_the_good_study_is_screened() {
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 1, 21);
    let good: Vec<PathBuf> = walk(&input).into_iter().filter(|p| p.extension().is_some_and(|e| e == "dcm")).collect();
    assert_eq!(good.len(), 4, "one synthetic study of four photographs");
    let photo = std::fs::read(&good[0]).expect("read");

    let bad = input.join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    // (file name, where its row must be, words the reason must contain)
    let mut expect: Vec<(&str, &str, &str)> = Vec::new();

    huge_declared(&good[0], &bad.join("huge-declared.dcm"));
    expect.push(("huge-declared.dcm", "errors", "max_pixels_per_frame"));

    let mut claims_gigabytes = photo.clone();
    patch_length(&mut claims_gigabytes, (0x7FE0, 0x0010), 0xF000_0000);
    std::fs::write(bad.join("claims-gigabytes.dcm"), claims_gigabytes).expect("write");
    expect.push(("claims-gigabytes.dcm", "errors", "declares 4026531840 bytes"));

    std::fs::write(bad.join("truncated.dcm"), &photo[..photo.len() * 6 / 10]).expect("write");
    expect.push(("truncated.dcm", "errors", "declares 167740 bytes but only"));

    let mut wrong_length = photo.clone();
    patch_length(&mut wrong_length, (0x0010, 0x0010), 0xFFFE);
    std::fs::write(bad.join("wrong-length.dcm"), wrong_length).expect("write");
    expect.push(("wrong-length.dcm", "errors", "malformed DICOM"));

    std::fs::write(bad.join("deeply-nested.dcm"), deeply_nested(500)).expect("write");
    expect.push(("deeply-nested.dcm", "errors", "nested deeper"));

    std::fs::write(bad.join("not-dicom.dcm"), b"%PDF-1.4 a referral letter, not an image").expect("write");
    expect.push(("not-dicom.dcm", "errors", "named .dcm but not a DICOM file"));

    std::fs::write(bad.join("empty.dcm"), b"").expect("write");
    expect.push(("empty.dcm", "errors", "empty file"));

    #[cfg(unix)]
    {
        // Readable by nobody; the run drops root's power to read it anyway.
        use std::os::unix::fs::PermissionsExt;
        let locked = bad.join("unreadable.dcm");
        std::fs::write(&locked, &photo).expect("write");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        expect.push(("unreadable.dcm", "errors", "ermission denied"));
    }

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&input, bad.join("loop")).expect("symlink");
        expect.push(("loop", "errors", "symbolic link loop"));
        let fifo = bad.join("pipe.dcm");
        let made = Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        if made {
            expect.push(("pipe.dcm", "skipped", "not a regular file"));
        }
    }

    let out = dir.path().join("out");
    let config = write_config(dir.path());
    let started = Instant::now();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_nightscreen"))
        .args(["run", "--quiet", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .current_dir(util::root())
        .env(nightscreen::privacy::KEY_ENV, util::TEST_KEY)
        .stderr(std::process::Stdio::piped());
    without_root_file_access(&mut command);
    let mut child = command.spawn().expect("run");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            panic!("the run took longer than {TIME_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = child.stderr.take().map(|mut e| {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
        s
    });
    assert_eq!(status.code(), Some(1), "errors give exit code 1: {stderr:?}");

    let rows = |table: &str| -> Vec<(String, String)> {
        let batches = util::read_table(&out, table);
        let paths = util::file_paths(&batches, util::every_entry(&input));
        let reasons = util::strings(&batches, "message");
        paths.into_iter().zip(reasons).map(|(p, r)| (p.unwrap_or_default(), r.unwrap_or_default())).collect()
    };
    let (errors, skipped) = (rows("errors"), rows("skipped"));
    for (name, table, words) in &expect {
        let found = if *table == "errors" { &errors } else { &skipped };
        let mine: Vec<_> = found.iter().filter(|(p, _)| Path::new(p).file_name().is_some_and(|n| n == *name)).collect();
        assert_eq!(
            mine.len(),
            1,
            "{name}: expected one row in {table}, got {mine:?}; errors {errors:?}; skipped {skipped:?}"
        );
        assert!(mine[0].1.contains(words), "{name}: reason {:?} lacks {words:?}", mine[0].1);
        assert!(!mine[0].1.is_empty(), "{name}: empty reason");
    }
    // The good study is screened in full, with nothing else lost.
    let scored = util::file_paths(&util::read_table(&out, "images"), util::every_entry(&input));
    assert_eq!(scored.len(), 4, "the four good photographs are scored");
    assert_eq!(errors.len(), expect.iter().filter(|e| e.1 == "errors").count(), "no other errors: {errors:?}");
}

/// CI runs as root, which reads any file whatever its mode: the run under
/// test loses that power (CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH leave
/// the bounding set, so the exec'd binary never has them), as a service
/// account would never have had it.
fn without_root_file_access(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    const CAP_DAC_OVERRIDE: libc::c_ulong = 1;
    const CAP_DAC_READ_SEARCH: libc::c_ulong = 2;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::geteuid() == 0 {
                for cap in [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH] {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        });
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Output paths are never built from values read from the input: a study
/// whose UIDs look like paths is screened like any other and writes
/// nothing outside OUT.
#[test]
fn uids_shaped_like_paths_never_escape_out() {
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let synth = dir.path().join("synth");
    util::synth_studies(&synth, 1, 22);
    let input = dir.path().join("deep/in");
    std::fs::create_dir_all(&input).expect("mkdir");
    for (i, file) in walk(&synth).into_iter().filter(|p| p.extension().is_some_and(|e| e == "dcm")).enumerate() {
        let mut obj = dicom_object::open_file(&file).expect("open");
        obj.put(DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "../../../escape-study"));
        obj.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, format!("/tmp/escape-series-{i}")));
        obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, format!("../escape-{i}")));
        obj.write_to_file(input.join(format!("{i}.dcm"))).expect("write");
    }
    std::fs::remove_dir_all(&synth).expect("rm");
    let out = dir.path().join("deep/out");
    let run = util::nightscreen()
        .args(["run", "--quiet", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let worklist = std::fs::read_to_string(out.join("worklist.csv")).expect("worklist");
    assert!(worklist.contains("../../../escape-study"), "the study is screened under its own UID");
    for entry in walkdir::WalkDir::new(dir.path()).into_iter().filter_map(Result::ok) {
        let path = entry.path();
        assert!(
            path == dir.path() || path == dir.path().join("deep") || path.starts_with(&input) || path.starts_with(&out),
            "{} was written outside OUT",
            path.display()
        );
    }
    assert!(!Path::new("/tmp/escape-series-0").exists());
}
