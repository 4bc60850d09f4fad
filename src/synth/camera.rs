//! Generator v2: the camera of one photograph, drawn per image from a
//! small table of camera families, so a training batch spans the sizes,
//! aspect ratios, encodings, field angles and field-of-view masks of the
//! cameras real screening photographs come from.
//!
//! | family | sizes (px, w × h) | field | stored as | usual mask | source |
//! | --- | --- | --- | --- | --- | --- |
//! | `topcon-3:2` | 1440–3216 wide, 3:2 | 45–50° | JPEG, or native RGB up to 2400 wide (50 %) | circle clipped top and bottom (70 %) | Topcon TRC-NW6/NW8/NW400 are 45° cameras (Messidor's TRC NW6: 1440 × 960, 2240 × 1488, 2304 × 1536); IMAGEnet stores native RGB, Explicit VR LE (the real `issue_3.dcm`: 3216 × 2136, 50°, clipped at the bottom) |
//! | `canon-3:2` | 2376–3888 wide, 3:2 | 45° | JPEG | full circle (50 %) or clipped (45 %) | Canon CR-1/CR-2 on EOS bodies, 45° (HRF: CR-1 + EOS 20D, 3504 × 2336, clipped); 3888 × 2592 is a 10 MP EOS; 2376 wide is judgement |
//! | `ccd-4:3` | 1024–2560 wide, 4:3 | 40–45° | JPEG, or native RGB (30 %) | full circle (55 %) | 4:3 CCD cameras (today's 1600 × 1200 and its neighbours): judgement |
//! | `square-1:1` | 1024–2124 square | 45° | JPEG, or native RGB (20 %) | full circle (70 %), rectangular crop (20 %), notches (40 %) | Zeiss VISUCAM 45° exports near-square images (PALM's 1444 × 1444); scikit-image's `retina.jpg` is 1411 × 1411 |
//! | `narrow-30` | 999–1998 wide, 999 : 960 | 30–35° | JPEG, or native RGB (30 %) | full circle (60 %) or clipped (35 %) | 30° fields of Nidek NM-200-D (CHASE_DB1: 999 × 960, 30°) and Topcon TRV-50 (STARE, 35°); a 30° field is ≈ 4.7 DD across, so disc and vessels are half as large again as at 45° |
//!
//! Family weights 32 / 23 / 23 / 12 / 10 % (judgement). Widths are drawn
//! from each family's list and heights follow from the aspect (rounded to
//! even), so 999 to 3888 px wide. Native RGB is only drawn for images at
//! most 2400 px wide: uncompressed, a 2400 × 1600 image is already 11.5 MB
//! (3888 × 2592 would be 30 MB), and a 4 000-image training batch of those
//! would not fit the machines' disks or read in reasonable time; JPEG at
//! quality 90 is ~10× smaller.
//!
//! Field-of-view radius, by mask (relative to the short side `s`):
//! circle 0.43–0.485 `s` (a full field with a black margin, as today);
//! clipped 0.525–0.6 `h` (the circle runs off the top and bottom edge, as
//! on most 3:2 and 4:3 cameras), never wider than 97 % of the width;
//! rectangle 0.5–0.575 `s` before the crop ([`super::fov`]). The field's
//! angle sets the scale: a 45° field is 7 disc diameters across
//! ([`super::render::FOV_DD`]), a 50° field 7.8, so lesion and vessel sizes
//! in pixels follow the camera.

use super::render::{View, FOV_DD};
use super::retina::Retina;
use super::rng::Rng;
use super::study::{Eye, Field, StudyPlan};

/// How the pixels are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JPEG baseline, YBR_FULL_422 (as v1).
    Jpeg,
    /// Uncompressed RGB, Explicit VR Little Endian.
    NativeRgb,
}

impl Encoding {
    pub fn code(self) -> &'static str {
        match self {
            Encoding::Jpeg => "jpeg",
            Encoding::NativeRgb => "native_rgb",
        }
    }
}

/// The shape of the lit field before notches and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// A full circle on black.
    Circle,
    /// A circle cut by the top and bottom image edges.
    Clipped,
    /// A rectangle inside the circle, black borders around it.
    Rectangle,
}

impl MaskKind {
    pub fn code(self) -> &'static str {
        match self {
            MaskKind::Circle => "circle",
            MaskKind::Clipped => "clipped",
            MaskKind::Rectangle => "rectangle",
        }
    }
}

