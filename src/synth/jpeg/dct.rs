//! Forward DCT and quantisation of eight blocks at once, one per vector
//! lane, as `jpeg-encoder`'s AVX2 code computes them (bit for bit).

use super::*;

pub(super) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The IJG "islow" integer forward DCT (jfdctint.c) as `jpeg-encoder`'s
/// AVX2 code computes it, then quantisation into zig-zag order, on
/// [`LANES`] blocks at once. Lanes past the loaded ones hold stale data
/// and are never read.
#[inline(always)]
pub(super) fn dct_quant(x: &mut [[i32; LANES]; 64], q: &Quant, out: &mut Coefs) {
    const CONST_BITS: i32 = 13;
    const PASS1_BITS: i32 = 2;
    const F0_298: i32 = 2446;
    const F0_390: i32 = 3196;
    const F0_541: i32 = 4433;
    const F0_765: i32 = 6270;
    const F0_899: i32 = 7373;
    const F1_175: i32 = 9633;
    const F1_501: i32 = 12299;
    const F1_847: i32 = 15137;
    const F1_961: i32 = 16069;
    const F2_053: i32 = 16819;
    const F2_562: i32 = 20995;
    const F3_072: i32 = 25172;
    // One 1-D DCT over the coefficients `at + j * step`: pass 1 keeps
    // PASS1_BITS of extra precision, pass 2 removes it, adding `round`
    // first to outputs 0 and 4.
    #[inline(always)]
    fn dct8(x: &mut [[i32; LANES]; 64], at: usize, step: usize, pass2: bool, round: i32) {
        let sh = if pass2 { CONST_BITS + PASS1_BITS } else { CONST_BITS - PASS1_BITS };
        let descale = |v: i32| (v + (1 << (sh - 1))) >> sh;
        let i = [0, 1, 2, 3, 4, 5, 6, 7].map(|j| at + j * step);
        // One lane at a time over eight rows: the shape that vectorises.
        #[allow(clippy::needless_range_loop)]
        for l in 0..LANES {
            let (tmp0, tmp7) = (x[i[0]][l] + x[i[7]][l], x[i[0]][l] - x[i[7]][l]);
            let (tmp1, tmp6) = (x[i[1]][l] + x[i[6]][l], x[i[1]][l] - x[i[6]][l]);
            let (tmp2, tmp5) = (x[i[2]][l] + x[i[5]][l], x[i[2]][l] - x[i[5]][l]);
            let (tmp3, tmp4) = (x[i[3]][l] + x[i[4]][l], x[i[3]][l] - x[i[4]][l]);
            let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
            let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
            if pass2 {
                x[i[0]][l] = (tmp10 + tmp11 + round) >> PASS1_BITS;
                x[i[4]][l] = (tmp10 - tmp11 + round) >> PASS1_BITS;
            } else {
                x[i[0]][l] = (tmp10 + tmp11) << PASS1_BITS;
                x[i[4]][l] = (tmp10 - tmp11) << PASS1_BITS;
            }
            let z1 = (tmp12 + tmp13) * F0_541;
            x[i[2]][l] = descale(z1 + tmp13 * F0_765);
            x[i[6]][l] = descale(z1 - tmp12 * F1_847);
            let (z1, z2) = (tmp4 + tmp7, tmp5 + tmp6);
            let (z3, z4) = (tmp4 + tmp6, tmp5 + tmp7);
            let z5 = (z3 + z4) * F1_175;
            let (tmp4, tmp5) = (tmp4 * F0_298, tmp5 * F2_053);
            let (tmp6, tmp7) = (tmp6 * F3_072, tmp7 * F1_501);
            let (z1, z2) = (z1 * -F0_899, z2 * -F2_562);
            let (z3, z4) = (z3 * -F1_961 + z5, z4 * -F0_390 + z5);
            x[i[7]][l] = descale(tmp4 + z1 + z3);
            x[i[5]][l] = descale(tmp5 + z2 + z4);
            x[i[3]][l] = descale(tmp6 + z2 + z3);
            x[i[1]][l] = descale(tmp7 + z1 + z4);
        }
    }
    for r in 0..8 {
        dct8(x, r * 8, 1, false, 0);
    }
    // `jpeg-encoder`'s AVX2 DCT, which made the files synth is held to,
    // adds this rounding term to even columns only (a 32-bit constant
    // added as 16-bit lanes): odd columns of rows 0 and 4 round down.
    for c in 0..8 {
        let round = if c % 2 == 0 { 1 << (PASS1_BITS - 1) } else { 0 };
        dct8(x, c, 8, true, round);
    }
    // Quantise in lane order and zig-zag order (branch-free, so it
    // vectorises), then give each block its own row for the Huffman coder.
    let mut qz = [[0i16; LANES]; 64];
    for (i, &k) in ZIGZAG.iter().enumerate() {
        let k = usize::from(k);
        let (recip, corr) = (q.recip[k], q.corr[k]);
        for l in 0..LANES {
            // The DCT's output is an i16 in `jpeg-encoder`; it always fits.
            let v = i32::from(x[k][l] as i16);
            let sign = v >> 31;
            let m = ((((v ^ sign) - sign) + corr) * recip) >> 15;
            qz[i][l] = ((m ^ sign) - sign) as i16;
        }
    }
    transpose(&qz, &mut out.zz);
    for l in 0..LANES {
        out.nz[l] = nonzero(&out.zz[l]);
    }
}

