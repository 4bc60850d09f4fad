//! Vessels and lesions as masks: each is stamped over its own bounding box
//! into an 8-bit mask, max-blended so that overlapping pieces (segment
//! joints, the ellipses of one blot) do not darken twice. The shading pass
//! in [`super::render`] then reads every mask once per pixel.

use super::render::{fov_span, View};
use super::retina::{Blob, LesionKind, Retina, Vessel, VesselKind};

/// The masks of one image, each `w × h`, 0–255.
#[derive(Debug, Default)]
pub struct Masks {
    pub w: usize,
    pub h: usize,
    /// Absorption by arteries and new vessels.
    pub art: Vec<u8>,
    /// Absorption by veins.
    pub vein: Vec<u8>,
    /// Absorption by intraretinal and pre-retinal blood.
    pub blood: Vec<u8>,
    /// Coverage by hard exudates.
    pub exudate: Vec<u8>,
    /// Coverage by cotton-wool spots (generator v2; empty of marks in v1).
    pub pale: Vec<u8>,
    /// Per row, the columns inside the field stop: the only pixels that
    /// are stamped (and read), so the only ones to clear for the next image.
    spans: Vec<(usize, usize)>,
    /// Central light reflex: how much of the absorption it removes on the
    /// axis (`None`: v1's 0.3) and whether veins show it too (v1: no).
    pub reflex_gain: Option<f32>,
    pub vein_reflex: bool,
    /// Generator v2: vessels absorb by their width, `1 − e^(−width / w0)`
    /// with `w0` in DD, so small vessels fade; `None` (v1): all alike.
    pub vessel_fade: Option<f32>,
}

impl Masks {
    /// Empty masks for a `w × h` photograph through `view`.
    pub fn reset(&mut self, w: usize, h: usize, view: &View) {
        let masks = [&mut self.art, &mut self.vein, &mut self.blood, &mut self.exudate, &mut self.pale];
        if (self.w, self.h) == (w, h) && self.spans.len() == h {
            for m in masks {
                for (y, &(x0, x1)) in self.spans.iter().enumerate() {
                    m[y * w + x0..y * w + x1].fill(0);
                }
            }
        } else {
            for m in masks {
                m.clear();
                m.resize(w * h, 0);
            }
        }
        (self.w, self.h) = (w, h);
        self.spans.clear();
        self.spans.extend((0..h).map(|y| fov_span(view, w, y).unwrap_or((0, 0))));
    }

    /// `[x0, x1)` clipped to the field stop on row `y`.
    #[inline(always)]
    fn clip(&self, y: usize, x0: usize, x1: usize) -> (usize, usize) {
        let (s0, s1) = self.spans[y];
        let x0 = x0.max(s0);
        (x0, x1.min(s1).max(x0))
    }

