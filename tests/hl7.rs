//! HL7 v2.4 ORU^R01 results (issue 15, item 4): synthetic studies through
//! the real binary with `configs/desp.toml` plus `[sinks] hl7 = true` and an
//! `[hl7]` table; every message validated by hl7apy 1.3.5 in strict mode
//! (`tests/check_hl7.py`) and its values equal to the studies table.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use nightscreen::privacy::Kind;

use crate::fhir::{close, files, run, studies_by_pseudonym, validate, validator_python};
use crate::util::{onnxruntime, read_table, root, strings, test_key, testdata};

/// `configs/NAME` with HL7 on and our facility names, written into `dir`;
/// models found from the checkout.
fn config_with_hl7(name: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("configs").join(name)).expect("config");
    let models = root().join("models");
    let text = text
        .replace("models_dir = \"../models\"", &format!("models_dir = {:?}", models.display().to_string()))
        .replace("[sinks]\n", "[sinks]\nhl7 = true\n");
    assert!(text.contains("hl7 = true"), "{name} has a [sinks] table");
    let text = format!(
        "{text}\n[hl7]\nsending_facility = \"RXH-DESP\"\nreceiving_application = \"CRIS\"\nreceiving_facility = \"RXH\"\n"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// An HL7 v2 value with the five escapes undone.
fn unescape(value: &str) -> String {
    value.replace("\\F\\", "|").replace("\\S\\", "^").replace("\\R\\", "~").replace("\\T\\", "&").replace("\\E\\", "\\")
}

/// Segments as field lists (`fields[0]` is the segment name; for MSH,
/// `fields[n]` is MSH-(n+1) as the separator is MSH-1).
fn segments(message: &str) -> Vec<Vec<&str>> {
    message.split('\r').filter(|s| !s.is_empty()).map(|s| s.split('|').collect()).collect()
}

/// The worklist's patient id and accession by study pseudonym.
fn worklist_identifiers(out: &Path) -> HashMap<String, (String, String)> {
    let mut reader = csv::Reader::from_path(out.join("worklist.csv")).expect("worklist.csv");
    let headers = reader.headers().expect("header").clone();
    let at = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (uid, patient, accession) = (at("study_uid"), at("patient_id"), at("accession_number"));
    reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            let pseudonym = test_key().pseudonym(Kind::Study, &r[uid]).expect("pseudonym");
            (pseudonym, (r[patient].to_string(), r[accession].to_string()))
        })
        .collect()
}

