//! The typed messages that travel between stages.
//!
//! ingest → [`Instance`] → decode → [`DecodedImage`] → preprocess →
//! [`Prepared`] → infer → [`Scored`] → triage/sinks. Failures travel as
//! [`Rejected`] inside [`Msg`], so every input file reaches the sinks as a
//! row, an error or a counted skip, whatever stage dropped it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::ModelId;

/// A DICOM unique identifier. Kept as its own type so a study UID can never
/// be passed where an instance UID is expected.
macro_rules! uid_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " UID (trailing padding removed).")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a UID read from a header, trimming DICOM's NUL / space padding.
            pub fn new(raw: &str) -> Self {
                Self(raw.trim_end_matches(|c: char| c == '\0' || c.is_whitespace()).to_string())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uid_type!(StudyUid, "Study Instance");
uid_type!(SeriesUid, "Series Instance");
uid_type!(SopInstanceUid, "SOP Instance");

/// The pipeline stage where an input was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Getting the bytes from a remote source (DICOMweb).
    Fetch,
    Ingest,
    Decode,
    Preprocess,
    Infer,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Ingest => "ingest",
            Stage::Decode => "decode",
            Stage::Preprocess => "preprocess",
            Stage::Infer => "infer",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an instance's bytes come from: a file, or an instance a DICOMweb
/// server holds. Resume, counting, pseudonyms and the list of failures key
/// on it. Deliberately not `Display`: it may name a patient (folder names
/// often do), so only `failed_files.csv` shows it ([`SourceId::locator`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum SourceId {
    File(PathBuf),
    /// Boxed behind an `Arc`: five strings would double every message's size.
    Web(Arc<WebInstance>),
}

/// One instance of a named DICOMweb source, by its UIDs. Its key is the
/// canonical `dicomweb://NAME/studies/…/series/…/instances/…`, never the
/// server's URL, so pseudonyms and resume keys stay the same when the
/// server moves, and no credential can ever be part of one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct WebInstance {
    canonical: String,
    pub source: String,
    pub study: StudyUid,
    pub series: SeriesUid,
    pub sop: SopInstanceUid,
}

impl WebInstance {
    pub fn new(source: &str, study: StudyUid, series: SeriesUid, sop: SopInstanceUid) -> Self {
        let canonical = format!("dicomweb://{source}/{}", Self::path_of(&study, &series, &sop));
        Self { canonical, source: source.to_string(), study, series, sop }
    }

    /// `studies/{study}/series/{series}/instances/{sop}`: its WADO-RS path
    /// under the server's root, and its name for ordering.
    pub fn path(&self) -> String {
        Self::path_of(&self.study, &self.series, &self.sop)
    }

    fn path_of(study: &StudyUid, series: &SeriesUid, sop: &SopInstanceUid) -> String {
        format!("studies/{study}/series/{series}/instances/{sop}")
    }

    /// The canonical name: what keys and reports use.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

impl SourceId {
    /// The bytes keyed digests are made from (file pseudonyms, resume keys):
    /// a file's path, as before there were sources, so pseudonyms and
    /// checkpoints carry across.
    pub fn key_bytes(&self) -> &[u8] {
        match self {
            SourceId::File(path) => path.as_os_str().as_encoded_bytes(),
            SourceId::Web(instance) => instance.canonical.as_bytes(),
        }
    }

    /// How the identifiable list of failures names it: a file's path, an
    /// instance's canonical `dicomweb://` name.
    pub fn locator(&self) -> String {
        match self {
            SourceId::File(path) => path.display().to_string(),
            SourceId::Web(instance) => instance.canonical.clone(),
        }
    }
}

/// Why an input was skipped by design; [`SkipReason::as_str`] is the stable
/// key counted in `run.json` and written to `skipped/`'s `reason_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    SymlinkNotFollowed,
    NotARegularFile,
    NotDicom,
    NoPixelData,
    NoModelAccepts,
    /// A SOP class that never carries an image we screen.
    Dicomdir,
    StructuredReport,
    RtPlan,
    RtStructureSet,
    PresentationState,
    Palette,
    EncapsulatedDocument,
    RawOrRegistration,
    Waveform,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SymlinkNotFollowed => "symlink_not_followed",
            Self::NotARegularFile => "not_a_regular_file",
            Self::NotDicom => "not_dicom",
            Self::NoPixelData => "no_pixel_data",
            Self::NoModelAccepts => "no_model_accepts",
            Self::Dicomdir => "dicomdir",
            Self::StructuredReport => "structured_report",
            Self::RtPlan => "rt_plan",
            Self::RtStructureSet => "rt_structure_set",
            Self::PresentationState => "presentation_state",
            Self::Palette => "palette",
            Self::EncapsulatedDocument => "encapsulated_document",
            Self::RawOrRegistration => "raw_or_registration",
            Self::Waveform => "waveform",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an input produced no result: skipped by design, or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectKind {
    /// Not an image we screen (no pixel data, not DICOM, no model accepts it).
    Skip(SkipReason),
    /// The file should have been readable but was not.
    Error,
}

/// An input dropped by some stage, kept so sinks can report it.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub source: SourceId,
    pub stage: Stage,
    pub kind: RejectKind,
    /// Human-readable reason, with the failing detail (never patient data).
    pub reason: String,
    /// Identity of the object when the header could be read.
    pub header: Option<Arc<Header>>,
    /// Frame number for per-frame failures.
    pub frame: Option<u32>,
}

