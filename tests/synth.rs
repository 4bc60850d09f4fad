//! The synthetic fundus generator (issue 3, item 1): files, headers,
//! pixels, truth files and determinism, through the library API, plus a
//! pydicom cross-check of the written files.

use std::path::Path;
use std::sync::Arc;

use dicom_dictionary_std::tags;
use nightscreen::decode::{DecodeConfig, Decoder};
use nightscreen::message::{DecodedImage, Header, Instance, SourceId};
use nightscreen::synth::{self, SynthConfig};

use crate::util::python;

const STUDIES: usize = 3;

fn generate(dir: &Path, seed: u64) -> synth::SynthSummary {
    synth::run(&SynthConfig::new(STUDIES, dir, seed)).expect("synth run")
}

fn dcm_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    files
}

fn decode(path: &Path) -> DecodedImage {
    decode_with(path, Decoder::new(&DecodeConfig::default()))
}

fn decode_with(path: &Path, decoder: Decoder) -> DecodedImage {
    let inst = Arc::new(Instance {
        source: SourceId::File(path.to_path_buf()),
        name: path.display().to_string(),
        header: Arc::new(Header::default()),
        models: vec![nightscreen::model::ModelId::new(0)],
    });
    let mut out = Vec::new();
    let blob = nightscreen::source::Blob::open_file(path).expect("open");
    decoder.decode_each(&inst, &blob, |m| out.push(m));
    assert_eq!(out.len(), 1, "{}", path.display());
    out.pop().and_then(|m| m.ok()).unwrap_or_else(|| panic!("{} does not decode", path.display()))
}

fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).expect("truth file");
    r.records().map(|r| r.expect("csv row")).collect()
}

#[test]
fn writes_four_decodable_op_images_per_study() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate(dir.path(), 1);
    assert_eq!((summary.studies, summary.images), (STUDIES, 4 * STUDIES));
    let files = dcm_files(dir.path());
    assert_eq!(files.len(), 4 * STUDIES);
    for f in &files {
        let obj = dicom_object::open_file(f).expect("open");
        let s =
            |tag| obj.element(tag).ok().and_then(|e| e.to_str().ok()).map(|v| v.trim().to_string()).unwrap_or_default();
        assert_eq!(s(tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.77.1.5.1");
        assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), "1.2.840.10008.1.2.4.50");
        assert_eq!(s(tags::MODALITY), "OP");
        assert_eq!(s(tags::PHOTOMETRIC_INTERPRETATION), "YBR_FULL_422");
        let side = s(tags::IMAGE_LATERALITY);
        assert!(side == "R" || side == "L", "{side}");
        let field = s(tags::SERIES_DESCRIPTION);
        assert!(field == "MACULA" || field == "DISC", "{field}");
        let name = f.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        assert!(name.ends_with(&format!("-{side}-{}", field.to_lowercase())), "{name}");

        let img = decode(f);
        let fr = &img.frame;
        assert!(fr.width >= 1600 && fr.height >= 1200, "{}x{}", fr.width, fr.height);
        assert_eq!(fr.channels, 3);
        // Circular field of view on black: the corners are dark, the centre is lit.
        let values = fr.values();
        let px = |x: u32, y: u32| {
            let i = 3 * (y * fr.width + x) as usize;
            [values[i], values[i + 1], values[i + 2]]
        };
        for (x, y) in [(5, 5), (fr.width - 6, 5), (5, fr.height - 6), (fr.width - 6, fr.height - 6)] {
            assert!(px(x, y).iter().all(|&v| v < 0.05), "corner {x},{y} of {}", f.display());
        }
    }
}

#[test]
fn truth_files_have_a_row_per_eye_and_per_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    generate(dir.path(), 1);
    let eyes = csv_rows(&dir.path().join("truth.csv"));
    let images = csv_rows(&dir.path().join("truth_images.csv"));
    assert_eq!(eyes.len(), 2 * STUDIES);
    assert_eq!(images.len(), 4 * STUDIES);
    for e in &eyes {
        assert!(["R0", "R1", "R2", "R3", "U"].contains(&&e[3]), "{e:?}");
        assert!(["NO_DISEASE", "REVIEW", "UNGRADABLE", "ROUTINE", "URGENT"].contains(&&e[6]), "{e:?}");
    }
    for i in &images {
        assert!(dir.path().join(&i[7]).is_file(), "{}", &i[7]);
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    generate(a.path(), 7);
    generate(b.path(), 7);
    generate(c.path(), 8);
    let (fa, fb) = (dcm_files(a.path()), dcm_files(b.path()));
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(std::fs::read(x).ok(), std::fs::read(y).ok(), "{}", x.display());
    }
    for name in ["truth.csv", "truth_images.csv"] {
        assert_eq!(std::fs::read(a.path().join(name)).ok(), std::fs::read(b.path().join(name)).ok());
        assert_ne!(std::fs::read(a.path().join(name)).ok(), std::fs::read(c.path().join(name)).ok());
    }
}

