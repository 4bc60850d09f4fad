//! Preprocess: a decoded frame → each routed model's input tensor.
//!
//! Everything comes from the model card's input spec (size, channels,
//! scale, mean/std, channel order, layout), so a new model needs a new
//! card, not new code. The frame's pixels are dropped here: only tensors
//! (a few hundred KiB each) wait in the infer queue.
//!
//! It also makes each frame's thumbnail ([`crate::thumbnail`]) while the
//! pixels are at hand, and hands it on in the frame's [`ImageMeta`].
//!
//! Runs on the decode workers, right after each frame is decoded (see
//! [`Preprocessor::apply`]): the frame is still in cache, and the cores
//! that decode also shrink, instead of one preprocess thread falling behind.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::message::{DecodedImage, Frame, ImageMeta, Msg, Pixels, Prepared, Stage};
use crate::model::{ChannelOrder, InputSpec, Layout, ModelId, Models};

/// Why a frame could not be turned into a tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    #[error("frame buffer holds {got} values, expected {expected} for {width}x{height}x{channels}")]
    BadFrame { got: usize, expected: usize, width: u32, height: u32, channels: u8 },
    #[error("resize to {width}x{height} failed: {reason}")]
    Resize { width: u32, height: u32, reason: String },
    #[error("no model {0} in this run")]
    UnknownModel(ModelId),
}

thread_local! {
    // One per worker thread: the resizer keeps its scratch buffers between frames.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Builds one card's input tensors: its spec, and per tensor channel the
/// value of each byte, so 8-bit frames are normalised by lookup.
#[derive(Debug, Clone)]
pub struct InputPreparer {
    spec: InputSpec,
    byte_values: Vec<[f32; 256]>,
}

impl InputPreparer {
    pub fn new(spec: &InputSpec) -> Self {
        let byte_values = (0..spec.channels as usize)
            .map(|c| {
                let (mean, inv_std) = normalisation(spec, c);
                std::array::from_fn(|b| (b as f32 / 255.0 * spec.scale - mean) * inv_std)
            })
            .collect();
        Self { spec: spec.clone(), byte_values }
    }

    /// The tensor, without batch dimension, in the card's layout.
    ///
    /// # Errors
    /// The frame buffer is inconsistent or cannot be resized.
    pub fn tensor(&self, frame: &Frame) -> Result<Vec<f32>, PreprocessError> {
        let (spec, table) = (&self.spec, &self.byte_values);
        check_frame(frame)?;
        let same_size = frame.width == spec.width && frame.height == spec.height;
        match &frame.pixels {
            Pixels::Bytes(bytes) if frame.channels == spec.channels => {
                let resized = if same_size {
                    Cow::Borrowed(bytes.as_slice())
                } else {
                    Cow::Owned(resize(bytes, frame.width, frame.height, spec, byte_pixel_type(spec.channels))?)
                };
                Ok(to_tensor(spec, |i, c| table[c][usize::from(resized[i])]))
            }
            _ => {
                let values = frame.values();
                let converted = convert_channels(&values, frame.channels, spec.channels);
                let resized = if same_size {
                    converted
                } else {
                    let bytes = resize(
                        bytemuck::cast_slice(&converted),
                        frame.width,
                        frame.height,
                        spec,
                        float_pixel_type(spec.channels),
                    )?;
                    // Read back by bytes: the buffer's alignment is the resizer's business.
                    Cow::Owned(bytes.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect())
                };
                Ok(to_tensor(spec, |i, c| {
                    let (mean, inv_std) = normalisation(spec, c);
                    (resized[i] * spec.scale - mean) * inv_std
                }))
            }
        }
    }
}

/// Builds every routed model's inputs. Shared by reference across decode workers.
pub struct Preprocessor {
    /// Indexed by [`ModelId::index`].
    models: Vec<InputPreparer>,
}

impl Preprocessor {
    pub fn new(models: &Models) -> Self {
        Self { models: models.iter().map(|(_, m)| InputPreparer::new(&m.card.input)).collect() }
    }

    /// The tensor for one model, without batch dimension, in the card's layout.
    ///
    /// # Errors
    /// The model is not in the run, or the frame buffer is inconsistent or
    /// cannot be resized.
    pub fn prepare(&self, frame: &Frame, model: ModelId) -> Result<Vec<f32>, PreprocessError> {
        self.models.get(model.index()).ok_or(PreprocessError::UnknownModel(model))?.tensor(frame)
    }

    /// Turns one decoded frame (or an upstream rejection) into one message
    /// per routed model and hands each to `send`. Returns false once `send`
    /// does: downstream has hung up.
    pub fn apply(&self, msg: Msg<DecodedImage>, mut send: impl FnMut(Msg<Prepared>) -> bool) -> bool {
        let mut image = match msg {
            Ok(image) => image,
            Err(rejected) => return send(Err(rejected)),
        };
        if !image.meta.instance.models.is_empty() && image.meta.thumbnail.is_none() {
            // Once per frame, shared by every model's message. A frame
            // without a thumbnail is still scored: the page says so.
            match crate::thumbnail::make(&image.frame) {
                Ok(t) => image.meta = Arc::new(ImageMeta { thumbnail: Some(Arc::new(t)), ..(*image.meta).clone() }),
                // No path in the log: folder names can be patient names.
                Err(e) => log::warn!("frame {}: no thumbnail: {e}", image.meta.frame_index),
            }
        }
        for &model in &image.meta.instance.models {
            let out = self
                .prepare(&image.frame, model)
                .map(|tensor| Prepared {
                    meta: Arc::clone(&image.meta),
                    model,
                    tensor,
                    domain: None,
                    bytes: image.bytes.clone(),
                })
                .map_err(|e| {
                    let mut r = image.meta.instance.reject(Stage::Preprocess, e);
                    r.frame = Some(image.meta.frame_index);
                    r
                });
            if !send(out) {
                return false;
            }
        }
        true
    }
}

fn normalisation(spec: &InputSpec, c: usize) -> (f32, f32) {
    (spec.mean.get(c).copied().unwrap_or(0.0), 1.0 / spec.std.get(c).copied().unwrap_or(1.0))
}

/// Lays out a model-sized interleaved image as the card's tensor;
/// `value(i, c)` is tensor channel `c` of the image's value at index `i`.
fn to_tensor(spec: &InputSpec, value: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let channels = spec.channels as usize;
    let pixels = (spec.width * spec.height) as usize;
    let mut tensor = vec![0f32; pixels * channels];
    for c in 0..channels {
        // BGR models read our RGB frame's channels in reverse.
        let src_c = if spec.channel_order == ChannelOrder::BGR && channels == 3 { 2 - c } else { c };
        match spec.layout {
            Layout::NCHW => {
                for (p, t) in tensor[c * pixels..(c + 1) * pixels].iter_mut().enumerate() {
                    *t = value(p * channels + src_c, c);
                }
            }
            Layout::NHWC => {
                for p in 0..pixels {
                    tensor[p * channels + c] = value(p * channels + src_c, c);
                }
            }
        }
    }
    tensor
}

fn check_frame(frame: &Frame) -> Result<(), PreprocessError> {
    let have = frame.channels as usize;
    let expected = frame.width as usize * frame.height as usize * have;
    if frame.len() != expected || (have != 1 && have != 3) {
        return Err(PreprocessError::BadFrame {
            got: frame.len(),
            expected,
            width: frame.width,
            height: frame.height,
            channels: frame.channels,
        });
    }
    Ok(())
}

/// Interleaved values with the model's channel count: greyscale is
/// replicated to RGB, RGB becomes luma (ITU-R BT.601 weights) for 1-channel
/// models. Borrowed when the counts already match: a photograph's frame is
/// tens of megabytes and copying it cost more than resizing it.
fn convert_channels(values: &[f32], have: u8, want: u8) -> Cow<'_, [f32]> {
    match (have, want) {
        (1, 3) => Cow::Owned(values.iter().flat_map(|&v| [v, v, v]).collect()),
        (3, 1) => Cow::Owned(values.chunks_exact(3).map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).collect()),
        _ => Cow::Borrowed(values),
    }
}

