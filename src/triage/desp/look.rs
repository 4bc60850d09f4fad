//! R3 with a second look: the DR card's `[second_look]` companion (new
//! vessels at a larger input) decides the band of p(r3) where the DR model
//! alone cannot tell R3 from R2 without calling most R2 eyes R3.

use serde::{Deserialize, Serialize};

use crate::message::LookAnswer;

/// `[triage.desp.r3_second_look]`: an image whose p(r3) is at least `from`
/// but below `r3_at_least` is looked at again; it is R3 when the look's
/// probability reaches `at_least`, and also when the look could not be
/// made (the finding was not ruled out).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct R3SecondLook {
    pub from: f32,
    pub at_least: f32,
}

/// What the second look said of one image, as its grade keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Looked {
    /// The companion's probability of the finding.
    Scored(f32),
    /// No answer: the look failed, or never came.
    NoAnswer,
}

impl R3SecondLook {
    /// Whether p(r3) falls where the second look decides.
    pub fn in_band(&self, p3: f32, r3_at_least: f32) -> bool {
        p3 >= self.from && p3 < r3_at_least
    }

    /// For an image in the band: what the look said, and whether it makes
    /// the image R3.
    pub fn decide(&self, answer: Option<&LookAnswer>) -> (Looked, bool) {
        match answer {
            Some(LookAnswer::Scored(p)) => (Looked::Scored(*p), *p >= self.at_least),
            Some(LookAnswer::Failed(_)) | None => (Looked::NoAnswer, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_look_decides_only_inside_its_band_and_no_answer_is_not_a_no() {
        let rule = R3SecondLook { from: 0.05, at_least: 0.4 };
        assert!(!rule.in_band(0.04, 0.5) && rule.in_band(0.05, 0.5) && !rule.in_band(0.5, 0.5));
        assert_eq!(rule.decide(Some(&LookAnswer::Scored(0.41))), (Looked::Scored(0.41), true));
        assert_eq!(rule.decide(Some(&LookAnswer::Scored(0.39))), (Looked::Scored(0.39), false));
        assert_eq!(rule.decide(Some(&LookAnswer::Failed("gone".into()))), (Looked::NoAnswer, true));
        assert_eq!(rule.decide(None), (Looked::NoAnswer, true));
    }
}