#[test]
fn every_oru_validates_strictly_and_says_what_the_studies_table_says() {
    let Some(py) = validator_python() else { return };
    let Some(_) = onnxruntime() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    run(&config_with_hl7("desp.toml", dir.path()), &out, &[]);
    let messages = files(&out.join("hl7"), "hl7");
    validate(&py, "check_hl7.py", &messages);

    let studies = studies_by_pseudonym(&out);
    let identifiers = worklist_identifiers(&out);
    assert_eq!(messages.len(), studies.len(), "one message per study");
    let mut control_ids = HashSet::new();
    for path in &messages {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        let row = studies.get(&name).unwrap_or_else(|| panic!("{name}: not a study pseudonym of the studies table"));
        let text = std::fs::read_to_string(path).expect("read message");
        let segs = segments(&text);
        let names: Vec<&str> = segs.iter().map(|s| s[0]).collect();
        assert_eq!(&names[..3], ["MSH", "PID", "OBR"], "{name}");
        assert!(names[3..].iter().all(|n| *n == "OBX"), "{name}: {names:?}");
        let msh = &segs[0];
        assert_eq!((msh[3], msh[4], msh[5]), ("RXH-DESP", "CRIS", "RXH"), "{name}: MSH-4..6 from [hl7]");
        assert_eq!((msh[8], msh[10], msh[11]), ("ORU^R01^ORU_R01", "P", "2.4"), "{name}");
        assert!(msh[9].len() <= 20 && control_ids.insert(msh[9].to_string()), "{name}: control id {}", msh[9]);
        let (patient_id, accession) = &identifiers[&name];
        assert_eq!(segs[1][3], format!("{patient_id}^^^NIGHTSCREEN^MR"), "{name}: not an NHS number, so MR");
        assert_eq!((segs[2][3], segs[2][25]), (accession.as_str(), "P"), "{name}: OBR-3, OBR-25");

        let obx: HashMap<&str, &Vec<&str>> =
            segs[3..].iter().map(|s| (s[3].split('^').next().unwrap_or_default(), s)).collect();
        assert!(segs[3..].iter().all(|s| s[11] == "P"), "{name}: every OBX-11 is P");
        assert_eq!(obx["BAND"][2], "ST");
        assert_eq!(unescape(obx["BAND"][5]), row.band, "{name}");
        assert_eq!((obx["REASON"][2], unescape(obx["REASON"][5])), ("TX", row.reason.clone()), "{name}");
        let provenance = unescape(obx["PROVENANCE"][5]);
        assert!(provenance.contains("Made by a machine") && provenance.contains("not verified"), "{provenance}");
        assert!(!provenance.contains("SHADOW"), "not a shadow run");
        for (suffix, eye) in [("R", &row.eyes[0]), ("L", &row.eyes[1])] {
            let grade = obx.get(format!("DESP-GRADE-{suffix}").as_str());
            let Some((table_grade, probs)) = eye else {
                assert!(grade.is_none(), "{name}: no {suffix} eye in the table, none in the message");
                continue;
            };
            let grade = grade.unwrap_or_else(|| panic!("{name}: no DESP-GRADE-{suffix}"));
            assert_eq!(grade[2], "CE");
            assert_eq!(grade[5].split('^').next(), Some(table_grade.as_str()), "{name} {suffix}");
            for (code, table) in ["P-REFERABLE", "P-R3", "P-M1", "P-GRADABLE"].into_iter().zip(probs) {
                match obx.get(format!("{code}-{suffix}").as_str()) {
                    Some(seg) => {
                        assert_eq!((seg[2], seg[6]), ("NM", "1^^UCUM"));
                        close(seg[5].parse().expect("NM value"), *table, &format!("{name} {code}-{suffix}"));
                    }
                    None => assert!(table.is_none(), "{name}: {code}-{suffix} in the table but not the message"),
                }
            }
        }
    }
}

/// pydicom's test files, hostile headers included (no StudyInstanceUID,
/// odd characters, empty PatientID): every document written validates, a
/// study without one is one that cannot have one, and the run goes on.
#[test]
fn hostile_fixtures_get_valid_documents_or_none_and_the_run_goes_on() {
    let Some(py) = validator_python() else { return };
    let Some(data) = testdata() else { return };
    let Some(_) = onnxruntime() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let run = nightscreen_run(
        &config_with_hl7("fixtures.toml", dir.path()),
        &out,
        &[data.join("pydicom"), data.join("pydicom-data")],
    );
    let code = run.status.code();
    assert!(matches!(code, Some(0 | 1)), "the run must finish (exit 0 or 1), got {code:?}");
    let (bundles, messages) = (files(&out.join("fhir"), "json"), files(&out.join("hl7"), "hl7"));
    validate(&py, "check_fhir.py", &bundles);
    validate(&py, "check_hl7.py", &messages);
    let stem = |p: &std::path::PathBuf| p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let with_fhir: HashSet<String> = bundles.iter().map(stem).collect();
    let with_hl7: HashSet<String> = messages.iter().map(stem).collect();
    assert_eq!(with_fhir, with_hl7, "the same studies get both documents");
    let t = read_table(&out, "studies");
    let (studies, patients) = (strings(&t, "study_pseudonym"), strings(&t, "patient_pseudonym"));
    let could: HashSet<String> = studies.iter().zip(&patients).filter_map(|(s, p)| p.as_ref().and(s.clone())).collect();
    assert!(with_fhir.is_subset(&could), "a document for a study without a UID or PatientID");
    let stderr = String::from_utf8_lossy(&run.stderr);
    if with_fhir.len() < studies.len() {
        assert!(stderr.contains("got no FHIR bundle: "), "studies without a bundle are logged with the reason");
    }
    assert!(
        with_fhir.len() * 2 > studies.len(),
        "most fixture studies get a document: {} of {}",
        with_fhir.len(),
        studies.len()
    );
}

fn nightscreen_run(config: &Path, out: &Path, inputs: &[std::path::PathBuf]) -> std::process::Output {
    let mut cmd = crate::util::nightscreen();
    cmd.args(["run", "--config"]).arg(config).arg("--out").arg(out);
    for input in inputs {
        cmd.arg("--input").arg(input);
    }
    cmd.output().expect("run nightscreen")
}
