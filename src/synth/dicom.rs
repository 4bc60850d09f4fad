//! Writing one photograph as a fundus camera would: Ophthalmic Photography
//! 8 Bit Image Storage, JPEG baseline (YBR_FULL_422), one encapsulated
//! fragment behind a basic offset table; or (generator v2) native RGB in
//! Explicit VR Little Endian, as Topcon's IMAGEnet stores its photographs.
//!
//! How the pipeline tells the images of a study apart:
//! - eye: ImageLaterality (0020,0062), `R` or `L` (v1 repeats it in the
//!   series' Laterality (0020,0060), which the IOD forbids beside it);
//! - field: SeriesDescription (0008,103E) is exactly `MACULA` (DESP field 1,
//!   macula-centred) or `DISC` (field 2, disc-centred); ImageComments
//!   (0020,4000) repeats it as `DESP field 1 MACULA` / `DESP field 2 DISC`.
//!   Each image is its own series (SeriesNumber 1–4: R macula, R disc,
//!   L macula, L disc).

use std::path::Path;

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::jpeg::JpegEncoder;
use super::study::{EyePlan, ImagePlan, StudyPlan};
use super::SynthError;
use crate::dicom::write::{code, put, put_seq};

/// Ophthalmic Photography 8 Bit Image Storage.
pub const OP_8BIT: &str = uids::OPHTHALMIC_PHOTOGRAPHY8_BIT_IMAGE_STORAGE;
/// JPEG Baseline (Process 1).
pub const JPEG_BASELINE: &str = uids::JPEG_BASELINE8_BIT;
/// Explicit VR Little Endian, for native (uncompressed) RGB.
pub const EXPLICIT_VR_LE: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;
/// JPEG quality: 90 is what camera vendors ship by default, fine enough
/// that microaneurysms survive, about 0.4 MB per 1600 × 1200 image.
pub const JPEG_QUALITY: u8 = 90;

/// Encodes an RGB image given as planes as a baseline JPEG in YCbCr with
/// 4:2:2 chroma subsampling (what YBR_FULL_422 declares), padded to an even
/// length as a DICOM fragment must be.
///
/// # Errors
/// When a dimension is zero or over 65535, or a plane is too short.
pub fn encode_jpeg(planes: [&[u8]; 3], width: u32, height: u32) -> Result<Vec<u8>, SynthError> {
    let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(SynthError::Size { width, height }),
    };
    if planes.iter().any(|p| p.len() < usize::from(w) * usize::from(h)) {
        return Err(SynthError::Size { width, height });
    }
    let mut jpeg = Vec::with_capacity(planes[0].len() / 4);
    JpegEncoder::new(JPEG_QUALITY).encode(planes, w, h, &mut jpeg);
    if jpeg.len() % 2 == 1 {
        jpeg.push(0);
    }
    Ok(jpeg)
}

/// The pixel data of one image, as it will be stored.
#[derive(Debug, Clone)]
pub enum Pixels {
    /// A baseline JPEG bitstream (even length), YBR_FULL_422.
    Jpeg(Vec<u8>),
    /// Interleaved 8-bit RGB, `width × height × 3` bytes.
    NativeRgb(Vec<u8>),
}

/// The camera a v2 image claims in its headers.
#[derive(Debug, Clone)]
pub struct Device {
    pub model: &'static str,
    pub field_deg: f32,
    /// Text is burnt into the pixels (BurnedInAnnotation YES).
    pub burned_in: bool,
}

/// Interleaves R, G and B planes into RGB triplets.
pub fn interleave(planes: &[Vec<u8>; 3]) -> Vec<u8> {
    planes[0].iter().zip(&planes[1]).zip(&planes[2]).flat_map(|((&r, &g), &b)| [r, g, b]).collect()
}