#[test]
fn refuses_a_folder_with_files_unless_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "keep me").expect("write");
    let mut cfg = SynthConfig::new(1, dir.path(), 1);
    assert!(synth::run(&cfg).is_err());
    cfg.overwrite = true;
    synth::run(&cfg).expect("overwrite run");
    synth::run(&cfg).expect("second overwrite run");
    assert!(dir.path().join("notes.txt").is_file());
    assert_eq!(dcm_files(dir.path()).len(), 4);
}

#[test]
fn an_r3_eye_shows_dark_red_lesions_an_r0_eye_does_not() {
    // The same eye (same seed, so the same anatomy) with and without
    // proliferative disease, photographed identically: R3 must darken
    // clearly more pixels towards dark red (haemorrhages, new vessels).
    use synth::render::{render, Scratch, View};
    use synth::retina::Retina;
    use synth::rng::Rng;
    use synth::study::{Eye, Field};
    let (w, h) = (1600, 1200);
    for seed in 0..4 {
        let shots: Vec<Vec<u8>> = [0u8, 3]
            .iter()
            .map(|&r| {
                let retina = Retina::generate(Eye::Left, r, false, seed);
                let mut rng = Rng::new(99);
                let view = View::new(&retina, Field::Disc, w, h, &mut rng);
                render(&retina, &view, None, &mut rng, w, h, &mut Scratch::default()).to_vec()
            })
            .collect();
        let changed = shots[0]
            .chunks_exact(3)
            .zip(shots[1].chunks_exact(3))
            .filter(|(a, b)| i32::from(a[1]) - i32::from(b[1]) > 20 && b[0] > 2 * b[1])
            .count();
        let share = changed as f64 / f64::from(w * h);
        assert!(share > 0.001, "seed {seed}: only {share:.5} of pixels turned dark red");
    }
}

#[test]
fn pydicom_reads_the_files() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    generate(dir.path(), 1);
    let script = r#"
import sys, pathlib, pydicom
files = sorted(pathlib.Path(sys.argv[1]).rglob('*.dcm'))
assert len(files) == int(sys.argv[2]), len(files)
for f in files:
    ds = pydicom.dcmread(f)
    assert ds.file_meta.TransferSyntaxUID == '1.2.840.10008.1.2.4.50'
    assert ds.SOPClassUID == '1.2.840.10008.5.1.4.1.1.77.1.5.1'
    assert ds.ImageLaterality in ('R', 'L') and ds.SeriesDescription in ('MACULA', 'DISC')
    a = ds.pixel_array
    assert a.shape == (1200, 1600, 3), a.shape
    assert a[0, 0].max() < 10 and a[600, 800, 0] > a[600, 800, 2], (a[0, 0], a[600, 800])
print('ok', len(files))
"#;
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .arg((4 * STUDIES).to_string())
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_photograph_for_a_small_model_is_decoded_at_a_reduced_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    generate(dir.path(), 5);
    let file = &dcm_files(dir.path())[0];
    let full = decode(file);
    let for_384 = || Decoder::new(&DecodeConfig::default()).with_model_inputs(vec![(384, 384)]);
    let reduced = decode_with(file, for_384());
    // 1/4 would leave 300 rows for a 384-row model, so 1/2.
    assert_eq!((reduced.frame.width, reduced.frame.height), (800, 600));
    assert_eq!((reduced.meta.width, reduced.meta.height), (1600, 1200), "the image's own size is recorded");
    assert_eq!((full.frame.width, full.frame.height), (1600, 1200));
    // The same picture: each channel's mean within one grey level of 255.
    let means = |f: &nightscreen::message::Frame| -> Vec<f64> {
        let values = f.values();
        (0..3)
            .map(|c| values.iter().skip(c).step_by(3).map(|&v| f64::from(v)).sum::<f64>() / (values.len() / 3) as f64)
            .collect()
    };
    for (a, b) in means(&full.frame).iter().zip(means(&reduced.frame)) {
        assert!((a - b).abs() < 1.0 / 255.0, "channel mean {a} vs {b}");
    }
    let off = DecodeConfig { reduce_jpeg: false, ..DecodeConfig::default() };
    let not_reduced = decode_with(file, Decoder::new(&off).with_model_inputs(vec![(384, 384)]));
    assert_eq!((not_reduced.frame.width, not_reduced.frame.height), (1600, 1200));
}
