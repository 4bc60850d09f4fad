//! Pixels: one field of one eye, as a 45° fundus camera would record it.
//!
//! [`Retina`] + [`View`] in, 8-bit RGB out (planes for the JPEG encoder,
//! or interleaved). 4 000 images must render and encode in well under a
//! minute on two cores, about 16 ms of CPU per image in all, so the work
//! per pixel is kept small: only pixels inside the field stop are worked
//! on; the smooth background (pigment, texture, macula, disc, light) is
//! shaded on a coarse grid and interpolated; vessels and lesions are
//! stamped into 8-bit masks over their own bounding boxes
//! ([`super::stamp`]); then one pass per row combines grid, masks, haze
//! and noise straight into bytes, compiled for AVX2 where the CPU has it.
//! Only defocused or hazy (ungradable) photographs take a blur and a
//! second pass.

use super::optics::{box_blur, smoothstep, Look};
use super::retina::{Retina, P};
use super::rng::{PixelNoise, Rng};
use super::stamp::Masks;
use super::study::{Defect, Field};

/// Field of view radius in DD: a 45° field is about 7 disc diameters
/// across, so the disc is about 1/7 of the field's diameter.
pub const FOV_DD: f32 = 3.5;

/// Where the camera looks and how the field maps to pixels.
#[derive(Debug, Clone)]
pub struct View {
    /// Retina point at the centre of the field (DD).
    pub centre: P,
    /// Pixels per DD.
    pub ppd: f32,
    /// Small rotation of the eye or camera (radians).
    pub rot: f32,
    /// Field-of-view centre and radius in pixels.
    pub c: [f32; 2],
    pub radius: f32,
}

impl View {
    /// The macula- or disc-centred view of `retina`, with the aiming and
    /// magnification errors of a real photographer.
    pub fn new(retina: &Retina, field: Field, width: u32, height: u32, rng: &mut Rng) -> Self {
        let target = match field {
            Field::Macula => retina.fovea,
            Field::Disc => retina.disc,
        };
        let radius = 0.47 * height as f32 * rng.range(0.97, 1.0);
        let fov = FOV_DD * rng.range(0.97, 1.03);
        View {
            centre: [target[0] + 0.12 * rng.normal(), target[1] + 0.12 * rng.normal()],
            ppd: radius / fov,
            rot: 0.04 * rng.normal(),
            c: [width as f32 / 2.0 + 4.0 * rng.normal(), height as f32 / 2.0 + 3.0 * rng.normal()],
            radius,
        }
    }

    /// Field-of-view radius in DD.
    pub fn radius_dd(&self) -> f32 {
        self.radius / self.ppd
    }

    pub fn to_px(&self, p: P) -> [f32; 2] {
        let (dx, dy) = ((p[0] - self.centre[0]) * self.ppd, (p[1] - self.centre[1]) * self.ppd);
        let (s, c) = self.rot.sin_cos();
        [self.c[0] + c * dx + s * dy, self.c[1] - s * dx + c * dy]
    }
}

/// Per-channel absorption of arteries, veins (deoxygenated, darker) and
/// of blood outside vessels.
const ARTERY: [f32; 3] = [0.2, 0.5, 0.45];
const VEIN: [f32; 3] = [0.4, 0.68, 0.6];
const BLOOD: [f32; 3] = [0.5, 0.82, 0.78];
const DISC_RIM: [f32; 3] = [240.0, 168.0, 100.0];
const DISC_CUP: [f32; 3] = [250.0, 225.0, 180.0];
pub(super) const EXUDATE: [f32; 3] = [250.0, 232.0, 140.0];
/// Cotton-wool spots: greyish white (generator v2).
pub(super) const PALE: [f32; 3] = [236.0, 228.0, 212.0];

/// Per-channel absorption (R, G, B) at full strength.
#[derive(Debug, Clone, Copy)]
pub struct Absorption {
    pub artery: [f32; 3],
    pub vein: [f32; 3],
    /// Haemorrhages.
    pub blood: [f32; 3],
}

