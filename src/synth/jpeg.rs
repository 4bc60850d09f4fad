//! JPEG baseline encoding of synth's photographs: planar 8-bit RGB in,
//! YCbCr with 4:2:2 chroma (YBR_FULL_422) out.
//!
//! Written for speed, and byte-identical to what synth wrote before with
//! `jpeg-encoder` 0.7 (quality 90, `SamplingFactor::F_2_1`, nearest chroma
//! sampling, standard Huffman tables, no restart markers) on an AVX2 CPU,
//! so the files the DR model was trained on do not change. That crate's
//! AVX2 DCT rounds a few coefficients differently from its scalar one;
//! this module reproduces the AVX2 result on every CPU. A unit test holds
//! the two encoders to the same bytes. What makes it about three times
//! faster:
//! - blocks of one flat value (the black surround of the field of view,
//!   about half of every photograph) skip the DCT: their only coefficient
//!   is the DC term;
//! - the DCT and quantisation run on eight blocks at once, one block per
//!   vector lane, so plain scalar code vectorises (AVX2 when the CPU has
//!   it, chosen at run time);
//! - Huffman coding walks a bit mask of the non-zero coefficients instead
//!   of every coefficient;
//! - colour conversion reads planar rows and computes chroma only for the
//!   even columns that 4:2:2 nearest sampling keeps.

/// Zig-zag order: position `i` in the scan holds natural index `ZIGZAG[i]`.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// ITU T.81 Annex K.1 quantisation tables (natural order).
const LUMA_Q: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_Q: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// ITU T.81 Annex K.3 Huffman tables: code counts per length, then values.
const LUMA_DC_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const CHROMA_DC_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const LUMA_AC_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
const LUMA_AC_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];
const CHROMA_AC_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const CHROMA_AC_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// Blocks transformed together, one per vector lane.
const LANES: usize = 8;
/// Blocks per MCU: two luma side by side, then Cb and Cr.
const MCU_BLOCKS: usize = 4;

/// A quantisation table scaled for `quality` the IJG way, with the
/// reciprocals that replace division (as `jpeg-encoder` computes them).
#[derive(Debug, Clone)]
struct Quant {
    /// Table values (1–255), natural order, for the DQT segment.
    table: [u8; 64],
    recip: [i32; 64],
    corr: [i32; 64],
}

impl Quant {
    fn new(base: &[u16; 64], quality: u8) -> Self {
        let quality = u32::from(quality.clamp(1, 100));
        let scale = if quality < 50 {
            5000 / quality
        } else {
            200 - quality * 2
        };
        let mut q = Quant {
            table: [0; 64],
            recip: [0; 64],
            corr: [0; 64],
        };
        for i in 0..64 {
            let v = ((u32::from(base[i]) * scale + 50) / 100).clamp(1, 255);
            q.table[i] = v as u8;
            // The DCT leaves coefficients scaled by 8: divide by 8 × v.
            let divisor = v << 3;
            let recip = (1u32 << 15) / divisor;
            let frac = (1u32 << 15) % divisor;
            let mut corr = divisor / 2;
            let mut recip = recip;
            if frac != 0 {
                if frac <= corr {
                    corr += 1;
                } else {
                    recip += 1;
                }
            }
            (q.recip[i], q.corr[i]) = (recip as i32, corr as i32);
        }
        q
    }

    #[inline]
    fn quantize(&self, v: i32, i: usize) -> i16 {
        let q = ((v.abs() + self.corr[i]) * self.recip[i]) >> 15;
        (if v < 0 { -q } else { q }) as i16
    }
}

/// A Huffman table: the DHT segment's counts and values, and per symbol
/// the code and its length.
#[derive(Debug, Clone)]
struct Huff {
    bits: [u8; 16],
    values: &'static [u8],
    code: [u16; 256],
    len: [u8; 256],
}

