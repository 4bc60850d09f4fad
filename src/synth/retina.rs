//! Anatomy and lesions of one synthetic eye, in retina coordinates.
//!
//! Units are optic-disc diameters (DD), origin at the fovea, `x` to the
//! image's right and `y` down, as a fundus photograph shows the eye. The eye
//! is built as a right eye (disc nasal = to the right of the fovea) and
//! mirrored for a left eye. Each photograph is then a view window over this
//! one retina ([`super::render::View`]), so a lesion shows in every field
//! that covers it, and the per-image grade is computed from what each field
//! actually shows ([`Retina::grade_in`]).

use std::f32::consts::{FRAC_PI_2, FRAC_PI_4, PI};

use super::rng::Rng;
use super::study::Eye;

/// A point in retina coordinates (DD).
pub type P = [f32; 2];

/// Disc centre of a right eye: 2.5 DD nasal to the fovea and slightly above
/// it, the textbook geometry (fovea about 15° temporal, 1.5° below).
pub(super) const DISC: P = [2.5, -0.25];
/// Vessel growth step (DD): about 6 px at 1600 × 1200, fine enough that
/// polylines look smooth.
const STEP: f32 = 0.04;
/// Vessels thinner than this (DD, about 2 px) end.
const MIN_WIDTH: f32 = 0.015;
/// Foveal avascular zone radius (DD): capillaries stop short of the fovea.
const FAZ: f32 = 0.33;
/// Nothing is grown beyond this distance from the fovea (DD).
const EXTENT: f32 = 7.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VesselKind {
    Artery,
    Vein,
    /// Proliferative new vessels (R3): fine, tortuous, lighter.
    New,
    /// Intraretinal microvascular abnormality (R2, generator v2): short,
    /// irregular, dilated capillary segments; drawn as new vessels are.
    Irma,
}

/// A polyline with a width (DD) per point.
#[derive(Debug, Clone)]
pub struct Vessel {
    pub kind: VesselKind,
    pub pts: Vec<P>,
    pub widths: Vec<f32>,
    /// Share of the full absorption it is drawn with (1 in v1).
    pub contrast: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LesionKind {
    Microaneurysm,
    DotHaemorrhage,
    BlotHaemorrhage,
    Exudate,
    /// Pre-retinal (sub-hyaloid) haemorrhage: boat-shaped, with a flat,
    /// horizontal fluid level on top.
    Preretinal,
    /// A tuft of new vessels; its vessels are in [`Retina::vessels`].
    NewVessels,
    /// Venous beading on one stretch of a vein (drawn through the vein's widths).
    Beading,
    /// Cotton-wool spot (generator v2): a pale, fluffy nerve-fibre infarct;
    /// an R1 feature beside others (DESP).
    CottonWool,
    /// Intraretinal microvascular abnormality (generator v2); its vessels
    /// are in [`Retina::vessels`]. R2.
    Irma,
}

impl LesionKind {
    /// The name `truth_lesions.csv` gives it.
    pub fn code(self) -> &'static str {
        match self {
            LesionKind::Microaneurysm => "microaneurysm",
            LesionKind::DotHaemorrhage => "dot_haemorrhage",
            LesionKind::BlotHaemorrhage => "blot_haemorrhage",
            LesionKind::Exudate => "exudate",
            LesionKind::Preretinal => "preretinal_haemorrhage",
            LesionKind::NewVessels => "new_vessels",
            LesionKind::Beading => "venous_beading",
            LesionKind::CottonWool => "cotton_wool_spot",
            LesionKind::Irma => "irma",
        }
    }
}

/// An ellipse: centre, semi-axes (DD) and rotation (radians).
#[derive(Debug, Clone, Copy)]
pub struct Blob {
    pub c: P,
    pub a: f32,
    pub b: f32,
    pub angle: f32,
}

#[derive(Debug, Clone)]
pub struct Lesion {
    pub kind: LesionKind,
    pub centre: P,
    /// The ellipses whose union is the lesion (empty for vessel lesions).
    /// For [`LesionKind::Preretinal`] one blob: half-width `a`, depth `b`,
    /// flat top through `c`.
    pub blobs: Vec<Blob>,
    /// Share of full strength it is drawn with, 0–1 (1 in v1): how much
    /// of the blood's absorption, or how opaque an exudate is.
    pub contrast: f32,
}