/// The smooth background is shaded every 4 pixels and interpolated: it has
/// no detail finer than the texture grid (0.05 DD, 8 px).
const BASE_STEP: usize = 4;
/// Channels of the background grid: R, G, B and the light level.
const BASE_CH: usize = 4;

/// Reusable per-worker buffers, so 4 000 images do not each fault in tens
/// of megabytes of fresh pages.
#[derive(Debug, Default)]
pub struct Scratch {
    masks: Masks,
    /// Artery, vein and blood absorption when not v1's (generator v2).
    absorb: Option<Absorption>,
    /// Scales the vignette of the next render (generator v2).
    vignette_scale: Option<f32>,
    /// Background grid ([`BASE_STEP`], [`BASE_CH`]).
    base: Vec<f32>,
    /// Per grid row, the cells that are shaded ([`grid_cells`]).
    cells: Vec<(usize, usize)>,
    row: Row,
    /// Camera noise: a fixed table of unit-variance values; each row and
    /// channel reads it from its own random offset ([`NOISE_LEN`]).
    noise: Vec<f32>,
    /// f32 RGB image, for photographs that are blurred before noise.
    rgb: Vec<f32>,
    tmp: Vec<f32>,
    /// The finished 8-bit image, one plane per channel (what the JPEG
    /// encoder reads, and the per-pixel loops write without interleaving).
    planes: [Vec<u8>; 3],
    /// The same image interleaved, for [`render`].
    out: Vec<u8>,
}

impl Scratch {
    /// The planes the last [`render_planes`] wrote, for finishing in place
    /// (generator v2).
    pub fn planes_mut(&mut self) -> &mut [Vec<u8>; 3] {
        &mut self.planes
    }

    /// The planes the last render (and finish) wrote.
    pub fn planes(&self) -> &[Vec<u8>; 3] {
        &self.planes
    }

    /// Sets the vessels' central light reflex for the next renders
    /// (generator v2): the share of absorption removed on the axis, and
    /// whether veins show it too. v1 never calls this (arteries, 0.3).
    pub fn set_vessel_reflex(&mut self, gain: f32, veins: bool) {
        self.masks.reflex_gain = Some(gain);
        self.masks.vein_reflex = veins;
    }

    /// Makes the next renders' vessels absorb by their width (generator
    /// v2): `1 − e^(−width / w0)`, `w0` in DD. v1 never calls this.
    pub fn set_vessel_fade(&mut self, w0: f32) {
        self.masks.vessel_fade = Some(w0);
    }

    /// Sets the per-channel absorption of arteries, veins and blood for
    /// the next renders (generator v2); v1 keeps [`ARTERY`], [`VEIN`] and
    /// [`BLOOD`].
    pub fn set_absorption(&mut self, absorption: Absorption) {
        self.absorb = Some(absorption);
    }

    /// Scales the next render's vignette (generator v2, which adds its own
    /// fall-off in [`super::appearance`]); v1 never calls this.
    pub fn set_vignette_scale(&mut self, scale: f32) {
        self.vignette_scale = Some(scale);
    }

    /// The vessel masks of the last render at pixel `(x, y)`: artery and
    /// vein absorption, 0–255 (0 outside the image).
    pub fn vessels_at(&self, x: usize, y: usize) -> (u8, u8) {
        let m = &self.masks;
        if x >= m.w || y >= m.h {
            return (0, 0);
        }
        let i = y * m.w + x;
        (m.art.get(i).copied().unwrap_or(0), m.vein.get(i).copied().unwrap_or(0))
    }
}

/// Length of the noise table: rows read it at random offsets, so no
/// pattern repeats visibly, and drawing a fresh value per pixel and channel
/// (4.6 M per image) would cost more than everything else in this pass.
const NOISE_LEN: usize = 1 << 16;

