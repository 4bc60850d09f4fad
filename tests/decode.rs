//! Decode against pydicom: every frame of the pydicom test objects must
//! give the stored-value statistics pydicom 3.0.2 gives
//! (`tests/data/pixel_references.csv`, made by `tools/make_references.py`),
//! exactly for lossless transfer syntaxes and within named tolerances for
//! lossy ones. Objects we cannot decode are listed, with the reason, in
//! [`EXPECTED_FAILURES`]; the test fails when one of them starts decoding
//! or another one stops, so the list stays an honest record of the gaps.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use nightscreen::decode::{DecodeConfig, Decoder};
use nightscreen::message::{DecodedImage, Header, Instance, Msg, SourceId};
use nightscreen::source::Blob;

use crate::util::{root, testdata};

/// Objects pydicom decodes but we reject, with a fragment of our error.
const EXPECTED_FAILURES: &[(&str, &str, &str)] = &[
    // (file, text our error must contain, why)
    (
        "pydicom/JPGExtended.dcm",
        "12-bit JPEG (SamplePrecision 12) is not supported",
        "jpeg-decoder has no 12-bit DCT and we add no C JPEG library",
    ),
    (
        "pydicom/SC_rgb_jpeg.dcm",
        "not a readable DICOM file",
        "data set is implicit VR although the transfer syntax says explicit; \
         pydicom guesses, dicom-object does not",
    ),
    (
        "pydicom-data/OT-PAL-8-face.dcm",
        "not a readable DICOM file",
        "no DICOM file meta information (no 'DICM' header); pydicom infers the \
         transfer syntax, dicom-object needs the meta group",
    ),
];

/// Objects pydicom cannot parse but we decode, with an intact copy whose
/// reference rows they must match.
const DECODED_WITHOUT_REFERENCE: &[(&str, &str)] = &[(
    // Only the final sequence delimiter (8 bytes) is cut off: pydicom drops
    // the whole element, dicom-object keeps the complete fragments.
    "pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm",
    "pydicom-data/emri_small_jpeg_2k_lossless.dcm",
)];

/// Relative tolerance for lossless syntaxes: exact up to float rounding.
const LOSSLESS_REL: f64 = 1e-6;
/// JPEG baseline/extended: decoders differ in IDCT and upsampling.
const JPEG_MEAN: f64 = 2.0;
const JPEG_MINMAX: f64 = 20.0;
/// Lossy JPEG 2000: same codec family (OpenJPEG), still allow rounding.
const J2K_LOSSY_MEAN: f64 = 1.0;
const J2K_LOSSY_MINMAX: f64 = 5.0;

fn instance(path: &Path, rel: &str) -> Arc<Instance> {
    Arc::new(Instance {
        source: SourceId::File(path.to_path_buf()),
        name: rel.to_string(),
        header: Arc::new(Header::default()),
        models: vec![nightscreen::model::ModelId::new(0)],
    })
}

fn blob(path: &Path) -> Blob {
    Blob::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(path: &Path, rel: &str) -> Vec<Msg<DecodedImage>> {
    let dec = Decoder::new(&DecodeConfig::default());
    let mut out = Vec::new();
    dec.decode_each(&instance(path, rel), &blob(path), |m| out.push(m));
    out
}

#[derive(Debug, Clone)]
struct RefRow {
    frame: i64,
    ts: String,
    mean: f64,
    min: f64,
    max: f64,
    status: String,
}

fn references() -> BTreeMap<String, Vec<RefRow>> {
    let path = root().join("tests/data/pixel_references.csv");
    let mut rdr = csv::Reader::from_path(&path).expect("read pixel_references.csv");
    let headers = rdr.headers().expect("csv headers").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (file, frame, ts, mean, min, max, status) =
        (col("file"), col("frame"), col("transfer_syntax"), col("mean"), col("min"), col("max"), col("status"));
    let mut refs: BTreeMap<String, Vec<RefRow>> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.expect("csv record");
        let num = |i: usize| rec[i].parse::<f64>().unwrap_or(f64::NAN);
        refs.entry(rec[file].to_string()).or_default().push(RefRow {
            frame: rec[frame].parse().expect("frame"),
            ts: rec[ts].to_string(),
            mean: num(mean),
            min: num(min),
            max: num(max),
            status: rec[status].to_string(),
        });
    }
    refs
}

