//! PhotometricInterpretation (0028,0004), parsed once.
//!
//! Ingest parses it into `Header.photometric` (routing by model cards and
//! the images table use that); decode parses the object's own value with
//! the same parser. An unknown value is kept as written, so the table
//! shows it exactly as the file had it.

use std::fmt;

/// How the stored samples are to be read as colour or grey.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Photometric {
    Monochrome1,
    Monochrome2,
    PaletteColor,
    Rgb,
    YbrFull,
    YbrFull422,
    /// JPEG 2000 irreversible colour: the codec returns RGB.
    YbrIct,
    /// JPEG 2000 reversible colour: the codec returns RGB.
    YbrRct,
    /// Any other value (empty when the attribute is absent), trimmed.
    Other(String),
}

impl Default for Photometric {
    /// Absent: what a header without the attribute holds.
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl Photometric {
    /// Parses a value as read from a header (NUL/space padding ignored).
    /// Defined terms are matched exactly, as PS3.3 spells them.
    pub fn parse(s: &str) -> Self {
        match s.trim_end_matches(['\0', ' ']).trim() {
            "MONOCHROME1" => Self::Monochrome1,
            "MONOCHROME2" => Self::Monochrome2,
            "PALETTE COLOR" => Self::PaletteColor,
            "RGB" => Self::Rgb,
            "YBR_FULL" => Self::YbrFull,
            "YBR_FULL_422" => Self::YbrFull422,
            "YBR_ICT" => Self::YbrIct,
            "YBR_RCT" => Self::YbrRct,
            other => Self::Other(other.to_string()),
        }
    }

    /// The value as DICOM writes it (an unknown one as it was read).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Monochrome1 => "MONOCHROME1",
            Self::Monochrome2 => "MONOCHROME2",
            Self::PaletteColor => "PALETTE COLOR",
            Self::Rgb => "RGB",
            Self::YbrFull => "YBR_FULL",
            Self::YbrFull422 => "YBR_FULL_422",
            Self::YbrIct => "YBR_ICT",
            Self::YbrRct => "YBR_RCT",
            Self::Other(s) => s,
        }
    }

    /// YBR that decode converts to RGB itself (JPEG 2000's ICT/RCT come
    /// back from the codec as RGB already).
    pub fn is_ybr(&self) -> bool {
        matches!(self, Self::YbrFull | Self::YbrFull422)
    }

    /// The attribute was absent or empty.
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }
}

impl From<String> for Photometric {
    fn from(s: String) -> Self {
        Self::parse(&s)
    }
}

impl From<Photometric> for String {
    fn from(p: Photometric) -> Self {
        match p {
            Photometric::Other(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl fmt::Display for Photometric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_term_round_trips() {
        for term in
            ["MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"]
        {
            let p = Photometric::parse(term);
            assert!(!matches!(p, Photometric::Other(_)), "{term}");
            assert_eq!(p.as_str(), term);
            assert_eq!(String::from(p), term);
        }
    }

    #[test]
    fn padding_is_trimmed_and_unknown_values_are_kept_as_written() {
        assert_eq!(Photometric::parse("RGB\0"), Photometric::Rgb);
        assert_eq!(Photometric::parse("YBR_FULL_422 "), Photometric::YbrFull422);
        assert_eq!(Photometric::parse("HSV").as_str(), "HSV");
        assert_eq!(Photometric::parse("rgb"), Photometric::Other("rgb".into()));
        assert!(Photometric::parse("").is_empty());
        assert!(Photometric::default().is_empty());
        assert!(Photometric::YbrFull.is_ybr() && !Photometric::YbrIct.is_ybr());
    }

    #[test]
    fn serialises_as_the_dicom_value() {
        let json = serde_json::to_string(&vec![Photometric::Rgb, Photometric::parse("HSV")]).expect("json");
        assert_eq!(json, r#"["RGB","HSV"]"#);
        let back: Vec<Photometric> = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, vec![Photometric::Rgb, Photometric::Other("HSV".into())]);
    }
}
