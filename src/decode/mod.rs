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
use dicom_object::OpenFileOptions;
use rayon::iter::{ParallelBridge, ParallelIterator};
use serde::{Deserialize, Serialize};

use crate::dicom::ts::TsKind;
use crate::message::{DecodedImage, FileDone, ImageMeta, Instance, Msg, Stage};

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
    #[error("cannot read file size")]
    Io(#[source] std::io::Error),
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

    /// Decodes every frame of an instance; calls `emit` once per decoded
    /// frame, or with `Err(Rejected { stage: Decode, frame: Some(i) or None })`
    /// for failures (a whole-file failure is one `Err`). Never panics on bad
    /// input: codec panics are caught and reported as errors.
    pub fn decode_each(&self, inst: &Arc<Instance>, mut emit: impl FnMut(Msg<DecodedImage>)) {
        let multi = std::cell::Cell::new(false);
        let current = std::cell::Cell::new(0u32);
        let mut on_frame = |i: u32, r: Result<DecodedImage, DecodeError>| {
            emit(r.map_err(|e| {
                let mut rej = inst.reject(Stage::Decode, e.reason());
                rej.frame = Some(i);
                rej
            }));
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| self.decode_frames(inst, &multi, &current, &mut on_frame)));
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

    /// Opens the object, checks limits, then decodes frame by frame.
    /// Whole-object failures are returned; per-frame ones go to `on_frame`.
    fn decode_frames(
        &self,
        inst: &Arc<Instance>,
        multi: &std::cell::Cell<bool>,
        current: &std::cell::Cell<u32>,
        on_frame: &mut dyn FnMut(u32, Result<DecodedImage, DecodeError>),
    ) -> Result<(), DecodeError> {
        let bytes = std::fs::metadata(&inst.path).map_err(DecodeError::Io)?.len();
        if bytes > self.cfg.max_file_bytes {
            return Err(DecodeError::FileTooLarge { bytes, limit: self.cfg.max_file_bytes });
        }
        let obj = OpenFileOptions::new().open_file(&inst.path).map_err(DecodeError::Open)?;
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

/// The decode stage loop: runs [`Decoder::decode_each`] for each instance
/// on `pool` (`par_bridge`) and hands every result to `emit` on the worker
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
                    let path = rejected.path.clone();
                    forward(Err(rejected));
                    FileDone { path, units, instance: false }
                }
                Ok(inst) => {
                    let inst = Arc::new(inst);
                    dec.decode_each(&inst, &mut forward);
                    FileDone { path: inst.path.clone(), units, instance: true }
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

    #[test]
    fn errors_carry_their_source() {
        let e = DecodeError::Io(std::io::Error::other("disk on fire"));
        assert_eq!(e.reason(), "cannot read file size: disk on fire");
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
