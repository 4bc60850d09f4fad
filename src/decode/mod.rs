//! Decode: turns an ingested instance into pixel frames.
//!
//! [`Instance`] in, one [`DecodedImage`] per frame out. The only rayon
//! stage, on its own pool: workers block on `send` when preprocess falls
//! behind. Each frame carries the statistics of its stored values (as
//! pydicom's `pixel_array` returns them) and a display-space [`Frame`]
//! (Modality LUT, VOI, MONOCHROME1 inverted, colour to RGB, `0..=1`).
//!
//! Limits are checked before any pixel is decoded, and every failure,
//! including a panic inside a third-party codec, becomes a [`Rejected`]
//! row rather than ending the run.

mod attrs;
mod codec;
mod display;
mod fragments;
mod j2k;
mod jpeg;
mod library;
mod lut;
mod pixels;
mod rle;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use dicom_dictionary_std::tags;
use rayon::iter::{ParallelBridge, ParallelIterator};
use serde::{Deserialize, Serialize};

use crate::dicom::attrs::AttrError;
use crate::dicom::ts::TsKind;
use crate::error::{chain, panic_text};
use crate::message::{DecodedImage, FileDone, ImageMeta, Instance, Msg, Stage};
use crate::model::ModelId;
use crate::source::{self, Blob};

use attrs::PixelAttrs;
use codec::FrameCodec;

/// The `[decode]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Decode pool size; 0 means one per core. Default: 0.
    pub threads: usize,
    /// Frames with more samples (Rows × Columns × SamplesPerPixel) are
    /// rejected before decoding. Default: 100_000_000 (a 5773² RGB image;
    /// fundus cameras produce well under a tenth of that).
    pub max_pixels_per_frame: u64,
    /// Objects with more frames are rejected. Default: 5000.
    pub max_frames: u32,
    /// Larger files are rejected before being read (dicom-rs reads the
    /// whole object into memory). Default: 4 GiB.
    pub max_file_bytes: u64,
    /// Decode JPEG (baseline/extended) at the smallest DCT scale (1/2, 1/4,
    /// 1/8) that still covers every routed model's input size, instead of
    /// decoding a photograph in full to shrink it afterwards. Default: true.
    pub reduce_jpeg: bool,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            max_pixels_per_frame: 100_000_000,
            max_frames: 5000,
            max_file_bytes: 4 << 30,
            reduce_jpeg: true,
        }
    }
}

/// Why an object, or one of its frames, could not be decoded.
///
/// Messages name the attribute or feature at fault; the underlying codec
/// error is the `source`, not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("file is {bytes} bytes, over the max_file_bytes limit of {limit}")]
    FileTooLarge { bytes: u64, limit: u64 },
    #[error("not a readable DICOM file")]
    Open(#[source] dicom_object::ReadError),
    #[error("missing attribute {name}")]
    MissingAttribute { name: &'static str },
    #[error("invalid {name}: {value:?}")]
    InvalidAttribute { name: &'static str, value: String },
    #[error(
        "frame has {samples} samples (Rows x Columns x SamplesPerPixel), \
         over the max_pixels_per_frame limit of {limit}"
    )]
    TooManyPixels { samples: u64, limit: u64 },
    #[error("{frames} frames, over the max_frames limit of {limit}")]
    TooManyFrames { frames: u32, limit: u32 },
    #[error("unsupported transfer syntax {uid} ({name})")]
    UnsupportedTransferSyntax { uid: String, name: String },
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("12-bit JPEG (SamplePrecision 12) is not supported")]
    Jpeg12Bit,
    #[error("pixel data too short for frame {frame}: needs {needed} bytes from offset {offset}, has {have}")]
    Truncated { frame: u32, offset: u64, needed: u64, have: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("pixel data could not be decoded")]
    Pixels(#[source] dicom_pixeldata::Error),
    #[error("JPEG frame could not be decoded")]
    Jpeg(#[source] jpeg_decoder::Error),
    #[error("decoder panicked: {0}")]
    Panicked(String),
}

impl From<AttrError> for DecodeError {
    fn from(e: AttrError) -> Self {
        match e {
            AttrError::Missing { name } => Self::MissingAttribute { name },
            AttrError::Invalid { name, value } => Self::InvalidAttribute { name, value },
        }
    }
}

impl DecodeError {
    /// Whether this failure concerns one frame's data (later frames may
    /// still decode), rather than the object as a whole.
    fn is_per_frame(&self) -> bool {
        matches!(self, Self::Truncated { .. } | Self::Invalid(_) | Self::Pixels(_) | Self::Jpeg(_))
    }
}

/// The decoder registry a [`Decoder`] picks codecs from: [`codec::codec_for`]
/// in a run; a test may put in its own.
type CodecRegistry = fn(&TsKind) -> Result<&'static dyn FrameCodec, DecodeError>;

/// Which frames [`Decoder::decode_frames`] decodes, and at what size.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// Every frame, at the routed models' largest input.
    All,
    /// One frame, at no less than `at_least`.
    One { frame: u32, at_least: (u32, u32) },
}