/// What every channel carries.
pub type Msg<T> = Result<T, Rejected>;

/// The header fields read at ingest, shared by every frame of an instance.
/// Serializable so a run's checkpoint can carry its studies across a restart.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub study_uid: StudyUid,
    pub series_uid: SeriesUid,
    pub sop_instance_uid: SopInstanceUid,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub modality: String,
    /// PhotometricInterpretation as parsed at ingest (empty `Other` when absent).
    pub photometric: crate::dicom::photometric::Photometric,
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    /// ImageLaterality, else Laterality.
    pub laterality: crate::dicom::laterality::Laterality,
    /// Fundus field, when the header says (see ingest).
    pub field: crate::dicom::laterality::FundusField,
    pub body_part: String,
    pub series_number: Option<i32>,
    pub instance_number: Option<i32>,
    /// StudyDate + StudyTime, when both parse.
    pub study_datetime: Option<chrono::NaiveDateTime>,
    pub study_description: String,
    /// Identifiers for the clinicians' worklist only; never in analyst tables.
    pub patient_id: String,
    pub patient_name: String,
    pub accession_number: String,
}

/// Decode has sent everything one input file becomes: `units` messages,
/// each of which reaches the sinks as exactly one row. Sinks count arrivals
/// against it to know when a file is complete and can be committed.
#[derive(Debug, Clone)]
pub struct FileDone {
    pub source: SourceId,
    pub units: u32,
    /// Whether the file was an image instance (not rejected at ingest).
    pub instance: bool,
}

/// One image object found by ingest, with where its bytes are.
#[derive(Debug, Clone)]
pub struct Instance {
    pub source: SourceId,
    /// Its name under its input (a relative path for a file), for ordering.
    pub name: String,
    pub header: Arc<Header>,
    /// The models that accept this image.
    pub models: Vec<ModelId>,
}

impl Instance {
    /// Turns a stage failure on this instance into a [`Rejected`] error.
    pub fn reject(&self, stage: Stage, reason: impl fmt::Display) -> Rejected {
        Rejected {
            source: self.source.clone(),
            stage,
            kind: RejectKind::Error,
            reason: reason.to_string(),
            header: Some(self.header.clone()),
            frame: None,
        }
    }
}

/// One decoded frame in display space: greyscale (1 channel) or RGB
/// (3 channels, interleaved), values in `0.0..=1.0`, MONOCHROME1 already
/// inverted and the VOI window applied.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub pixels: Pixels,
}

/// A frame's display values.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// Display value × 255, exactly: 8-bit colour as the codec gave it. A
    /// quarter the memory of floats, and resized with integer SIMD.
    Bytes(Vec<u8>),
    /// Display values in `0.0..=1.0` (windowed greyscale, deep colour).
    Unit(Vec<f32>),
}

