//! Generator v2: the field-of-view mask of one photograph and the text a
//! camera burns into its black border.
//!
//! The renderer already draws the lit circle (its radius and centre come
//! from [`super::camera::Camera`], so a circle larger than the image is
//! clipped by the image's edges). This module adds what real photographs
//! show besides: a rectangular crop with black borders (exported or
//! re-framed images, as `cropped.png` in the real-photograph set), one or
//! two notches on the rim (the orientation marks several cameras print,
//! 30 % of Topcon-like and 40 % of square images: judgement), and
//! vendor-style text (date, time, `R`/`L` or `OD`/`OS`) in a black corner,
//! in a 5 × 7 pixel font scaled to the image (one glyph row per 1/300 of
//! the height, at least 2 px). Text goes only where the corner is black
//! all over, so it never covers retina.
//!
//! The mask also decides what a grader sees: a lesion counts towards an
//! image's grade only when its centre is inside the lit, unmasked field
//! ([`Mask::sees`]).

use super::camera::{Camera, MaskKind};
use super::render::View;
use super::rng::Rng;

/// The lit part of one photograph.
#[derive(Debug, Clone)]
pub struct Mask {
    pub kind: MaskKind,
    pub w: usize,
    pub h: usize,
    /// Circle centre and radius (pixels).
    pub c: [f32; 2],
    pub r: f32,
    /// `[x0, y0, x1, y1]`: the crop of a [`MaskKind::Rectangle`].
    pub rect: Option<[f32; 4]>,
    /// Notches: angle on the rim (radians, 0 = right, clockwise as `y` runs
    /// down) and depth (pixels). Each is a square cut into the rim.
    pub notches: Vec<(f32, f32)>,
}

impl Mask {
    /// The mask of `cam` (its circle is `view`'s), with a crop and notches
    /// drawn from `rng`.
    pub fn draw(cam: &Camera, view: &View, rng: &mut Rng) -> Self {
        let (w, h) = (cam.width as f32, cam.height as f32);
        let rect = (cam.mask == MaskKind::Rectangle).then(|| {
            let hx = (view.radius * rng.range(0.78, 0.92)).min(0.46 * w);
            let hy = (view.radius * rng.range(0.62, 0.85)).min(0.46 * h);
            [view.c[0] - hx, view.c[1] - hy, view.c[0] + hx, view.c[1] + hy]
        });
        let mut notches = Vec::new();
        if rng.chance(cam.model.notch) {
            // Where the rim is inside the image: at the sides for a clipped
            // field, anywhere for a full one.
            let n = if rng.chance(0.3) { 2 } else { 1 };
            let base = *rng.pick(&[0.0f32, std::f32::consts::PI, -0.6, 0.6, 2.5, -2.5]);
            for k in 0..n {
                let a = base + k as f32 * std::f32::consts::PI + 0.05 * rng.normal();
                notches.push((a, view.radius * rng.range(0.025, 0.05)));
            }
        }
        Mask { kind: cam.mask, w: cam.width as usize, h: cam.height as usize, c: view.c, r: view.radius, rect, notches }
    }

    /// Coverage at pixel centre `(x, y)` of what the circle leaves lit:
    /// 0 in the crop's border or a notch, 1 elsewhere (one-pixel soft edge).
    #[inline]
    pub fn cover(&self, x: f32, y: f32) -> f32 {
        let mut c = 1.0f32;
        if let Some([x0, y0, x1, y1]) = self.rect {
            let edge = (x - x0).min(x1 - x).min(y - y0).min(y1 - y);
            c = c.min((edge + 0.5).clamp(0.0, 1.0));
        }
        if !self.notches.is_empty() {
            let (dx, dy) = (x - self.c[0], y - self.c[1]);
            let d = (dx * dx + dy * dy).sqrt();
            for &(a, depth) in &self.notches {
                if d < self.r - depth - 1.0 {
                    continue;
                }
                // Position along the rim's tangent and towards the centre.
                let (s, co) = a.sin_cos();
                let along = -dx * s + dy * co;
                let inward = self.r - (dx * co + dy * s);
                let out = (along.abs() - depth).max(inward - depth);
                c = c.min((out + 0.5).clamp(0.0, 1.0));
            }
        }
        c
    }

    /// Whether pixel `p` is in the lit field: inside the image, within
    /// `frac` of the circle's radius, and not masked.
    pub fn sees(&self, p: [f32; 2], frac: f32) -> bool {
        let (dx, dy) = (p[0] - self.c[0], p[1] - self.c[1]);
        let margin = 2.0;
        p[0] >= margin
            && p[1] >= margin
            && p[0] < self.w as f32 - margin
            && p[1] < self.h as f32 - margin
            && dx * dx + dy * dy < (frac * self.r).powi(2)
            && self.cover(p[0], p[1]) >= 1.0
    }