/// One image row, planar, so the per-pixel loops vectorise.
#[derive(Debug, Default)]
struct Row {
    c: [Vec<f32>; 3],
    light: Vec<f32>,
    edge: Vec<f32>,
    /// Grid rows `grid_row` and `grid_row + 1`, expanded to full width.
    above: Vec<f32>,
    below: Vec<f32>,
    grid_row: Option<usize>,
}

/// Renders one field; returns `width × height` interleaved RGB bytes
/// (borrowed from `scratch`).
pub fn render<'s>(
    retina: &Retina,
    view: &View,
    defect: Option<Defect>,
    rng: &mut Rng,
    width: u32,
    height: u32,
    scratch: &'s mut Scratch,
) -> &'s [u8] {
    render_planes(retina, view, defect, rng, width, height, scratch);
    let Scratch { planes, out, .. } = scratch;
    out.clear();
    out.extend(planes[0].iter().zip(&planes[1]).zip(&planes[2]).flat_map(|((&r, &g), &b)| [r, g, b]));
    out
}

/// Renders one field; returns its R, G and B planes, `width × height`
/// bytes each (borrowed from `scratch`). Same pixels as [`render`].
pub fn render_planes<'s>(
    retina: &Retina,
    view: &View,
    defect: Option<Defect>,
    rng: &mut Rng,
    width: u32,
    height: u32,
    scratch: &'s mut Scratch,
) -> [&'s [u8]; 3] {
    let (w, h) = (width as usize, height as usize);
    let mut look = Look::new(defect, rng);
    if let Some(scale) = scratch.vignette_scale {
        look.vignette *= scale;
    }
    let absorb = scratch.absorb.unwrap_or(Absorption { artery: ARTERY, vein: VEIN, blood: BLOOD });
    let Scratch { masks, base, cells, row, noise, rgb, tmp, planes, .. } = scratch;
    masks.reset(w, h, view);
    masks.stamp(view, retina);
    grid_cells(cells, view, w, h);
    shade_base(base, cells, w, retina, view, &look);
    if noise.len() < NOISE_LEN + w {
        // Always the same table (fixed seed), so output never depends on
        // which worker renders an image.
        let mut r = Rng::new(0x6e6f697365);
        *noise = (0..NOISE_LEN + w).map(|_| r.normal()).collect();
    }
    let [c0, c1, c2] = &mut row.c;
    for v in [c0, c1, c2, &mut row.light, &mut row.edge] {
        v.resize(w, 0.0);
    }
    // Exudates are lighter than the background by a per-channel factor, so
    // they inherit its light and the macula's tint.
    let exu_gain = [0, 1, 2].map(|k| EXUDATE[k] / retina.pigment[k]);
    let pale_gain = [0, 1, 2].map(|k| PALE[k] / retina.pigment[k]);
    let fin = Finish::new(&look);
    let noise_seed = rng.next_u64();
    for p in planes.iter_mut() {
        // Every byte is written below: no need to clear.
        p.resize(w * h, 0);
    }
    let (radius, passes) = look.blur;
    let mut rows = Rows {
        row,
        base,
        cells,
        masks,
        view,
        fin: &fin,
        noise,
        noise_seed,
        exu_gain,
        pale_gain,
        absorb,
        planes: &mut *planes,
        rgb,
        w,
        h,
    };
    if radius > 0 {
        // Defocus blurs the retina, not the camera's noise or field stop.
        rows.rgb.clear();
        rows.rgb.resize(w * h * 3, 0.0);
        rows.run(Stage::Retina);
        box_blur(&mut rows.rgb[..], tmp, w, h, radius, passes);
        rows.run(Stage::FinishBlurred);
    } else {
        rows.run(Stage::Finish);
    }
    planes.each_ref().map(Vec::as_slice)
}

/// What one pass over the rows does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Retina, then haze, noise and field stop, into the planes.
    Finish,
    /// Retina only, into the f32 image (to be blurred).
    Retina,
    /// Haze, noise and field stop over the blurred f32 image.
    FinishBlurred,
}

