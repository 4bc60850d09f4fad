//! Preprocess: a decoded frame → each routed model's input tensor.
//!
//! Everything comes from the model card's input spec (size, channels,
//! scale, mean/std, channel order, layout), so a new model needs a new
//! card, not new code. The frame's pixels are dropped here: only tensors
//! (a few hundred KiB each) wait in the infer queue.

use std::borrow::Cow;
use std::sync::Arc;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::message::{DecodedImage, Frame, Msg, Prepared, Stage};
use crate::model::{ChannelOrder, InputSpec, Layout, VerifiedModel};

/// Why a frame could not be turned into a tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    #[error("frame buffer holds {got} values, expected {expected} for {width}x{height}x{channels}")]
    BadFrame { got: usize, expected: usize, width: u32, height: u32, channels: u8 },
    #[error("resize to {width}x{height} failed: {reason}")]
    Resize { width: u32, height: u32, reason: String },
}

/// Builds model inputs; holds a resizer so its buffers are reused.
pub struct Preprocessor {
    specs: Vec<InputSpec>,
    resizer: Resizer,
}

impl Preprocessor {
    pub fn new(models: &[VerifiedModel]) -> Self {
        Self { specs: models.iter().map(|m| m.card.input.clone()).collect(), resizer: Resizer::new() }
    }

    /// The tensor for one model, without batch dimension, in the card's layout.
    ///
    /// # Errors
    /// The frame buffer is inconsistent or cannot be resized.
    pub fn prepare(&mut self, frame: &Frame, model: usize) -> Result<Vec<f32>, PreprocessError> {
        let spec = &self.specs[model];
        let channels = spec.channels as usize;
        let converted = convert_channels(frame, spec.channels)?;
        let resized = if frame.width == spec.width && frame.height == spec.height {
            converted
        } else {
            Cow::Owned(resize(&mut self.resizer, &converted, frame.width, frame.height, spec)?)
        };
        let pixels = (spec.width * spec.height) as usize;
        let mut tensor = vec![0f32; pixels * channels];
        for c in 0..channels {
            // BGR models read our RGB frame's channels in reverse.
            let src_c = if spec.channel_order == ChannelOrder::BGR && channels == 3 { 2 - c } else { c };
            let mean = spec.mean.get(c).copied().unwrap_or(0.0);
            let inv_std = 1.0 / spec.std.get(c).copied().unwrap_or(1.0);
            for p in 0..pixels {
                let v = (resized[p * channels + src_c] * spec.scale - mean) * inv_std;
                let at = match spec.layout {
                    Layout::NCHW => c * pixels + p,
                    Layout::NHWC => p * channels + c,
                };
                tensor[at] = v;
            }
        }
        Ok(tensor)
    }
}

/// Interleaved pixels with the model's channel count: greyscale is
/// replicated to RGB, RGB becomes luma (ITU-R BT.601 weights) for 1-channel
/// models. Borrowed when the counts already match: a photograph's frame is
/// tens of megabytes and copying it cost more than resizing it.
fn convert_channels(frame: &Frame, want: u8) -> Result<Cow<'_, [f32]>, PreprocessError> {
    let have = frame.channels as usize;
    let pixels = frame.width as usize * frame.height as usize;
    if frame.pixels.len() != pixels * have || (have != 1 && have != 3) {
        return Err(PreprocessError::BadFrame {
            got: frame.pixels.len(),
            expected: pixels * have,
            width: frame.width,
            height: frame.height,
            channels: frame.channels,
        });
    }
    Ok(match (have, want) {
        (1, 3) => Cow::Owned(frame.pixels.iter().flat_map(|&v| [v, v, v]).collect()),
        (3, 1) => Cow::Owned(frame.pixels.chunks_exact(3).map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).collect()),
        _ => Cow::Borrowed(&frame.pixels),
    })
}

