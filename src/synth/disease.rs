//! Generator v2: diabetic retinopathy as a photograph shows it — what v1
//! leaves out (cotton-wool spots, IRMA, blots and exudates in eyes that
//! are not referable for them) and how strongly each lesion is drawn.
//!
//! v1 draws every lesion at full strength: microaneurysms are saturated
//! dark-red dots and any blot or exudate alone gives the grade away. v2
//! draws each lesion's contrast from the range below, so some are faint,
//! and adds the features that make a grader count and look closely:
//!
//! | what | v2 | source |
//! | --- | --- | --- |
//! | microaneurysm contrast | 0.15–0.55 of v1's absorption (green drop 12–45 % before blur) | MAs are low-contrast in the green channel; judgement, checked by eye against HRF `07_dr` |
//! | dot / blot haemorrhage | 0.3–0.75 / 0.3–0.7 | judgement, by eye against HRF `07_dr` |
//! | hard exudate opacity | 0.35–0.9 | judgement (faint scattered exudates to dense plaques) |
//! | pre-retinal haemorrhage | 0.8–0.95 | dense blood: judgement |
//! | new vessels (NVD/NVE), IRMA | 0.45–1.0 of an artery's absorption, then faded by width as every v2 vessel ([`super::vasculature`]) | fine vessels are faint (textbook); judgement |
//! | blots in R1 eyes | 35 %: 1–3 (R2 needs four or more) | DESP R1 allows "retinal haemorrhage(s)"; the count decides |
//! | exudates away from the macula | R1+ eyes, 30 %: 1–6, > 1.3 DD from the fovea (R1, never M1) | DESP R1: "any exudate not within the definition of maculopathy" |
//! | cotton-wool spots | R1 15 %, R2/R3 50 %: 1–4, 0.06–0.14 DD, within 1.2 DD of the arcades, opacity 0.25–0.6 | DESP: CWS count only beside other features, so they grade nothing alone |
//! | IRMA | R2 and R3, 40 %: 1–2 clusters of 2–5 short tortuous segments beside a haemorrhage | DESP R2 feature |
//! | venous beading amplitude | 0.35–0.7 (v1: 0.7) | judgement |
//!
//! Whether a lesion counts towards an image's grade is decided per image
//! by [`super::visibility`].

use std::f32::consts::PI;

use super::lesions::{blob, blot_parts, pole_point};
use super::retina::{dist, Blob, LesionKind, Retina, Vessel, VesselKind, P};
use super::rng::Rng;

/// Adds v2's extra lesions to a right-eye `retina` with intended grade
/// `r` (0–3) and maculopathy `m1`. None of them raises the grade: R1 eyes
/// get at most three blots, exudates stay > 1.3 DD from the fovea (only
/// M1 eyes have them nearer), cotton-wool spots grade nothing, and IRMA
/// goes only into eyes that are R2 already.
pub fn add_lesions(retina: &mut Retina, rng: &mut Rng, r: u8) {
    if r == 1 && rng.chance(0.35) {
        for _ in 0..rng.int(1, 3) {
            let c = pole_point(rng);
            let parts = blot_parts(rng, c, (2, 5), 0.03, (0.04, 0.09), (0.035, 0.08));
            retina.push(LesionKind::BlotHaemorrhage, c, parts);
        }
    }
    if r >= 1 && rng.chance(0.3) {
        for _ in 0..rng.int(1, 6) {
            let c = loop {
                let c = pole_point(rng);
                if dist(c, retina.fovea) > 1.3 {
                    break c;
                }
            };
            let parts = (0..rng.int(1, 3))
                .map(|_| blob([c[0] + 0.02 * rng.normal(), c[1] + 0.02 * rng.normal()], rng.range(0.012, 0.035)))
                .collect();
            retina.push(LesionKind::Exudate, c, parts);
        }
    }
    let cws = match r {
        0 => 0.0,
        1 => 0.15,
        _ => 0.5,
    };
    if rng.chance(cws) {
        for _ in 0..rng.int(1, 4) {
            // Along the arcades, where the nerve-fibre layer is thickest.
            let x = rng.range(-1.5, retina.disc[0] + 0.5);
            let y = if rng.chance(0.5) { 1.0 } else { -1.0 } * rng.range(0.9, 2.1);
            let c = [x, y];
            if dist(c, retina.disc) < 0.7 {
                continue;
            }
            let a = rng.range(0.06, 0.14);
            let parts = vec![Blob { c, a, b: a * rng.range(0.5, 0.8), angle: rng.range(0.0, PI) }];
            retina.push(LesionKind::CottonWool, c, parts);
        }
    }
    if r >= 2 && rng.chance(0.4) {
        for _ in 0..rng.int(1, 2) {
            let c = pole_point(rng);
            add_irma(retina, rng, c);
        }
    }
}