impl Frame {
    /// The display values as floats in `0.0..=1.0`, borrowed when they are.
    pub fn values(&self) -> std::borrow::Cow<'_, [f32]> {
        match &self.pixels {
            Pixels::Unit(v) => std::borrow::Cow::Borrowed(v),
            Pixels::Bytes(b) => std::borrow::Cow::Owned(b.iter().map(|&v| f32::from(v) / 255.0).collect()),
        }
    }

    /// Number of values (pixels × channels).
    pub fn len(&self) -> usize {
        match &self.pixels {
            Pixels::Unit(v) => v.len(),
            Pixels::Bytes(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Summary of the stored pixel values of a frame before any display
/// transform, recorded on every image row so analysts can spot drift.
#[derive(Debug, Clone, Copy, Default)]
pub struct PixelStats {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// Where a frame came from and what its stored pixels looked like: all a
/// row needs once the pixels themselves are gone.
#[derive(Debug, Clone)]
pub struct ImageMeta {
    pub instance: Arc<Instance>,
    pub frame_index: u32,
    /// Size of the decoded frame (before any model resize).
    pub width: u32,
    pub height: u32,
    pub stored: PixelStats,
    /// A small JPEG of the frame for the HTML worklist, made by preprocess
    /// (`None` until then, or if it could not be made).
    pub thumbnail: Option<Arc<crate::thumbnail::Thumbnail>>,
}

/// One frame of an instance, decoded.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub meta: Arc<ImageMeta>,
    pub frame: Frame,
    pub bytes: KeptBytes,
}

/// The instance's bytes, kept from decode for a later stage that decodes
/// a frame again (a second look, at a larger size), so that a fetched
/// instance is not fetched twice; `None` when no stage will. Dropped by the
/// look stage, so it never waits in the study book.
pub type KeptBytes = Option<Arc<crate::source::Blob>>;

/// A frame turned into one model's input tensor (without batch dimension).
/// The pixels are dropped here, so only tensors wait in the infer queue.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub meta: Arc<ImageMeta>,
    pub model: ModelId,
    pub tensor: Vec<f32>,
    /// What the model's domain gate said, when it was asked before
    /// inference (on the decode worker); the infer stage asks otherwise.
    pub domain: Option<DomainCheck>,
    pub bytes: KeptBytes,
}

/// One model's output for one frame.
#[derive(Debug, Clone)]
pub struct Scored {
    pub meta: Arc<ImageMeta>,
    pub model: ModelId,
    /// Output values in the order of the card's labels; empty when the
    /// model's domain gate found the image outside (it is never scored).
    pub outputs: Vec<f32>,
    /// What the model's domain gate said, when its card names one.
    pub domain: Option<DomainCheck>,
    /// Where the model looked, for images its card asks to explain.
    pub attention: Option<Attention>,
    /// What the model's second look said, for images a programme picked.
    pub second_look: Option<LookAnswer>,
    pub scored_at: chrono::DateTime<chrono::Utc>,
    pub bytes: KeptBytes,
}

impl Scored {
    /// Model 0's outputs for frame 0 (8 × 8) of a file at `source` with
    /// `header`, scored now: what stage tests feed each other.
    #[cfg(test)]
    pub(crate) fn for_test(source: SourceId, header: Header, outputs: Vec<f32>) -> Self {
        use crate::model::ModelId;
        let instance =
            Arc::new(Instance { source, name: String::new(), header: Arc::new(header), models: vec![ModelId::new(0)] });
        let meta = Arc::new(ImageMeta {
            instance,
            frame_index: 0,
            width: 8,
            height: 8,
            stored: PixelStats::default(),
            thumbnail: None,
        });
        let (model, scored_at) = (ModelId::new(0), chrono::Utc::now());
        Self { meta, model, outputs, domain: None, attention: None, second_look: None, scored_at, bytes: None }
    }

    /// Whether the model's gate found the image outside its domain.
    pub fn outside_domain(&self) -> bool {
        self.domain.is_some_and(|d| !d.inside)
    }
}

/// What a model's second look said of one image.
#[derive(Debug, Clone, PartialEq)]
pub enum LookAnswer {
    /// The companion's probability of the finding its card names.
    Scored(f32),
    /// The look could not be made (the file went, the full decode or the
    /// companion failed); the programme treats the finding as not ruled out.
    Failed(String),
}

/// What a model's domain gate said of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DomainCheck {
    /// The gate's probability that the image is one the model was made for.
    pub score: f32,
    /// `score` reached the gate's threshold: the model may grade the image.
    pub inside: bool,
}

/// An occlusion map: `grid` × `grid` cells, row by row from the top left
/// of the model's input, each the fall in `score` when that cell is hidden.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    /// The labels whose summed probability the map explains ("r3").
    pub explains: String,
    pub grid: usize,
    pub score: f32,
    pub cells: Vec<f32>,
}

/// A 64-bit key for counting distinct things (frames, files) without
/// keeping them: the first 8 bytes, big-endian, of the SHA-256 of `parts`,
/// each prefixed with its length (so `["ab", "c"]` and `["a", "bc"]`
/// differ). Specified, unlike `DefaultHasher`, so keys persisted in a
/// checkpoint mean the same to every build that resumes it; collisions are
/// negligible at any batch size.
pub fn count_key(parts: &[&[u8]]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_keys_are_pinned_and_length_prefixed() {
        // Pinned: a change here would make resumed runs miscount.
        // sha256(be64(2) ++ "/a"), first 8 bytes.
        assert_eq!(count_key(&[b"/a"]), 0x76d9_51d7_da2f_b352);
        assert_ne!(count_key(&[b"ab", b"c"]), count_key(&[b"a", b"bc"]));
        assert_ne!(count_key(&[b"/a", &0u32.to_be_bytes()]), count_key(&[b"/a", &1u32.to_be_bytes()]));
    }
}
