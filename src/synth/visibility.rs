//! Generator v2: whether a grader could see a lesion in one photograph,
//! so that only what is visible counts towards the image's grade.
//!
//! v2 draws lesions faint and small ([`super::disease`]), and each image
//! adds its own focus, exposure and light fall-off; a microaneurysm of
//! 15 % contrast on a dark brown fundus under a 2-px blur is not there
//! for a grader, and must not be for the answer key either. Per lesion
//! and image the drop (or rise) of the green channel at its centre is
//! estimated from how it was drawn, and set against the local background
//! as rendered:
//!
//! - relative contrast: the lesion's strength × its material's green
//!   absorption (blood 0.82, vessels 0.5 faded by width) or brightening
//!   (exudate, cotton-wool spot against the fundus pigment), × the stamp's
//!   peak cover for its size (1.5–2 px soft edge), × the loss to blur: a
//!   disc of radius `r` under a Gaussian of variance `σ²` keeps
//!   `1 − e^(−r²/2σ²)` of its peak; `σ²` is the focus blur's variance
//!   plus 0.25 px² for optics and JPEG; × the photograph's gamma;
//! - levels: that × the median green level of the finished photograph on
//!   two rings just outside the lesion (so light fall-off, dust, exposure
//!   and pigment all count);
//! - visible when the drop is at least [`MIN_LEVELS`] levels and
//!   [`MIN_CONTRAST`] of the background (judgement: about twice the
//!   camera noise), a microaneurysm or dot haemorrhage is not on a vessel
//!   (its absorption hides it), and venous beading widens the vein by at
//!   least a pixel.

use super::render::{Absorption, View, EXUDATE, PALE};
use super::retina::{dist, Lesion, LesionKind, Retina, VesselKind};

/// Least change of the green level (8-bit) a grader is taken to see.
pub const MIN_LEVELS: f32 = 4.0;
/// Least change relative to the local background.
pub const MIN_CONTRAST: f32 = 0.03;
/// Vessel absorption (0–255 in the masks) over which a small red lesion
/// is hidden.
const ON_VESSEL: u8 = 100;

/// One finished photograph, as visibility needs it.
pub struct Photo<'a> {
    pub view: &'a View,
    /// The finished green plane, `w × h`.
    pub green: &'a [u8],
    pub w: usize,
    pub h: usize,
    /// Variance (px²) of the focus blur over the retina.
    pub blur_var: f32,
    pub gamma: f32,
    /// Vessel width fade `w0` (DD), as rendered.
    pub fade: Option<f32>,
    /// Bead amplitude of this eye.
    pub beading: f32,
    /// Absorption as rendered.
    pub absorption: Absorption,
}

/// Share of a disc's (or line's) peak left after a blur of variance `var`.
fn kept(r: f32, var: f32) -> f32 {
    1.0 - (-(r * r) / (2.0 * var)).exp()
}

impl Photo<'_> {
    /// The variance of `passes` box blurs of `radius` pixels.
    pub fn box_var(radius: usize, passes: usize) -> f32 {
        let r = radius as f32;
        passes as f32 * r * (r + 1.0) / 3.0
    }

    /// Whether `lesion` of `retina` shows in this photograph (its centre
    /// being inside the lit field is checked by the caller).
    /// `vessels_at(x, y)` gives the rendered artery and vein absorption.
    pub fn visible(&self, retina: &Retina, lesion: &Lesion, vessels_at: impl Fn(usize, usize) -> (u8, u8)) -> bool {
        let c = self.view.to_px(lesion.centre);
        if c[0] < 0.0 || c[1] < 0.0 || c[0] >= self.w as f32 || c[1] >= self.h as f32 {
            return false;
        }
        let var = self.blur_var + 0.25;
        let ppd = self.view.ppd;
        let (rel, reach) = match lesion.kind {
            LesionKind::Beading => return self.beading_visible(retina, lesion),
            LesionKind::NewVessels | LesionKind::Irma => {
                let Some(width) = tuft_width(retina, lesion) else { return false };
                let hw = 0.5 * width * ppd;
                let fade = self.fade.map_or(1.0, |w0| 1.0 - (-width / w0).exp());
                let cover = ((hw + 0.75) / 1.5).min(1.0);
                (lesion.contrast * self.absorption.artery[1] * fade * cover * kept(hw, var), 0.5 * ppd)
            }
            _ => {
                if lesion.blobs.is_empty() {
                    return false;
                }
                let r = lesion.blobs.iter().map(|b| b.a.min(b.b)).fold(0.0, f32::max) * ppd;
                let reach = lesion.blobs.iter().map(|b| dist(b.c, lesion.centre) + b.a.max(b.b)).fold(0.0, f32::max);
                let (material, soft) = match lesion.kind {
                    LesionKind::Exudate => (EXUDATE[1] / retina.pigment[1] - 1.0, 0.8),
                    LesionKind::CottonWool => (PALE[1] / retina.pigment[1] - 1.0, 0.6 * r.max(2.0)),
                    _ => (self.absorption.blood[1], 2.0),
                };
                let cover = (r / soft + 0.5).min(1.0);
                if matches!(lesion.kind, LesionKind::Microaneurysm | LesionKind::DotHaemorrhage) {
                    let (a, v) = vessels_at(c[0] as usize, c[1] as usize);
                    if a.max(v) >= ON_VESSEL {
                        return false;
                    }
                }
                (lesion.contrast * material * cover * kept(r, var), reach * ppd)
            }
        };
        let rel = rel * self.gamma;
        let Some(bg) = self.background(c, reach) else { return false };
        rel >= MIN_CONTRAST && rel * bg >= MIN_LEVELS
    }

    /// Median green level on two rings 3 and 6 px outside `reach`; `None`
    /// when most of them fall outside the lit field.
    fn background(&self, c: [f32; 2], reach: f32) -> Option<f32> {
        let mut levels = Vec::with_capacity(48);
        for ring in [reach + 3.0, reach + 6.0] {
            for k in 0..24 {
                let a = k as f32 * std::f32::consts::TAU / 24.0;
                let (x, y) = (c[0] + ring * a.cos(), c[1] + ring * a.sin());
                if x < 0.0 || y < 0.0 || x >= self.w as f32 || y >= self.h as f32 {
                    continue;
                }
                let v = self.green[y as usize * self.w + x as usize];
                if v > 0 {
                    levels.push(v);
                }
            }
        }
        if levels.len() < 24 {
            return None;
        }
        levels.sort_unstable();
        Some(f32::from(levels[levels.len() / 2]))
    }

    /// Beading shows when the beads widen the vein by at least a pixel.
    fn beading_visible(&self, retina: &Retina, lesion: &Lesion) -> bool {
        let nearest = retina
            .vessels
            .iter()
            .filter(|v| v.kind == VesselKind::Vein)
            .flat_map(|v| v.pts.iter().zip(&v.widths))
            .min_by(|a, b| dist(*a.0, lesion.centre).total_cmp(&dist(*b.0, lesion.centre)));
        // The widths there already include the beads: undo the widest.
        nearest.is_some_and(|(_, &w)| w / (1.0 + self.beading) * self.beading * self.view.ppd >= 1.0)
    }
}