    /// Stamps every vessel and lesion of `retina` as `view` sees it,
    /// compiled for AVX2 when the CPU has it (same IEEE operations, so the
    /// same masks).
    pub fn stamp(&mut self, view: &View, retina: &Retina) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { self.stamp_avx2(view, retina) };
            return;
        }
        self.stamp_all(view, retina);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn stamp_avx2(&mut self, view: &View, retina: &Retina) {
        self.stamp_all(view, retina);
    }

    #[inline(always)]
    fn stamp_all(&mut self, view: &View, retina: &Retina) {
        for v in &retina.vessels {
            self.vessel(view, v);
        }
        for l in &retina.lesions {
            self.lesion(view, l.kind, &l.blobs, l.contrast);
        }
    }

    /// The clipped pixel box `[x0, x1) × [y0, y1)` around `[min, max]`.
    fn bbox(&self, min: [f32; 2], max: [f32; 2]) -> (usize, usize, usize, usize) {
        let clip = |v: f32, n: usize| (v.max(0.0) as usize).min(n);
        (
            clip(min[0].floor(), self.w),
            clip(max[0].ceil(), self.w),
            clip(min[1].floor(), self.h),
            clip(max[1].ceil(), self.h),
        )
    }

    /// Stamps one vessel's absorption profile.
    #[inline(always)]
    fn vessel(&mut self, view: &View, v: &Vessel) {
        // Fewer, longer segments cost less: keep every third point where
        // the vessel is smooth and its width steady (not beads, not the
        // tortuous new vessels).
        let mut keep = vec![0];
        for i in 1..v.pts.len() {
            let last = *keep.last().unwrap_or(&0);
            let steady = (v.widths[i] - v.widths[last]).abs() < 0.04 * v.widths[last];
            if i + 1 == v.pts.len() || i - last >= 3 || !steady || v.kind == VesselKind::New {
                keep.push(i);
            }
        }
        let px: Vec<[f32; 2]> = keep.iter().map(|&i| view.to_px(v.pts[i])).collect();
        let widths: Vec<f32> = keep.iter().map(|&i| v.widths[i]).collect();
        let reflex = v.kind == VesselKind::Artery || (self.vein_reflex && v.kind == VesselKind::Vein);
        let gain = self.reflex_gain.unwrap_or(0.3);
        let w = self.w;
        for i in 1..px.len() {
            let (a, b) = (px[i - 1], px[i]);
            let k =
                v.contrast * self.vessel_fade.map_or(1.0, |w0| 1.0 - (-0.5 * (widths[i - 1] + widths[i]) / w0).exp());
            let (wa, wb) = (widths[i - 1] * view.ppd * 0.5, widths[i] * view.ppd * 0.5);
            let pad = wa.max(wb) + 1.5;
            let (x0, x1, y0, y1) =
                self.bbox([a[0].min(b[0]) - pad, a[1].min(b[1]) - pad], [a[0].max(b[0]) + pad, a[1].max(b[1]) + pad]);
            let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
            let len2 = (ex * ex + ey * ey).max(1e-6);
            // Most of the tree lies outside the field of view.
            let (mx, my) = ((a[0] + b[0]) / 2.0 - view.c[0], (a[1] + b[1]) / 2.0 - view.c[1]);
            let reach = view.radius + pad + len2.sqrt();
            if mx * mx + my * my > reach * reach {
                continue;
            }
            // On each row the vessel covers a short run around its centre
            // line; for steep segments scan only that run, not the box.
            let steep = ey.abs() > 0.3 * len2.sqrt();
            let run = if steep { pad * len2.sqrt() / ey.abs() + 1.0 } else { 0.0 };
            // Only wide arteries show the central light reflex (an `exp`
            // per pixel); everything else takes the branch-free loop.
            let reflex = reflex && wa.max(wb) > 3.0;
            for y in y0..y1 {
                let fy = y as f32 + 0.5 - a[1];
                let (x0, x1) = if steep {
                    let xc = a[0] + fy * ex / ey;
                    (
                        ((xc - run).floor().max(x0 as f32) as usize).min(x1),
                        ((xc + run).ceil().max(0.0) as usize).clamp(x0, x1),
                    )
                } else {
                    (x0, x1)
                };
                let (x0, x1) = self.clip(y, x0, x1);
                let mask = if v.kind == VesselKind::Vein {
                    &mut self.vein[y * w..(y + 1) * w]
                } else {
                    &mut self.art[y * w..(y + 1) * w]
                };
                let seg = Segment { a, e: [ex, ey], len2, wa, wb, fy, gain, k };
                if reflex {
                    seg.row_reflex(&mut mask[x0..x1], x0);
                } else {
                    seg.row(&mut mask[x0..x1], x0);
                }
            }
        }
    }

    /// Stamps one lesion made of ellipses (haemorrhages, exudates) or the
    /// boat shape of a pre-retinal haemorrhage.
    #[inline(always)]
    fn lesion(&mut self, view: &View, kind: LesionKind, blobs: &[Blob], contrast: f32) {
        if blobs.is_empty() {
            return;
        }
        // Ellipses in pixels: centre, semi-axes, cos/sin of the angle.
        let px: Vec<_> = blobs
            .iter()
            .map(|b| {
                let c = view.to_px(b.c);
                let (sn, cs) = (b.angle - view.rot).sin_cos();
                (c[0], c[1], b.a * view.ppd, b.b * view.ppd, cs, sn)
            })
            .collect();
        let reach = px.iter().map(|p| p.2.max(p.3)).fold(0.0, f32::max) + 3.0;
        let min = [
            px.iter().map(|p| p.0).fold(f32::MAX, f32::min) - reach,
            px.iter().map(|p| p.1).fold(f32::MAX, f32::min) - reach,
        ];
        let max = [
            px.iter().map(|p| p.0).fold(f32::MIN, f32::max) + reach,
            px.iter().map(|p| p.1).fold(f32::MIN, f32::max) + reach,
        ];
        let (x0, x1, y0, y1) = self.bbox(min, max);
        let w = self.w;
        for y in y0..y1 {
            let (x0, x1) = self.clip(y, x0, x1);
            for x in x0..x1 {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let i = y * w + x;
                match kind {
                    LesionKind::Exudate => {
                        let (cover, centre) = blobs_cover(&px, fx, fy, 0.8);
                        let a = cover * (0.75 + 0.25 * centre) * contrast;
                        self.exudate[i] = self.exudate[i].max((a * 255.0) as u8);
                    }
                    LesionKind::CottonWool => {
                        // Fluffy: the edge fades over most of the radius.
                        let soft = 0.6 * px.iter().map(|p| p.2.min(p.3)).fold(2.0, f32::max);
                        let (cover, centre) = blobs_cover(&px, fx, fy, soft);
                        let a = cover * (0.6 + 0.4 * centre) * contrast;
                        self.pale[i] = self.pale[i].max((a * 255.0) as u8);
                    }
                    LesionKind::Preretinal => {
                        // Flat top (the fluid level is horizontal in the
                        // photograph whatever the eye's rotation), round keel.
                        let (cx, top, hw, depth) = (px[0].0, px[0].1, px[0].2, px[0].3);
                        let dy = fy - top;
                        let level = (dy / 2.0 + 0.5).clamp(0.0, 1.0);
                        let q = ((fx - cx) / hw).powi(2) + (dy.max(0.0) / depth).powi(2);
                        let cover = level * ((1.0 - q.sqrt()) * hw.min(depth) / 4.0 + 0.5).clamp(0.0, 1.0);
                        // Blood in front of the retina hides its vessels.
                        let keep = 1.0 - 0.9 * cover * contrast;
                        self.art[i] = (f32::from(self.art[i]) * keep) as u8;
                        self.vein[i] = (f32::from(self.vein[i]) * keep) as u8;
                        let a = 0.95 * cover * (0.9 + 0.1 * (dy / depth).clamp(0.0, 1.0)) * contrast;
                        self.blood[i] = self.blood[i].max((a * 255.0) as u8);
                    }
                    _ => {
                        let (cover, centre) = blobs_cover(&px, fx, fy, 2.0);
                        let a = cover * (0.75 + 0.25 * centre) * contrast;
                        self.blood[i] = self.blood[i].max((a * 255.0) as u8);
                    }
                }
            }
        }
    }
}

