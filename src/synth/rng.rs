//! A small seeded random number generator (SplitMix64).
//!
//! Written here rather than taken from `rand` so that the synthetic data set
//! a seed produces can never change under a dependency upgrade: the truth
//! files and the model trained on them are only reproducible if every byte
//! of the generator's stream is ours. SplitMix64 passes BigCrush and is
//! plenty for drawing anatomy, lesions and camera noise.

/// SplitMix64 (Steele, Lea and Flood 2014).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function, also used to derive independent streams.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: mix(seed ^ 0x6E69_6768_7473_6372) }
    }

    /// An independent stream for one labelled part of the work, so that
    /// (say) adding a lesion type does not change the patient names drawn
    /// from the parent stream, and studies can be generated in any order.
    pub fn fork(&self, label: u64) -> Rng {
        Rng { state: mix(self.state ^ mix(label.wrapping_add(GOLDEN))) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in `[0, 1)`.
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Uniform integer in `lo..=hi`.
    pub fn int(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    /// Standard normal (Box–Muller; one of the pair is dropped).
    pub fn normal(&mut self) -> f32 {
        let u = self.f32().max(1e-7);
        let v = self.f32();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// A random (version 4) UUID as a 128-bit integer, for `2.25.` UIDs.
    pub fn uuid(&mut self) -> u128 {
        let raw = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        // Version 4 and the RFC 4122 variant, as PS3.5 B.2 asks of 2.25 UIDs.
        (raw & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    }
}

/// Per-row random offsets into a noise table, seeded from the image and
/// the row so that rows can be drawn in any order.
#[derive(Debug, Clone)]
pub struct PixelNoise(Rng);

impl PixelNoise {
    pub fn new(seed: u64, row: u32) -> Self {
        Self(Rng::new(seed).fork(u64::from(row)))
    }

    /// A uniform offset in `0..len`.
    pub fn offset(&mut self, len: usize) -> usize {
        (self.0.next_u64() % len as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn uuid_has_version_and_variant() {
        let u = Rng::new(1).uuid();
        assert_eq!((u >> 76) & 0xF, 4);
        assert_eq!((u >> 62) & 0x3, 2);
    }

    #[test]
    fn uniform_and_normal_are_sane() {
        let mut r = Rng::new(3);
        let xs: Vec<f32> = (0..20_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "{mean} {var}");
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.f32())));
    }
}