impl Huff {
    /// Canonical codes (T.81 Annex C).
    fn new(bits: [u8; 16], values: &'static [u8]) -> Self {
        let mut h = Huff {
            bits,
            values,
            code: [0; 256],
            len: [0; 256],
        };
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
struct BitWriter {
    acc: u64,
    /// Free bits in `acc`.
    free: u32,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter { acc: 0, free: 64 }
    }

    /// Appends the low `n` (≤ 32) bits of `v`.
    #[inline(always)]
    fn put(&mut self, out: &mut Vec<u8>, v: u32, n: u32) {
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
    fn emit(out: &mut Vec<u8>, full: u64) {
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
    fn finish(&mut self, out: &mut Vec<u8>) {
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
fn magnitude(v: i32) -> (u32, u32) {
    let n = 32 - v.unsigned_abs().leading_zeros();
    let bits = (v - i32::from(v < 0)) as u32 & ((1u32 << n) - 1);
    (n, bits)
}

/// Reusable encoder state: tables and per-MCU-row buffers.
#[derive(Debug)]
pub struct JpegEncoder {
    q: [Quant; 2],
    dc: [Huff; 2],
    ac: [Huff; 2],
    /// One MCU row: 8 rows of Y at padded width, Cb and Cr at half width.
    y: Vec<u8>,
    cb: Vec<u8>,
    cr: Vec<u8>,
    /// Where each block of the MCU row went ([`MCU_BLOCKS`] per MCU).
    slots: Vec<Slot>,
    /// Transformed batches of the MCU row (the first `ndone` are in use;
    /// kept between rows so they are not zeroed again).
    done: Vec<Coefs>,
    ndone: usize,
    /// One batch per quantisation table (luma, chroma).
    batches: [Batch; 2],
    avx2: bool,
}

/// One block of an MCU row: flat (DC only) or a lane of a batch.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Flat(i16),
    Lane(u32, u8),
}

/// Quantised coefficients of [`LANES`] blocks in zig-zag order,
/// `zz[lane][i]`, with a bit per non-zero coefficient.
#[derive(Debug, Clone)]
struct Coefs {
    zz: [[i16; 64]; LANES],
    nz: [u64; LANES],
}

impl Default for Coefs {
    fn default() -> Self {
        Coefs {
            zz: [[0; 64]; LANES],
            nz: [0; LANES],
        }
    }
}

/// Blocks waiting for the DCT, all with the same quantisation table:
/// `x[k][lane]` is natural coefficient `k` of the block in `lane`.
#[derive(Debug, Clone)]
struct Batch {
    x: [[i32; LANES]; 64],
    /// Blocks loaded; 0 when the batch is not open.
    n: usize,
    /// Index in [`JpegEncoder::done`] reserved for the result.
    at: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            x: [[0; LANES]; 64],
            n: 0,
            at: 0,
        }
    }
}

impl JpegEncoder {
    pub fn new(quality: u8) -> Self {
        JpegEncoder {
            q: [Quant::new(&LUMA_Q, quality), Quant::new(&CHROMA_Q, quality)],
            dc: [
                Huff::new(LUMA_DC_BITS, &DC_VALUES),
                Huff::new(CHROMA_DC_BITS, &DC_VALUES),
            ],
            ac: [
                Huff::new(LUMA_AC_BITS, &LUMA_AC_VALUES),
                Huff::new(CHROMA_AC_BITS, &CHROMA_AC_VALUES),
            ],
            y: Vec::new(),
            cb: Vec::new(),
            cr: Vec::new(),
            slots: Vec::new(),
            done: Vec::new(),
            ndone: 0,
            batches: [Batch::default(), Batch::default()],
            avx2: has_avx2(),
        }
    }

    /// Appends the JPEG of a `width × height` image given as three planes
    /// (R, G, B, row-major, `width * height` bytes each) to `out`.
    ///
    /// # Panics
    /// When a plane is shorter than `width * height` or a size is zero.
    pub fn encode(&mut self, planes: [&[u8]; 3], width: u16, height: u16, out: &mut Vec<u8>) {
        let (w, h) = (usize::from(width), usize::from(height));
        assert!(w > 0 && h > 0, "empty image");
        assert!(planes.iter().all(|p| p.len() >= w * h), "short plane");
        self.headers(width, height, out);
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is true only when the CPU reports AVX2.
            unsafe { self.scan_avx2(planes, w, h, out) };
            return;
        }
        self.scan(planes, w, h, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(&mut self, planes: [&[u8]; 3], w: usize, h: usize, out: &mut Vec<u8>) {
        self.scan(planes, w, h, out);
    }

    /// The entropy-coded scan and EOI, one MCU row (8 image rows) at a time.
    #[inline(always)]
    fn scan(&mut self, planes: [&[u8]; 3], w: usize, h: usize, out: &mut Vec<u8>) {
        let mcus = w.div_ceil(16);
        let wp = mcus * 16;
        self.y.resize(8 * wp, 0);
        self.cb.resize(8 * wp / 2, 0);
        self.cr.resize(8 * wp / 2, 0);
        let mut bits = BitWriter::new();
        let mut prev = [0i16; 3];
        for row in 0..h.div_ceil(8) {
            for r in 0..8 {
                let y = (row * 8 + r).min(h - 1);
                let [rs, gs, bs] = planes;
                let (rs, gs, bs) = (
                    &rs[y * w..(y + 1) * w],
                    &gs[y * w..(y + 1) * w],
                    &bs[y * w..(y + 1) * w],
                );
                self.convert_row(rs, gs, bs, r, wp);
            }
            self.transform_row(mcus, wp);
            for (i, slot) in self.slots.iter().enumerate() {
                let b = i % MCU_BLOCKS;
                let comp = b.saturating_sub(1);
                let t = usize::from(b >= 2);
                let (coefs, lane) = match *slot {
                    Slot::Flat(dc) => {
                        write_dc(dc, &mut prev[comp], &self.dc[t], &mut bits, out);
                        put_eob(&self.ac[t], &mut bits, out);
                        continue;
                    }
                    Slot::Lane(at, lane) => (&self.done[at as usize], usize::from(lane)),
                };
                write_dc(
                    coefs.zz[lane][0],
                    &mut prev[comp],
                    &self.dc[t],
                    &mut bits,
                    out,
                );
                write_ac(&coefs.zz[lane], coefs.nz[lane], &self.ac[t], &mut bits, out);
            }
        }
        bits.finish(out);
        out.extend_from_slice(&[0xFF, 0xD9]);
    }

    /// SOI, JFIF APP0, SOF0, DQT, DHT and SOS, as `jpeg-encoder` writes them.
    fn headers(&self, width: u16, height: u16, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xFF, 0xD8]);
        out.extend_from_slice(&[0xFF, 0xE0, 0, 16]);
        out.extend_from_slice(b"JFIF\0");
        out.extend_from_slice(&[1, 2, 0, 0, 1, 0, 1, 0, 0]);
        // Baseline frame: Y sampled 2×1, Cb and Cr 1×1 (4:2:2).
        out.extend_from_slice(&[0xFF, 0xC0, 0, 17, 8]);
        out.extend_from_slice(&height.to_be_bytes());
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&[3, 0, 0x21, 0, 1, 0x11, 1, 2, 0x11, 1]);
        for (dest, q) in self.q.iter().enumerate() {
            out.extend_from_slice(&[0xFF, 0xDB, 0, 67, dest as u8]);
            out.extend(ZIGZAG.iter().map(|&z| q.table[usize::from(z)]));
        }
        for (class, dest, t) in [
            (0u8, 0u8, &self.dc[0]),
            (1, 0, &self.ac[0]),
            (0, 1, &self.dc[1]),
            (1, 1, &self.ac[1]),
        ] {
            let len = (2 + 1 + 16 + t.values.len()) as u16;
            out.extend_from_slice(&[0xFF, 0xC4]);
            out.extend_from_slice(&len.to_be_bytes());
            out.push((class << 4) | dest);
            out.extend_from_slice(&t.bits);
            out.extend_from_slice(t.values);
        }
        out.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 0, 0, 1, 0x11, 2, 0x11, 0, 63, 0]);
    }

    /// Colour-converts one image row into row `r` of the MCU row buffers,
    /// repeating the last column out to the padded width `wp`.
    #[inline(always)]
    fn convert_row(&mut self, rs: &[u8], gs: &[u8], bs: &[u8], r: usize, wp: usize) {
        let w = rs.len();
        let y = &mut self.y[r * wp..(r + 1) * wp];
        luma(rs, gs, bs, &mut y[..w]);
        let last = y[w - 1];
        y[w..].fill(last);
        let half = wp / 2;
        let (cb, cr) = (
            &mut self.cb[r * half..(r + 1) * half],
            &mut self.cr[r * half..(r + 1) * half],
        );
        // Nearest sampling keeps the even columns.
        let even = w.div_ceil(2);
        chroma_even(rs, gs, bs, &mut cb[..even], &mut cr[..even]);
        if even < half {
            let (lb, lr) = chroma(rs[w - 1], gs[w - 1], bs[w - 1]);
            cb[even..].fill(lb);
            cr[even..].fill(lr);
        }
    }

    /// DCT and quantisation of every block of the buffered MCU row.
    #[inline(always)]
    fn transform_row(&mut self, mcus: usize, wp: usize) {
        self.slots.clear();
        self.ndone = 0;
        for m in 0..mcus {
            for b in 0..MCU_BLOCKS {
                let (plane, stride, x) = match b {
                    0 | 1 => (&self.y[..], wp, m * 16 + b * 8),
                    2 => (&self.cb[..], wp / 2, m * 8),
                    _ => (&self.cr[..], wp / 2, m * 8),
                };
                let t = usize::from(b >= 2);
                if let Some(v) = flat(plane, stride, x) {
                    // A flat block's DCT is its DC term alone: 64 × (v − 128).
                    let dc = self.q[t].quantize(64 * (i32::from(v) - 128), 0);
                    self.slots.push(Slot::Flat(dc));
                    continue;
                }
                let batch = &mut self.batches[t];
                if batch.n == 0 {
                    batch.at = self.ndone;
                    self.ndone += 1;
                    if self.done.len() < self.ndone {
                        self.done.push(Coefs::default());
                    }
                }
                let lane = batch.n;
                for r in 0..8 {
                    let src = &plane[r * stride + x..r * stride + x + 8];
                    for (c, &v) in src.iter().enumerate() {
                        batch.x[r * 8 + c][lane] = i32::from(v) - 128;
                    }
                }
                batch.n += 1;
                self.slots.push(Slot::Lane(batch.at as u32, lane as u8));
                if batch.n == LANES {
                    dct_quant(&mut batch.x, &self.q[t], &mut self.done[batch.at]);
                    batch.n = 0;
                }
            }
        }
        for (t, batch) in self.batches.iter_mut().enumerate() {
            if batch.n > 0 {
                // Lanes not loaded hold an earlier batch's coefficients;
                // zeros keep their (unread) arithmetic small.
                for k in batch.x.iter_mut() {
                    k[batch.n..].fill(0);
                }
                dct_quant(&mut batch.x, &self.q[t], &mut self.done[batch.at]);
                batch.n = 0;
            }
        }
    }
}

