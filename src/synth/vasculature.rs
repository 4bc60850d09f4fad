//! Generator v2: a vessel tree that looks grown rather than drawn.
//!
//! v1's tree has arteries 0.76 of the veins' width, branches that leave at
//! 0.5–1.3 rad whatever their size with the parent narrowing by a fixed 7 %,
//! the same gentle wiggle in every eye, and every vessel equally dark
//! whatever its width. v2 keeps v1's arcades (the grower of
//! [`super::retina`]) with these changes:
//!
//! | what | v2 | source |
//! | --- | --- | --- |
//! | vein trunk at the disc | 0.085–0.1 DD (150–180 µm) | first-order veins ≈ 150 µm (CRVE ≈ 210 µm summarises both trunks) |
//! | artery : vein width | 0.6–0.75 (≈ 2 : 3) | arteriole-to-venule ratio ≈ 0.67–0.7 in adults (Hubbard et al. 1999, Wong et al. 2004) |
//! | branch points | Murray's law: parent r0³ = r1³ + r2³; child 0.45–0.85 of the parent; child and parent turn by Murray's least-work angles (± 0.12 rad) | Murray 1926; Zamir 1978: retinal bifurcations follow it closely |
//! | taper between branches | 0.3 % per 0.04 DD | judgement |
//! | tortuosity | v1's × 0.6–1.4 per eye | tortuosity varies widely between eyes and rises with diabetes: judgement |
//! | branching | 4 generations (v1: 3), 0.8 branches per DD of trunk and 0.6 of branch (v1: 0.5, 0.35), vessels end below 0.01 DD (v1: 0.015) | real photographs show many more small vessels than v1 (`tools/compare_fundus.py`: vessel share) |
//! | contrast by width | absorption × (1 − e^(−width / 0.035 DD)): 0.94 at a trunk, 0.44 at 0.02 DD | Beer–Lambert: the light path through blood is the vessel's width; judgement for the scale, checked against real photographs' vessel contrast (`tools/compare_fundus.py`) |
//! | colour (absorption R, G, B) | arteries 0.08, 0.4, 0.32; veins 0.17, 0.56, 0.46 (v1: 0.2, 0.5, 0.45 and 0.4, 0.68, 0.6) | fitted to the real photographs' vessel depth and colour (`tools/compare_fundus.py`); arteries lighter (oxygenated blood absorbs less) |
//! | haemorrhage colour (absorption) | 0.3, 0.82, 0.7 (v1: 0.5, 0.82, 0.78) | dark red as in HRF `07_dr` rather than brown: judgement |
//! | venous beading | amplitude 0.35–0.7 of the vein's width (v1: 0.7) | judgement |

use super::render::Absorption;
use super::retina::{Anatomy, Growth};
use super::rng::Rng;

/// Width (DD) at which a vessel absorbs 1 − 1/e of a wide one's light.
pub const FADE_W0: f32 = 0.035;
/// Per-channel absorption (R, G, B) of arteries and veins. v1's (0.2, 0.5,
/// 0.45 and 0.4, 0.68, 0.6) made vessels brown and too dark: in real
/// photographs a vein darkens red about 0.3 as much as green, blue about
/// 0.8 as much, and the deepest vessel pixels are ≈ 46 % below the
/// background in green (`tools/compare_fundus.py`).
/// Haemorrhages keep v1's green (0.82) with less red (v1: 0.5, 0.82,
/// 0.78), so they are dark red rather than brown.
pub const ABSORPTION: Absorption =
    Absorption { artery: [0.08, 0.4, 0.32], vein: [0.17, 0.56, 0.46], blood: [0.3, 0.82, 0.7] };

/// Draws one eye's vessel anatomy.
pub fn draw(rng: &mut Rng) -> Anatomy {
    let vein = rng.range(0.085, 0.1);
    let avr = rng.range(0.6, 0.75);
    let tortuosity = rng.range(0.6, 1.4);
    Anatomy {
        growth: Growth {
            trunk: [vein, vein * avr],
            tortuosity: [0.012 * tortuosity, 0.03 * tortuosity],
            taper: 0.997,
            ratio: (0.45, 0.85),
            murray: true,
            depth: 4,
            branch_rate: [0.8, 0.6],
            min_width: 0.01,
        },
        beading: rng.range(0.35, 0.7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::retina::{murray_angles, Retina, VesselKind};
    use crate::synth::study::Eye;

    #[test]
    fn murray_angles_favour_the_thinner_branch() {
        // A symmetric split turns both by ≈ 37.5°.
        let r = 0.5f32.cbrt();
        let (a, b) = murray_angles(r, r);
        assert!((a.to_degrees() - 37.5).abs() < 1.0 && (a - b).abs() < 1e-4, "{a} {b}");
        // A small side branch leaves steeply, the parent hardly bends.
        let (child, parent) = murray_angles(0.45, (1.0 - 0.45f32.powi(3)).cbrt());
        assert!(child.to_degrees() > 60.0 && parent.to_degrees() < 15.0, "{child} {parent}");
    }

    #[test]
    fn v2_trees_keep_the_artery_vein_ratio_and_branch_more() {
        for seed in 0..10 {
            let mut rng = Rng::new(seed).fork(303);
            let anatomy = draw(&mut rng);
            let eye = Retina::generate_with(Eye::Right, 0, false, seed, &anatomy, |_| {});
            let v1 = Retina::generate(Eye::Right, 0, false, seed);
            let trunk = |r: &Retina, k: VesselKind| {
                r.vessels.iter().filter(|v| v.kind == k).map(|v| v.widths[0]).fold(0.0, f32::max)
            };
            let ratio = trunk(&eye, VesselKind::Artery) / trunk(&eye, VesselKind::Vein);
            assert!((0.6..=0.75).contains(&ratio), "seed {seed}: {ratio}");
            assert!(eye.vessels.len() > v1.vessels.len(), "seed {seed}");
            // Murray: widths fall through branch points, never rise.
            for v in &eye.vessels {
                assert!(v.widths.windows(2).all(|w| w[1] <= w[0]), "seed {seed}");
            }
        }
    }
}
