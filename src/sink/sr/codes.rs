//! The codes an SR is written with: DICOM (DCM), SNOMED CT (SCT) and UCUM
//! codes from PS3.16, and the programme's local scheme for what no standard
//! code exists for (DESP grades, the worklist band): `99NSDESP` by default,
//! declared in the document's CodingSchemeIdentificationSequence. The
//! grades and the procedure are configurable (`[sr]`), so a programme can
//! map them to SNOMED CT UK concepts once its clinical safety officer has
//! chosen them.

use serde::{Deserialize, Serialize};

use crate::triage::desp::{Grade, RGrade};

/// One coded concept: CodeValue, CodingSchemeDesignator, CodeMeaning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Self { value: value.into(), scheme: scheme.into(), meaning: meaning.into() }
    }

    /// What DICOM refuses in this code (SH value and scheme ≤ 16
    /// characters, LO meaning ≤ 64, none empty, no backslash).
    fn problems(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (what, text, max) in
            [("value", &self.value, 16), ("scheme", &self.scheme, 16), ("meaning", &self.meaning, 64)]
        {
            let n = text.chars().count();
            if n == 0 || n > max || text.contains('\\') || text.chars().any(char::is_control) {
                out.push(format!("sr: {name} {what} {text:?} must be 1–{max} characters without a backslash"));
            }
        }
        out
    }
}

pub(super) fn dcm(value: &str, meaning: &str) -> Code {
    Code::new(value, "DCM", meaning)
}

pub(super) fn sct(value: &str, meaning: &str) -> Code {
    Code::new(value, "SCT", meaning)
}

/// UCUM "1": a probability has no unit.
pub(super) fn no_units() -> Code {
    Code::new("1", "UCUM", "no units")
}

/// The local coding scheme, as CodingSchemeIdentificationSequence declares it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalScheme {
    /// The designator the local codes use. Default: "99NSDESP".
    pub designator: String,
    /// Default: "nightscreen DESP grading".
    pub name: String,
    /// Who is responsible for it. Default: "nightscreen project".
    pub responsible_organization: String,
}

impl Default for LocalScheme {
    fn default() -> Self {
        Self {
            designator: "99NSDESP".into(),
            name: "nightscreen DESP grading".into(),
            responsible_organization: "nightscreen project".into(),
        }
    }
}

/// The coded value of each DESP grade (`[sr.grades]`): retinopathy R0–R3,
/// maculopathy M0/M1, ungradable U, and not graded because the image was
/// outside the model's domain (OOD).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradeCodes {
    pub r0: Code,
    pub r1: Code,
    pub r2: Code,
    pub r3: Code,
    pub m0: Code,
    pub m1: Code,
    pub u: Code,
    pub ood: Code,
}

impl Default for GradeCodes {
    fn default() -> Self {
        let local = |v: &str, m: &str| Code::new(v, "99NSDESP", m);
        Self {
            r0: local("R0", "R0 no retinopathy"),
            r1: local("R1", "R1 background retinopathy"),
            r2: local("R2", "R2 pre-proliferative retinopathy"),
            r3: local("R3", "R3 proliferative retinopathy"),
            m0: local("M0", "M0 no maculopathy"),
            m1: local("M1", "M1 maculopathy"),
            u: local("U", "U ungradable"),
            ood: local("OOD", "OOD not graded: outside the model's domain"),
        }
    }
}

impl GradeCodes {
    /// The retinopathy and maculopathy codes of an eye's grade (both U when
    /// it is ungradable, both OOD when it was outside the model's domain).
    pub fn of(&self, grade: Grade) -> (&Code, &Code) {
        match grade {
            Grade::Ungradable => (&self.u, &self.u),
            Grade::OutOfDomain => (&self.ood, &self.ood),
            Grade::Graded { r, m1 } => {
                let r = match r {
                    RGrade::R0 => &self.r0,
                    RGrade::R1 => &self.r1,
                    RGrade::R2 => &self.r2,
                    RGrade::R3 => &self.r3,
                };
                (r, if m1 { &self.m1 } else { &self.m0 })
            }
        }
    }

    pub(super) fn problems(&self) -> Vec<String> {
        [
            ("grades.r0", &self.r0),
            ("grades.r1", &self.r1),
            ("grades.r2", &self.r2),
            ("grades.r3", &self.r3),
            ("grades.m0", &self.m0),
            ("grades.m1", &self.m1),
            ("grades.u", &self.u),
            ("grades.ood", &self.ood),
        ]
        .into_iter()
        .flat_map(|(name, code)| code.problems(name))
        .collect()
    }
}

/// The local concepts (names of items) the SR uses, in `scheme`.
pub(super) struct Local<'a> {
    pub scheme: &'a str,
}

impl Local<'_> {
    pub fn code(&self, value: &str, meaning: &str) -> Code {
        Code::new(value, self.scheme, meaning)
    }

    pub fn dr_finding(&self) -> Code {
        self.code("DR", "Diabetic retinopathy (DESP grading)")
    }

    pub fn retinopathy_grade(&self) -> Code {
        self.code("RG", "Retinopathy grade")
    }

    pub fn maculopathy_grade(&self) -> Code {
        self.code("MG", "Maculopathy grade")
    }

    pub fn band(&self) -> Code {
        self.code("BAND", "Worklist band")
    }

    pub fn reason(&self) -> Code {
        self.code("REASON", "Reason for the band")
    }

    pub fn limitation(&self) -> Code {
        self.code("LIMITATION", "Limitation of use")
    }

    pub fn shadow(&self) -> Code {
        self.code("SHADOW", "Shadow run")
    }
}

/// Checks the configured codes (part of `Config::validate`).
pub(super) fn problems(procedure: &Code, scheme: &LocalScheme, grades: &GradeCodes) -> Vec<String> {
    let mut out = procedure.problems("procedure");
    let n = scheme.designator.chars().count();
    if n == 0 || n > 16 || scheme.designator.contains('\\') {
        out.push(format!("sr: scheme.designator {:?} must be 1–16 characters", scheme.designator));
    }
    out.extend(grades.problems());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_grade_maps_to_its_retinopathy_and_maculopathy_codes() {
        let codes = GradeCodes::default();
        let (r, m) = codes.of(Grade::Graded { r: RGrade::R3, m1: false });
        assert_eq!((r.value.as_str(), m.value.as_str()), ("R3", "M0"));
        let (r, m) = codes.of(Grade::Graded { r: RGrade::R1, m1: true });
        assert_eq!((r.value.as_str(), m.value.as_str()), ("R1", "M1"));
        let (r, m) = codes.of(Grade::Ungradable);
        assert_eq!((r.value.as_str(), m.value.as_str()), ("U", "U"));
        let (r, m) = codes.of(Grade::OutOfDomain);
        assert_eq!((r.value.as_str(), m.value.as_str()), ("OOD", "OOD"));
    }

    #[test]
    fn default_codes_are_valid_and_bad_ones_are_named() {
        assert!(
            problems(&Code::new("DES", "99NSDESP", "x"), &LocalScheme::default(), &GradeCodes::default()).is_empty()
        );
        let bad = GradeCodes { r2: Code::new("", "99NSDESP", "x"), ..GradeCodes::default() };
        let found = problems(&Code::new("A\\B", "99NSDESP", "x"), &LocalScheme::default(), &bad);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("procedure value") && found[1].contains("grades.r2 value"));
    }
}
