//! The SR's content tree, TID 1500 (Measurement Report) as the IHE AI
//! Results profile uses it: language, the device observer, the procedure,
//! the image library, one TID 1501 measurement group per finding (per eye
//! under DESP, each with TID 4019 algorithm identification, finding site
//! and laterality, the grade as codes, the probabilities behind it and its
//! source images) and the study-level qualitative evaluations (band,
//! reason, limitation, shadow).

use dicom_object::InMemDicomObject;

use super::codes::{dcm, no_units, sct, Code, Local};
use super::evidence::ImageEvidence;
use super::items::{code_item, container, image, num, template, text, uidref, with_children, Rel};
use super::uids::tracking_uid;
use super::Report;
use crate::dicom::laterality::Laterality;
use crate::triage::desp::EyeOutcome;
use crate::triage::StudyDetail;

/// What a shadow run's SR says in its content.
pub const SHADOW_TEXT: &str = "SHADOW run: recorded beside human graders, not for clinical use";
/// The limitation every document states when a model is not for clinical use.
pub const NOT_FOR_CLINICAL_USE: &str = "not for clinical use: the model card does not validate it for clinical use";

/// The root container's children.
pub fn tree(r: &Report<'_>) -> Vec<InMemDicomObject> {
    let local = Local { scheme: &r.cfg.scheme.designator };
    let mut out = vec![
        code_item(
            Rel::HasConceptMod,
            &dcm("121049", "Language of Content Item and Descendants"),
            &Code::new("en-GB", "RFC5646", "English (United Kingdom)"),
        ),
        code_item(Rel::HasObsContext, &dcm("121005", "Observer Type"), &dcm("121007", "Device")),
        uidref(Rel::HasObsContext, &dcm("121012", "Device Observer UID"), r.device_uid),
        text(Rel::HasObsContext, &dcm("121013", "Device Observer Name"), "nightscreen"),
        text(Rel::HasObsContext, &dcm("121014", "Device Observer Manufacturer"), "nightscreen"),
        text(Rel::HasObsContext, &dcm("121015", "Device Observer Model Name"), &r.software()),
        code_item(Rel::HasConceptMod, &dcm("121058", "Procedure reported"), &r.cfg.procedure),
        image_library(r.images.iter().filter(|i| is_image_class(&i.sop_class_uid))),
        container(Rel::Contains, &dcm("126010", "Imaging Measurements"), groups(r, &local)),
    ];
    out.push(container(
        Rel::Contains,
        &Code::new("C0034375", "UMLS", "Qualitative Evaluations"),
        evaluations(r, &local),
    ));
    out
}

/// Storage classes with pixel data that DICOM does not count as images
/// (an IMAGE item may not reference them; DCMTK refuses it): they stay in
/// the evidence sequence but out of IMAGE items.
const NOT_IMAGE_STORAGE: &[&str] = &[
    // RT Dose: a dose grid, which the fixture models score like any pixels.
    "1.2.840.10008.5.1.4.1.1.481.2",
];

fn is_image_class(sop_class_uid: &str) -> bool {
    !NOT_IMAGE_STORAGE.contains(&sop_class_uid)
}

fn image_library<'i>(images: impl Iterator<Item = &'i ImageEvidence>) -> InMemDicomObject {
    let pixels = Code::new("{pixels}", "UCUM", "Pixels");
    let entries = images
        .map(|img| {
            let mut context = Vec::new();
            if let Some(modality) = modality_code(&img.modality) {
                context.push(code_item(Rel::HasAcqContext, &dcm("121139", "Modality"), &modality));
            }
            if let Some(side) = laterality_code(img.laterality) {
                context.push(code_item(Rel::HasAcqContext, &dcm("111027", "Image Laterality"), &side));
            }
            context.push(num(Rel::HasAcqContext, &dcm("110910", "Pixel Data Rows"), f64::from(img.rows), &pixels));
            context.push(num(
                Rel::HasAcqContext,
                &dcm("110911", "Pixel Data Columns"),
                f64::from(img.columns),
                &pixels,
            ));
            with_children(image(Rel::Contains, &sct("260753009", "Source"), img), context)
        })
        .collect();
    let group = container(Rel::Contains, &dcm("126200", "Image Library Group"), entries);
    container(Rel::Contains, &dcm("111028", "Image Library"), vec![group])
}