/// One eye's fundus.
#[derive(Debug, Clone)]
pub struct Retina {
    pub eye: Eye,
    pub fovea: P,
    pub disc: P,
    /// Disc semi-axes (DD): slightly taller than wide.
    pub disc_r: [f32; 2],
    /// Cup-to-disc ratio.
    pub cup: f32,
    /// Background colour at the posterior pole (0–255 scale, before lighting).
    pub pigment: [f32; 3],
    /// Strength of the choroidal (tigroid) pattern, 0–1.
    pub tessellation: f32,
    pub texture: Texture,
    pub vessels: Vec<Vessel>,
    pub lesions: Vec<Lesion>,
}

/// Smooth background texture on a grid in retina coordinates, so two fields
/// of the same eye show the same choroidal pattern where they overlap.
#[derive(Debug, Clone)]
pub struct Texture {
    cols: usize,
    rows: usize,
    values: Vec<f32>,
}

/// Grid spacing of [`Texture`] (DD): about 8 px.
const TEX_CELL: f32 = 0.05;
const TEX_HALF: f32 = 7.0;

impl Texture {
    pub(super) fn new(rng: &mut Rng, tessellation: f32) -> Self {
        let cols = (2.0 * TEX_HALF / TEX_CELL) as usize + 2;
        let rows = cols;
        // Coarse value noise (every 6 cells) for uneven pigment, plus fine
        // grain; tessellated fundi add a ridged pattern (dark lines where
        // the coarse noise crosses its mean) like choroidal vessels.
        let coarse_n = cols / 6 + 2;
        let coarse: Vec<f32> = (0..coarse_n * coarse_n).map(|_| rng.normal()).collect();
        let ridge: Vec<f32> = (0..coarse_n * coarse_n).map(|_| rng.normal()).collect();
        // Bilinear with smoothstep weights on a coarse grid. Where and how
        // far between grid nodes a column or row falls is worked out once
        // per column and row, not per value: same arithmetic, same values.
        let at = |v: f32| {
            let i = v.floor() as usize;
            let f = v - i as f32;
            (i, f * f * (3.0 - 2.0 * f))
        };
        let sample = |g: &[f32], (x0, fx): (usize, f32), (y0, fy): (usize, f32)| {
            let at = |i: usize, j: usize| g[j.min(coarse_n - 1) * coarse_n + i.min(coarse_n - 1)];
            let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
            let bot = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
            top * (1.0 - fy) + bot * fy
        };
        let coarse_at: Vec<_> = (0..cols).map(|i| at(i as f32 / 6.0)).collect();
        let ridge_at: Vec<_> = (0..cols).map(|i| at(i as f32 / 6.0 * 1.7)).collect();
        let mut values = Vec::with_capacity(cols * rows);
        for j in 0..rows {
            let (cy, ry) = (at(j as f32 / 6.0), at(j as f32 / 6.0 * 1.7));
            for i in 0..cols {
                let c = 0.6 * sample(&coarse, coarse_at[i], cy);
                // Without tessellation the ridge term is exactly 0.
                let ridge = if tessellation == 0.0 {
                    0.0
                } else {
                    let r = sample(&ridge, ridge_at[i], ry);
                    let ridged = (1.0 - (r.abs() * 3.0).min(1.0)).powi(2);
                    1.6 * tessellation * ridged
                };
                values.push(c + 0.35 * rng.normal() - ridge);
            }
        }
        Self { cols, rows, values }
    }

    /// Bilinear sample at a retina point; about ±1 in the middle of the range.
    #[inline]
    pub fn at(&self, p: P) -> f32 {
        let x = ((p[0] + TEX_HALF) / TEX_CELL).clamp(0.0, (self.cols - 2) as f32);
        let y = ((p[1] + TEX_HALF) / TEX_CELL).clamp(0.0, (self.rows - 2) as f32);
        let (i, j) = (x as usize, y as usize);
        let (fx, fy) = (x - i as f32, y - j as f32);
        let k = j * self.cols + i;
        let v = &self.values;
        let top = v[k] + (v[k + 1] - v[k]) * fx;
        let bot = v[k + self.cols] + (v[k + self.cols + 1] - v[k + self.cols]) * fx;
        top + (bot - top) * fy
    }
}