/// If every sample of the 8 × 8 block at column `x` is the same, that value.
#[inline(always)]
fn flat(plane: &[u8], stride: usize, x: usize) -> Option<u8> {
    let row = |r: usize| {
        let o = r * stride + x;
        u64::from_le_bytes(plane[o..o + 8].try_into().unwrap_or([0; 8]))
    };
    let first = row(0);
    let v = first as u8;
    let all = u64::from(v) * 0x0101_0101_0101_0101;
    (first == all && (1..8).all(|r| row(r) == all)).then_some(v)
}

fn has_avx2() -> bool {
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
fn dct_quant(x: &mut [[i32; LANES]; 64], q: &Quant, out: &mut Coefs) {
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
        let sh = if pass2 {
            CONST_BITS + PASS1_BITS
        } else {
            CONST_BITS - PASS1_BITS
        };
        let descale = |v: i32| (v + (1 << (sh - 1))) >> sh;
        let i = [0, 1, 2, 3, 4, 5, 6, 7].map(|j| at + j * step);
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
fn transpose(src: &[[i16; LANES]; 64], dst: &mut [[i16; 64]; LANES]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpackhi_epi32,
            _mm_unpackhi_epi64, _mm_unpacklo_epi16, _mm_unpacklo_epi32, _mm_unpacklo_epi64,
        };
        for j in 0..8 {
            // SAFETY: SSE2 is part of x86_64; loads read `src[8j..8j + 8]`
            // (8 lanes of i16 each) and stores write `dst[l][8j..8j + 8]`.
            unsafe {
                let r: [__m128i; 8] =
                    std::array::from_fn(|t| _mm_loadu_si128(src[8 * j + t].as_ptr().cast()));
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

/// A bit per non-zero coefficient.
#[inline(always)]
fn nonzero(zz: &[i16; 64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16,
            _mm_setzero_si128,
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
        zz.iter()
            .enumerate()
            .fold(0, |m, (i, &c)| m | (u64::from(c != 0) << i))
    }
}

/// Y for one row (T.871 with 16-bit fixed point, rounded as
/// `jpeg-encoder` rounds it).
#[inline(always)]
fn luma(r: &[u8], g: &[u8], b: &[u8], y: &mut [u8]) {
    for (((y, &r), &g), &b) in y.iter_mut().zip(r).zip(g).zip(b) {
        let v = 19595 * i32::from(r) + 38470 * i32::from(g) + 7471 * i32::from(b);
        *y = ((v + 0x7FFF) >> 16) as u8;
    }
}

#[inline(always)]
fn chroma(r: u8, g: u8, b: u8) -> (u8, u8) {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let cb = -11059 * r - 21709 * g + 32768 * b + (128 << 16) + 0x7FFF;
    let cr = 32768 * r - 27439 * g - 5329 * b + (128 << 16) + 0x7FFF;
    ((cb >> 16) as u8, (cr >> 16) as u8)
}

/// Cb and Cr of the even columns of one row.
#[inline(always)]
fn chroma_even(r: &[u8], g: &[u8], b: &[u8], cb: &mut [u8], cr: &mut [u8]) {
    for (i, (cb, cr)) in cb.iter_mut().zip(cr.iter_mut()).enumerate() {
        (*cb, *cr) = chroma(r[2 * i], g[2 * i], b[2 * i]);
    }
}

/// Huffman-codes a DC coefficient as the difference from the previous
/// one of its component.
#[inline]
fn write_dc(dc: i16, prev: &mut i16, table: &Huff, bits: &mut BitWriter, out: &mut Vec<u8>) {
    let diff = i32::from(dc) - i32::from(*prev);
    *prev = dc;
    let (n, v) = magnitude(diff);
    let s = n as usize;
    bits.put(
        out,
        (u32::from(table.code[s]) << n) | v,
        u32::from(table.len[s]) + n,
    );
}

#[inline]
fn put_eob(table: &Huff, bits: &mut BitWriter, out: &mut Vec<u8>) {
    bits.put(out, u32::from(table.code[0]), u32::from(table.len[0]));
}

/// Huffman-codes the AC coefficients of a block, visiting only the
/// non-zero ones (bits of `nz`).
#[inline]
fn write_ac(zz: &[i16; 64], nz: u64, table: &Huff, bits: &mut BitWriter, out: &mut Vec<u8>) {
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
        bits.put(
            out,
            (u32::from(table.code[s]) << n) | v,
            u32::from(table.len[s]) + n,
        );
        last = i;
        mask &= mask - 1;
    }
    if last != 63 {
        put_eob(table, bits, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `jpeg-encoder` with the settings synth used before this module.
    fn reference(rgb: &[u8], w: u16, h: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
        enc.encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .expect("reference encode");
        out
    }

    fn planes(rgb: &[u8]) -> [Vec<u8>; 3] {
        [0, 1, 2].map(|k| rgb.iter().skip(k).step_by(3).copied().collect())
    }

    fn ours(rgb: &[u8], w: u16, h: u16, avx2: bool) -> Vec<u8> {
        let p = planes(rgb);
        let mut enc = JpegEncoder::new(90);
        enc.avx2 = avx2 && has_avx2();
        let mut out = Vec::new();
        enc.encode([&p[0], &p[1], &p[2]], w, h, &mut out);
        out
    }

    #[test]
    fn same_bytes_as_jpeg_encoder() {
        // Noise, gradients, flat and black areas, saturated colours and odd
        // sizes (edge padding), at both code paths.
        let mut rng = crate::synth::rng::Rng::new(5);
        for (w, h) in [(64u16, 48u16), (37, 21), (16, 8), (1, 1), (203, 77)] {
            let (wu, hu) = (usize::from(w), usize::from(h));
            let mut rgb = vec![0u8; wu * hu * 3];
            for y in 0..hu {
                for x in 0..wu {
                    let i = 3 * (y * wu + x);
                    let px: [u8; 3] = match (x / 8 + y / 8) % 4 {
                        0 => [0, 0, 0],
                        1 => [(x * 5) as u8, (y * 3) as u8, 255],
                        2 => [200, 90, 30],
                        _ => [0, 1, 2].map(|_| (rng.next_u64() >> 56) as u8),
                    };
                    rgb[i..i + 3].copy_from_slice(&px);
                }
            }
            let want = reference(&rgb, w, h);
            for avx2 in [false, true] {
                let got = ours(&rgb, w, h, avx2);
                let first = got.iter().zip(&want).position(|(a, b)| a != b);
                assert!(
                    got == want,
                    "{w}x{h} avx2={avx2}: {} vs {} bytes, first difference at {first:?}",
                    got.len(),
                    want.len()
                );
            }
        }
    }

    #[test]
    fn magnitude_codes() {
        assert_eq!(magnitude(0), (0, 0));
        assert_eq!(magnitude(1), (1, 1));
        assert_eq!(magnitude(-1), (1, 0));
        assert_eq!(magnitude(-3), (2, 0));
        assert_eq!(magnitude(5), (3, 5));
        assert_eq!(magnitude(-5), (3, 2));
    }
}