/// A few short, irregular, dilated capillary segments around `c`: IRMA
/// stays within the retina, so it neither loops nor fans out as new
/// vessels do.
fn add_irma(retina: &mut Retina, rng: &mut Rng, c: P) {
    for _ in 0..rng.int(2, 5) {
        let mut p = [c[0] + 0.12 * rng.normal(), c[1] + 0.12 * rng.normal()];
        let mut h = rng.range(0.0, 2.0 * PI);
        let w = rng.range(0.012, 0.02);
        let mut pts = vec![p];
        for _ in 0..rng.int(8, 18) {
            h += 0.45 * rng.normal();
            p = [p[0] + 0.02 * h.cos(), p[1] + 0.02 * h.sin()];
            pts.push(p);
        }
        // Irregular calibre along the segment.
        let widths = (0..pts.len()).map(|_| w * rng.range(0.8, 1.3)).collect();
        retina.vessels.push(Vessel { kind: VesselKind::Irma, pts, widths, contrast: 1.0 });
    }
    retina.push(LesionKind::Irma, c, Vec::new());
}

/// Draws every lesion's contrast (table above); new vessels and IRMA
/// take their lesion's, by nearness (a tuft's vessels start within
/// about 0.6 DD of its centre).
pub fn draw_contrast(retina: &mut Retina, rng: &mut Rng) {
    let mut tufts = Vec::new();
    for l in &mut retina.lesions {
        let (lo, hi) = match l.kind {
            LesionKind::Microaneurysm => (0.15, 0.55),
            LesionKind::DotHaemorrhage => (0.3, 0.75),
            LesionKind::BlotHaemorrhage => (0.3, 0.7),
            LesionKind::Exudate => (0.35, 0.9),
            LesionKind::Preretinal => (0.8, 0.95),
            LesionKind::CottonWool => (0.25, 0.6),
            LesionKind::NewVessels | LesionKind::Irma => (0.45, 1.0),
            LesionKind::Beading => (1.0, 1.0),
        };
        l.contrast = rng.range(lo, hi);
        if matches!(l.kind, LesionKind::NewVessels | LesionKind::Irma) {
            tufts.push((l.kind, l.centre, l.contrast));
        }
    }
    for v in &mut retina.vessels {
        let kind = match v.kind {
            VesselKind::New => LesionKind::NewVessels,
            VesselKind::Irma => LesionKind::Irma,
            _ => continue,
        };
        let Some(&start) = v.pts.first() else { continue };
        let nearest = tufts.iter().filter(|t| t.0 == kind).min_by(|a, b| dist(a.1, start).total_cmp(&dist(b.1, start)));
        if let Some(t) = nearest {
            v.contrast = t.2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::study::Eye;

    fn v2_eye(r: u8, m1: bool, seed: u64) -> Retina {
        Retina::generate_with(Eye::Right, r, m1, seed, &crate::synth::retina::Anatomy::V1, |ret| {
            add_lesions(ret, &mut Rng::new(seed).fork(302), r)
        })
    }

    #[test]
    fn extra_lesions_never_raise_the_intended_grade() {
        for seed in 0..200 {
            for (r, m1) in [(0, false), (1, false), (1, true), (2, false), (3, true)] {
                let eye = v2_eye(r, m1, seed);
                let (got, m) = eye.grade_in(eye.fovea, 20.0);
                assert_eq!(got, r, "seed {seed}");
                assert_eq!(m, m1, "seed {seed} R{r}");
            }
        }
    }

    #[test]
    fn v2_eyes_hold_the_new_features() {
        let eyes: Vec<Retina> = (0..60).map(|s| v2_eye(2, false, s)).collect();
        let has = |k: LesionKind| eyes.iter().filter(|e| e.lesions.iter().any(|l| l.kind == k)).count();
        assert!((10..50).contains(&has(LesionKind::CottonWool)), "{}", has(LesionKind::CottonWool));
        assert!((10..45).contains(&has(LesionKind::Irma)), "{}", has(LesionKind::Irma));
        let r1: Vec<Retina> = (0..200).map(|s| v2_eye(1, false, s)).collect();
        let blots = r1.iter().filter(|e| e.lesions.iter().any(|l| l.kind == LesionKind::BlotHaemorrhage)).count();
        assert!((40..110).contains(&blots), "{blots}");
    }

    #[test]
    fn contrast_is_drawn_per_kind_and_tufts_share_it() {
        let mut eye = v2_eye(3, true, 5);
        draw_contrast(&mut eye, &mut Rng::new(1));
        for l in &eye.lesions {
            let ok = match l.kind {
                LesionKind::Microaneurysm => (0.15..0.55).contains(&l.contrast),
                LesionKind::Beading => l.contrast == 1.0,
                _ => (0.25..=1.0).contains(&l.contrast),
            };
            assert!(ok, "{:?} {}", l.kind, l.contrast);
        }
        let nv: Vec<f32> =
            eye.lesions.iter().filter(|l| l.kind == LesionKind::NewVessels).map(|l| l.contrast).collect();
        for v in eye.vessels.iter().filter(|v| v.kind == VesselKind::New) {
            assert!(nv.contains(&v.contrast), "{}", v.contrast);
        }
        assert!(eye.vessels.iter().filter(|v| v.kind == VesselKind::Artery).all(|v| v.contrast == 1.0));
    }
}