/// Mean width (DD) of the vessels of a new-vessel tuft or IRMA cluster:
/// those of its kind that start within 0.7 DD of its centre.
fn tuft_width(retina: &Retina, lesion: &Lesion) -> Option<f32> {
    let kind = if lesion.kind == LesionKind::Irma { VesselKind::Irma } else { VesselKind::New };
    let widths: Vec<f32> = retina
        .vessels
        .iter()
        .filter(|v| v.kind == kind && v.pts.first().is_some_and(|&p| dist(p, lesion.centre) < 0.7))
        .flat_map(|v| v.widths.iter().copied())
        .collect();
    (!widths.is_empty()).then(|| widths.iter().sum::<f32>() / widths.len() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::retina::Blob;
    use crate::synth::study::Eye;
    use crate::synth::vasculature::ABSORPTION;

    const W: usize = 400;

    fn view() -> View {
        View { centre: [0.0, 0.0], ppd: 150.0, rot: 0.0, c: [200.0, 200.0], radius: 190.0 }
    }

    fn photo<'a>(view: &'a View, green: &'a [u8], blur_var: f32) -> Photo<'a> {
        Photo { view, green, w: W, h: W, blur_var, gamma: 1.0, fade: Some(0.035), beading: 0.5, absorption: ABSORPTION }
    }

    fn ma(contrast: f32, radius: f32) -> Lesion {
        let c = [0.3, 0.2];
        Lesion {
            kind: LesionKind::Microaneurysm,
            centre: c,
            blobs: vec![Blob { c, a: radius, b: radius, angle: 0.0 }],
            contrast,
        }
    }

    #[test]
    fn faint_blurred_dark_or_hidden_lesions_do_not_count() {
        let retina = Retina::generate(Eye::Right, 1, false, 1);
        let view = view();
        let lit = vec![100u8; W * W];
        let dark = vec![12u8; W * W];
        let none = |_, _| (0, 0);
        // 3 px across, 40 % of blood's absorption, on a mid-level fundus.
        assert!(photo(&view, &lit, 0.0).visible(&retina, &ma(0.4, 0.01), none));
        assert!(!photo(&view, &lit, 0.0).visible(&retina, &ma(0.03, 0.01), none), "too faint");
        assert!(!photo(&view, &lit, Photo::box_var(4, 2)).visible(&retina, &ma(0.4, 0.01), none), "blurred away");
        assert!(!photo(&view, &dark, 0.0).visible(&retina, &ma(0.4, 0.01), none), "too dark to see");
        assert!(!photo(&view, &lit, 0.0).visible(&retina, &ma(0.4, 0.01), |_, _| (0, 200)), "on a vein");
        // A larger lesion survives the same blur.
        assert!(photo(&view, &lit, Photo::box_var(4, 2)).visible(&retina, &ma(0.4, 0.04), none));
        // Outside the image, or where the background is black (outside the field).
        let black = vec![0u8; W * W];
        assert!(!photo(&view, &black, 0.0).visible(&retina, &ma(0.9, 0.03), none));
    }

    #[test]
    fn box_blur_variance_adds_up_over_passes() {
        assert_eq!(Photo::box_var(0, 2), 0.0);
        assert!((Photo::box_var(1, 1) - 2.0 / 3.0).abs() < 1e-6);
        assert!((Photo::box_var(2, 2) - 4.0).abs() < 1e-6);
    }
}