fn resize(resizer: &mut Resizer, src: &[f32], w: u32, h: u32, spec: &InputSpec) -> Result<Vec<f32>, PreprocessError> {
    let err = |reason: String| PreprocessError::Resize { width: spec.width, height: spec.height, reason };
    let pixel_type = if spec.channels == 1 { PixelType::F32 } else { PixelType::F32x3 };
    let src_img = ImageRef::new(w, h, bytemuck::cast_slice(src), pixel_type).map_err(|e| err(e.to_string()))?;
    let mut dst = Image::new(spec.width, spec.height, pixel_type);
    // Convolution filters average over the source footprint, so a large
    // photograph shrinks without aliasing; bilinear is the cheapest of them.
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer.resize(&src_img, &mut dst, &options).map_err(|e| err(e.to_string()))?;
    // Read back by bytes: the buffer's alignment is the resizer's business.
    Ok(dst.buffer().chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// The preprocess stage: one [`Prepared`] per (frame, routed model).
pub fn run(
    mut pre: Preprocessor,
    rx: crossbeam_channel::Receiver<Msg<DecodedImage>>,
    tx: crossbeam_channel::Sender<Msg<Prepared>>,
) {
    for msg in rx {
        let image = match msg {
            Ok(image) => image,
            Err(rejected) => {
                if tx.send(Err(rejected)).is_err() {
                    return;
                }
                continue;
            }
        };
        for &model in &image.meta.instance.models {
            let out = pre
                .prepare(&image.frame, model)
                .map(|tensor| Prepared { meta: Arc::clone(&image.meta), model, tensor })
                .map_err(|e| {
                    let mut r = image.meta.instance.reject(Stage::Preprocess, e);
                    r.frame = Some(image.meta.frame_index);
                    r
                });
            if tx.send(out).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card::{Accepts, Activation, ModelCard, OutputSpec};

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
            },
            card_path: "t.toml".into(),
            onnx_path: "t.onnx".into(),
            route: Accepts::default(),
        }
    }

    fn rgb_frame(w: u32, h: u32, rgb: [f32; 3]) -> Frame {
        Frame { width: w, height: h, channels: 3, pixels: (0..w * h).flat_map(|_| rgb).collect() }
    }

    #[test]
    fn nchw_scales_normalises_and_keeps_constant_colour_through_resize() {
        let mut pre = Preprocessor::new(&[model(3, Layout::NCHW, 4, ChannelOrder::RGB)]);
        let t = pre.prepare(&rgb_frame(10, 7, [0.2, 0.4, 1.0]), 0).expect("prepare");
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
        let mut pre = Preprocessor::new(&[model(3, Layout::NHWC, 2, ChannelOrder::BGR)]);
        let t = pre.prepare(&rgb_frame(2, 2, [0.0, 0.5, 1.0]), 0).expect("prepare");
        let expect = |v: f32| (v * 255.0 - 10.0) / 2.0;
        assert_eq!(&t[0..3], &[expect(1.0), expect(0.5), expect(0.0)]);
    }

    #[test]
    fn grey_models_get_luma_and_rgb_models_get_replicated_grey() {
        let mut pre = Preprocessor::new(&[model(1, Layout::NCHW, 2, ChannelOrder::RGB)]);
        let t = pre.prepare(&rgb_frame(2, 2, [1.0, 0.0, 0.0]), 0).expect("prepare");
        assert!((t[0] - (0.299 * 255.0 - 10.0) / 2.0).abs() < 1e-3);
        let mut pre = Preprocessor::new(&[model(3, Layout::NCHW, 2, ChannelOrder::RGB)]);
        let grey = Frame { width: 2, height: 2, channels: 1, pixels: vec![0.5; 4] };
        let t = pre.prepare(&grey, 0).expect("prepare");
        assert!(t.iter().all(|v| (v - (0.5 * 255.0 - 10.0) / 2.0).abs() < 1e-4));
    }

    #[test]
    fn inconsistent_frame_is_an_error_not_a_panic() {
        let mut pre = Preprocessor::new(&[model(3, Layout::NCHW, 2, ChannelOrder::RGB)]);
        let bad = Frame { width: 4, height: 4, channels: 3, pixels: vec![0.0; 5] };
        assert!(matches!(pre.prepare(&bad, 0), Err(PreprocessError::BadFrame { .. })));
    }
}
