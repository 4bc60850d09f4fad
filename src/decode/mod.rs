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
mod jpeg;
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

use crate::message::{DecodedImage, FileDone, ImageMeta, Instance, Msg, Stage};
use crate::source::{self, Blob};

use attrs::PixelAttrs;
use codec::{Codec, Source};

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

impl DecodeError {
    /// Whether this failure concerns one frame's data (later frames may
    /// still decode), rather than the object as a whole.
    fn is_per_frame(&self) -> bool {
        matches!(self, Self::Truncated { .. } | Self::Invalid(_) | Self::Pixels(_) | Self::Jpeg(_))
    }

    /// The message with its whole source chain, for a [`crate::message::Rejected`]
    /// row (which has no `{:#}` printer behind it).
    pub fn reason(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(e) = src {
            let msg = e.to_string();
            if !s.ends_with(&msg) {
                s.push_str(": ");
                s.push_str(&msg);
            }
            src = e.source();
        }
        s
    }
}

/// The decode stage's runtime value (limits only; codecs are stateless).
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecodeConfig,
    /// Input width × height of each model, by model index.
    model_inputs: Vec<(u32, u32)>,
}

impl Decoder {
    pub fn new(cfg: &DecodeConfig) -> Self {
        Self { cfg: cfg.clone(), model_inputs: Vec::new() }
    }

    /// Tells the decoder each model's input size (by model index), so that
    /// with `reduce_jpeg` it decodes no more pixels than the largest routed
    /// model needs. Without it every frame is decoded in full.
    pub fn with_model_inputs(mut self, sizes: Vec<(u32, u32)>) -> Self {
        self.model_inputs = sizes;
        self
    }