fn byte_pixel_type(channels: u8) -> PixelType {
    if channels == 1 {
        PixelType::U8
    } else {
        PixelType::U8x3
    }
}

fn float_pixel_type(channels: u8) -> PixelType {
    if channels == 1 {
        PixelType::F32
    } else {
        PixelType::F32x3
    }
}

/// Resizes an interleaved image held as raw bytes of `pixel_type`.
fn resize(src: &[u8], w: u32, h: u32, spec: &InputSpec, pixel_type: PixelType) -> Result<Vec<u8>, PreprocessError> {
    let err = |reason: String| PreprocessError::Resize { width: spec.width, height: spec.height, reason };
    let src_img = ImageRef::new(w, h, src, pixel_type).map_err(|e| err(e.to_string()))?;
    let mut dst = Image::new(spec.width, spec.height, pixel_type);
    // Convolution filters average over the source footprint, so a large
    // photograph shrinks without aliasing; bilinear is the cheapest of them.
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER.with_borrow_mut(|resizer| resizer.resize(&src_img, &mut dst, &options)).map_err(|e| err(e.to_string()))?;
    Ok(dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card::{Accepts, Activation, ModelCard, OutputSpec};
    use crate::model::VerifiedModel;

    fn model(channels: u8, layout: Layout, size: u32, order: ChannelOrder) -> VerifiedModel {
        VerifiedModel {
            card: ModelCard {
                id: "t".into(),
                version: "1".into(),
                file: "t.onnx".into(),
                sha256: "0".repeat(64),
                intended_use: String::new(),
                limitations: String::new(),
                clinical_use: false,
                input: InputSpec {
                    name: "x".into(),
                    layout,
                    channels,
                    height: size,
                    width: size,
                    scale: 255.0,
                    mean: vec![10.0; channels as usize],
                    std: vec![2.0; channels as usize],
                    channel_order: order,
                },
                output: OutputSpec { name: "y".into(), labels: vec!["a".into()], activation: Activation::None },
                accepts: Accepts::default(),
                thresholds: Default::default(),
                evaluation: None,
                explain: None,
                domain: None,
                second_look: None,
            },
            card_path: "t.toml".into(),
            onnx_path: "t.onnx".into(),
            route: Accepts::default(),
            domain: None,
            second_look: None,
        }
    }

    /// A registry of one model.
    fn models(model: VerifiedModel) -> Models {
        Models::new(vec![model]).expect("one model")
    }

    fn rgb_frame(w: u32, h: u32, rgb: [f32; 3]) -> Frame {
        Frame { width: w, height: h, channels: 3, pixels: Pixels::Unit((0..w * h).flat_map(|_| rgb).collect()) }
    }

    #[test]
    fn nchw_scales_normalises_and_keeps_constant_colour_through_resize() {
        let pre = Preprocessor::new(&models(model(3, Layout::NCHW, 4, ChannelOrder::RGB)));
        let t = pre.prepare(&rgb_frame(10, 7, [0.2, 0.4, 1.0]), ModelId::new(0)).expect("prepare");
        assert_eq!(t.len(), 3 * 16);
        let expect = |v: f32| (v * 255.0 - 10.0) / 2.0;
        for (c, v) in [0.2f32, 0.4, 1.0].into_iter().enumerate() {
            for p in 0..16 {
                assert!((t[c * 16 + p] - expect(v)).abs() < 1e-3, "channel {c} pixel {p}: {}", t[c * 16 + p]);
            }
        }
    }

    #[test]
    fn nhwc_bgr_reverses_channels_per_pixel() {
        let pre = Preprocessor::new(&models(model(3, Layout::NHWC, 2, ChannelOrder::BGR)));
        let t = pre.prepare(&rgb_frame(2, 2, [0.0, 0.5, 1.0]), ModelId::new(0)).expect("prepare");
        let expect = |v: f32| (v * 255.0 - 10.0) / 2.0;
        assert_eq!(&t[0..3], &[expect(1.0), expect(0.5), expect(0.0)]);
    }

    #[test]
    fn grey_models_get_luma_and_rgb_models_get_replicated_grey() {
        let pre = Preprocessor::new(&models(model(1, Layout::NCHW, 2, ChannelOrder::RGB)));
        let t = pre.prepare(&rgb_frame(2, 2, [1.0, 0.0, 0.0]), ModelId::new(0)).expect("prepare");
        assert!((t[0] - (0.299 * 255.0 - 10.0) / 2.0).abs() < 1e-3);
        let pre = Preprocessor::new(&models(model(3, Layout::NCHW, 2, ChannelOrder::RGB)));
        let grey = Frame { width: 2, height: 2, channels: 1, pixels: Pixels::Unit(vec![0.5; 4]) };
        let t = pre.prepare(&grey, ModelId::new(0)).expect("prepare");
        assert!(t.iter().all(|v| (v - (0.5 * 255.0 - 10.0) / 2.0).abs() < 1e-4));
    }

    /// 8-bit frames take the integer path; it must give the float path's
    /// tensor: exactly at model size, within one grey level when resized.
    #[test]
    fn byte_frames_match_the_float_path() {
        for (layout, order) in [(Layout::NCHW, ChannelOrder::RGB), (Layout::NHWC, ChannelOrder::BGR)] {
            let pre = Preprocessor::new(&models(model(3, layout, 8, order)));
            for (w, h) in [(8, 8), (37, 23)] {
                let bytes: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
                let as_bytes = Frame { width: w, height: h, channels: 3, pixels: Pixels::Bytes(bytes) };
                let as_floats = Frame { pixels: Pixels::Unit(as_bytes.values().into_owned()), ..as_bytes.clone() };
                let (a, b) = (
                    pre.prepare(&as_bytes, ModelId::new(0)).expect("bytes"),
                    pre.prepare(&as_floats, ModelId::new(0)).expect("floats"),
                );
                // One grey level, in tensor units: 255 (scale) / 255 / 2 (std).
                let tolerance = if w == 8 { 1e-4 } else { 0.5 + 1e-3 };
                let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(worst <= tolerance, "{layout:?} {w}x{h}: differs by {worst}");
            }
        }
    }

    #[test]
    fn inconsistent_frame_is_an_error_not_a_panic() {
        let pre = Preprocessor::new(&models(model(3, Layout::NCHW, 2, ChannelOrder::RGB)));
        let bad = Frame { width: 4, height: 4, channels: 3, pixels: Pixels::Unit(vec![0.0; 5]) };
        assert!(matches!(pre.prepare(&bad, ModelId::new(0)), Err(PreprocessError::BadFrame { .. })));
    }

    #[test]
    fn a_model_the_run_does_not_have_is_an_error_not_a_panic() {
        let pre = Preprocessor::new(&models(model(3, Layout::NCHW, 2, ChannelOrder::RGB)));
        let err = pre.prepare(&rgb_frame(2, 2, [0.0, 0.5, 1.0]), ModelId::new(1)).unwrap_err();
        assert!(matches!(err, PreprocessError::UnknownModel(m) if m == ModelId::new(1)), "{err}");
    }
}
