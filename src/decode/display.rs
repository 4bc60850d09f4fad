//! Stored values → display values in `0.0..=1.0`: the part of the DICOM
//! greyscale pipeline (PS3.4 N.2) a model needs, plus palette and colour
//! scaling.
//!
//! Greyscale: Modality LUT (sequence, else rescale slope/intercept), then VOI
//! (VOI LUT sequence as pydicom prefers it, else the first window with its
//! VOILUTFunction, else the frame's own min–max), then MONOCHROME1 is
//! inverted so that bright always means dense. Colour is scaled by the
//! largest value BitsStored can hold; palette indices go through the
//! palette's LUTs.

use dicom_dictionary_std::tags;

use super::attrs::{self, first_float, frame_attr, Obj, Photometric, PixelAttrs};
use super::lut::{palette, seq_lut, Lut};
use super::pixels::{Endian, Samples, Stored};
use super::DecodeError;
use crate::message::{Frame, Pixels};

#[derive(Debug, Clone)]
pub(crate) enum Modality {
    Rescale { slope: f32, intercept: f32 },
    Lut(Lut),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

#[derive(Debug, Clone)]
pub(crate) enum Voi {
    Window {
        center: f64,
        width: f64,
        function: VoiFunction,
    },
    /// Output already divided by the LUT's largest possible entry.
    Lut(Lut),
    MinMax,
}

impl Voi {
    /// Maps a modality value to `0..=1`; `None` for [`Voi::MinMax`], which
    /// needs the whole frame.
    pub fn apply(&self, x: f64) -> Option<f64> {
        let y = match *self {
            Voi::Window { center: c, width: w, function: VoiFunction::Linear } => {
                // PS3.3 C.11.2.1.2.1; a width of 1 is a threshold at c - 0.5.
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    1.0
                } else {
                    (x - (c - 0.5)) / (w - 1.0) + 0.5
                }
            }
            Voi::Window { center: c, width: w, function: VoiFunction::LinearExact } => {
                ((x - c) / w + 0.5).clamp(0.0, 1.0)
            }
            Voi::Window { center: c, width: w, function: VoiFunction::Sigmoid } => {
                1.0 / (1.0 + (-4.0 * (x - c) / w).exp())
            }
            Voi::Lut(ref lut) => f64::from(lut.get(x as f32)),
            Voi::MinMax => return None,
        };
        Some(y)
    }
}

/// How a frame's stored values become display values.
#[derive(Debug, Clone)]
pub(crate) enum DisplayTransform {
    Mono {
        invert: bool,
        modality: Modality,
        voi: Voi,
    },
    /// RGB divided by `max`.
    Rgb {
        max: f32,
    },
    /// Indices through the red, green and blue LUTs (already in `0..=1`).
    Palette {
        r: Lut,
        g: Lut,
        b: Lut,
    },
}

/// Chooses the display transform of one frame from its attributes.
///
/// # Errors
/// A palette or LUT that cannot be read (segmented palettes are not
/// supported).
pub(crate) fn transform_for(
    obj: &Obj,
    a: &PixelAttrs,
    frame: u32,
    channels: u8,
    endian: Endian,
) -> Result<DisplayTransform, DecodeError> {
    if channels == 3 {
        let max = if a.bits_allocated >= 32 && a.element != attrs::PixelElement::Int {
            1.0
        } else {
            ((1u64 << a.bits_stored.clamp(1, 32)) - 1) as f32
        };
        return Ok(DisplayTransform::Rgb { max });
    }
    if a.photometric == Photometric::PaletteColor {
        let (r, g, b) = palette(obj, a.signed, endian)?;
        return Ok(DisplayTransform::Palette { r, g, b });
    }
    let modality = match obj.get(tags::MODALITY_LUT_SEQUENCE).and_then(|s| s.items()?.first().cloned()) {
        Some(item) => Modality::Lut(seq_lut(&item, a.signed, endian, false)?),
        None => {
            let seq = tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE;
            let slope = first_float(frame_attr(obj, frame, seq, tags::RESCALE_SLOPE)).unwrap_or(1.0);
            let intercept = first_float(frame_attr(obj, frame, seq, tags::RESCALE_INTERCEPT)).unwrap_or(0.0);
            Modality::Rescale { slope: slope as f32, intercept: intercept as f32 }
        }
    };
    Ok(DisplayTransform::Mono {
        invert: a.photometric == Photometric::Monochrome1,
        modality,
        voi: voi_for(obj, frame, a.signed, endian)?,
    })
}