/// Everything the per-row passes read and write.
struct Rows<'a> {
    row: &'a mut Row,
    base: &'a [f32],
    cells: &'a [(usize, usize)],
    masks: &'a Masks,
    view: &'a View,
    fin: &'a Finish,
    noise: &'a [f32],
    noise_seed: u64,
    exu_gain: [f32; 3],
    pale_gain: [f32; 3],
    absorb: Absorption,
    planes: &'a mut [Vec<u8>; 3],
    rgb: &'a mut Vec<f32>,
    w: usize,
    h: usize,
}

impl Rows<'_> {
    /// One pass over all rows, compiled for AVX2 when the CPU has it (the
    /// row loops then take eight pixels at a time). The arithmetic is the
    /// same IEEE operations either way (Rust never fuses them), so are
    /// the pixels.
    fn run(&mut self, stage: Stage) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { self.run_avx2(stage) };
            return;
        }
        self.pass(stage);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&mut self, stage: Stage) {
        self.pass(stage);
    }

    #[inline(always)]
    fn pass(&mut self, stage: Stage) {
        let (w, h) = (self.w, self.h);
        self.row.grid_row = None;
        for y in 0..h {
            let span = fov_span(self.view, w, y);
            if stage != Stage::Retina {
                // Black outside the field stop.
                let (x0, x1) = span.unwrap_or((w, w));
                for p in self.planes.iter_mut() {
                    p[y * w..y * w + x0].fill(0);
                    p[y * w + x1.max(x0)..(y + 1) * w].fill(0);
                }
            }
            let Some(span) = span else {
                continue;
            };
            background_row(self.row, self.base, self.cells, w, y, span);
            let row = &mut *self.row;
            match stage {
                Stage::Finish | Stage::Retina => {
                    tissue_row(row, self.masks, y, span, &self.exu_gain, &self.pale_gain, &self.absorb);
                }
                Stage::FinishBlurred => {
                    let src = &self.rgb[y * w * 3..(y + 1) * w * 3];
                    for x in span.0..span.1 {
                        for k in 0..3 {
                            row.c[k][x] = src[3 * x + k];
                        }
                    }
                }
            }
            if stage == Stage::Retina {
                let dst = &mut self.rgb[y * w * 3..(y + 1) * w * 3];
                for x in span.0..span.1 {
                    for k in 0..3 {
                        dst[3 * x + k] = row.c[k][x];
                    }
                }
                continue;
            }
            finish_row(
                row,
                self.fin,
                self.view,
                self.noise,
                self.noise_seed,
                y,
                span,
                self.planes.each_mut().map(|p| &mut p[y * w..(y + 1) * w]),
            );
        }
    }
}

/// Interpolates the background grid at row `y` into `row.c` and
/// `row.light` over `span`. The two grid rows around `y` are first
/// expanded to full width (once per [`BASE_STEP`] rows), so the per-row
/// work is one contiguous, vectorisable lerp.
#[inline(always)]
fn background_row(row: &mut Row, base: &[f32], cells: &[(usize, usize)], w: usize, y: usize, (x0, x1): (usize, usize)) {
    let (j, fy) = (y / BASE_STEP, (y % BASE_STEP) as f32 / BASE_STEP as f32);
    if row.grid_row != Some(j) {
        if row.grid_row == Some(j.wrapping_sub(1)) {
            std::mem::swap(&mut row.above, &mut row.below);
        } else {
            expand(&mut row.above, base, cells[j], w, j);
        }
        expand(&mut row.below, base, cells[j + 1], w, j + 1);
        row.grid_row = Some(j);
    }
    let [c0, c1, c2] = &mut row.c;
    for (k, dst) in [c0, c1, c2, &mut row.light].into_iter().enumerate() {
        let (a, b) = (&row.above[k * w + x0..k * w + x1], &row.below[k * w + x0..k * w + x1]);
        for ((d, a), b) in dst[x0..x1].iter_mut().zip(a).zip(b) {
            *d = a + (b - a) * fy;
        }
    }
}