/// The decode stage's runtime value (limits only; codecs are stateless).
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecodeConfig,
    /// Input width × height of each model, indexed by [`crate::model::ModelId::index`].
    model_inputs: Vec<(u32, u32)>,
    /// Models whose images a later stage decodes again: their instances'
    /// bytes ride on the messages ([`crate::message::KeptBytes`]).
    keep_bytes_for: Vec<ModelId>,
    codecs: CodecRegistry,
}

impl Decoder {
    pub fn new(cfg: &DecodeConfig) -> Self {
        Self { cfg: cfg.clone(), model_inputs: Vec::new(), keep_bytes_for: Vec::new(), codecs: codec::codec_for }
    }

    /// Tells the decoder each model's input size (indexed by model id), so that
    /// with `reduce_jpeg` it decodes no more pixels than the largest routed
    /// model needs. Without it every frame is decoded in full.
    pub fn with_model_inputs(mut self, sizes: Vec<(u32, u32)>) -> Self {
        self.model_inputs = sizes;
        self
    }

    /// Keeps the bytes of instances routed to any of `models` on their
    /// decoded frames, for a stage that decodes them again (a second look).
    pub fn keeping_bytes_for(mut self, models: Vec<ModelId>) -> Self {
        self.keep_bytes_for = models;
        self
    }

    /// Decodes with the codecs `registry` picks instead of the real ones:
    /// how a test puts a misbehaving codec behind the seam.
    #[cfg(test)]
    fn with_codecs(mut self, registry: CodecRegistry) -> Self {
        self.codecs = registry;
        self
    }