/// Tolerance category of a transfer syntax.
fn category(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => "jpeg-lossy",
        "1.2.840.10008.1.2.4.91" => "j2k-lossy",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "jpeg-lossless",
        "1.2.840.10008.1.2.4.80" => "jpeg-ls",
        "1.2.840.10008.1.2.4.81" => "jpeg-ls-near",
        "1.2.840.10008.1.2.4.90" => "j2k-lossless",
        "1.2.840.10008.1.2.5" => "rle",
        _ => "native",
    }
}

/// (mean tolerance, min/max tolerance) for a reference value.
fn tolerance(cat: &str, reference: f64) -> (f64, f64) {
    match cat {
        "jpeg-lossy" => (JPEG_MEAN, JPEG_MINMAX),
        "j2k-lossy" => (J2K_LOSSY_MEAN, J2K_LOSSY_MINMAX),
        _ => {
            let t = LOSSLESS_REL * reference.abs().max(1.0);
            (t, t)
        }
    }
}

#[test]
fn stored_statistics_match_pydicom() {
    let Some(data) = testdata() else { return };
    let refs = references();
    let mut problems = Vec::new();
    // category -> (max |mean diff|, max |min/max diff|, frames)
    let mut worst: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    let mut failed_as_expected = 0;
    for (file, rows) in &refs {
        let path = data.join(file);
        let out = decode(&path, file);
        let expected_failure = EXPECTED_FAILURES.iter().find(|(f, _, _)| f == file);
        let errors: Vec<String> =
            out.iter().filter_map(|m| m.as_ref().err()).map(|r| format!("frame {:?}: {}", r.frame, r.reason)).collect();
        let (file, rows) = match DECODED_WITHOUT_REFERENCE.iter().find(|(f, _)| f == file) {
            Some((_, intact)) => (file, &refs[*intact]),
            None => (file, rows),
        };
        if rows.iter().all(|r| !r.status.starts_with("ok")) {
            // pydicom cannot decode it either: we must reject it cleanly.
            if errors.is_empty() {
                problems.push(format!("{file}: pydicom rejects it but we decoded it"));
            }
            continue;
        }
        if let Some((_, text, why)) = expected_failure {
            if errors.iter().any(|e| e.contains(text)) {
                failed_as_expected += 1;
            } else {
                problems.push(format!(
                    "{file}: listed as expected failure ({why}) but got {errors:?} \
                     ({} frames decoded)",
                    out.len() - errors.len()
                ));
            }
            continue;
        }
        if !errors.is_empty() {
            problems.push(format!("{file}: unexpected errors {errors:?}"));
            continue;
        }
        if out.len() != rows.len() {
            problems.push(format!("{file}: {} frames decoded, {} in reference", out.len(), rows.len()));
            continue;
        }
        for (msg, r) in out.iter().zip(rows) {
            let img = msg.as_ref().expect("errors handled above");
            let s = img.meta.stored;
            let cat = category(&r.ts);
            let (tm, tx) = tolerance(cat, r.mean.abs().max(r.max.abs()).max(r.min.abs()));
            let dm = (s.mean - r.mean).abs();
            let dx = (s.min - r.min).abs().max((s.max - r.max).abs());
            let w = worst.entry(cat).or_default();
            w.0 = w.0.max(dm);
            w.1 = w.1.max(dx);
            w.2 += 1;
            if img.meta.frame_index as i64 != r.frame || dm > tm || dx > tx {
                problems.push(format!(
                    "{file} frame {}: mean/min/max {:.4}/{}/{} vs pydicom {:.4}/{}/{} ({cat})",
                    r.frame, s.mean, s.min, s.max, r.mean, r.min, r.max
                ));
            }
            let f = &img.frame;
            let n = f.width as usize * f.height as usize * f.channels as usize;
            if f.len() != n || f.values().iter().any(|v| !(0.0..=1.0).contains(v)) {
                problems.push(format!("{file} frame {}: display frame malformed", r.frame));
            }
        }
    }
    eprintln!("max difference from pydicom per category (|mean|, |min or max|, frames):");
    for (cat, (dm, dx, n)) in &worst {
        eprintln!("  {cat:14} {dm:10.6} {dx:10.3} {n:5}");
    }
    eprintln!("{failed_as_expected} expected failures");
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

fn only_frame(out: Vec<Msg<DecodedImage>>, what: &str) -> DecodedImage {
    let mut frames: Vec<DecodedImage> =
        out.into_iter().map(|m| m.unwrap_or_else(|r| panic!("{what}: {}", r.reason))).collect();
    assert_eq!(frames.len(), 1, "{what}: one frame expected");
    frames.remove(0)
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
}

/// MONOCHROME1 is displayed inverted: the same object relabelled
/// MONOCHROME2 gives the complementary frame and the same stored values.
#[test]
fn monochrome1_is_inverted() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;

    let Some(data) = testdata() else { return };
    let src = data.join("pydicom/dicomdirtests/77654033/CR1/6154");
    let mut obj = dicom_object::open_file(&src).expect("open CR");
    let pi = obj.element(tags::PHOTOMETRIC_INTERPRETATION).expect("PI").to_str().expect("PI").to_string();
    assert_eq!(pi.trim(), "MONOCHROME1");
    let dir = tempfile::tempdir().expect("tempdir");
    let mono2 = dir.path().join("mono2.dcm");
    obj.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from("MONOCHROME2")));
    obj.write_to_file(&mono2).expect("write copy");

    let one = only_frame(decode(&src, "CR1"), "MONOCHROME1");
    let two = only_frame(decode(&mono2, "copy"), "MONOCHROME2");
    assert_eq!(one.meta.stored.mean, two.meta.stored.mean);
    assert_eq!(one.frame.channels, 1);
    let (one, two) = (one.frame.values(), two.frame.values());
    for (a, b) in one.iter().zip(two.iter()) {
        assert!((a + b - 1.0).abs() < 1e-6, "{a} + {b} != 1");
    }
    assert!(one.iter().zip(two.iter()).any(|(a, b)| a != b));
}

