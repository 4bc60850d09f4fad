//! Which eye (or side) an image shows, and which fundus field: parsed once
//! at ingest from the header's text, so no later stage compares strings.
//!
//! Each type serialises as the text the tables have always carried ("R",
//! "L", "B", "" and "macula", "disc", ""), so a column or an index written
//! from it reads exactly as before.

use std::fmt;

use serde::{Deserialize, Serialize};

/// ImageLaterality (0020,0062), else Laterality (0020,0060).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Laterality {
    #[serde(rename = "R")]
    Right,
    #[serde(rename = "L")]
    Left,
    #[serde(rename = "B")]
    Both,
    /// Absent, empty, or a value DICOM does not define.
    #[default]
    #[serde(rename = "")]
    Unknown,
}

impl Laterality {
    /// The header's code string ("R", "L", "B"; anything else is unknown).
    pub fn parse(code: &str) -> Self {
        match code.trim() {
            "R" => Self::Right,
            "L" => Self::Left,
            "B" => Self::Both,
            _ => Self::Unknown,
        }
    }

    /// The DICOM code: "R", "L", "B", or "" when unknown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Right => "R",
            Self::Left => "L",
            Self::Both => "B",
            Self::Unknown => "",
        }
    }

    /// For a reason or a caption: "right eye", "left eye", "both eyes", or
    /// `None` when the header did not say.
    pub fn eye_words(self) -> Option<&'static str> {
        match self {
            Self::Right => Some("right eye"),
            Self::Left => Some("left eye"),
            Self::Both => Some("both eyes"),
            Self::Unknown => None,
        }
    }

    /// The order graders read a study in: right, left, then the rest.
    pub fn reading_order(self) -> u8 {
        match self {
            Self::Right => 0,
            Self::Left => 1,
            Self::Both | Self::Unknown => 2,
        }
    }
}

impl fmt::Display for Laterality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fundus field a retinal photograph is centred on, when the header
/// says (ingest reads it from the comments and descriptions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FundusField {
    #[serde(rename = "macula")]
    Macula,
    #[serde(rename = "disc")]
    Disc,
    #[default]
    #[serde(rename = "")]
    Unknown,
}

impl FundusField {
    /// "macula", "disc", or "" when unknown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Macula => "macula",
            Self::Disc => "disc",
            Self::Unknown => "",
        }
    }

    /// Macula before disc, then the rest: the order graders read.
    pub fn reading_order(self) -> u8 {
        match self {
            Self::Macula => 0,
            Self::Disc => 1,
            Self::Unknown => 2,
        }
    }
}

impl fmt::Display for FundusField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laterality_parses_the_dicom_codes_and_writes_them_back() {
        for (code, side) in [("R", Laterality::Right), ("L", Laterality::Left), ("B", Laterality::Both)] {
            assert_eq!(Laterality::parse(code), side);
            assert_eq!(side.as_str(), code);
        }
        for other in ["", "U", "r", "LEFT"] {
            assert_eq!(Laterality::parse(other), Laterality::Unknown, "{other:?}");
        }
        assert_eq!(Laterality::Unknown.as_str(), "");
        assert_eq!(Laterality::Left.eye_words(), Some("left eye"));
        assert_eq!(Laterality::Unknown.eye_words(), None);
    }

    #[test]
    fn serde_form_is_the_text_the_tables_carry() {
        let json = serde_json::to_string(&[Laterality::Right, Laterality::Unknown]).expect("json");
        assert_eq!(json, r#"["R",""]"#);
        let json =
            serde_json::to_string(&[FundusField::Macula, FundusField::Disc, FundusField::Unknown]).expect("json");
        assert_eq!(json, r#"["macula","disc",""]"#);
        let back: Vec<FundusField> = serde_json::from_str(&json).expect("back");
        assert_eq!(back, [FundusField::Macula, FundusField::Disc, FundusField::Unknown]);
    }
}