/// One vessel segment from `a` along `e` (pixels), half-width `wa` at `a`
/// to `wb` at the other end, on the row `fy` below `a`.
struct Segment {
    a: [f32; 2],
    e: [f32; 2],
    len2: f32,
    wa: f32,
    wb: f32,
    fy: f32,
    /// Central reflex strength (0.3 in v1).
    gain: f32,
    /// Share of the full absorption (1 in v1).
    k: f32,
}

impl Segment {
    /// Absorption profile at `fx` (pixels right of `a`): distance to the
    /// centre line, half-width there, and the stamp value (≤ 0 outside).
    #[inline(always)]
    fn profile(&self, fx: f32) -> (f32, f32, f32) {
        let [ex, ey] = self.e;
        let t = ((fx * ex + self.fy * ey) / self.len2).clamp(0.0, 1.0);
        let (dx, dy) = (fx - t * ex, self.fy - t * ey);
        let d2 = dx * dx + dy * dy;
        let hw = self.wa + (self.wb - self.wa) * t;
        // A 1.5-pixel soft edge: the slight blur of real optics.
        let d = d2.sqrt();
        let cover = ((hw + 0.75 - d) / 1.5).min(1.0);
        let u = (d / hw.max(0.5)).min(1.0);
        // Darker along the axis (more blood in the light path).
        (u, hw, cover * (0.55 + 0.45 * (1.0 - u * u).sqrt()) * self.k)
    }

    /// Stamps the row's pixels `x0..` into `mask` (max-blended), without
    /// branches so that it vectorises. Pixels past the soft edge come out
    /// ≤ 0, or below one level where `d2` rounds onto the edge, and so
    /// leave the mask as it was.
    #[inline(always)]
    fn row(&self, mask: &mut [u8], x0: usize) {
        for (i, m) in mask.iter_mut().enumerate() {
            let fx = (x0 + i) as i32 as f32 + 0.5 - self.a[0];
            let (_, _, s) = self.profile(fx);
            *m = (*m).max(level(s));
        }
    }

    /// As [`Segment::row`], for arteries wide enough for the central light
    /// reflex.
    #[inline(always)]
    fn row_reflex(&self, mask: &mut [u8], x0: usize) {
        for (i, m) in mask.iter_mut().enumerate() {
            let fx = (x0 + i) as f32 + 0.5 - self.a[0];
            let (u, hw, mut s) = self.profile(fx);
            if s <= 0.0 {
                continue;
            }
            if hw > 3.0 {
                s *= 1.0 - self.gain * (-(u * u) * 25.0).exp();
            }
            *m = (*m).max(level(s));
        }
    }
}

/// `(s * 255.0) as u8` (truncating, saturating at 0 and 255), in a form
/// that vectorises.
#[inline(always)]
fn level(s: f32) -> u8 {
    #[allow(clippy::manual_clamp)] // clamp keeps NaN; `max` maps it to 0, as `as u8` does
    let v = (s * 255.0).max(0.0).min(255.0);
    // SAFETY: `v` is finite and within 0..=255 (`max` maps NaN to 0).
    unsafe { v.to_int_unchecked::<i32>() as u8 }
}

/// Coverage (0–1) of a union of ellipses at pixel `(x, y)`, with `soft`
/// pixels of edge, plus how central the pixel is (1 at a centre).
#[inline]
fn blobs_cover(px: &[(f32, f32, f32, f32, f32, f32)], x: f32, y: f32, soft: f32) -> (f32, f32) {
    let mut best = (0.0f32, 0.0f32);
    for &(cx, cy, a, b, cs, sn) in px {
        let (dx, dy) = (x - cx, y - cy);
        let (u, v) = ((dx * cs + dy * sn) / a, (-dx * sn + dy * cs) / b);
        let q = (u * u + v * v).sqrt();
        let cover = ((1.0 - q) * a.min(b) / soft + 0.5).clamp(0.0, 1.0);
        if cover > best.0 {
            best = (cover, (1.0 - q).max(0.0));
        }
    }
    best
}