/// An RGB JPEG without JFIF/Adobe markers must not be treated as YCbCr
/// (dicom-pixeldata does, and its colours are off by up to 137).
#[test]
fn jpeg_rgb_without_color_transform_keeps_colours() {
    let Some(data) = testdata() else { return };
    let refs = references();
    for file in ["pydicom/SC_jpeg_no_color_transform.dcm", "pydicom/SC_jpeg_no_color_transform_2.dcm"] {
        let img = only_frame(decode(&data.join(file), file), file);
        let r = &refs[file][0];
        let s = img.meta.stored;
        assert!((s.mean - r.mean).abs() < JPEG_MEAN, "{file}: mean {} vs {}", s.mean, r.mean);
        assert!((s.min - r.min).abs() <= JPEG_MINMAX && (s.max - r.max).abs() <= JPEG_MINMAX);
        assert_eq!(img.frame.channels, 3);
        // Display is the stored RGB over 255.
        assert!((mean(&img.frame.values()) * 255.0 - s.mean).abs() < 1e-3);
    }
}

/// Planar (RRR..GGG..BBB..) and interleaved copies of one image give the
/// same frame.
#[test]
fn planar_rgb_matches_interleaved() {
    let Some(data) = testdata() else { return };
    let pl = only_frame(decode(&data.join("pydicom-data/color-pl.dcm"), "pl"), "planar");
    let px = only_frame(decode(&data.join("pydicom-data/color-px.dcm"), "px"), "interleaved");
    assert_eq!(pl.frame.channels, 3);
    assert_eq!(pl.frame.values(), px.frame.values());
}

