//! Generator v2: how the fundus and the photograph look — pigmentation,
//! the young eye's nerve-fibre-layer sheen, lesion sizes for the field,
//! and the finishing of each photograph (exposure, colour cast, light
//! fall-off, flash reflex, lens dust, focus), then the mask and text of
//! [`super::fov`].
//!
//! Parameter ranges and where they come from:
//!
//! | what | range | source |
//! | --- | --- | --- |
//! | fundus type | blond 15 %, orange 45 %, brown 25 %, tigroid 15 % | judgement; a UK screening population is mixed, with dark fundi common in South Asian and African-Caribbean patients |
//! | blond | pigment (R,G,B) 235–245, 125–150, 70–90; texture ridges 0.1–0.35; choroidal vessels visible, bands between them up to 8–18 % darker | thin RPE pigment shows the choroidal vessels (textbook); values judgement, matched by eye to real photographs |
//! | orange | v1's range (238,112,42)–(170,62,24); pattern 0 or 0.1–0.35 (30 %) | v1 |
//! | brown | (165,70,35)–(120,48,22); pattern 0–0.1 | judgement (darker, browner, flatter, as in `image0.png`) |
//! | tigroid | (200,95,45)–(160,70,35); ridges 0.2–0.35; bands between choroidal vessels up to 18–30 % darker | tessellated fundus of myopes (PALM's `P0185`); judgement |
//! | NFL sheen | age < 30: 0.6–1.0, < 45: 0.25–0.6, < 60: 0–0.25, else 0–0.08 (× 1.3 on dark fundi); radial striation 65–100 %, its phase wandering with the texture | the sheen fades with age (textbook); strengths judgement; regular stripes read as a sunburst on 30° fields |
//! | choroidal vessels | ~20 soft curving bands radiating from the posterior pole, wiggled by the eye's texture, faded in from 1–2.5 DD from the fovea, none on the disc | judgement (vortex-vein pattern of tessellated fundi) |
//! | vessel central reflex | age < 45: 40–60 % of the axis's absorption removed, veins too; else 25–40 %, arteries only (v1: 30 %, arteries); only where a vessel is > 6 px wide | the reflex is brighter in young eyes (textbook); numbers judgement |
//! | microaneurysm radius | v1's × 0.4–0.65: 0.010–0.023 DD, 3–7 px across at 1600 px wide | MAs are 25–125 µm; a disc diameter is ≈ 1.8 mm |
//! | dot haemorrhage, exudate | × 0.6–0.85, × 0.6–1.0 of v1's | judgement |
//! | exposure | × e^(0.18 N), 0.65–1.5 | auto-exposure and flash level vary ±¼ stop: judgement |
//! | colour cast (gain R, G, B) | 0.95–1.1, 0.92–1.15, 0.75–1.25 | white balance differs by vendor (Canon redder, Topcon greener): judgement; green raised from 0.85–1.1 and red from 0.92–1.08 because v2 came out redder (chromaticity g 0.26) and darker (R 134) than the real photographs (g 0.28, R 163; `tools/compare_fundus.py`) |
//! | gamma | 0.85–1.15 | judgement |
//! | under-exposure (the `dark` ungradable defect) | v1's × 0.1–0.2 (and its stronger noise), × 0.45: 0.045–0.09; its nerve-fibre sheen and flash reflex dimmed alike (× 0.07) | v1's range made ungradable photographs nearly as bright as `sample_dark.png` (in-field luminance up to ≈ 26 of 255 against its ≈ 28), a real under-exposed disc field on which every vessel can be followed; at 0.045–0.09 a photograph's field measures ≈ 11 of 255 (seed 2), where small lesions are a level or two deep |
//! | light fall-off | 1 − f·ρ^p, f 0–0.25, p 2–4, on top of v1's vignette (1 − v·ρ³, v 0.45–0.6) scaled by 0.2–0.7 | real photographs keep a median 0.85 of the centre's luminance at 0.75–0.9 of the radius (10–90 %: 0.37–1.0); v2 before this kept 0.63 (`tools/compare_fundus.py`) |
//! | flash reflex | 15 %: central, radius 0.08–0.2 R, +10–30 levels, bluish white | judgement (seen on Topcon images) |
//! | lens dust | 50 %: 1–4 soft dark blobs, radius 1–5 % of R, 8–30 % darker | judgement |
//! | focus | 35 % of gradable images: box blur 0.5–2 px × R/560 px, 2 passes; blur defects get more on large images | judgement |
//!
//! `R` is the field's radius in pixels (560 px in v1's 1600 × 1200).