pub(super) fn dist(a: P, b: P) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// How a growing vessel chooses its heading.
#[derive(Debug, Clone, Copy)]
enum Steer {
    /// Arc around the fovea (the temporal arcades): `sense` −1 superior,
    /// +1 inferior; `r0` the arc radius at the disc (DD).
    Arcade { sense: f32, r0: f32 },
    /// Keep roughly to the starting heading.
    Straight { heading: f32 },
}

/// How the vessel tree grows. [`Growth::V1`] is v1's tree, draw for
/// draw; generator v2 passes its own ([`super::vasculature`]).
#[derive(Debug, Clone)]
pub struct Growth {
    /// Trunk widths at the disc (DD): vein, artery.
    pub trunk: [f32; 2],
    /// Curvature noise per step (radians) of trunks and of branches.
    pub tortuosity: [f32; 2],
    /// Width kept per step between branch points.
    pub taper: f32,
    /// Child width as a share of the parent's.
    pub ratio: (f32, f32),
    /// Branch points: v1's (parent × 0.93, child at 0.5–1.3 rad) or
    /// Murray's law (parent r0³ = r1³ + r2³, both turning by the angles
    /// of least work).
    pub murray: bool,
    /// Branching generations below the trunks.
    pub depth: u32,
    /// Branches per DD of trunk and of branch.
    pub branch_rate: [f32; 2],
    /// Vessels thinner than this (DD) end.
    pub min_width: f32,
}

impl Growth {
    pub const V1: Growth = Growth {
        trunk: [0.095, 0.072],
        tortuosity: [0.012, 0.03],
        taper: 0.998,
        ratio: (0.45, 0.75),
        murray: false,
        depth: 3,
        branch_rate: [0.5, 0.35],
        min_width: MIN_WIDTH,
    };
}

/// The angles (radians) by which a child of width ratio `r1` and the
/// parent's continuation `r2` (both relative to the parent) leave the
/// parent's heading under Murray's cost minimum (Murray 1926; Zamir 1978).
pub fn murray_angles(r1: f32, r2: f32) -> (f32, f32) {
    let (a1, a2) = (r1 * r1, r2 * r2);
    let c1 = ((1.0 + a1 * a1 - a2 * a2) / (2.0 * a1)).clamp(-1.0, 1.0);
    let c2 = ((1.0 + a2 * a2 - a1 * a1) / (2.0 * a2)).clamp(-1.0, 1.0);
    (c1.acos(), c2.acos())
}

struct Grower<'a> {
    rng: &'a mut Rng,
    growth: &'a Growth,
    out: Vec<Vessel>,
}