/// Grid row `j`, linearly interpolated to `w` pixels, planar by channel;
/// only between the grid cells `[i0, i1)` that were shaded.
#[inline(always)]
fn expand(dst: &mut Vec<f32>, base: &[f32], (i0, i1): (usize, usize), w: usize, j: usize) {
    const STEPS: [f32; BASE_STEP] = [0.0, 0.25, 0.5, 0.75];
    let gw = w / BASE_STEP + 2;
    let src = &base[j * gw * BASE_CH..(j + 1) * gw * BASE_CH];
    dst.resize(BASE_CH * w, 0.0);
    let chunks = i0..i1.saturating_sub(1);
    for k in 0..BASE_CH {
        let line = dst[k * w..(k + 1) * w].chunks_mut(BASE_STEP).enumerate();
        for (i, cell) in line.skip(chunks.start).take(chunks.len()) {
            let (a, b) = (src[i * BASE_CH + k], src[(i + 1) * BASE_CH + k]);
            for (v, t) in cell.iter_mut().zip(STEPS) {
                *v = a + (b - a) * t;
            }
        }
    }
}

/// The retina's colour along a row: background times the absorption of
/// vessels and blood, lightened by exudates and cotton-wool spots.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tissue_row(
    row: &mut Row,
    m: &Masks,
    y: usize,
    (x0, x1): (usize, usize),
    exu_gain: &[f32; 3],
    pale_gain: &[f32; 3],
    absorb: &Absorption,
) {
    const S: f32 = 1.0 / 255.0;
    let o = y * m.w;
    let (art, vein) = (&m.art[o + x0..o + x1], &m.vein[o + x0..o + x1]);
    let (blood, exu, pale) = (&m.blood[o + x0..o + x1], &m.exudate[o + x0..o + x1], &m.pale[o + x0..o + x1]);
    // Vessels and lesions cover a small part of the field: skip runs of
    // 16 pixels where every mask is empty.
    const RUN: usize = 16;
    let word = |m: &[u8], i: usize| m[i..i + RUN].iter().fold(0u8, |acc, &v| acc | v);
    let n = x1 - x0;
    let mut i = 0;
    while i < n {
        let end = (i + RUN).min(n);
        if end - i == RUN && (word(art, i) | word(vein, i) | word(blood, i) | word(exu, i) | word(pale, i)) == 0 {
            i = end;
            continue;
        }
        for k in 0..3 {
            let (ka, kv, kb) = (absorb.artery[k] * S, absorb.vein[k] * S, absorb.blood[k] * S);
            let (g, gp) = (exu_gain[k], pale_gain[k]);
            let c = &mut row.c[k][x0 + i..x0 + end];
            for (j, c) in c.iter_mut().enumerate() {
                let (b, p) = (*c, i + j);
                let t = b
                    * (1.0 - f32::from(art[p]) * ka)
                    * (1.0 - f32::from(vein[p]) * kv)
                    * (1.0 - f32::from(blood[p]) * kb);
                let t = t + f32::from(exu[p]) * S * (b * g - t);
                // Adds exactly 0 where there is no cotton-wool spot (all of v1).
                *c = t + f32::from(pale[p]) * S * (b * gp - t);
            }
        }
        i = end;
    }
}

/// Haze, noise and the field stop, hoisted out of the per-pixel loop.
struct Finish {
    clear: f32,
    haze: [f32; 3],
    noise: f32,
}

impl Finish {
    fn new(look: &Look) -> Self {
        Finish { clear: 1.0 - look.haze, haze: look.haze_colour.map(|c| c * look.haze), noise: look.noise }
    }
}