    /// Whether pixel `(x, y)` is lit at all (circle and mask).
    fn lit(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.c[0], y - self.c[1]);
        dx * dx + dy * dy < (self.r + 2.0).powi(2) && self.cover(x, y) > 0.0
    }

    /// What truth files say: kind, `+notch`, `+text`.
    pub fn describe(&self, text: bool) -> String {
        let mut s = self.kind.code().to_string();
        if !self.notches.is_empty() {
            s.push_str("+notch");
        }
        if text {
            s.push_str("+text");
        }
        s
    }

    /// Burns `lines` into the first black corner they fit (top left, then
    /// bottom left, top right, bottom right); returns whether they did.
    pub fn burn_text(&self, planes: &mut [Vec<u8>; 3], lines: &[String], colour: [u8; 3]) -> bool {
        let (w, h) = (self.w, self.h);
        let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        if longest == 0 {
            return false;
        }
        for scale in [(h / 300).max(2), (h / 450).max(2)] {
            let tw = longest * 6 * scale;
            let th = lines.len() * 9 * scale;
            let pad = (w.min(h) / 60).max(4);
            if tw + 2 * pad > w || th + 2 * pad > h {
                continue;
            }
            let corners = [(pad, pad), (pad, h - pad - th), (w - pad - tw, pad), (w - pad - tw, h - pad - th)];
            for (x0, y0) in corners {
                let margin = 2 * scale;
                let clear = (y0.saturating_sub(margin)..(y0 + th + margin).min(h)).step_by(2).all(|y| {
                    (x0.saturating_sub(margin)..(x0 + tw + margin).min(w))
                        .step_by(2)
                        .all(|x| !self.lit(x as f32 + 0.5, y as f32 + 0.5))
                });
                if clear {
                    for (li, line) in lines.iter().enumerate() {
                        for (ci, ch) in line.chars().enumerate() {
                            let glyph = glyph(ch);
                            for (gy, bits) in glyph.iter().enumerate() {
                                for gx in 0..5 {
                                    if bits & (0x10 >> gx) == 0 {
                                        continue;
                                    }
                                    let (px, py) = (x0 + (ci * 6 + gx) * scale, y0 + (li * 9 + gy) * scale);
                                    for y in py..(py + scale).min(h) {
                                        for x in px..(px + scale).min(w) {
                                            for k in 0..3 {
                                                planes[k][y * w + x] = colour[k];
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    return true;
                }
            }
        }
        false
    }
}

/// A 5 × 7 glyph (rows top to bottom, bit 4 = leftmost column) for the
/// characters camera overlays use; anything else is blank.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rect: Option<[f32; 4]>, notches: Vec<(f32, f32)>) -> Mask {
        Mask { kind: MaskKind::Circle, w: 400, h: 300, c: [200.0, 150.0], r: 130.0, rect, notches }
    }

    #[test]
    fn rectangle_and_notch_cut_the_field() {
        let m = mask(Some([100.0, 80.0, 300.0, 220.0]), vec![(0.0, 8.0)]);
        assert_eq!(m.cover(200.5, 150.5), 1.0);
        assert_eq!(m.cover(90.5, 150.5), 0.0);
        assert!(m.sees([200.0, 150.0], 0.95) && !m.sees([95.0, 150.0], 0.95));
        let n = mask(None, vec![(0.0, 8.0)]);
        // The notch at angle 0 is on the right-hand rim.
        assert_eq!(n.cover(327.5, 150.5), 0.0);
        assert_eq!(n.cover(327.5, 170.5), 1.0);
        assert_eq!(n.cover(73.5, 150.5), 1.0);
    }

    #[test]
    fn text_goes_only_into_a_black_corner() {
        let m = mask(None, Vec::new());
        let mut planes = [vec![0u8; 400 * 300], vec![0u8; 400 * 300], vec![0u8; 400 * 300]];
        assert!(m.burn_text(&mut planes, &["R".to_string()], [255, 255, 255]));
        let lit: usize = planes[0].iter().filter(|&&v| v == 255).count();
        assert!(lit > 20, "{lit}");
        // Every burnt pixel is outside the field.
        for (i, &v) in planes[0].iter().enumerate() {
            if v == 255 {
                assert!(!m.lit((i % 400) as f32 + 0.5, (i / 400) as f32 + 0.5));
            }
        }
        let full = Mask { r: 400.0, ..mask(None, Vec::new()) };
        assert!(!full.burn_text(&mut planes, &["2026/01/01".to_string()], [255, 255, 255]));
    }
}