impl Grower<'_> {
    /// Grows one vessel and, recursively, its branches.
    #[allow(clippy::too_many_arguments)]
    fn grow(&mut self, kind: VesselKind, start: P, heading: f32, width: f32, len: f32, steer: Steer, depth: u32) {
        let g = self.growth;
        let mut p = start;
        let mut h = heading;
        let mut w = width;
        let mut curl = 0.0f32;
        let mut pts = vec![p];
        let mut widths = vec![w];
        let tortuosity = if depth == 0 { g.tortuosity[0] } else { g.tortuosity[1] };
        let branch_rate = if depth == 0 { g.branch_rate[0] } else { g.branch_rate[1] };
        let mut travelled = 0.0;
        while travelled < len {
            // Smoothly varying curvature gives the gentle wiggle of real vessels.
            curl = 0.85 * curl + tortuosity * self.rng.normal();
            h += curl;
            let target = match steer {
                Steer::Arcade { sense, r0 } => {
                    let r = (p[0] * p[0] + p[1] * p[1]).sqrt().max(1e-3);
                    let phi = p[1].atan2(p[0]).abs(); // 0 at the disc, π temporally
                    let r_target = r0 + 0.2 * phi + 0.7 * (phi - 1.7).max(0.0).powi(2);
                    // Tangent to the circle round the fovea, going over the
                    // top (superior) or under the bottom (inferior) ...
                    let (tx, ty) = if sense < 0.0 { (p[1] / r, -p[0] / r) } else { (-p[1] / r, p[0] / r) };
                    // ... pulled in or out towards the target radius.
                    let k = 0.8 * (r - r_target);
                    let (dx, dy) = (tx - k * p[0] / r, ty - k * p[1] / r);
                    // Leaving the disc the trunk first runs vertically.
                    if travelled < 0.35 {
                        h
                    } else {
                        dy.atan2(dx)
                    }
                }
                Steer::Straight { heading } => heading,
            };
            let mut diff = target - h;
            while diff > PI {
                diff -= 2.0 * PI;
            }
            while diff < -PI {
                diff += 2.0 * PI;
            }
            h += diff * if matches!(steer, Steer::Arcade { .. }) { 0.12 } else { 0.03 };
            p = [p[0] + STEP * h.cos(), p[1] + STEP * h.sin()];
            travelled += STEP;
            w *= g.taper;
            pts.push(p);
            widths.push(w);
            let r_fovea = (p[0] * p[0] + p[1] * p[1]).sqrt();
            if r_fovea < FAZ + 0.1 * self.rng.f32() || r_fovea > EXTENT || w < g.min_width {
                break;
            }
            if depth < g.depth && travelled > 0.4 && self.rng.chance(branch_rate * STEP) {
                let side = if self.rng.chance(0.5) { 1.0 } else { -1.0 };
                if g.murray {
                    let ratio = self.rng.range(g.ratio.0, g.ratio.1);
                    let rest = (1.0 - ratio.powi(3)).cbrt();
                    let (turn_child, turn_parent) = murray_angles(ratio, rest);
                    let angle = h + side * (turn_child + 0.12 * self.rng.normal());
                    let child_len = self.rng.range(1.0, 4.0) * ratio + 0.5;
                    self.grow(kind, p, angle, w * ratio, child_len, Steer::Straight { heading: angle }, depth + 1);
                    // The continuing parent bends away, then its steering
                    // pulls it back towards its course.
                    h -= side * turn_parent;
                    w *= rest;
                } else {
                    let angle = h + side * self.rng.range(0.5, 1.3);
                    let ratio = self.rng.range(g.ratio.0, g.ratio.1);
                    let child_len = self.rng.range(1.0, 4.0) * ratio + 0.5;
                    w *= 0.93;
                    self.grow(kind, p, angle, w * ratio, child_len, Steer::Straight { heading: angle }, depth + 1);
                }
            }
        }
        if pts.len() >= 2 {
            self.out.push(Vessel { kind, pts, widths, contrast: 1.0 });
        }
    }
}

/// What generator v2 changes in an eye's build: its vessel tree and how
/// strongly veins bead. [`Anatomy::V1`] is v1's eye.
#[derive(Debug, Clone)]
pub struct Anatomy {
    pub growth: Growth,
    /// Bead amplitude: a vein widens by up to this share (v1: 0.7).
    pub beading: f32,
}

impl Anatomy {
    pub const V1: Anatomy = Anatomy { growth: Growth::V1, beading: 0.7 };
}

impl Retina {
    /// Builds an eye with R grade `r` (0–3) and maculopathy `m1`.
    pub fn generate(eye: Eye, r: u8, m1: bool, seed: u64) -> Self {
        Self::generate_with(eye, r, m1, seed, &Anatomy::V1, |_| {})
    }