/// Limits are checked before decoding, and bad input is an error row.
#[test]
fn limits_and_bad_input_are_errors() {
    let Some(data) = testdata() else { return };
    let file = data.join("pydicom/CT_small.dcm");
    // Opened through the file source, as the stage does, so a missing file
    // is an error row too.
    let files = nightscreen::source::FileSystem::new(&Default::default(), &[]);
    let run = |cfg: DecodeConfig, path: &Path| {
        let mut out = Vec::new();
        Decoder::new(&cfg).open_and_decode(&files, &instance(path, "x"), |m| out.push(m));
        out
    };
    let cases = [
        (DecodeConfig { max_pixels_per_frame: 100, ..Default::default() }, file.clone(), "max_pixels_per_frame"),
        (DecodeConfig { max_file_bytes: 100, ..Default::default() }, file.clone(), "max_file_bytes"),
        (DecodeConfig::default(), data.join("pydicom/nonexistent.dcm"), "cannot read file: "),
        (DecodeConfig::default(), root().join("Cargo.toml"), "not a readable DICOM file"),
        (DecodeConfig::default(), data.join("pydicom/MR_truncated.dcm"), "(7FE0,0010)"),
    ];
    for (cfg, path, text) in cases {
        let out = run(cfg, &path);
        assert_eq!(out.len(), 1, "{}", path.display());
        let err = out[0].as_ref().err().unwrap_or_else(|| panic!("{}: decoded", path.display()));
        assert!(err.reason.contains(text), "{}: {}", path.display(), err.reason);
        assert_eq!(err.frame, None);
        assert_eq!(err.stage, nightscreen::message::Stage::Decode);
    }
}

/// A frame missing from otherwise good data is an error for that frame
/// only; the frames before it are still emitted.
#[test]
fn missing_frame_is_a_frame_error() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;

    let Some(data) = testdata() else { return };
    let mut obj = dicom_object::open_file(data.join("pydicom/CT_small.dcm")).expect("open CT");
    obj.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("2")));
    let dir = tempfile::tempdir().expect("tempdir");
    let two = dir.path().join("two.dcm");
    obj.write_to_file(&two).expect("write copy");
    let out = decode(&two, "two");
    assert_eq!(out.len(), 2);
    assert!(out[0].is_ok());
    let err = out[1].as_ref().expect_err("frame 1 must fail");
    assert_eq!(err.frame, Some(1));
    assert!(err.reason.contains("pixel data too short for frame 1"), "{}", err.reason);
}

/// dicom-pixeldata's JPEG 2000 adapter indexes past its buffer (a panic)
/// when the codestream has more components than SamplesPerPixel says.
/// Decode compares the codestream's SIZ with the header first, so this is
/// an error row naming the disagreement; before that check it was the
/// "decoder panicked" row that `catch_unwind` still makes of any panic.
#[test]
fn codec_panic_is_an_error() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;

    let Some(data) = testdata() else { return };
    let mut obj = dicom_object::open_file(data.join("pydicom/examples_jpeg2k.dcm")).expect("open");
    obj.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)));
    obj.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from("MONOCHROME2")));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.dcm");
    obj.write_to_file(&bad).expect("write copy");
    let out = decode(&bad, "bad");
    assert_eq!(out.len(), 1);
    let err = out[0].as_ref().expect_err("must be rejected");
    assert!(
        err.reason.contains("JPEG 2000 frame 0 declares")
            && err.reason.contains("with 3 components")
            && err.reason.ends_with("with SamplesPerPixel 1"),
        "{}",
        err.reason
    );
}

