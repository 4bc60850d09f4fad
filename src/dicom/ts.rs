//! Transfer syntaxes, classified once from their UID.
//!
//! Every stage that cares how an object is encoded (the length guard at
//! ingest, decode's codec choice, synth's writer) matches on [`TsKind`]
//! instead of comparing UID strings, so a family (JPEG 2000 with HTJ2K, say)
//! is defined in one place. UIDs come from `dicom_dictionary_std::uids`.

use std::fmt;

use dicom_dictionary_std::uids;

/// A transfer syntax, as far as nightscreen treats them differently.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TsKind {
    ImplicitVrLittleEndian,
    ExplicitVrLittleEndian,
    /// The whole data set is deflated (not the pixel data alone).
    DeflatedExplicitVrLittleEndian,
    ExplicitVrBigEndian,
    /// Native samples, one frame per fragment.
    EncapsulatedUncompressed,
    /// Deflated Image Frame Compression: each frame deflated on its own.
    DeflatedImageFrame,
    /// JPEG Baseline (Process 1), 8 bits.
    JpegBaseline,
    /// JPEG Extended (Process 2 & 4), 8 or 12 bits.
    JpegExtended,
    /// JPEG Lossless, Non-Hierarchical (Process 14).
    JpegLossless,
    /// JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, SV1).
    JpegLosslessSv1,
    JpegLsLossless,
    JpegLsNearLossless,
    Jpeg2000Lossless,
    Jpeg2000,
    /// JPEG 2000 Part 2 multi-component, lossless.
    Jpeg2000McLossless,
    /// JPEG 2000 Part 2 multi-component.
    Jpeg2000Mc,
    Htj2kLossless,
    /// HTJ2K lossless with RPCL progression.
    Htj2kLosslessRpcl,
    Htj2k,
    RleLossless,
    /// Any other UID (trailing padding removed): known to dicom-rs or not.
    Other(String),
}

/// The families of compressed codestreams whose own header decode checks
/// against the DICOM header before a third-party decoder reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codestream {
    /// JPEG 2000 Part 1/Part 2 and HTJ2K: a J2K codestream (SIZ), raw or in JP2.
    Jpeg2000,
    JpegLs,
    JpegLossless,
}

impl Codestream {
    /// The family's name, as error messages give it.
    pub fn label(self) -> &'static str {
        match self {
            Codestream::Jpeg2000 => "JPEG 2000",
            Codestream::JpegLs => "JPEG-LS",
            Codestream::JpegLossless => "JPEG lossless",
        }
    }
}