    /// As [`Retina::generate`] with `anatomy`; `more` adds to the eye (in
    /// right-eye coordinates) before a left eye is mirrored.
    pub fn generate_with(
        eye: Eye,
        r: u8,
        m1: bool,
        seed: u64,
        anatomy: &Anatomy,
        more: impl FnOnce(&mut Retina),
    ) -> Self {
        let root = Rng::new(seed);
        let mut rng = root.fork(1);
        // Pigmentation from a light, orange fundus to a dark, brown-red one.
        let k = rng.f32();
        let light = [238.0, 112.0, 42.0];
        let dark = [170.0, 62.0, 24.0];
        let pigment = [0, 1, 2].map(|c| light[c] + (dark[c] - light[c]) * k);
        let tessellation = if rng.chance(0.3) { rng.range(0.1, 0.35) } else { 0.0 };
        let texture = Texture::new(&mut root.fork(2), tessellation);
        let disc = [DISC[0] + 0.15 * rng.normal(), DISC[1] + 0.1 * rng.normal()];
        let disc_r = [rng.range(0.47, 0.52), rng.range(0.52, 0.58)];
        let cup = rng.range(0.25, 0.5);
        let mut retina = Retina {
            eye,
            fovea: [0.0, 0.0],
            disc,
            disc_r,
            cup,
            pigment,
            tessellation,
            texture,
            vessels: Vec::new(),
            lesions: Vec::new(),
        };
        retina.vessels = vessel_tree(&mut root.fork(3), disc, &anatomy.growth);
        retina.add_lesions(&mut root.fork(4), r, m1, anatomy.beading);
        more(&mut retina);
        if eye == Eye::Left {
            retina.mirror();
        }
        retina
    }

    fn mirror(&mut self) {
        let flip = |p: &mut P| p[0] = -p[0];
        flip(&mut self.disc);
        for v in &mut self.vessels {
            v.pts.iter_mut().for_each(flip);
        }
        for l in &mut self.lesions {
            flip(&mut l.centre);
            for b in &mut l.blobs {
                flip(&mut b.c);
                b.angle = -b.angle;
            }
        }
    }
}

/// Four arcades of arteries and veins from the disc (superior and inferior,
/// temporal and nasal), a few small papillomacular vessels, all branching.
fn vessel_tree(rng: &mut Rng, disc: P, growth: &Growth) -> Vec<Vessel> {
    let mut g = Grower { rng, growth, out: Vec::new() };
    for (kind, width) in [(VesselKind::Vein, growth.trunk[0]), (VesselKind::Artery, growth.trunk[1])] {
        let offset = if kind == VesselKind::Vein { 0.06 } else { -0.06 };
        for sense in [-1.0f32, 1.0] {
            let start = [disc[0] + offset + 0.03 * g.rng.normal(), disc[1] + 0.05 * sense];
            // Temporal arcade: leaves the disc vertically, arcs round the macula.
            let r0 = 2.25 + if kind == VesselKind::Vein { 0.15 } else { 0.0 } + 0.2 * g.rng.normal() + 0.15 * sense;
            let len = g.rng.range(7.0, 9.0);
            g.grow(kind, start, sense * FRAC_PI_2 - 0.15, width, len, Steer::Arcade { sense, r0 }, 0);
            // Nasal vessel: up-right or down-right.
            let h = sense * (FRAC_PI_4 + 0.3 * g.rng.normal());
            let len = g.rng.range(4.0, 6.0);
            g.grow(kind, start, h, width * 0.8, len, Steer::Straight { heading: h }, 1);
        }
        // Small papillomacular vessels heading for the fovea.
        for _ in 0..g.rng.int(1, 3) {
            let start = [disc[0] - 0.15, disc[1] + 0.3 * g.rng.normal()];
            let h = PI + 0.25 * g.rng.normal();
            g.grow(kind, start, h, width * 0.35, 2.5, Steer::Straight { heading: h }, 2);
        }
    }
    g.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_eye_mirrors_the_disc() {
        let r = Retina::generate(Eye::Right, 0, false, 4);
        let l = Retina::generate(Eye::Left, 0, false, 4);
        assert!(r.disc[0] > 2.0 && l.disc[0] < -2.0);
        assert!(r.vessels.len() > 20, "{}", r.vessels.len());
    }

    #[test]
    fn grades_follow_the_lesions() {
        for seed in 0..20 {
            let r0 = Retina::generate(Eye::Right, 0, false, seed);
            assert_eq!(r0.grade_in(r0.fovea, 3.5), (0, false));
            let r3 = Retina::generate(Eye::Right, 3, true, seed);
            let both = [r3.grade_in(r3.fovea, 3.5), r3.grade_in(r3.disc, 3.5)];
            assert!(both.iter().any(|g| g.0 == 3), "seed {seed}: {both:?}");
            assert!(both.iter().all(|g| g.0 >= 1));
        }
    }
}