/// The stage loop forwards upstream rejections, decodes instances on the
/// pool and counts each instance once.
#[test]
fn run_forwards_and_accounts_every_message_to_its_file() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nightscreen::message::{RejectKind, Rejected, SkipReason, Stage};
    use nightscreen::source::FileSystem;

    let Some(data) = testdata() else { return };
    let (in_tx, in_rx) = crossbeam_channel::bounded(4);
    let (out_tx, out_rx) = crossbeam_channel::bounded(64);
    let upstream = Rejected {
        source: SourceId::File("skipped.txt".into()),
        stage: Stage::Ingest,
        kind: RejectKind::Skip(SkipReason::NotDicom),
        reason: "not DICOM".into(),
        header: None,
        frame: None,
    };
    for msg in [
        Err(upstream),
        Ok((*instance(&data.join("pydicom-data/SC_rgb_2frame.dcm"), "a")).clone()),
        Ok((*instance(&data.join("pydicom/CT_small.dcm"), "b")).clone()),
    ] {
        in_tx.send(msg).expect("send");
    }
    drop(in_tx);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    let done = AtomicUsize::new(0);
    nightscreen::decode::run(
        &Decoder::new(&DecodeConfig::default()),
        &FileSystem::new(&Default::default(), &[]),
        &pool,
        in_rx,
        &|msg| out_tx.send(msg).is_ok().then_some(1),
        &|file| {
            done.fetch_add(file.units as usize, Ordering::Relaxed);
        },
    );
    drop(out_tx);
    let out: Vec<_> = out_rx.iter().collect();
    assert_eq!(out.len(), 4, "1 forwarded + 2 frames + 1 frame");
    assert_eq!(done.load(Ordering::Relaxed), 4, "every message is accounted to its file");
    let forwarded: Vec<_> = out.iter().filter_map(|m| m.as_ref().err()).collect();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].stage, Stage::Ingest);
}

/// Fuzzer inputs (fuzz/) that pass the length guard and reach a codec:
/// each must be exactly one row, an error naming what is wrong where one is
/// expected, under the fuzz target's limits. (No panic here is not the
/// whole check: the fuzz target's panic hook aborts on a panic even when
/// decode catches it, and its malloc limit catches a large allocation; see
/// fuzz/findings/README.md.)
#[test]
fn fuzzer_found_codec_inputs_are_one_row_each() {
    let cases = [
        // SIZ says 720 columns, the header 512: dicom-rs's JPEG 2000
        // adapter wrote the larger image past its buffer (a panic).
        (
            "crash-62887ec75788.dcm",
            Some("JPEG 2000 frame 0 declares 720x512 with 1 components, but Columns x Rows is 512x512"),
        ),
        // Corrupt J2K tile data that openjp2 decodes anyway (reported as
        // over 2 GB RSS by the first campaign, on a build before the guard
        // walked encapsulated fragments; now well under 100 MB).
        ("oom-f886d4fa1943.dcm", None),
    ];
    let dir = root().join("tests/data/fuzz/decode");
    let cfg = DecodeConfig {
        max_pixels_per_frame: 4_000_000,
        max_frames: 16,
        max_file_bytes: 64 << 20,
        ..Default::default()
    };
    for (file, want) in cases {
        let path = dir.join(file);
        assert_eq!(nightscreen::ingest::guard::check(&blob(&path)), Ok(()), "{file}: the guard passes it");
        let mut out = Vec::new();
        Decoder::new(&cfg).decode_each(&instance(&path, file), &blob(&path), |m| out.push(m));
        assert_eq!(out.len(), 1, "{file}");
        match (want, &out[0]) {
            (Some(want), Err(err)) => assert!(err.reason.contains(want), "{file}: {}", err.reason),
            (None, Ok(image)) => assert_eq!((image.meta.width, image.meta.height), (512, 512), "{file}"),
            (_, Ok(_)) => panic!("{file}: decoded"),
            (None, Err(err)) => panic!("{file}: {}", err.reason),
        }
    }
}