    /// The smallest size a frame of `inst` may be decoded at, if reduced
    /// decoding applies: the largest input of the models it is routed to.
    fn needed_size(&self, inst: &Instance) -> Option<(u32, u32)> {
        if !self.cfg.reduce_jpeg || inst.models.is_empty() {
            return None;
        }
        let sizes: Option<Vec<(u32, u32)>> = inst.models.iter().map(|&m| self.model_inputs.get(m).copied()).collect();
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
                let mut rej = inst.reject(Stage::Decode, e.reason());
                rej.frame = Some(i);
                rej
            }));
        };
        let outcome =
            catch_unwind(AssertUnwindSafe(|| self.decode_frames(inst, blob, &multi, &current, &mut on_frame)));
        let (err, frame) = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => (e, None),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                (DecodeError::Panicked(msg), multi.get().then(|| current.get()))
            }
        };
        let mut rej = inst.reject(Stage::Decode, err.reason());
        rej.frame = frame;
        emit(Err(rej));
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
            Ok(blob) => self.decode_each(inst, &blob, emit),
            Err(e) => emit(Err(inst.reject(Stage::Decode, DecodeError::from(e).reason()))),
        }
    }

    /// Checks limits, parses the object, then decodes frame by frame.
    /// Whole-object failures are returned; per-frame ones go to `on_frame`.
    fn decode_frames(
        &self,
        inst: &Arc<Instance>,
        blob: &Blob,
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
        let ts = obj.meta().transfer_syntax().to_string();
        if ts.is_empty() {
            return Err(DecodeError::MissingAttribute { name: "TransferSyntaxUID" });
        }
        let codec = Codec::for_transfer_syntax(&ts)?;
        let source = Source::new(&obj, &a, codec, &ts)?;
        multi.set(a.frames > 1);
        // Window and rescale may differ per frame only in enhanced objects.
        let per_frame_model = obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).is_some();
        let needed = self.needed_size(inst);
        let mut model = None;
        for i in 0..a.frames {
            current.set(i);
            let result = source.frame(i, &a, needed).and_then(|stored| {
                let m = match model {
                    Some(ref m) if !per_frame_model => m,
                    _ => model.insert(display::model_for(&obj, &a, i, stored.channels, codec.endian())?),
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
                Ok(DecodedImage { meta: Arc::new(meta), frame })
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
                    let source = rejected.source.clone();
                    forward(Err(rejected));
                    FileDone { source, units, instance: false }
                }
                Ok(inst) => {
                    let inst = Arc::new(inst);
                    dec.open_and_decode(source, &inst, &mut forward);
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
    use super::display::{min_max_normalise, render, Modality, Model, Voi, VoiFunction};
    use super::lut::{expand_segmented, Lut};
    use super::pixels::{
        deplanarize, expand_ybr422, read_frame, ybr_to_rgb, BitFix, Endian, Layout, SampleKind, Samples, Stored,
    };
    use super::*;
    use crate::message::Pixels;

    fn window(center: f64, width: f64, function: VoiFunction) -> Voi {
        Voi::Window { center, width, function }
    }

    #[test]
    fn linear_window_follows_ps3_3_formula() {
        // c = 40, w = 400 (a CT soft-tissue window): edges at -159.5 and 239.5.
        let w = window(40.0, 400.0, VoiFunction::Linear);
        assert_eq!(w.apply(-1000.0), Some(0.0));
        assert_eq!(w.apply(-160.0), Some(0.0));
        assert_eq!(w.apply(1000.0), Some(1.0));
        let mid = w.apply(39.5).unwrap();
        assert!((mid - 0.5).abs() < 1e-12, "{mid}");
        // Width 1 is a threshold at c - 0.5.
        let t = window(10.0, 1.0, VoiFunction::Linear);
        assert_eq!(t.apply(9.5), Some(0.0));
        assert_eq!(t.apply(9.6), Some(1.0));
    }

    #[test]
    fn exact_and_sigmoid_windows() {
        let e = window(100.0, 50.0, VoiFunction::LinearExact);
        assert_eq!(e.apply(100.0), Some(0.5));
        assert_eq!(e.apply(75.0), Some(0.0));
        assert_eq!(e.apply(125.0), Some(1.0));
        let s = window(100.0, 50.0, VoiFunction::Sigmoid);
        assert_eq!(s.apply(100.0), Some(0.5));
        assert!(s.apply(200.0).unwrap() > 0.99 && s.apply(0.0).unwrap() < 0.01);
        assert_eq!(Voi::MinMax.apply(3.0), None);
    }

    #[test]
    fn monochrome_render_applies_rescale_window_and_inversion() {
        let stored = Stored {
            samples: Samples::Floats(vec![0.0, 10.0, 20.0]),
            channels: 1,
            stats: Default::default(),
            reduced: None,
        };
        let model = |invert| Model::Mono {
            invert,
            // Values become -100, 0, 100; window [-100, 100] maps them to 0, ~0.5, 1.
            modality: Modality::Rescale { slope: 10.0, intercept: -100.0 },
            voi: window(0.5, 201.0, VoiFunction::Linear),
        };
        let two = render(stored.clone(), &model(false), 3, 1);
        assert_eq!(two.channels, 1);
        let two = two.values();
        assert_eq!(two[0], 0.0);
        assert!((two[1] - 0.5).abs() < 1e-6);
        assert_eq!(two[2], 1.0);
        let one = render(stored.clone(), &model(true), 3, 1);
        for (a, b) in one.values().iter().zip(two.iter()) {
            assert!((a + b - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn min_max_stretches_and_flat_is_zero() {
        let mut v = vec![-5.0, 0.0, 5.0];
        min_max_normalise(&mut v);
        assert_eq!(v, vec![0.0, 0.5, 1.0]);
        let mut flat = vec![7.0; 4];
        min_max_normalise(&mut flat);
        assert_eq!(flat, vec![0.0; 4]);
    }

    #[test]
    fn ybr_full_to_rgb_matches_pydicom() {
        // Grey stays grey; pure colours from pydicom's conversion of
        // YBR (76, 85, 255) -> (254, 0, 0) and (150, 44, 21) -> (0, 255, 1).
        let mut v = vec![128.0, 128.0, 128.0, 76.0, 85.0, 255.0, 150.0, 44.0, 21.0];
        ybr_to_rgb(&mut v, 8);
        assert_eq!(&v[..3], &[128.0, 128.0, 128.0]);
        assert_eq!(&v[3..6], &[254.0, 0.0, 0.0]);
        assert_eq!(&v[6..], &[0.0, 255.0, 1.0]);
    }

    #[test]
    fn ybr422_expands_shared_chroma() {
        let v = expand_ybr422(&[1.0, 2.0, 10.0, 20.0]);
        assert_eq!(v, vec![1.0, 10.0, 20.0, 2.0, 10.0, 20.0]);
    }

    #[test]
    fn planar_is_deplanarised() {
        assert_eq!(deplanarize(&[1, 2, 10, 20, 100, 200], 3), vec![1, 10, 100, 2, 20, 200]);
        // Through the reader: 2 pixels, planar, 16-bit big endian.
        let layout = Layout {
            rows: 1,
            cols: 2,
            samples: 3,
            bits_allocated: 16,
            kind: SampleKind::Int { bits: 16, signed: false },
            planar: true,
            endian: Endian::Big,
            ybr422: false,
        };
        let raw = [0, 1, 0, 2, 0, 10, 0, 20, 1, 0, 2, 0];
        let s = read_frame(&raw, 0, &layout, false).unwrap();
        assert_eq!(s.samples, Samples::Floats(vec![1.0, 10.0, 256.0, 2.0, 20.0, 512.0]));
        assert_eq!((s.stats.min, s.stats.max), (1.0, 512.0));
        assert!(read_frame(&raw[..11], 0, &layout, false).is_err());
    }

    #[test]
    fn unused_bits_are_masked_or_sign_extended() {
        // 12 bits stored in 16: high garbage bits are dropped.
        assert_eq!(BitFix::new(16, 12, false).apply(0xF123), 0x123);
        assert_eq!(BitFix::new(16, 12, true).apply(0x0FFF), -1);
        assert_eq!(BitFix::new(16, 12, true).apply(0x07FF), 2047);
        assert_eq!(BitFix::new(16, 16, true).apply(0x8000), -32768);
        assert_eq!(BitFix::new(32, 32, false).apply(0xFFFF_FFFF), 0xFFFF_FFFF);
    }

    #[test]
    fn one_bit_frames_unpack_lsb_first() {
        let layout = Layout {
            rows: 1,
            cols: 4,
            samples: 1,
            bits_allocated: 1,
            kind: SampleKind::Int { bits: 1, signed: false },
            planar: false,
            endian: Endian::Little,
            ybr422: false,
        };
        // Second frame starts at bit 4 of the same byte.
        let s = read_frame(&[0b1001_0110], 4, &layout, false).unwrap();
        assert_eq!(s.samples, Samples::Floats(vec![1.0, 0.0, 0.0, 1.0]));
    }

    #[test]
    fn palette_lookup_clamps_to_table() {
        let lut = Lut { first: 10, data: vec![0.0, 0.5, 1.0] };
        assert_eq!(lut.get(0.0), 0.0);
        assert_eq!(lut.get(11.0), 0.5);
        assert_eq!(lut.get(99.0), 1.0);
        let r = Lut { first: 0, data: vec![1.0, 0.0] };
        let g = Lut { first: 0, data: vec![0.0, 1.0] };
        let b = Lut { first: 0, data: vec![0.0, 0.0] };
        let stored =
            Stored { samples: Samples::Floats(vec![0.0, 1.0]), channels: 1, stats: Default::default(), reduced: None };
        let f = render(stored.clone(), &Model::Palette { r, g, b }, 2, 1);
        assert_eq!(f.channels, 3);
        assert_eq!(f.pixels, Pixels::Unit(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
    }

    #[test]
    fn segmented_palette_expands() {
        // discrete [0, 10], linear to 40 over 3, indirect: repeat the first
        // (discrete) segment.
        let data = [0, 2, 0, 10, 1, 3, 40, 2, 1, 0, 0];
        let mut out = Vec::new();
        expand_segmented(&data, None, None, 0, &mut out).unwrap();
        assert_eq!(out, vec![0.0, 10.0, 20.0, 30.0, 40.0, 0.0, 10.0]);
        // A linear first segment and self-referencing indirection fail.
        assert!(expand_segmented(&[1, 3, 40], None, None, 0, &mut Vec::new()).is_err());
        let looped = [0, 1, 5, 2, 1, 7, 0, 2, 1, 0, 0];
        assert!(expand_segmented(&looped, None, None, 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn rle_packbits() {
        let mut out = Vec::new();
        // literal run of 3, repeat 0xAA 4 times, no-op, literal 1.
        rle::unpack_bits(&[2, 1, 2, 3, 0xFD, 0xAA, 0x80, 0, 9], 100, &mut out);
        assert_eq!(out, vec![1, 2, 3, 0xAA, 0xAA, 0xAA, 0xAA, 9]);
    }

    #[test]
    fn rle_frame_interleaves_little_endian() {
        // 2 pixels, 1 sample, 16 bits: segment 0 = high bytes, 1 = low bytes.
        let mut data = vec![0u8; 64];
        data[0] = 2;
        data[4] = 64;
        data[8] = 67;
        data.extend_from_slice(&[1, 0x01, 0x02, 1, 0x10, 0x20]);
        let px = rle::decode_frame(&data, 2, 1, 2).unwrap();
        assert_eq!(px, vec![0x10, 0x01, 0x20, 0x02]);
        assert!(rle::decode_frame(&data[..10], 2, 1, 2).is_err());
        assert!(rle::decode_frame(&data, 2, 3, 1).is_err());
    }

    #[test]
    fn fragments_split_by_count_offsets_or_soi() {
        let f = |b: &[u8]| b.to_vec();
        let frags = vec![f(&[0xFF, 0xD8, 1, 2]), f(&[3, 4]), f(&[0xFF, 0xD8, 5, 6])];
        assert_eq!(fragments::split(&frags, &[], 1, true).unwrap(), vec![0..3]);
        assert_eq!(fragments::split(&frags, &[], 3, true).unwrap(), vec![0..1, 1..2, 2..3]);
        // Offsets count 8 bytes of item header per fragment: 0, 12, 22.
        assert_eq!(fragments::split(&frags, &[0, 22], 2, false).unwrap(), vec![0..2, 2..3]);
        assert_eq!(fragments::split(&frags, &[], 2, true).unwrap(), vec![0..2, 2..3]);
        assert!(fragments::split(&frags, &[], 2, false).is_err());
        assert!(fragments::split(&[], &[], 1, true).is_err());
        assert_eq!(&*fragments::frame_bytes(&frags, 0..2), &[0xFF, 0xD8, 1, 2, 3, 4]);
    }

    #[test]
    fn jpeg_colour_transform_choice() {
        use super::attrs::Photometric;
        use jpeg_decoder::ColorTransform;
        let h = |ids: &[u8], jfif, adobe| jpeg::JpegHeader {
            precision: 8,
            height: 1,
            width: 1,
            component_ids: ids.to_vec(),
            jfif,
            adobe_transform: adobe,
        };
        let ct = |hd: &jpeg::JpegHeader, pi| jpeg::color_transform(hd, pi);
        // See: pydicom SC_jpeg_no_color_transform.dcm
        assert_eq!(ct(&h(&[1, 2, 3], false, None), &Photometric::Rgb), ColorTransform::RGB);
        assert_eq!(ct(&h(&[1, 2, 3], true, None), &Photometric::Rgb), ColorTransform::YCbCr);
        assert_eq!(ct(&h(&[1, 2, 3], false, Some(1)), &Photometric::Rgb), ColorTransform::YCbCr);
        assert_eq!(ct(&h(&[1, 2, 3], false, Some(0)), &Photometric::YbrFull422), ColorTransform::RGB);
        assert_eq!(ct(&h(b"RGB", true, None), &Photometric::YbrFull), ColorTransform::RGB);
        assert_eq!(ct(&h(&[1, 2, 3], false, None), &Photometric::YbrFull422), ColorTransform::YCbCr);
    }

    #[test]
    fn jpeg_reduced_size_covers_the_model_input_in_both_axes() {
        // 1600 x 1200 for a 384 x 384 model: 1/4 would give 400 x 300 (too few rows).
        assert_eq!(jpeg::reduced_size(1600, 1200, (384, 384)), Some((800, 600)));
        assert_eq!(jpeg::reduced_size(1600, 1200, (200, 150)), Some((200, 150)));
        assert_eq!(jpeg::reduced_size(1601, 1201, (100, 100)), Some((201, 151)));
        assert_eq!(jpeg::reduced_size(1600, 1200, (1000, 600)), None);
        assert_eq!(jpeg::reduced_size(8, 8, (4, 4)), Some((4, 4)));
        assert_eq!(jpeg::reduced_size(1, 1, (1, 1)), None);
    }

    #[test]
    fn jpeg_header_scan() {
        // SOI, APP0 JFIF, SOF0 (precision 12, 1 component id 1), SOS.
        let mut d = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 7];
        d.extend_from_slice(b"JFIF\0");
        d.extend_from_slice(&[0xFF, 0xC1, 0, 11, 12, 0, 4, 0, 4, 1, 1, 0x11, 0]);
        d.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        let h = jpeg::scan_header(&d).unwrap();
        assert_eq!((h.precision, h.jfif, h.component_ids), (12, true, vec![1]));
        assert_eq!((h.width, h.height), (4, 4));
        assert!(matches!(
            jpeg::decode_frame(&d, &attrs::Photometric::Monochrome2, 4, 4, None),
            Err(DecodeError::Jpeg12Bit)
        ));
        assert!(jpeg::scan_header(&[0, 1, 2]).is_err());
        assert!(jpeg::scan_header(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]).is_err());
    }

    #[test]
    fn j2k_siz_gives_signedness_and_precision() {
        let mut d = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        d.extend_from_slice(&[0; 32]);
        d.extend_from_slice(&[0, 1, 0x80 | 12, 1, 1]);
        assert_eq!(codec::j2k_siz(&d), Some((true, 13)));
        assert_eq!(codec::j2k_siz(&[0; 10]), None);
        // Xsiz 720, Ysiz 512, XOsiz 8, YOsiz 0, tiles, then Csiz 1.
        let mut s = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [720u32, 512, 8, 0, 512, 512, 0, 0] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        s.extend_from_slice(&[0, 1, 15, 1, 1]);
        assert_eq!(codec::j2k_size(&s), Some((712, 512, 1)));
        assert_eq!(codec::j2k_size(&s[..40]), None);
        // Only at the start of the codestream, or of a JP2 file's jp2c box.
        assert_eq!(codec::j2k_size(&[&[0, 0][..], &s].concat()), None);
        let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
        jp2.extend_from_slice(&[0, 0, 0, 12, b'x', b'm', b'l', b' ', 0xFF, 0x4F, 0xFF, 0x51]);
        jp2.extend_from_slice(&[0, 0, 0, 0, b'j', b'p', b'2', b'c']);
        jp2.extend_from_slice(&s);
        assert_eq!(codec::j2k_size(&jp2), Some((712, 512, 1)));
    }

    #[test]
    fn errors_carry_their_source() {
        let e = DecodeError::from(crate::source::SourceError::Io(std::io::Error::other("disk on fire")));
        assert_eq!(e.reason(), "cannot read file: disk on fire");
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
