//! The camera side of a photograph: exposure, vignetting, uneven flash,
//! colour balance, noise, and the failures that make an image ungradable
//! (defocus, under- and over-exposure, small pupil, media opacity).

use super::rng::Rng;
use super::study::Defect;

/// Exposure and optics of one photograph.
#[derive(Debug, Clone)]
pub struct Look {
    pub exposure: f32,
    /// Fall-off of light towards the rim.
    pub vignette: f32,
    /// Uneven flash: brightness gradient across the field.
    pub tilt: [f32; 2],
    /// Flash colour and white balance.
    pub tint: [f32; 3],
    /// Camera noise, standard deviation in 8-bit levels.
    pub noise: f32,
    /// Lit fraction of the field radius (small pupil); 1 = all of it.
    pub pupil: f32,
    /// Veiling glare mixed in (media opacity, flare), 0–1.
    pub haze: f32,
    pub haze_colour: [f32; 3],
    /// Box-blur radius in pixels and number of passes (0 = sharp).
    pub blur: (usize, usize),
}

impl Look {
    pub fn new(defect: Option<Defect>, rng: &mut Rng) -> Self {
        let a = rng.range(0.0, std::f32::consts::TAU);
        let g = rng.range(0.0, 0.12);
        let mut look = Look {
            exposure: rng.range(0.85, 1.1),
            vignette: rng.range(0.45, 0.6),
            tilt: [g * a.cos(), g * a.sin()],
            tint: [rng.range(0.96, 1.04), rng.range(0.95, 1.05), rng.range(0.9, 1.1)],
            noise: rng.range(1.2, 2.5),
            pupil: 1.0,
            haze: 0.0,
            haze_colour: [200.0, 150.0, 100.0],
            // Gradable photographs are sharp; their slight softness comes
            // from the soft edges every vessel and lesion is drawn with.
            blur: (0, 0),
        };
        match defect {
            None => {}
            Some(Defect::Blur) => look.blur = (rng.int(14, 22) as usize, 3),
            Some(Defect::Dark) => {
                look.exposure = rng.range(0.1, 0.2);
                look.noise = rng.range(2.0, 3.5);
            }
            Some(Defect::Bright) => {
                look.exposure = rng.range(3.0, 4.0);
                look.haze = rng.range(0.45, 0.6);
                look.haze_colour = [255.0, 235.0, 215.0];
            }
            Some(Defect::SmallPupil) => {
                look.pupil = rng.range(0.35, 0.55);
                look.exposure *= rng.range(0.5, 0.8);
                look.haze = rng.range(0.1, 0.25);
                look.blur = (rng.int(2, 5) as usize, 2);
            }
            Some(Defect::Opacity) => {
                look.haze = rng.range(0.45, 0.65);
                look.blur = (rng.int(6, 10) as usize, 3);
                look.exposure *= rng.range(0.8, 1.0);
            }
        }
        look
    }

    /// Light reaching the retina at normalised field position `(x, y)`
    /// (radius 1 at the rim), exposure included.
    #[inline]
    pub fn illum(&self, x: f32, y: f32) -> f32 {
        let rr = x * x + y * y;
        let mut l = (1.0 - self.vignette * rr * rr.sqrt()) * (1.0 + self.tilt[0] * x + self.tilt[1] * y);
        if self.pupil < 1.0 {
            l *= smoothstep(self.pupil + 0.25, self.pupil - 0.15, rr.sqrt());
        }
        (l * self.exposure).max(0.0)
    }
}

#[inline]
pub fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// `passes` running-sum box blurs of `radius` pixels over an interleaved
/// RGB f32 image (three passes approximate a Gaussian of sigma ≈ radius).
/// Each pass is two sweeps in memory order, whatever the radius. Compiled
/// for AVX2 when the CPU has it (same IEEE operations, same result).
pub fn box_blur(rgb: &mut [f32], tmp: &mut Vec<f32>, w: usize, h: usize, radius: usize, passes: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { box_blur_avx2(rgb, tmp, w, h, radius, passes) };
        return;
    }
    box_blur_any(rgb, tmp, w, h, radius, passes);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn box_blur_avx2(rgb: &mut [f32], tmp: &mut Vec<f32>, w: usize, h: usize, radius: usize, passes: usize) {
    box_blur_any(rgb, tmp, w, h, radius, passes);
}

#[inline(always)]
fn box_blur_any(rgb: &mut [f32], tmp: &mut Vec<f32>, w: usize, h: usize, radius: usize, passes: usize) {
    tmp.resize(rgb.len(), 0.0);
    let norm = 1.0 / (2 * radius + 1) as f32;
    let r = radius as isize;
    let row = w * 3;
    let mut padded = Vec::with_capacity(row + 6 * radius);
    for _ in 0..passes {
        // Horizontal, per row, over a copy padded by repeating the edge
        // pixels, so the sliding sum needs no bounds logic.
        for y in 0..h {
            let src = &rgb[y * row..(y + 1) * row];
            padded.clear();
            (0..radius).for_each(|_| padded.extend_from_slice(&src[..3]));
            padded.extend_from_slice(src);
            (0..radius).for_each(|_| padded.extend_from_slice(&src[row - 3..]));
            let dst = &mut tmp[y * row..(y + 1) * row];
            let mut sum = [0f32; 3];
            for i in 0..2 * radius + 1 {
                for k in 0..3 {
                    sum[k] += padded[3 * i + k];
                }
            }
            for x in 0..w {
                for k in 0..3 {
                    dst[3 * x + k] = sum[k] * norm;
                    if x + 1 < w {
                        sum[k] += padded[3 * (x + 2 * radius + 1) + k] - padded[3 * x + k];
                    }
                }
            }
        }
        // Vertical, a whole row at a time so memory is read in order.
        let mut sum = vec![0f32; row];
        let line = |y: isize| (y.clamp(0, h as isize - 1) as usize) * row;
        for dy in -r..=r {
            let o = line(dy);
            sum.iter_mut().zip(&tmp[o..o + row]).for_each(|(s, v)| *s += v);
        }
        for y in 0..h {
            let dst = &mut rgb[y * row..(y + 1) * row];
            dst.iter_mut().zip(&sum).for_each(|(d, s)| *d = s * norm);
            let (add, sub) = (line(y as isize + r + 1), line(y as isize - r));
            for ((s, a), b) in sum.iter_mut().zip(&tmp[add..add + row]).zip(&tmp[sub..sub + row]) {
                *s += a - b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_blur_keeps_flat_images_flat_and_spreads_a_point() {
        let (w, h) = (20, 10);
        let mut img = vec![7.0f32; w * h * 3];
        let mut tmp = Vec::new();
        box_blur(&mut img, &mut tmp, w, h, 2, 3);
        assert!(img.iter().all(|v| (v - 7.0).abs() < 1e-4));
        let mut img = vec![0.0f32; w * h * 3];
        img[3 * (5 * w + 10)] = 1.0;
        box_blur(&mut img, &mut tmp, w, h, 1, 1);
        assert!((img[3 * (5 * w + 10)] - 1.0 / 9.0).abs() < 1e-6);
        assert!((img[3 * (4 * w + 9)] - 1.0 / 9.0).abs() < 1e-6);
        assert!((img.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn small_pupil_darkens_the_rim() {
        let mut look = Look::new(None, &mut Rng::new(1));
        let open = look.illum(0.9, 0.0);
        look.pupil = 0.4;
        assert!(look.illum(0.9, 0.0) < 0.05 * open);
        assert!(look.illum(0.0, 0.0) > 0.5);
    }
}