/// One camera family.
#[derive(Debug)]
pub struct Model {
    pub name: &'static str,
    /// Width : height.
    pub aspect: (u32, u32),
    pub widths: &'static [u32],
    /// Field angle range, degrees.
    pub field: (f32, f32),
    /// Share stored as native RGB (where the width allows it).
    pub native: f32,
    /// Weights of circle, clipped, rectangle.
    pub masks: [f32; 3],
    /// Probability of notches on the rim, and of burnt-in text.
    pub notch: f32,
    pub text: f32,
}

/// The families of the table above, with their weights.
pub const MODELS: [(f32, Model); 5] = [
    (
        0.32,
        Model {
            name: "topcon-3:2",
            aspect: (3, 2),
            widths: &[1440, 2240, 2304, 3216],
            field: (45.0, 50.0),
            native: 0.5,
            masks: [0.2, 0.7, 0.1],
            notch: 0.3,
            text: 0.5,
        },
    ),
    (
        0.23,
        Model {
            name: "canon-3:2",
            aspect: (3, 2),
            widths: &[2376, 2592, 3504, 3888],
            field: (45.0, 45.0),
            native: 0.0,
            masks: [0.5, 0.45, 0.05],
            notch: 0.15,
            text: 0.4,
        },
    ),
    (
        0.23,
        Model {
            name: "ccd-4:3",
            aspect: (4, 3),
            widths: &[1024, 1280, 1600, 2048, 2560],
            field: (40.0, 45.0),
            native: 0.3,
            masks: [0.55, 0.35, 0.1],
            notch: 0.2,
            text: 0.4,
        },
    ),
    (
        0.12,
        Model {
            name: "square-1:1",
            aspect: (1, 1),
            widths: &[1024, 1444, 2124],
            field: (45.0, 45.0),
            native: 0.2,
            masks: [0.7, 0.1, 0.2],
            notch: 0.4,
            text: 0.3,
        },
    ),
    (
        0.10,
        Model {
            name: "narrow-30",
            aspect: (999, 960),
            widths: &[999, 1332, 1998],
            field: (30.0, 35.0),
            native: 0.3,
            masks: [0.6, 0.35, 0.05],
            notch: 0.1,
            text: 0.3,
        },
    ),
];

/// Natively stored images are at most this wide (see the module doc).
pub const NATIVE_MAX_WIDTH: u32 = 2400;

/// One photograph's camera.
#[derive(Debug, Clone)]
pub struct Camera {
    pub model: &'static Model,
    pub width: u32,
    pub height: u32,
    pub encoding: Encoding,
    pub field_deg: f32,
    pub mask: MaskKind,
    /// Field-of-view centre and radius (pixels).
    pub centre: [f32; 2],
    pub radius: f32,
    /// Burnt-in text style (`None` = no text) and colour.
    pub text: Option<u8>,
    pub text_colour: [u8; 3],
}