fn voi_for(obj: &Obj, frame: u32, signed: bool, endian: Endian) -> Result<Voi, DecodeError> {
    if let Some(item) = obj.get(tags::VOILUT_SEQUENCE).and_then(|s| s.items()?.first().cloned()) {
        return Ok(Voi::Lut(seq_lut(&item, signed, endian, true)?));
    }
    let seq = tags::FRAME_VOILUT_SEQUENCE;
    let center = first_float(frame_attr(obj, frame, seq, tags::WINDOW_CENTER));
    let width = first_float(frame_attr(obj, frame, seq, tags::WINDOW_WIDTH));
    let function = match frame_attr(obj, frame, seq, tags::VOILUT_FUNCTION)
        .and_then(|e| e.to_str().ok())
        .as_deref()
        .map(|s| s.trim_end_matches(['\0', ' ']).trim())
    {
        Some("SIGMOID") => VoiFunction::Sigmoid,
        Some("LINEAR_EXACT") => VoiFunction::LinearExact,
        _ => VoiFunction::Linear,
    };
    Ok(match (center, width) {
        // LINEAR needs width >= 1, the others > 0; otherwise the window is
        // unusable and the frame's own range is the best we can do.
        (Some(center), Some(width)) if width >= 1.0 || (function != VoiFunction::Linear && width > 0.0) => {
            Voi::Window { center, width, function }
        }
        _ => Voi::MinMax,
    })
}

/// Applies `transform` to a frame's stored values.
pub(crate) fn render(stored: Stored, transform: &DisplayTransform, width: u32, height: u32) -> Frame {
    let channels = if matches!(transform, DisplayTransform::Mono { .. }) { 1 } else { 3 };
    let pixels = match (transform, stored.samples) {
        // 8-bit colour needs no arithmetic: bytes are display value × 255.
        (DisplayTransform::Rgb { max }, Samples::Bytes(bytes)) if *max == 255.0 => Pixels::Bytes(bytes),
        // In place: a colour photograph's samples are tens of megabytes.
        (DisplayTransform::Rgb { max }, samples) => {
            let mut values = samples.into_floats();
            for v in &mut values {
                *v = clamp01(*v / max);
            }
            Pixels::Unit(values)
        }
        (DisplayTransform::Palette { r, g, b }, samples) => {
            let values = samples.into_floats();
            let mut out = Vec::with_capacity(values.len() * 3);
            for &v in &values {
                out.extend_from_slice(&[clamp01(r.get(v)), clamp01(g.get(v)), clamp01(b.get(v))]);
            }
            Pixels::Unit(out)
        }
        (DisplayTransform::Mono { invert, modality, voi }, samples) => {
            let values = samples.into_floats();
            let mut out: Vec<f32> = match modality {
                Modality::Rescale { slope, intercept } => values.iter().map(|&v| v * slope + intercept).collect(),
                Modality::Lut(lut) => values.iter().map(|&v| lut.get(v)).collect(),
            };
            if let Voi::MinMax = voi {
                min_max_normalise(&mut out);
            } else {
                for v in &mut out {
                    *v = voi.apply(f64::from(*v)).unwrap_or(0.0) as f32;
                }
            }
            for v in &mut out {
                *v = clamp01(if *invert { 1.0 - *v } else { *v });
            }
            Pixels::Unit(out)
        }
    };
    Frame { width, height, channels, pixels }
}

/// Stretches the frame's own range to `0..=1` (all zero when flat).
pub(crate) fn min_max_normalise(values: &mut [f32]) {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = hi - lo;
    for v in values.iter_mut() {
        *v = if range > 0.0 && v.is_finite() { (*v - lo) / range } else { 0.0 };
    }
}

fn clamp01(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::lut::Lut;
    use crate::decode::pixels::Stored;

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
        let transform = |invert| DisplayTransform::Mono {
            invert,
            // Values become -100, 0, 100; window [-100, 100] maps them to 0, ~0.5, 1.
            modality: Modality::Rescale { slope: 10.0, intercept: -100.0 },
            voi: window(0.5, 201.0, VoiFunction::Linear),
        };
        let two = render(stored.clone(), &transform(false), 3, 1);
        assert_eq!(two.channels, 1);
        let two = two.values();
        assert_eq!(two[0], 0.0);
        assert!((two[1] - 0.5).abs() < 1e-6);
        assert_eq!(two[2], 1.0);
        let one = render(stored.clone(), &transform(true), 3, 1);
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
        let f = render(stored.clone(), &DisplayTransform::Palette { r, g, b }, 2, 1);
        assert_eq!(f.channels, 3);
        assert_eq!(f.pixels, Pixels::Unit(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
    }
}