/// The known syntaxes and their UIDs, the one table both directions use.
// Explicit VR Big Endian is retired, but archives still hold such files.
#[allow(deprecated)]
const KNOWN: [(TsKind, &str); 20] = [
    (TsKind::ImplicitVrLittleEndian, uids::IMPLICIT_VR_LITTLE_ENDIAN),
    (TsKind::ExplicitVrLittleEndian, uids::EXPLICIT_VR_LITTLE_ENDIAN),
    (TsKind::DeflatedExplicitVrLittleEndian, uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
    (TsKind::ExplicitVrBigEndian, uids::EXPLICIT_VR_BIG_ENDIAN),
    (TsKind::EncapsulatedUncompressed, uids::ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN),
    (TsKind::DeflatedImageFrame, uids::DEFLATED_IMAGE_FRAME_COMPRESSION),
    (TsKind::JpegBaseline, uids::JPEG_BASELINE8_BIT),
    (TsKind::JpegExtended, uids::JPEG_EXTENDED12_BIT),
    (TsKind::JpegLossless, uids::JPEG_LOSSLESS),
    (TsKind::JpegLosslessSv1, uids::JPEG_LOSSLESS_SV1),
    (TsKind::JpegLsLossless, uids::JPEGLS_LOSSLESS),
    (TsKind::JpegLsNearLossless, uids::JPEGLS_NEAR_LOSSLESS),
    (TsKind::Jpeg2000Lossless, uids::JPEG2000_LOSSLESS),
    (TsKind::Jpeg2000, uids::JPEG2000),
    (TsKind::Jpeg2000McLossless, uids::JPEG2000MC_LOSSLESS),
    (TsKind::Jpeg2000Mc, uids::JPEG2000MC),
    (TsKind::Htj2kLossless, uids::HTJ2K_LOSSLESS),
    (TsKind::Htj2kLosslessRpcl, uids::HTJ2K_LOSSLESS_RPCL),
    (TsKind::Htj2k, uids::HTJ2K),
    (TsKind::RleLossless, uids::RLE_LOSSLESS),
];

impl TsKind {
    /// Classifies a TransferSyntaxUID as read from a header (trailing NUL
    /// and whitespace padding ignored, as dicom-rs does).
    pub fn from_uid(uid: &str) -> Self {
        let uid = uid.trim_end_matches(|c: char| c == '\0' || c.is_whitespace());
        KNOWN
            .iter()
            .find(|(_, known)| *known == uid)
            .map(|(kind, _)| kind.clone())
            .unwrap_or_else(|| TsKind::Other(uid.to_string()))
    }

    /// The UID this kind stands for.
    pub fn uid(&self) -> &str {
        match self {
            TsKind::Other(uid) => uid,
            kind => KNOWN.iter().find(|(known, _)| known == kind).map_or("", |(_, uid)| uid),
        }
    }

    /// Samples stored as they are, in the data set's byte order (the
    /// deflated syntax is inflated on read).
    pub fn is_native(&self) -> bool {
        matches!(
            self,
            TsKind::ImplicitVrLittleEndian
                | TsKind::ExplicitVrLittleEndian
                | TsKind::DeflatedExplicitVrLittleEndian
                | TsKind::ExplicitVrBigEndian
        )
    }

    /// JPEG 2000, including HTJ2K: one family for size, bit-depth and
    /// colour decisions.
    pub fn is_jpeg2000(&self) -> bool {
        self.codestream() == Some(Codestream::Jpeg2000)
    }

    pub fn is_jpeg_ls(&self) -> bool {
        self.codestream() == Some(Codestream::JpegLs)
    }

    /// The codestream family whose header decode checks, if any.
    pub fn codestream(&self) -> Option<Codestream> {
        match self {
            TsKind::Jpeg2000Lossless
            | TsKind::Jpeg2000
            | TsKind::Jpeg2000McLossless
            | TsKind::Jpeg2000Mc
            | TsKind::Htj2kLossless
            | TsKind::Htj2kLosslessRpcl
            | TsKind::Htj2k => Some(Codestream::Jpeg2000),
            TsKind::JpegLsLossless | TsKind::JpegLsNearLossless => Some(Codestream::JpegLs),
            TsKind::JpegLossless | TsKind::JpegLosslessSv1 => Some(Codestream::JpegLossless),
            _ => None,
        }
    }
}

impl fmt::Display for TsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_kind_round_trips_through_its_uid() {
        for (kind, uid) in KNOWN {
            assert_eq!(TsKind::from_uid(uid), kind);
            assert_eq!(kind.uid(), uid);
        }
        let other = TsKind::from_uid("1.2.3.4\0");
        assert_eq!(other, TsKind::Other("1.2.3.4".into()));
        assert_eq!(other.uid(), "1.2.3.4");
    }

    #[test]
    fn padding_is_ignored() {
        assert_eq!(TsKind::from_uid("1.2.840.10008.1.2\0"), TsKind::ImplicitVrLittleEndian);
        assert_eq!(TsKind::from_uid("1.2.840.10008.1.2.4.50 "), TsKind::JpegBaseline);
    }

    // See: issue 14 (the two hand-typed JPEG 2000 lists disagreed on HTJ2K).
    #[test]
    fn htj2k_is_jpeg_2000_everywhere() {
        for uid in [uids::HTJ2K_LOSSLESS, uids::HTJ2K_LOSSLESS_RPCL, uids::HTJ2K, uids::JPEG2000MC] {
            let kind = TsKind::from_uid(uid);
            assert!(kind.is_jpeg2000(), "{uid}");
            assert_eq!(kind.codestream(), Some(Codestream::Jpeg2000));
        }
        assert!(!TsKind::JpegLsLossless.is_jpeg2000());
        assert!(TsKind::JpegLsNearLossless.is_jpeg_ls());
        assert_eq!(TsKind::JpegLosslessSv1.codestream(), Some(Codestream::JpegLossless));
        assert_eq!(TsKind::JpegBaseline.codestream(), None);
    }

    #[test]
    fn native_kinds() {
        assert!(TsKind::ExplicitVrBigEndian.is_native());
        assert!(TsKind::DeflatedExplicitVrLittleEndian.is_native());
        assert!(!TsKind::EncapsulatedUncompressed.is_native());
        assert!(!TsKind::Other("1.2.3".into()).is_native());
    }
}