/// Haze, camera noise and the field stop, then 8 bits, for one row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn finish_row(
    row: &mut Row,
    fin: &Finish,
    view: &View,
    noise: &[f32],
    seed: u64,
    y: usize,
    (x0, x1): (usize, usize),
    out: [&mut [u8]; 3],
) {
    // Field stop: 1 inside, a one-pixel soft edge, computed exactly only
    // where the row meets the rim.
    let dy = y as f32 + 0.5 - view.c[1];
    let inner = (view.radius - 1.0).powi(2) - dy * dy;
    let (i0, i1) = if inner > 0.0 {
        let half = inner.sqrt();
        (
            ((view.c[0] - half).ceil().max(x0 as f32) as usize).min(x1),
            ((view.c[0] + half).floor().max(0.0) as usize).clamp(x0, x1),
        )
    } else {
        (x1, x1)
    };
    let i1 = i1.max(i0);
    row.edge[i0..i1].fill(1.0);
    for x in (x0..i0).chain(i1..x1) {
        let dx = x as f32 + 0.5 - view.c[0];
        row.edge[x] = (view.radius - (dx * dx + dy * dy).sqrt() + 0.5).clamp(0.0, 1.0);
    }
    let mut offsets = PixelNoise::new(seed, y as u32);
    for (k, out) in out.into_iter().enumerate() {
        let start = offsets.offset(NOISE_LEN);
        let n = &noise[start..start + (x1 - x0)];
        let (c, light, edge) = (&row.c[k][x0..x1], &row.light[x0..x1], &row.edge[x0..x1]);
        let (clear, haze, amp) = (fin.clear, fin.haze[k], fin.noise);
        for (i, o) in out[x0..x1].iter_mut().enumerate() {
            let v = (c[i] * clear + light[i].min(1.2) * haze + amp * n[i]) * edge[i];
            // What `v as u8` gives (truncation, saturating at 0 and 255,
            // NaN to 0), in a form that vectorises: `max` maps NaN to 0.
            #[allow(clippy::manual_clamp)] // clamp keeps NaN; `max` maps it to 0, as `as u8` does
            let v = v.max(0.0).min(255.0);
            // SAFETY: `v` is finite and within 0..=255 here.
            *o = unsafe { v.to_int_unchecked::<i32>() } as u8;
        }
    }
}

/// Background, macula and disc, lit and vignetted, on a grid every
/// [`BASE_STEP`] pixels (one extra row and column for interpolation).
///
/// Only the cells in `cells` (per grid row, see [`grid_cells`]) are
/// shaded; the others keep stale values that no pixel reads.
fn shade_base(base: &mut Vec<f32>, cells: &[(usize, usize)], w: usize, retina: &Retina, view: &View, look: &Look) {
    let gw = w / BASE_STEP + 2;
    base.resize(gw * cells.len() * BASE_CH, 0.0);
    let (s, c) = view.rot.sin_cos();
    let inv_ppd = 1.0 / view.ppd;
    let cup_centre = [retina.disc[0] - 0.08 * retina.disc[0].signum(), retina.disc[1]];
    let macula_sigma2 = 2.0 * 0.6f32.powi(2);
    let fovea_sigma2 = 2.0 * 0.12f32.powi(2);
    for (j, &(i0, i1)) in cells.iter().enumerate() {
        let fy = (j * BASE_STEP) as f32 + 0.5 - view.c[1];
        for i in i0..i1 {
            let fx = (i * BASE_STEP) as f32 + 0.5 - view.c[0];
            let q = [view.centre[0] + (c * fx - s * fy) * inv_ppd, view.centre[1] + (s * fx + c * fy) * inv_ppd];
            let t = retina.texture.at(q);
            let mut col = [0, 1, 2].map(|k| retina.pigment[k] * (1.0 + 0.07 * t));
            // Macular pigment absorbs blue and green most.
            let df2 = (q[0] - retina.fovea[0]).powi(2) + (q[1] - retina.fovea[1]).powi(2);
            if df2 < 4.0 {
                let m = (-df2 / macula_sigma2).exp();
                let f = (-df2 / fovea_sigma2).exp();
                col[0] *= 1.0 - 0.25 * m - 0.1 * f;
                col[1] *= 1.0 - 0.4 * m - 0.15 * f;
                col[2] *= 1.0 - 0.45 * m - 0.15 * f;
            }
            // Optic disc: orange-yellow rim, paler cup, a soft margin.
            let du = [(q[0] - retina.disc[0]) / retina.disc_r[0], (q[1] - retina.disc[1]) / retina.disc_r[1]];
            let rho2 = du[0] * du[0] + du[1] * du[1];
            if rho2 < 2.0 {
                let rho = rho2.sqrt();
                let rim = smoothstep(1.04, 0.94, rho);
                let halo = 0.08 * smoothstep(1.35, 1.0, rho) * (1.0 - rim);
                let cu = [(q[0] - cup_centre[0]) / retina.disc_r[0], (q[1] - cup_centre[1]) / retina.disc_r[1]];
                let cup = smoothstep(retina.cup + 0.12, retina.cup - 0.12, (cu[0] * cu[0] + cu[1] * cu[1]).sqrt());
                for k in 0..3 {
                    let disc = DISC_RIM[k] + (DISC_CUP[k] - DISC_RIM[k]) * cup;
                    col[k] = (col[k] * (1.0 + halo)) * (1.0 - rim) + disc * rim;
                }
            }
            let light = look.illum(fx / view.radius, fy / view.radius);
            let cell = &mut base[(j * gw + i) * BASE_CH..(j * gw + i + 1) * BASE_CH];
            for k in 0..3 {
                cell[k] = col[k] * light * look.tint[k];
            }
            cell[3] = light;
        }
    }
}

