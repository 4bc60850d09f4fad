//! Entropy coding: Huffman code tables, the bit writer (with 0xFF byte
//! stuffing) and the DC/AC coding of one block's coefficients.

/// A Huffman table: the DHT segment's counts and values, and per symbol
/// the code and its length.
#[derive(Debug, Clone)]
pub(super) struct Huff {
    pub(super) bits: [u8; 16],
    pub(super) values: &'static [u8],
    pub(super) code: [u16; 256],
    pub(super) len: [u8; 256],
}

impl Huff {
    /// Canonical codes (T.81 Annex C).
    pub(super) fn new(bits: [u8; 16], values: &'static [u8]) -> Self {
        let mut h = Huff { bits, values, code: [0; 256], len: [0; 256] };
        let (mut code, mut k) = (0u16, 0usize);
        for (i, &n) in bits.iter().enumerate() {
            for _ in 0..n {
                let v = usize::from(values[k]);
                (h.code[v], h.len[v]) = (code, i as u8 + 1);
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        h
    }
}

/// Entropy-coded bits, with 0xFF bytes stuffed as the format asks.
#[derive(Debug, Default)]
pub(super) struct BitWriter {
    pub(super) acc: u64,
    /// Free bits in `acc`.
    pub(super) free: u32,
}

impl BitWriter {
    pub(super) fn new() -> Self {
        BitWriter { acc: 0, free: 64 }
    }

    /// Appends the low `n` (≤ 32) bits of `v`.
    #[inline(always)]
    pub(super) fn put(&mut self, out: &mut Vec<u8>, v: u32, n: u32) {
        let v = u64::from(v);
        if n < self.free {
            self.acc = (self.acc << n) | v;
            self.free -= n;
        } else {
            let over = n - self.free;
            let full = (self.acc << self.free) | (v >> over);
            Self::emit(out, full);
            // Bits of `v` already emitted sit above the kept ones; later
            // shifts push them out before they are ever written.
            self.acc = v;
            self.free = 64 - over;
        }
    }

    #[inline(always)]
    pub(super) fn emit(out: &mut Vec<u8>, full: u64) {
        // A byte 0xFF anywhere is rare: only then go byte by byte.
        let has_ff = full & 0x8080_8080_8080_8080 & !full.wrapping_add(0x0101_0101_0101_0101);
        if has_ff == 0 {
            out.extend_from_slice(&full.to_be_bytes());
        } else {
            for b in full.to_be_bytes() {
                out.push(b);
                if b == 0xFF {
                    out.push(0);
                }
            }
        }
    }

    /// Pads the last byte with one bits and writes out what is left.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        self.put(out, 0x7F, 7);
        let used = 64 - self.free;
        for i in 0..used / 8 {
            let b = (self.acc >> (used - 8 - 8 * i)) as u8;
            out.push(b);
            if b == 0xFF {
                out.push(0);
            }
        }
        *self = Self::new();
    }
}

/// The number of bits of `v` and its JPEG magnitude code (T.81 F.1.2.1).
#[inline(always)]
pub(super) fn magnitude(v: i32) -> (u32, u32) {
    let n = 32 - v.unsigned_abs().leading_zeros();
    let bits = (v - i32::from(v < 0)) as u32 & ((1u32 << n) - 1);
    (n, bits)
}

/// A bit per non-zero coefficient.
#[inline(always)]
pub(super) fn nonzero(zz: &[i16; 64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16, _mm_setzero_si128,
        };
        let mut mask = 0u64;
        for j in 0..4 {
            // SAFETY: SSE2 is part of x86_64; both loads stay inside `zz`
            // (16 coefficients from 16 * j).
            let bits = unsafe {
                let p = zz.as_ptr().add(16 * j).cast::<__m128i>();
                // Saturating packs keep non-zero values non-zero.
                let b = _mm_packs_epi16(_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
                _mm_movemask_epi8(_mm_cmpeq_epi8(b, _mm_setzero_si128()))
            };
            mask |= u64::from(!bits as u16) << (16 * j);
        }
        mask
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        zz.iter().enumerate().fold(0, |m, (i, &c)| m | (u64::from(c != 0) << i))
    }
}

/// Huffman-codes a DC coefficient as the difference from the previous
/// one of its component.
#[inline]
pub(super) fn write_dc(dc: i16, prev: &mut i16, table: &Huff, bits: &mut BitWriter, out: &mut Vec<u8>) {
    let diff = i32::from(dc) - i32::from(*prev);
    *prev = dc;
    let (n, v) = magnitude(diff);
    let s = n as usize;
    bits.put(out, (u32::from(table.code[s]) << n) | v, u32::from(table.len[s]) + n);
}

#[inline]
pub(super) fn put_eob(table: &Huff, bits: &mut BitWriter, out: &mut Vec<u8>) {
    bits.put(out, u32::from(table.code[0]), u32::from(table.len[0]));
}

/// Huffman-codes the AC coefficients of a block, visiting only the
/// non-zero ones (bits of `nz`).
#[inline]
pub(super) fn write_ac(zz: &[i16; 64], nz: u64, table: &Huff, bits: &mut BitWriter, out: &mut Vec<u8>) {
    let mut mask = nz & !1;
    let mut last = 0u32;
    while mask != 0 {
        let i = mask.trailing_zeros();
        let mut run = i - last - 1;
        while run > 15 {
            bits.put(out, u32::from(table.code[0xF0]), u32::from(table.len[0xF0]));
            run -= 16;
        }
        let (n, v) = magnitude(i32::from(zz[i as usize]));
        let s = ((run << 4) | n) as usize;
        bits.put(out, (u32::from(table.code[s]) << n) | v, u32::from(table.len[s]) + n);
        last = i;
        mask &= mask - 1;
    }
    if last != 63 {
        put_eob(table, bits, out);
    }
}
