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

mod colour;
mod dct;
mod huffman;
mod tables;

use colour::*;
use dct::*;
use huffman::*;
use tables::*;

/// Blocks transformed together, one per vector lane.
const LANES: usize = 8;
/// Blocks per MCU: two luma side by side, then Cb and Cr.
const MCU_BLOCKS: usize = 4;

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
        Coefs { zz: [[0; 64]; LANES], nz: [0; LANES] }
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
        Batch { x: [[0; LANES]; 64], n: 0, at: 0 }
    }
}

impl JpegEncoder {
    pub fn new(quality: u8) -> Self {
        JpegEncoder {
            q: [Quant::new(&LUMA_Q, quality), Quant::new(&CHROMA_Q, quality)],
            dc: [Huff::new(LUMA_DC_BITS, &DC_VALUES), Huff::new(CHROMA_DC_BITS, &DC_VALUES)],
            ac: [Huff::new(LUMA_AC_BITS, &LUMA_AC_VALUES), Huff::new(CHROMA_AC_BITS, &CHROMA_AC_VALUES)],
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
                let (rs, gs, bs) = (&rs[y * w..(y + 1) * w], &gs[y * w..(y + 1) * w], &bs[y * w..(y + 1) * w]);
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
                write_dc(coefs.zz[lane][0], &mut prev[comp], &self.dc[t], &mut bits, out);
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
        for (class, dest, t) in [(0u8, 0u8, &self.dc[0]), (1, 0, &self.ac[0]), (0, 1, &self.dc[1]), (1, 1, &self.ac[1])]
        {
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
        let (cb, cr) = (&mut self.cb[r * half..(r + 1) * half], &mut self.cr[r * half..(r + 1) * half]);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `jpeg-encoder` with the settings synth used before this module.
    fn reference(rgb: &[u8], w: u16, h: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
        enc.encode(rgb, w, h, jpeg_encoder::ColorType::Rgb).expect("reference encode");
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