/// Per background grid row, the cells `[i0, i1)` that pixels inside the
/// field stop interpolate from. Grid row `j` serves image rows
/// `BASE_STEP * (j - 1)` to `BASE_STEP * (j + 1) - 1` (as the row below
/// or above them); each pixel reads the cell left and right of it.
fn grid_cells(cells: &mut Vec<(usize, usize)>, view: &View, w: usize, h: usize) {
    let gh = h / BASE_STEP + 2;
    cells.clear();
    for j in 0..gh {
        let rows = (j * BASE_STEP).saturating_sub(BASE_STEP)..((j + 1) * BASE_STEP).min(h);
        let (x0, x1) =
            rows.filter_map(|y| fov_span(view, w, y)).fold((w, 0), |(a, b), (x0, x1)| (a.min(x0), b.max(x1)));
        cells.push(if x0 < x1 { (x0 / BASE_STEP, (x1 - 1) / BASE_STEP + 2) } else { (0, 0) });
    }
}

/// The columns of row `y` inside the field stop (radius + 1 px), if any.
pub(super) fn fov_span(view: &View, w: usize, y: usize) -> Option<(usize, usize)> {
    let dy = y as f32 + 0.5 - view.c[1];
    let r = view.radius + 1.0;
    let half2 = r * r - dy * dy;
    if half2 <= 0.0 {
        return None;
    }
    let half = half2.sqrt();
    let x0 = (view.c[0] - half).floor().max(0.0) as usize;
    let x1 = ((view.c[0] + half).ceil().max(0.0) as usize).min(w);
    (x0 < x1).then_some((x0, x1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::study::Eye;

    #[test]
    fn field_is_a_disc_on_black() {
        let retina = Retina::generate(Eye::Right, 0, false, 1);
        let mut rng = Rng::new(2);
        let (w, h) = (400, 300);
        let view = View::new(&retina, Field::Macula, w, h, &mut rng);
        let mut scratch = Scratch::default();
        let rgb = render(&retina, &view, None, &mut rng, w, h, &mut scratch);
        let px = |x: usize, y: usize| &rgb[3 * (y * w as usize + x)..3 * (y * w as usize + x) + 3];
        assert!(px(2, 2).iter().all(|&v| v < 10));
        let centre = px(200, 150);
        assert!(centre[0] > centre[1] && centre[1] > centre[2], "{centre:?}");
    }
}