fn weighted(rng: &mut Rng, weights: &[f32]) -> usize {
    let total: f32 = weights.iter().sum();
    let mut u = rng.f32() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

impl Camera {
    /// Draws a camera. `eye` is unused today but keeps the signature ready
    /// for left/right-specific notches.
    pub fn draw(rng: &mut Rng, _eye: Eye) -> Self {
        let weights: Vec<f32> = MODELS.iter().map(|(w, _)| *w).collect();
        let model = &MODELS[weighted(rng, &weights)].1;
        let width = *rng.pick(model.widths);
        let height = (width * model.aspect.1 / model.aspect.0) & !1;
        let field_deg = rng.range(model.field.0, model.field.1.max(model.field.0 + 1e-3));
        let native = width <= NATIVE_MAX_WIDTH && rng.chance(model.native);
        let encoding = if native { Encoding::NativeRgb } else { Encoding::Jpeg };
        let mask = [MaskKind::Circle, MaskKind::Clipped, MaskKind::Rectangle][weighted(rng, &model.masks)];
        let (w, h) = (width as f32, height as f32);
        let s = w.min(h);
        let radius = match mask {
            MaskKind::Circle => 0.5 * s * rng.range(0.86, 0.97),
            // A landscape field is cut by the top and bottom edges only; a
            // square one is cut a little on every side.
            MaskKind::Clipped if w > 1.2 * h => (0.5 * h * rng.range(1.05, 1.2)).min(0.485 * w),
            MaskKind::Clipped => 0.5 * s * rng.range(1.04, 1.12),
            MaskKind::Rectangle => (0.5 * s * rng.range(1.0, 1.15)).min(0.485 * w),
        };
        let centre = [w / 2.0 + 0.006 * s * rng.normal(), h / 2.0 + 0.006 * s * rng.normal()];
        let text = rng.chance(model.text).then(|| rng.int(0, 3) as u8);
        let text_colour = *rng.pick(&[[235, 235, 235], [250, 230, 70], [200, 200, 200], [120, 230, 120]]);
        Camera { model, width, height, encoding, field_deg, mask, centre, radius, text, text_colour }
    }

    /// The macula- or disc-centred view through this camera, with the
    /// aiming errors of a real photographer (as v1's [`View::new`]).
    pub fn view(&self, retina: &Retina, field: Field, rng: &mut Rng) -> View {
        let target = match field {
            Field::Macula => retina.fovea,
            Field::Disc => retina.disc,
        };
        let fov_dd = FOV_DD * self.field_deg / 45.0 * rng.range(0.97, 1.03);
        View {
            centre: [target[0] + 0.12 * rng.normal(), target[1] + 0.12 * rng.normal()],
            ppd: self.radius / fov_dd,
            rot: 0.04 * rng.normal(),
            c: self.centre,
            radius: self.radius,
        }
    }

    /// The text a camera of this style burns into the border: date, time
    /// and eye, in one of four vendor-like layouts (lines).
    pub fn overlay_text(&self, plan: &StudyPlan, eye: Eye) -> Option<Vec<String>> {
        let style = self.text?;
        let d = &plan.date;
        let t = &plan.time;
        let (y, m, dd) = (d.get(0..4)?, d.get(4..6)?, d.get(6..8)?);
        let (hh, mm, ss) = (t.get(0..2)?, t.get(2..4)?, t.get(4..6)?);
        let od = if eye == Eye::Right { "OD" } else { "OS" };
        Some(match style {
            0 => vec![format!("{y}/{m}/{dd}"), format!("{hh}:{mm}"), eye.code().to_string()],
            1 => vec![format!("{dd}.{m}.{y} {hh}:{mm}:{ss}"), od.to_string()],
            2 => vec![eye.code().to_string()],
            _ => vec![format!("{dd}-{m}-{y}"), eye.code().to_string()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_span_sizes_encodings_and_masks() {
        let mut rng = Rng::new(5);
        let cams: Vec<Camera> = (0..400).map(|_| Camera::draw(&mut rng, Eye::Right)).collect();
        let widths: Vec<u32> = cams.iter().map(|c| c.width).collect();
        assert!(widths.iter().any(|&w| w <= 1100) && widths.iter().any(|&w| w >= 3500));
        assert!(cams.iter().any(|c| c.encoding == Encoding::NativeRgb));
        assert!(cams.iter().filter(|c| c.encoding == Encoding::NativeRgb).all(|c| c.width <= NATIVE_MAX_WIDTH));
        for kind in [MaskKind::Circle, MaskKind::Clipped, MaskKind::Rectangle] {
            assert!(cams.iter().any(|c| c.mask == kind), "{kind:?}");
        }
        // 30° fields, and 40–50° ones; every family drawn.
        assert!(cams.iter().any(|c| c.field_deg < 36.0) && cams.iter().any(|c| c.field_deg > 48.0));
        for (_, m) in &MODELS {
            assert!(cams.iter().any(|c| c.model.name == m.name), "{}", m.name);
        }
        let narrow = cams.iter().filter(|c| c.field_deg < 36.0).count();
        assert!((20..70).contains(&narrow), "{narrow} of 400 at 30–35°");
        for c in &cams {
            assert!(c.height % 2 == 0 && c.height >= 680 && c.width <= 4000, "{}x{}", c.width, c.height);
            // Landscape fields are cut by the top and bottom edges only
            // (near-square ones, as the 30° family's, on every side).
            if c.width as f32 > 1.2 * c.height as f32 {
                assert!(2.0 * c.radius <= c.width as f32, "{c:?}");
            }
            if c.mask == MaskKind::Clipped {
                assert!(2.0 * c.radius > c.height as f32, "{c:?}");
            }
        }
    }
}