    /// The smallest size a frame of `inst` may be decoded at, if reduced
    /// decoding applies: the largest input of the models it is routed to.
    fn needed_size(&self, inst: &Instance) -> Option<(u32, u32)> {
        if !self.cfg.reduce_jpeg || inst.models.is_empty() {
            return None;
        }
        let sizes: Option<Vec<(u32, u32)>> =
            inst.models.iter().map(|&m| self.model_inputs.get(m.index()).copied()).collect();
        sizes?.into_iter().reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)))
    }

    /// Decodes every frame of an instance from its bytes; calls `emit` once per decoded
    /// frame, or with `Err(Rejected { stage: Decode, frame: Some(i) or None })`
    /// for failures (a whole-file failure is one `Err`). Never panics on bad
    /// input: codec panics are caught and reported as errors.
    pub fn decode_each(&self, inst: &Arc<Instance>, blob: &Blob, mut emit: impl FnMut(Msg<DecodedImage>)) {
        let multi = std::cell::Cell::new(false);
        let current = std::cell::Cell::new(0u32);
        let mut on_frame = |i: u32, r: Result<DecodedImage, DecodeError>| {
            emit(r.map_err(|e| {
                let mut rej = inst.reject(Stage::Decode, chain(&e));
                rej.frame = Some(i);
                rej
            }));
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.decode_frames(inst, blob, Pick::All, &multi, &current, &mut on_frame)
        }));
        let (err, frame) = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => (e, None),
            Err(payload) => (DecodeError::Panicked(panic_text(payload.as_ref())), multi.get().then(|| current.get())),
        };
        let mut rej = inst.reject(Stage::Decode, chain(&err));
        rej.frame = frame;
        emit(Err(rej));
    }

    /// Decodes frame `frame` of an instance again, at no less than
    /// `at_least` (width, height) where reduced decoding applies: what a
    /// second look at a larger input needs. Never panics on bad input.
    ///
    /// # Errors
    /// The object or the frame cannot be decoded (a codec panic included).
    pub fn decode_frame(
        &self,
        inst: &Arc<Instance>,
        blob: &Blob,
        frame: u32,
        at_least: (u32, u32),
    ) -> Result<DecodedImage, DecodeError> {
        let (multi, current) = (std::cell::Cell::new(false), std::cell::Cell::new(frame));
        let mut decoded = None;
        let mut keep = |_: u32, r: Result<DecodedImage, DecodeError>| decoded = Some(r);
        let pick = Pick::One { frame, at_least };
        match catch_unwind(AssertUnwindSafe(|| self.decode_frames(inst, blob, pick, &multi, &current, &mut keep))) {
            Ok(Ok(())) => {
                decoded.unwrap_or_else(|| Err(DecodeError::Invalid(format!("frame {frame} was not decoded"))))
            }
            Ok(Err(e)) => Err(e),
            Err(payload) => Err(DecodeError::Panicked(panic_text(payload.as_ref()))),
        }
    }

    /// Opens the instance from `source` and decodes it ([`Decoder::decode_each`]);
    /// an instance that cannot be opened is one error row.
    pub fn open_and_decode(
        &self,
        source: &dyn source::Source,
        inst: &Arc<Instance>,
        mut emit: impl FnMut(Msg<DecodedImage>),
    ) {
        match source.open(&inst.source) {
            Ok(blob) if inst.models.iter().any(|m| self.keep_bytes_for.contains(m)) => {
                let blob = Arc::new(blob);
                self.decode_each(inst, &blob, |mut msg| {
                    if let Ok(image) = &mut msg {
                        image.bytes = Some(Arc::clone(&blob));
                    }
                    emit(msg);
                });
            }
            Ok(blob) => self.decode_each(inst, &blob, emit),
            Err(e) => emit(Err(inst.reject(Stage::Decode, chain(&DecodeError::from(e))))),
        }
    }

    /// Checks limits, parses the object, then decodes frame by frame.
    /// Whole-object failures are returned; per-frame ones go to `on_frame`.
    fn decode_frames(
        &self,
        inst: &Arc<Instance>,
        blob: &Blob,
        pick: Pick,
        multi: &std::cell::Cell<bool>,
        current: &std::cell::Cell<u32>,
        on_frame: &mut dyn FnMut(u32, Result<DecodedImage, DecodeError>),
    ) -> Result<(), DecodeError> {
        let bytes = blob.len();
        if bytes > self.cfg.max_file_bytes {
            return Err(DecodeError::FileTooLarge { bytes, limit: self.cfg.max_file_bytes });
        }
        let obj = blob.object(None).map_err(DecodeError::Open)?;
        let a = PixelAttrs::read(&obj)?;
        let samples = u64::from(a.rows) * u64::from(a.cols) * u64::from(a.samples);
        if samples > self.cfg.max_pixels_per_frame {
            return Err(DecodeError::TooManyPixels { samples, limit: self.cfg.max_pixels_per_frame });
        }
        if a.frames > self.cfg.max_frames {
            return Err(DecodeError::TooManyFrames { frames: a.frames, limit: self.cfg.max_frames });
        }
        let ts = TsKind::from_uid(obj.meta().transfer_syntax());
        if ts.uid().is_empty() {
            return Err(DecodeError::MissingAttribute { name: "TransferSyntaxUID" });
        }
        let codec = (self.codecs)(&ts)?;
        let source = codec::open(codec, &obj, &a, &ts)?;
        multi.set(a.frames > 1);
        // Window and rescale may differ per frame only in enhanced objects.
        let per_frame_transform = obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).is_some();
        let (needed, frames) = match pick {
            Pick::All => (self.needed_size(inst), 0..a.frames),
            Pick::One { frame, at_least } if frame < a.frames => {
                (self.cfg.reduce_jpeg.then_some(at_least), frame..frame + 1)
            }
            Pick::One { frame, .. } => {
                return Err(DecodeError::Invalid(format!("no frame {frame} (the object has {})", a.frames)))
            }
        };
        let mut transform = None;
        for i in frames {
            current.set(i);
            let result = source.frame(i, &a, needed).and_then(|stored| {
                let m = match transform {
                    Some(ref m) if !per_frame_transform => m,
                    _ => transform.insert(display::transform_for(
                        &obj,
                        &a,
                        i,
                        stored.channels,
                        codec::data_set_endian(&ts),
                    )?),
                };
                let stats = stored.stats;
                let (width, height) = stored.reduced.unwrap_or((a.cols, a.rows));
                let frame = display::render(stored, m, width, height);
                let meta = ImageMeta {
                    instance: inst.clone(),
                    frame_index: i,
                    width: a.cols,
                    height: a.rows,
                    stored: stats,
                    thumbnail: None,
                };
                Ok(DecodedImage { meta: Arc::new(meta), frame, bytes: None })
            });
            match result {
                Err(e) if a.frames == 1 || (i == 0 && !e.is_per_frame()) => return Err(e),
                r => on_frame(i, r),
            }
        }
        Ok(())
    }
}