/// The DICOM code of the modalities nightscreen screens (CID 29).
fn modality_code(modality: &str) -> Option<Code> {
    let meaning = match modality {
        "OP" => "Ophthalmic Photography",
        "XC" => "External-camera Photography",
        "CR" => "Computed Radiography",
        "DX" => "Digital Radiography",
        "MG" => "Mammography",
        "CT" => "Computed Tomography",
        "MR" => "Magnetic Resonance",
        "US" => "Ultrasound",
        "OPT" => "Ophthalmic Tomography",
        "SM" => "Slide Microscopy",
        _ => return None,
    };
    Some(dcm(modality, meaning))
}

fn laterality_code(eye: Laterality) -> Option<Code> {
    match eye {
        Laterality::Right => Some(sct("24028007", "Right")),
        Laterality::Left => Some(sct("7771000", "Left")),
        _ => None,
    }
}

/// TID 4019 for one group: each model of the run, with the config and software.
fn algorithm(r: &Report<'_>) -> Vec<InMemDicomObject> {
    let mut out = Vec::new();
    for model in r.models {
        out.push(text(Rel::HasConceptMod, &dcm("111001", "Algorithm Name"), &model.id));
        out.push(text(Rel::HasConceptMod, &dcm("111003", "Algorithm Version"), &model.version));
        let parameter = dcm("111002", "Algorithm Parameters");
        out.push(text(Rel::HasConceptMod, &parameter, &format!("model_sha256={}", model.sha256)));
        out.push(text(Rel::HasConceptMod, &parameter, &format!("config_sha256={}", r.run.config_sha256)));
        out.push(text(Rel::HasConceptMod, &parameter, &format!("software_version={}", r.run.software_version)));
    }
    out
}

/// Tracking identifier, its UID and the finding: a group's first items.
fn group_head(r: &Report<'_>, identifier: &str, finding: &Code) -> Vec<InMemDicomObject> {
    vec![
        text(Rel::HasObsContext, &dcm("112039", "Tracking Identifier"), identifier),
        uidref(
            Rel::HasObsContext,
            &dcm("112040", "Tracking Unique Identifier"),
            &tracking_uid(&r.uids.instance, identifier),
        ),
        code_item(Rel::Contains, &dcm("121071", "Finding"), finding),
    ]
}

fn group(children: Vec<InMemDicomObject>) -> InMemDicomObject {
    let mut g = container(Rel::Contains, &dcm("125007", "Measurement Group"), Vec::new());
    template(&mut g, "1501");
    with_children(g, children)
}

fn sources<'i>(images: impl Iterator<Item = &'i ImageEvidence>) -> Vec<InMemDicomObject> {
    images.filter(|i| is_image_class(&i.sop_class_uid)).map(source_of_measurement).collect()
}

fn source_of_measurement(img: &ImageEvidence) -> InMemDicomObject {
    image(Rel::Contains, &dcm("121112", "Source of Measurement"), img)
}

fn groups(r: &Report<'_>, local: &Local<'_>) -> Vec<InMemDicomObject> {
    match &r.study.detail {
        StudyDetail::Desp { right, left } => [(Laterality::Right, right), (Laterality::Left, left)]
            .into_iter()
            .filter_map(|(eye, outcome)| outcome.as_ref().map(|o| eye_group(r, local, eye, o)))
            .collect(),
        StudyDetail::None => rule_group(r, local).into_iter().collect(),
    }
}