/// What the Ophthalmic Photography IOD asks for beyond what v1 wrote, as a
/// camera fills it (dciodvfy finds no error in a v2 image): de-identification
/// declared, synchronisation, an empty patient orientation, a single-frame
/// multi-frame object, and the ophthalmic acquisition and photographic
/// parameters (Type 2: present, empty where the camera does not know).
/// v1 images go without, so they stay byte-identical to the shipped model's
/// training and evaluation data.
fn put_complete_op_modules(o: &mut InMemDicomObject, study: &StudyPlan) {
    put(o, tags::DEIDENTIFICATION_METHOD, VR::LO, "synthetic patient (nightscreen synth)");
    put_seq(
        o,
        tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
        vec![code("113100", "DCM", "Basic Application Confidentiality Profile")],
    );
    put(o, tags::PATIENT_ORIENTATION, VR::CS, "");
    // One camera session per study: its images share a synchronisation frame.
    put(o, tags::SYNCHRONIZATION_FRAME_OF_REFERENCE_UID, VR::UI, format!("{}.1", study.study_uid));
    put(o, tags::SYNCHRONIZATION_TRIGGER, VR::CS, "NO TRIGGER");
    put(o, tags::ACQUISITION_TIME_SYNCHRONIZED, VR::CS, "N");
    put(o, tags::NUMBER_OF_FRAMES, VR::IS, "1");
    put(o, tags::FRAME_INCREMENT_POINTER, VR::AT, PrimitiveValue::Tags([tags::FRAME_TIME][..].into()));
    put(o, tags::FRAME_TIME, VR::DS, "0");
    put(o, tags::DEGREE_OF_DILATION, VR::FL, PrimitiveValue::Empty);
    put_seq(o, tags::MYDRIATIC_AGENT_SEQUENCE, Vec::new());
    put_seq(o, tags::REFRACTIVE_STATE_SEQUENCE, Vec::new());
    put(o, tags::EMMETROPIC_MAGNIFICATION, VR::FL, PrimitiveValue::Empty);
    put(o, tags::INTRA_OCULAR_PRESSURE, VR::FL, PrimitiveValue::Empty);
    // What a Topcon camera sends (the SRT code is deprecated: a warning only).
    put_seq(o, tags::ACQUISITION_DEVICE_TYPE_CODE_SEQUENCE, vec![code("R-1021A", "SRT", "Fundus Camera")]);
    for tag in [
        tags::ILLUMINATION_TYPE_CODE_SEQUENCE,
        tags::LIGHT_PATH_FILTER_TYPE_STACK_CODE_SEQUENCE,
        tags::IMAGE_PATH_FILTER_TYPE_STACK_CODE_SEQUENCE,
        tags::LENSES_CODE_SEQUENCE,
    ] {
        put_seq(o, tag, Vec::new());
    }
}

/// Writes one image to `path` (the v1 form: JPEG, no device).
///
/// # Errors
/// When the object cannot be assembled or the file cannot be written.
pub fn write(
    path: &Path,
    study: &StudyPlan,
    eye: &EyePlan,
    image: &ImagePlan,
    jpeg: Vec<u8>,
    width: u32,
    height: u32,
) -> Result<(), SynthError> {
    write_image(path, study, eye, image, Pixels::Jpeg(jpeg), width, height, None)
}