/// The decode stage loop: opens each instance from `source` and runs
/// [`Decoder::decode_each`] on it on `pool` (`par_bridge`), and hands every result to `emit` on the worker
/// that produced it. Rejections from upstream are forwarded unchanged.
/// Once a file is fully handed on, `on_file_done` hears how many
/// downstream messages it became, so the sinks can tell when it is complete.
/// Stops decoding once `emit` returns `None` (downstream has hung up).
///
/// `emit` runs on the workers so that per-frame work that follows decode
/// (preprocess) shares the pool instead of queueing behind one thread; it
/// returns how many messages it sent on.
pub fn run(
    dec: &Decoder,
    source: &dyn source::Source,
    pool: &rayon::ThreadPool,
    rx: Receiver<Msg<Instance>>,
    emit: &(dyn Fn(Msg<DecodedImage>) -> Option<u32> + Sync),
    on_file_done: &(dyn Fn(FileDone) + Sync),
) {
    let closed = AtomicBool::new(false);
    pool.install(|| {
        rx.into_iter().par_bridge().for_each(|msg| {
            if closed.load(Ordering::Relaxed) {
                return;
            }
            let mut units = 0u32;
            let mut forward = |out| match emit(out) {
                Some(n) => units += n,
                None => closed.store(true, Ordering::Relaxed),
            };
            let done = match msg {
                Err(rejected) => {
                    let id = rejected.source.clone();
                    forward(Err(rejected));
                    source.release(&id);
                    FileDone { source: id, units, instance: false }
                }
                Ok(inst) => {
                    let inst = Arc::new(inst);
                    dec.open_and_decode(source, &inst, &mut forward);
                    // Decoded: nothing later reads its bytes again.
                    source.release(&inst.source);
                    FileDone { source: inst.source.clone(), units, instance: true }
                }
            };
            if !closed.load(Ordering::Relaxed) {
                on_file_done(done);
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::FrameSource;

    /// A native 8-bit MONOCHROME2 image of `rows` x 2 pixels, as a file.
    fn image_file(rows: u16) -> tempfile::NamedTempFile {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_dictionary_std::uids;
        use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
        let mut obj = InMemDicomObject::new_empty();
        let mut put = |tag, vr, value: PrimitiveValue| obj.put(DataElement::new(tag, vr, value));
        put(tags::SOP_CLASS_UID, VR::UI, uids::SECONDARY_CAPTURE_IMAGE_STORAGE.into());
        put(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4".into());
        put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
        put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
        put(tags::ROWS, VR::US, PrimitiveValue::from(rows));
        put(tags::COLUMNS, VR::US, PrimitiveValue::from(2u16));
        put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16));
        put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16));
        put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
        put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
        put(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(vec![7u8; usize::from(rows) * 2]));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
            .media_storage_sop_instance_uid("1.2.3.4");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        obj.with_meta(meta).expect("meta").write_to_file(file.path()).expect("write");
        file
    }

    fn instance(file: &tempfile::NamedTempFile) -> Arc<Instance> {
        Arc::new(Instance {
            source: crate::message::SourceId::File(file.path().to_path_buf()),
            name: "test.dcm".into(),
            header: Arc::default(),
            models: Vec::new(),
        })
    }

    /// The native codec, except that it panics on one-row images.
    struct PanicsOnOneRow;

    struct PanickingFrames<'a>(FrameSource<'a>);

    impl codec::Frames for PanickingFrames<'_> {
        fn frame(&self, i: u32, a: &PixelAttrs, needed: Option<(u32, u32)>) -> Result<pixels::Stored, DecodeError> {
            if a.rows == 1 {
                panic!("codec bug on purpose");
            }
            self.0.frame(i, a, needed)
        }
    }

    impl FrameCodec for PanicsOnOneRow {
        fn open<'a>(
            &'a self,
            obj: &'a dicom_object::DefaultDicomObject,
            a: &PixelAttrs,
            ts: &TsKind,
        ) -> Result<FrameSource<'a>, DecodeError> {
            Ok(Box::new(PanickingFrames(codec::codec_for(ts)?.open(obj, a, ts)?)))
        }
    }

    fn panicking_registry(_ts: &TsKind) -> Result<&'static dyn FrameCodec, DecodeError> {
        Ok(&PanicsOnOneRow)
    }

    // See: issue 14 (nothing exercised the panic catch in decode_each).
    #[test]
    fn a_codec_panic_becomes_a_decode_error_row_and_the_decoder_goes_on() {
        let decoder = Decoder::new(&DecodeConfig::default()).with_codecs(panicking_registry);
        let (bad, good) = (image_file(1), image_file(2));
        let mut out = Vec::new();
        let blob = |file: &tempfile::NamedTempFile| Blob::open_file(file.path()).expect("open");
        decoder.decode_each(&instance(&bad), &blob(&bad), |m| out.push(m));
        decoder.decode_each(&instance(&good), &blob(&good), |m| out.push(m));
        assert_eq!(out.len(), 2, "one message per single-frame instance");
        let rejected = out[0].as_ref().expect_err("the panic is an error row");
        assert_eq!(rejected.stage, Stage::Decode);
        assert_eq!(rejected.kind, crate::message::RejectKind::Error);
        assert_eq!(rejected.reason, "decoder panicked: codec bug on purpose");
        assert_eq!(rejected.frame, None);
        let image = out[1].as_ref().expect("the next instance decodes");
        assert_eq!((image.meta.width, image.meta.height), (2, 2));
        assert_eq!(image.meta.stored.max, 7.0);
    }

    #[test]
    fn an_instance_keeps_its_bytes_on_its_frames_only_for_the_models_that_decode_again() {
        let file = image_file(2);
        let source = crate::source::FileSystem::new(&Default::default(), &[]);
        let routed_to =
            |model: u16| Arc::new(Instance { models: vec![ModelId::new(model)], ..(*instance(&file)).clone() });
        let decoder = Decoder::new(&DecodeConfig::default()).keeping_bytes_for(vec![ModelId::new(1)]);
        let kept = |inst: Arc<Instance>| {
            let mut out = Vec::new();
            decoder.open_and_decode(&source, &inst, |m| out.push(m));
            out.into_iter().map(|m| m.expect("decodes").bytes.map(|b| b.len())).collect::<Vec<_>>()
        };
        let size = std::fs::metadata(file.path()).expect("metadata").len();
        assert_eq!(kept(routed_to(1)), vec![Some(size)], "the looked-at model's frames carry the bytes");
        assert_eq!(kept(routed_to(0)), vec![None], "nothing will decode the others again");
    }

    #[test]
    fn errors_carry_their_source() {
        let e = DecodeError::from(crate::source::SourceError::Io(std::io::Error::other("disk on fire")));
        assert_eq!(chain(&e), "cannot read file: disk on fire");
    }

    #[test]
    fn config_defaults_match_docs() {
        let c: DecodeConfig = toml::from_str("").unwrap();
        assert_eq!(c.threads, 0);
        assert_eq!(c.max_pixels_per_frame, 100_000_000);
        assert_eq!(c.max_frames, 5000);
        assert_eq!(c.max_file_bytes, 4 * 1024 * 1024 * 1024);
        assert!(toml::from_str::<DecodeConfig>("max_pixels = 3").is_err());
    }
}