/// One eye's DESP group (TID 1501).
fn eye_group(r: &Report<'_>, local: &Local<'_>, eye: Laterality, outcome: &EyeOutcome) -> InMemDicomObject {
    let identifier = if eye == Laterality::Right { "right eye" } else { "left eye" };
    let mut items = group_head(r, identifier, &local.dr_finding());
    let mut site = code_item(Rel::HasConceptMod, &sct("363698007", "Finding Site"), &sct("81745001", "Eye"));
    if let Some(side) = laterality_code(eye) {
        site = with_children(site, vec![code_item(Rel::HasConceptMod, &sct("272741003", "Laterality"), &side)]);
    }
    items.push(site);
    items.extend(algorithm(r));
    let probs = &outcome.probs;
    for (value, name) in [
        (probs.referable, local.code("P_REFERABLE", "Model probability of referable retinopathy")),
        (probs.r3, local.code("P_R3", "Model probability of R3")),
        (probs.m1, local.code("P_M1", "Model probability of M1")),
        (outcome.p_gradable(), local.code("P_GRADABLE", "Model probability the eye is gradable")),
    ] {
        if let Some(p) = value {
            items.push(num(Rel::Contains, &name, f64::from(p), &no_units()));
        }
    }
    let (retinopathy, maculopathy) = r.cfg.grades.of(outcome.grade);
    items.push(code_item(Rel::Contains, &local.retinopathy_grade(), retinopathy));
    items.push(code_item(Rel::Contains, &local.maculopathy_grade(), maculopathy));
    items.extend(sources(r.images.iter().filter(|i| i.laterality == eye)));
    group(items)
}

/// Rules mode: one group for the rule that placed the study, if one did.
fn rule_group(r: &Report<'_>, local: &Local<'_>) -> Option<InMemDicomObject> {
    let score = r.study.score?;
    // The hit the book placed the study by: its band and value.
    let placed = r
        .images
        .iter()
        .flat_map(|i| &i.hits)
        .filter(|h| h.band == r.study.band && h.value == score)
        .min_by(|a, b| (&a.finding, &a.label).cmp(&(&b.finding, &b.label)))?;
    let finding = local.code(&short_code("F", &placed.finding), &meaning(&placed.finding));
    let mut items = group_head(r, "study finding", &finding);
    items.extend(algorithm(r));
    let output = local.code(&short_code("O", &placed.label), &meaning(&format!("Model output {}", placed.label)));
    items.push(num(Rel::Contains, &output, f64::from(placed.value), &no_units()));
    let threshold = local.code(&short_code("T", &placed.label), &meaning(&format!("Threshold of {}", placed.label)));
    items.push(num(Rel::Contains, &threshold, f64::from(placed.threshold), &no_units()));
    items.extend(sources(
        r.images.iter().filter(|i| i.hits.iter().any(|h| h.finding == placed.finding && h.label == placed.label)),
    ));
    Some(group(items))
}

/// A local code value for free text (a rule's finding or label): a letter
/// and 10 hex digits of its SHA-256, within SH's 16 characters.
fn short_code(prefix: &str, text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!("{prefix}{}", &hex::encode(digest)[..10])
}

/// Text as a CodeMeaning: LO, at most 64 characters, no backslash.
fn meaning(text: &str) -> String {
    text.chars().map(|c| if c == '\\' || c.is_control() { ' ' } else { c }).take(64).collect()
}

fn evaluations(r: &Report<'_>, local: &Local<'_>) -> Vec<InMemDicomObject> {
    // A band name is its own code when it can be one (the DESP bands can).
    let simple = r.band_name.len() <= 16 && r.band_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let value = if simple && !r.band_name.is_empty() { r.band_name.to_string() } else { short_code("B", r.band_name) };
    let band = local.code(&value, &meaning(r.band_name));
    let mut out =
        vec![code_item(Rel::Contains, &local.band(), &band), text(Rel::Contains, &local.reason(), &r.study.reason)];
    if r.not_for_clinical_use {
        out.push(text(Rel::Contains, &local.limitation(), NOT_FOR_CLINICAL_USE));
    }
    if r.shadow {
        out.push(text(Rel::Contains, &local.shadow(), SHADOW_TEXT));
    }
    out
}
