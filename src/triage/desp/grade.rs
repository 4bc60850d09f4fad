//! The DESP grade vocabulary: R0–R3 retinopathy, M0/M1 maculopathy,
//! ungradable, or not graded because the image is outside the model's
//! domain. One type for an image's and an eye's grade, written as
//! "R2M1" / "U" / "OOD" in the tables and the worklist and parsed back from that
//! text by exactly one parser ([`Grade`]'s `FromStr`), which `evaluate`
//! uses to read the studies table.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Retinopathy grade, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RGrade {
    /// No retinopathy.
    R0,
    /// Background retinopathy.
    R1,
    /// Pre-proliferative retinopathy.
    R2,
    /// Proliferative retinopathy.
    R3,
}

impl RGrade {
    /// 0..=3.
    pub fn level(self) -> u8 {
        match self {
            Self::R0 => 0,
            Self::R1 => 1,
            Self::R2 => 2,
            Self::R3 => 3,
        }
    }

    /// The grade of level 0..=3, if it is one.
    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            0 => Some(Self::R0),
            1 => Some(Self::R1),
            2 => Some(Self::R2),
            3 => Some(Self::R3),
            _ => None,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::R0 => "no retinopathy",
            Self::R1 => "background retinopathy",
            Self::R2 => "pre-proliferative retinopathy",
            Self::R3 => "proliferative retinopathy",
        }
    }
}

/// One image's or one eye's DESP grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Grade {
    Graded {
        r: RGrade,
        m1: bool,
    },
    /// No gradable field: the eye must be re-imaged or seen.
    Ungradable,
    /// Not graded: the model's domain gate did not recognise the image (or
    /// every image of the eye) as one the model was made for. Not a
    /// statement about image quality, nor about disease.
    OutOfDomain,
}

impl Grade {
    /// The retinopathy grade of a graded image or eye.
    pub fn retinopathy(self) -> Option<RGrade> {
        match self {
            Self::Graded { r, .. } => Some(r),
            Self::Ungradable | Self::OutOfDomain => None,
        }
    }

    /// M1 on a graded image or eye.
    pub fn maculopathy(self) -> bool {
        matches!(self, Self::Graded { m1: true, .. })
    }

    pub fn is_gradable(self) -> bool {
        matches!(self, Self::Graded { .. })
    }

    /// R2, R3 or M1: the programme's referral threshold.
    pub fn is_referable(self) -> bool {
        self.retinopathy().is_some_and(|r| r >= RGrade::R2) || self.maculopathy()
    }

    /// The grade in words for the grader, e.g. "proliferative retinopathy;
    /// maculopathy".
    pub fn words(self) -> String {
        match self {
            Self::Ungradable => "ungradable".into(),
            Self::OutOfDomain => "not graded: outside the model's domain".into(),
            Self::Graded { r, m1: true } => format!("{}; maculopathy", r.words()),
            Self::Graded { r, m1: false } => format!("{}; no maculopathy", r.words()),
        }
    }
}

impl fmt::Display for Grade {
    /// "R2M1", "R0M0", "U" or "OOD".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Graded { r, m1 } => write!(f, "R{}M{}", r.level(), u8::from(*m1)),
            Self::Ungradable => f.write_str("U"),
            Self::OutOfDomain => f.write_str("OOD"),
        }
    }
}

/// Text that is not a grade [`Grade`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a DESP grade (R0M0–R3M1, U or OOD)")]
pub struct NotAGrade {
    pub text: String,
}

impl FromStr for Grade {
    type Err = NotAGrade;

    /// Exactly what `Display` writes: "R<0-3>M<0|1>", "U" or "OOD".
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || NotAGrade { text: text.to_string() };
        match text {
            "U" => return Ok(Self::Ungradable),
            "OOD" => return Ok(Self::OutOfDomain),
            _ => {}
        }
        let bytes = text.as_bytes();
        let [b'R', r, b'M', m] = bytes else { return Err(fail()) };
        let r = r.checked_sub(b'0').and_then(RGrade::from_level).ok_or_else(fail)?;
        let m1 = match m {
            b'0' => false,
            b'1' => true,
            _ => return Err(fail()),
        };
        Ok(Self::Graded { r, m1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grade_reads_back_from_its_text_and_nothing_else_parses() {
        let mut all = vec![Grade::Ungradable, Grade::OutOfDomain];
        for level in 0..=3 {
            for m1 in [false, true] {
                all.push(Grade::Graded { r: RGrade::from_level(level).expect("level"), m1 });
            }
        }
        for grade in all {
            assert_eq!(grade.to_string().parse::<Grade>(), Ok(grade), "{grade}");
        }
        assert_eq!(Grade::Graded { r: RGrade::R2, m1: true }.to_string(), "R2M1");
        for bad in ["", "u", "ood", "OOD ", "R4M0", "R2M2", "R2", "R2M1 ", "M1", "??", "R2M1x"] {
            assert!(bad.parse::<Grade>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grades_read_as_words_and_know_the_referral_threshold() {
        let r3m1: Grade = "R3M1".parse().expect("grade");
        assert_eq!(r3m1.words(), "proliferative retinopathy; maculopathy");
        assert_eq!(Grade::Ungradable.words(), "ungradable");
        assert_eq!("R0M0".parse::<Grade>().expect("grade").words(), "no retinopathy; no maculopathy");
        assert!(r3m1.is_referable() && "R1M1".parse::<Grade>().expect("grade").is_referable());
        assert!(!"R1M0".parse::<Grade>().expect("grade").is_referable() && !Grade::Ungradable.is_referable());
        assert!(!Grade::OutOfDomain.is_referable() && !Grade::OutOfDomain.is_gradable());
        assert_eq!(Grade::OutOfDomain.retinopathy(), None);
    }
}
