//! RGB planes to Y, Cb, Cr rows, and the flat-block test that lets a
//! block of the black surround skip the DCT.

/// If every sample of the 8 × 8 block at column `x` is the same, that value.
#[inline(always)]
pub(super) fn flat(plane: &[u8], stride: usize, x: usize) -> Option<u8> {
    let row = |r: usize| {
        let o = r * stride + x;
        u64::from_le_bytes(plane[o..o + 8].try_into().unwrap_or([0; 8]))
    };
    let first = row(0);
    let v = first as u8;
    let all = u64::from(v) * 0x0101_0101_0101_0101;
    (first == all && (1..8).all(|r| row(r) == all)).then_some(v)
}

/// Y for one row (T.871 with 16-bit fixed point, rounded as
/// `jpeg-encoder` rounds it).
#[inline(always)]
pub(super) fn luma(r: &[u8], g: &[u8], b: &[u8], y: &mut [u8]) {
    for (((y, &r), &g), &b) in y.iter_mut().zip(r).zip(g).zip(b) {
        let v = 19595 * i32::from(r) + 38470 * i32::from(g) + 7471 * i32::from(b);
        *y = ((v + 0x7FFF) >> 16) as u8;
    }
}

#[inline(always)]
pub(super) fn chroma(r: u8, g: u8, b: u8) -> (u8, u8) {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let cb = -11059 * r - 21709 * g + 32768 * b + (128 << 16) + 0x7FFF;
    let cr = 32768 * r - 27439 * g - 5329 * b + (128 << 16) + 0x7FFF;
    ((cb >> 16) as u8, (cr >> 16) as u8)
}

/// Cb and Cr of the even columns of one row.
#[inline(always)]
pub(super) fn chroma_even(r: &[u8], g: &[u8], b: &[u8], cb: &mut [u8], cr: &mut [u8]) {
    for (i, (cb, cr)) in cb.iter_mut().zip(cr.iter_mut()).enumerate() {
        (*cb, *cr) = chroma(r[2 * i], g[2 * i], b[2 * i]);
    }
}