use super::fov::Mask;
use super::optics::{box_blur, smoothstep};
use super::render::View;
use super::retina::{dist, LesionKind, Retina, Texture};
use super::rng::Rng;
use super::study::Defect;

/// Scale of v1's under-exposure for v2's `dark` defect (the table above).
const DARK_DEFECT_EXPOSURE: f32 = 0.45;

/// Fundus pigmentation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundusKind {
    Blond,
    Orange,
    Brown,
    Tigroid,
}

impl FundusKind {
    pub fn code(self) -> &'static str {
        match self {
            FundusKind::Blond => "blond",
            FundusKind::Orange => "orange",
            FundusKind::Brown => "brown",
            FundusKind::Tigroid => "tigroid",
        }
    }
}

/// One eye's fundus colouring.
#[derive(Debug, Clone)]
pub struct Fundus {
    pub kind: FundusKind,
    pub pigment: [f32; 3],
    pub tessellation: f32,
    /// Nerve-fibre-layer sheen strength, 0–1.
    pub sheen: f32,
    /// Visible choroidal vessels: how much darker the bands between them
    /// are, 0–1 ([`choroid_at`]).
    pub choroid: f32,
    /// Vessel central reflex: share of absorption removed on the axis, and
    /// whether veins show it too (young eyes).
    pub reflex: (f32, bool),
}

fn mix3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|k| a[k] + (b[k] - a[k]) * t)
}

impl Fundus {
    /// Draws the fundus of a patient `age` years old.
    pub fn draw(rng: &mut Rng, age: u32) -> Self {
        let u = rng.f32();
        let t = rng.f32();
        // The texture's own ridges stay within v1's range (stronger ones
        // show its grid); visible choroidal vessels come from `choroid`.
        let (kind, pigment, tessellation, choroid) = if u < 0.15 {
            let c = rng.range(0.08, 0.18);
            (FundusKind::Blond, mix3([245.0, 150.0, 90.0], [235.0, 125.0, 70.0], t), rng.range(0.1, 0.35), c)
        } else if u < 0.6 {
            let tess = if rng.chance(0.3) { rng.range(0.1, 0.35) } else { 0.0 };
            (FundusKind::Orange, mix3([238.0, 112.0, 42.0], [170.0, 62.0, 24.0], t), tess, 0.0)
        } else if u < 0.85 {
            (FundusKind::Brown, mix3([165.0, 70.0, 35.0], [120.0, 48.0, 22.0], t), rng.range(0.0, 0.1), 0.0)
        } else {
            let c = rng.range(0.18, 0.3);
            (FundusKind::Tigroid, mix3([200.0, 95.0, 45.0], [160.0, 70.0, 35.0], t), rng.range(0.2, 0.35), c)
        };
        let sheen = match age {
            0..30 => rng.range(0.6, 1.0),
            30..45 => rng.range(0.25, 0.6),
            45..60 => rng.range(0.0, 0.25),
            _ => rng.range(0.0, 0.08),
        } * if kind == FundusKind::Brown { 1.3 } else { 1.0 };
        let reflex = if age < 45 { (rng.range(0.4, 0.6), true) } else { (rng.range(0.25, 0.4), false) };
        Fundus { kind, pigment, tessellation, sheen: sheen.min(1.0), choroid, reflex }
    }