/// `dst[l][i] = src[i][l]`, as eight 8 × 8 transposes.
#[inline(always)]
pub(super) fn transpose(src: &[[i16; LANES]; 64], dst: &mut [[i16; 64]; LANES]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpackhi_epi32, _mm_unpackhi_epi64,
            _mm_unpacklo_epi16, _mm_unpacklo_epi32, _mm_unpacklo_epi64,
        };
        for j in 0..8 {
            // SAFETY: SSE2 is part of x86_64; loads read `src[8j..8j + 8]`
            // (8 lanes of i16 each) and stores write `dst[l][8j..8j + 8]`.
            unsafe {
                let r: [__m128i; 8] = std::array::from_fn(|t| _mm_loadu_si128(src[8 * j + t].as_ptr().cast()));
                let a = [
                    _mm_unpacklo_epi16(r[0], r[1]),
                    _mm_unpackhi_epi16(r[0], r[1]),
                    _mm_unpacklo_epi16(r[2], r[3]),
                    _mm_unpackhi_epi16(r[2], r[3]),
                    _mm_unpacklo_epi16(r[4], r[5]),
                    _mm_unpackhi_epi16(r[4], r[5]),
                    _mm_unpacklo_epi16(r[6], r[7]),
                    _mm_unpackhi_epi16(r[6], r[7]),
                ];
                let b = [
                    _mm_unpacklo_epi32(a[0], a[2]),
                    _mm_unpackhi_epi32(a[0], a[2]),
                    _mm_unpacklo_epi32(a[1], a[3]),
                    _mm_unpackhi_epi32(a[1], a[3]),
                    _mm_unpacklo_epi32(a[4], a[6]),
                    _mm_unpackhi_epi32(a[4], a[6]),
                    _mm_unpacklo_epi32(a[5], a[7]),
                    _mm_unpackhi_epi32(a[5], a[7]),
                ];
                for h in 0..4 {
                    let lo = _mm_unpacklo_epi64(b[h], b[h + 4]);
                    let hi = _mm_unpackhi_epi64(b[h], b[h + 4]);
                    _mm_storeu_si128(dst[2 * h][8 * j..].as_mut_ptr().cast(), lo);
                    _mm_storeu_si128(dst[2 * h + 1][8 * j..].as_mut_ptr().cast(), hi);
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (l, row) in dst.iter_mut().enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = src[i][l];
        }
    }
}