/// Writes one image to `path`, JPEG or native RGB, with the headers of
/// `device` when given (generator v2; v1 passes none and gets exactly the
/// headers it always had).
///
/// # Errors
/// When the object cannot be assembled or the file cannot be written.
#[allow(clippy::too_many_arguments)]
pub fn write_image(
    path: &Path,
    study: &StudyPlan,
    eye: &EyePlan,
    image: &ImagePlan,
    pixels: Pixels,
    width: u32,
    height: u32,
    device: Option<&Device>,
) -> Result<(), SynthError> {
    let mut o = InMemDicomObject::new_empty();
    let p = &study.patient;
    // SOP common, patient, study.
    put(&mut o, tags::SOP_CLASS_UID, VR::UI, OP_8BIT);
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, image.sop_uid.as_str());
    put(&mut o, tags::STUDY_DATE, VR::DA, study.date.as_str());
    put(&mut o, tags::SERIES_DATE, VR::DA, study.date.as_str());
    put(&mut o, tags::CONTENT_DATE, VR::DA, study.date.as_str());
    put(&mut o, tags::STUDY_TIME, VR::TM, study.time.as_str());
    put(&mut o, tags::SERIES_TIME, VR::TM, study.time.as_str());
    put(&mut o, tags::CONTENT_TIME, VR::TM, study.time.as_str());
    put(&mut o, tags::ACQUISITION_DATE_TIME, VR::DT, format!("{}{}", study.date, study.time));
    put(&mut o, tags::ACCESSION_NUMBER, VR::SH, study.accession.as_str());
    put(&mut o, tags::MODALITY, VR::CS, "OP");
    put(&mut o, tags::MANUFACTURER, VR::LO, "nightscreen synth");
    put(&mut o, tags::INSTITUTION_NAME, VR::LO, "Synthetic Diabetic Eye Screening");
    put(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put(&mut o, tags::STUDY_DESCRIPTION, VR::LO, "Diabetic eye screening");
    put(&mut o, tags::SERIES_DESCRIPTION, VR::LO, image.field.code());
    let model = match device {
        None => "synthetic 45 degree fundus camera".to_string(),
        Some(d) => format!("synthetic {:.0} degree fundus camera ({})", d.field_deg, d.model),
    };
    put(&mut o, tags::MANUFACTURER_MODEL_NAME, VR::LO, model);
    put(&mut o, tags::PATIENT_NAME, VR::PN, p.name.as_str());
    put(&mut o, tags::PATIENT_ID, VR::LO, p.id.as_str());
    put(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, p.birth_date.as_str());
    put(&mut o, tags::PATIENT_SEX, VR::CS, p.sex);
    put(&mut o, tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES");
    put(&mut o, tags::DEVICE_SERIAL_NUMBER, VR::LO, "SYNTH-0001");
    put(&mut o, tags::SOFTWARE_VERSIONS, VR::LO, format!("nightscreen {}", crate::VERSION));
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, study.study_uid.as_str());
    put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, image.series_uid.as_str());
    put(&mut o, tags::STUDY_ID, VR::SH, study.study_id.as_str());
    put(&mut o, tags::SERIES_NUMBER, VR::IS, image.series_number.to_string());
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, "1");
    if device.is_none() {
        // v1 as shipped; v2 leaves it out (the image level carries it).
        put(&mut o, tags::LATERALITY, VR::CS, eye.eye.code());
    }
    put(&mut o, tags::IMAGE_LATERALITY, VR::CS, eye.eye.code());
    put(&mut o, tags::IMAGE_COMMENTS, VR::LT, format!("DESP field {} {}", image.field.number(), image.field.code()));
    // Ophthalmic photography image and acquisition parameters.
    put(&mut o, tags::IMAGE_TYPE, VR::CS, PrimitiveValue::Strs(["ORIGINAL".to_string(), "PRIMARY".to_string()].into()));
    let burned = device.is_some_and(|d| d.burned_in);
    put(&mut o, tags::BURNED_IN_ANNOTATION, VR::CS, if burned { "YES" } else { "NO" });
    put(&mut o, tags::PATIENT_EYE_MOVEMENT_COMMANDED, VR::CS, "NO");
    put(&mut o, tags::HORIZONTAL_FIELD_OF_VIEW, VR::FL, device.map_or(45.0f32, |d| d.field_deg));
    put(&mut o, tags::PUPIL_DILATED, VR::CS, "YES");
    put(&mut o, tags::DETECTOR_TYPE, VR::CS, "CCD");
    put_seq(&mut o, tags::ANATOMIC_REGION_SEQUENCE, vec![code("5665001", "SCT", "Retina")]);
    put_seq(&mut o, tags::ACQUISITION_CONTEXT_SEQUENCE, Vec::new());
    if device.is_some() {
        put_complete_op_modules(&mut o, study);
    }
    // Image pixel description.
    put(&mut o, tags::SAMPLES_PER_PIXEL, VR::US, 3u16);
    let photometric = match &pixels {
        Pixels::Jpeg(_) => "YBR_FULL_422",
        Pixels::NativeRgb(_) => "RGB",
    };
    put(&mut o, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric);
    put(&mut o, tags::PLANAR_CONFIGURATION, VR::US, 0u16);
    put(&mut o, tags::ROWS, VR::US, height as u16);
    put(&mut o, tags::COLUMNS, VR::US, width as u16);
    put(&mut o, tags::BITS_ALLOCATED, VR::US, 8u16);
    put(&mut o, tags::BITS_STORED, VR::US, 8u16);
    put(&mut o, tags::HIGH_BIT, VR::US, 7u16);
    put(&mut o, tags::PIXEL_REPRESENTATION, VR::US, 0u16);
    let ts = match pixels {
        Pixels::Jpeg(jpeg) => {
            put(&mut o, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01");
            let ratio = (width as f64 * height as f64 * 3.0) / jpeg.len() as f64;
            put(&mut o, tags::LOSSY_IMAGE_COMPRESSION_RATIO, VR::DS, format!("{ratio:.2}"));
            put(&mut o, tags::LOSSY_IMAGE_COMPRESSION_METHOD, VR::CS, "ISO_10918_1");
            // One frame: a basic offset table with its single offset, one fragment.
            let pixels = PixelFragmentSequence::new(vec![0u32], vec![jpeg]);
            o.put(DataElement::new(tags::PIXEL_DATA, VR::OB, pixels));
            JPEG_BASELINE
        }
        Pixels::NativeRgb(mut rgb) => {
            if rgb.len() != width as usize * height as usize * 3 {
                return Err(SynthError::Size { width, height });
            }
            put(&mut o, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
            if rgb.len() % 2 == 1 {
                rgb.push(0);
            }
            o.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(rgb.into())));
            EXPLICIT_VR_LE
        }
    };
    let file = o
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
        .map_err(|source| SynthError::Meta { path: path.to_path_buf(), source: Box::new(source) })?;
    file.write_to_file(path).map_err(|source| SynthError::Write { path: path.to_path_buf(), source: Box::new(source) })
}