    /// Re-colours `retina` (made from `seed`), keeping its anatomy.
    pub fn apply(&self, retina: &mut Retina, seed: u64) {
        retina.pigment = self.pigment;
        if self.tessellation != retina.tessellation {
            retina.tessellation = self.tessellation;
            retina.texture = Texture::new(&mut Rng::new(seed).fork(2), self.tessellation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fundus_types_and_sheen_follow_the_table() {
        let mut rng = Rng::new(11);
        let young: Vec<Fundus> = (0..300).map(|_| Fundus::draw(&mut rng, 22)).collect();
        let old: Vec<Fundus> = (0..300).map(|_| Fundus::draw(&mut rng, 75)).collect();
        for kind in [FundusKind::Blond, FundusKind::Orange, FundusKind::Brown, FundusKind::Tigroid] {
            assert!(young.iter().any(|f| f.kind == kind), "{kind:?}");
        }
        assert!(young.iter().all(|f| f.sheen >= 0.6) && old.iter().all(|f| f.sheen <= 0.11));
        let tigroid = young.iter().filter(|f| f.kind == FundusKind::Tigroid);
        assert!(tigroid.clone().all(|f| f.choroid >= 0.18 && f.tessellation <= 0.35));
    }

    #[test]
    fn microaneurysms_shrink_to_a_few_pixels_at_1600_wide() {
        use crate::synth::study::Eye;
        let mut retina = Retina::generate(Eye::Right, 2, false, 3);
        scale_lesions(&mut retina, &mut Rng::new(4));
        // 1600 × 1200 with a 45° circle of radius ~0.46 h: ~158 px per DD.
        let ppd = 0.46 * 1200.0 / crate::synth::render::FOV_DD;
        let mas: Vec<f32> = retina
            .lesions
            .iter()
            .filter(|l| l.kind == LesionKind::Microaneurysm)
            .map(|l| 2.0 * l.blobs[0].a * ppd)
            .collect();
        assert!(!mas.is_empty());
        assert!(mas.iter().all(|d| (2.5..=8.0).contains(d)), "{mas:?}");
    }
}

/// Shrinks microaneurysms, dot haemorrhages and exudates to realistic
/// sizes (v1 drew them large enough for a 384-px model).
pub fn scale_lesions(retina: &mut Retina, rng: &mut Rng) {
    let (ma, dot, exu) = (rng.range(0.4, 0.65), rng.range(0.6, 0.85), rng.range(0.6, 1.0));
    for l in &mut retina.lesions {
        let k = match l.kind {
            LesionKind::Microaneurysm => ma,
            LesionKind::DotHaemorrhage => dot,
            LesionKind::Exudate => exu,
            _ => continue,
        };
        for b in &mut l.blobs {
            b.a *= k;
            b.b *= k;
        }
    }
}

/// How one v2 photograph is finished.
#[derive(Debug, Clone)]
pub struct Look2 {
    /// Exposure times colour cast, per channel.
    pub gain: [f32; 3],
    pub gamma: f32,
    pub falloff: f32,
    pub falloff_pow: f32,
    /// Central flash reflex: radius (fraction of R) and levels.
    pub reflex: Option<(f32, f32)>,
    /// Dust: centre (fraction of R from the field centre), radius (fraction
    /// of R), darkening.
    pub dust: Vec<([f32; 2], f32, f32)>,
    /// Box blur radius (pixels), 0 = sharp.
    pub blur: usize,
    pub sheen: f32,
    pub choroid: f32,
    /// Scale of the renderer's own vignette (v1: 1).
    pub vignette: f32,
}

impl Look2 {
    pub fn draw(rng: &mut Rng, defect: Option<Defect>, view: &View, fundus: &Fundus) -> Self {
        let scale = view.radius / 560.0;
        let exposure = match defect {
            // On top of the defect's own exposure (0.1–0.2): v2's dark
            // photographs are 0.045–0.09, too dark for small lesions.
            Some(Defect::Dark) => DARK_DEFECT_EXPOSURE,
            Some(Defect::Bright) => 1.0,
            _ => (0.18 * rng.normal()).exp().clamp(0.65, 1.5),
        };
        let cast = [rng.range(0.95, 1.1), rng.range(0.92, 1.15), rng.range(0.75, 1.25)];
        let gamma = rng.range(0.85, 1.15);
        let falloff = rng.range(0.0, 0.25);
        let falloff_pow = rng.range(2.0, 4.0);
        let reflex = rng.chance(0.15).then(|| (rng.range(0.08, 0.2), rng.range(10.0, 30.0)));
        let mut dust = Vec::new();
        if rng.chance(0.5) {
            for _ in 0..rng.int(1, 4) {
                let (r, a) = (0.9 * rng.f32().sqrt(), rng.range(0.0, std::f32::consts::TAU));
                dust.push(([r * a.cos(), r * a.sin()], rng.range(0.01, 0.05), rng.range(0.08, 0.3)));
            }
        }
        let blur = match defect {
            None if rng.chance(0.35) => (scale * rng.range(0.5, 2.0)).round() as usize,
            Some(Defect::Blur) if scale > 1.2 => (16.0 * (scale - 1.0)).round() as usize,
            _ => 0,
        };
        // Sheen and flash reflex are light added after the exposure, so an
        // under-exposed photograph gets them dimmed as much (at the middle,
        // 0.15, of the defect's own 0.1–0.2).
        let added_light = match defect {
            Some(Defect::Dark) => DARK_DEFECT_EXPOSURE * 0.15,
            _ => 1.0,
        };
        Look2 {
            gain: cast.map(|c| c * exposure),
            gamma,
            falloff,
            falloff_pow,
            reflex: reflex.map(|(r, level)| (r, level * added_light)),
            dust,
            blur,
            sheen: fundus.sheen * rng.range(0.7, 1.0) * added_light,
            choroid: fundus.choroid,
            vignette: rng.range(0.2, 0.7),
        }
    }
}

/// The nerve-fibre-layer sheen at retina point `q`: bright, radially
/// striated bands along the arcades and round the disc, 0 elsewhere.
#[inline]
fn sheen_at(retina: &Retina, q: [f32; 2]) -> f32 {
    let (dx, dy) = (q[0] - retina.disc[0], q[1] - retina.disc[1]);
    let d_disc = (dx * dx + dy * dy).sqrt();
    // Arcade bands about 1.6 DD above and below the fovea, temporal to
    // the disc; a ring just outside the disc.
    let toward_disc = q[0] * retina.disc[0].signum();
    let along = smoothstep(-3.0, -1.5, toward_disc) * smoothstep(0.3, 1.0, d_disc);
    let band = (-(q[1].abs() - 1.6).powi(2) / 0.35).exp() * along;
    let ring = (-(d_disc - 0.85).powi(2) / 0.1).exp();
    let s = band.max(ring);
    if s < 0.02 || dist(q, retina.fovea) < 0.8 {
        return 0.0;
    }
    // Nerve-fibre bundles run radially from the disc; their phase wanders
    // with the eye's texture so they do not read as a regular sunburst
    // (they did on 30° fields).
    let warp = retina.texture.at([0.5 * q[0], 0.5 * q[1]]);
    let stripes = 0.65 + 0.35 * (dy.atan2(dx) * 70.0 + 2.5 * warp).sin();
    s * stripes
}

/// Darkening between visible choroidal vessels at retina point `q`
/// (0–1): curving bands radiating from the posterior pole, their phase
/// wiggled by the eye's own texture so two fields of one eye agree.
#[inline]
fn choroid_at(retina: &Retina, q: [f32; 2]) -> f32 {
    let (dx, dy) = (q[0] - retina.fovea[0], q[1] - retina.fovea[1]);
    let r = (dx * dx + dy * dy).sqrt();
    let disc = dist(q, retina.disc) / retina.disc_r[1];
    if r < 1.0 || disc < 1.1 {
        return 0.0;
    }
    // Sampled at a quarter scale the texture's grain is ~0.2 DD: the bands
    // wander without jagged edges.
    let warp = retina.texture.at([0.25 * q[0], 0.25 * q[1]]);
    let s = 0.5 + 0.5 * (20.0 * dy.atan2(dx) + 1.5 * r + 1.5 * warp).sin();
    s * s * smoothstep(1.0, 2.5, r) * smoothstep(1.1, 1.6, disc)
}

/// Finishes the planes of one v2 photograph in place: focus, exposure,
/// cast, fall-off, reflex, dust and sheen inside the field; then the
/// mask and any text. Returns the planes.
#[allow(clippy::too_many_arguments)]
pub fn finish<'a>(
    planes: &'a mut [Vec<u8>; 3],
    w: u32,
    h: u32,
    look: &Look2,
    retina: &Retina,
    view: &View,
    mask: &Mask,
    text: Option<(&[String], [u8; 3])>,
) -> (&'a [Vec<u8>; 3], bool) {
    let (w, h) = (w as usize, h as usize);
    if look.blur > 0 {
        let mut rgb: Vec<f32> = (0..w * h).flat_map(|i| [0, 1, 2].map(|k| f32::from(planes[k][i]))).collect();
        box_blur(&mut rgb, &mut Vec::new(), w, h, look.blur, 2);
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for k in 0..3 {
                planes[k][i] = px[k].clamp(0.0, 255.0) as u8;
            }
        }
    }
    let lut: [[f32; 256]; 3] =
        [0, 1, 2].map(|k| std::array::from_fn(|i| 255.0 * (i as f32 / 255.0).powf(look.gamma) * look.gain[k]));
    let (s, c) = view.rot.sin_cos();
    let inv_ppd = 1.0 / view.ppd;
    let inv_r = 1.0 / view.radius;
    const SHEEN: [f32; 3] = [28.0, 38.0, 44.0];
    const REFLEX: [f32; 3] = [0.8, 0.95, 1.0];
    for y in 0..h {
        let fy = y as f32 + 0.5 - view.c[1];
        for x in 0..w {
            let i = y * w + x;
            let px = [planes[0][i], planes[1][i], planes[2][i]];
            if px == [0, 0, 0] {
                continue;
            }
            let fx = x as f32 + 0.5 - view.c[0];
            let (u, v) = (fx * inv_r, fy * inv_r);
            let rho = (u * u + v * v).sqrt();
            let mut light = (1.0 - look.falloff * rho.powf(look.falloff_pow)).max(0.0);
            for &(dc, dr, depth) in &look.dust {
                let d2 = (u - dc[0]).powi(2) + (v - dc[1]).powi(2);
                if d2 < 9.0 * dr * dr {
                    light *= 1.0 - depth * (-d2 / (2.0 * dr * dr)).exp();
                }
            }
            let mut add = [0.0f32; 3];
            if let Some((rr, lv)) = look.reflex {
                let e = (-(rho * rho) / (2.0 * rr * rr)).exp() * lv;
                add = REFLEX.map(|k| k * e);
            }
            if look.sheen > 0.02 || look.choroid > 0.0 {
                let q = [view.centre[0] + (c * fx - s * fy) * inv_ppd, view.centre[1] + (s * fx + c * fy) * inv_ppd];
                if look.choroid > 0.0 {
                    light *= 1.0 - look.choroid * choroid_at(retina, q);
                }
                if look.sheen > 0.02 {
                    let sh = look.sheen * sheen_at(retina, q) * light;
                    for k in 0..3 {
                        add[k] += SHEEN[k] * sh;
                    }
                }
            }
            let cover = mask.cover(x as f32 + 0.5, y as f32 + 0.5);
            for k in 0..3 {
                let v = (lut[k][usize::from(px[k])] * light + add[k]) * cover;
                planes[k][i] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    let burnt = text.is_some_and(|(lines, colour)| mask.burn_text(planes, lines, colour));
    (planes, burnt)
}
