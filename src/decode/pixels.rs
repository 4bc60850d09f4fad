//! Stored sample values: raw native bytes of one frame → interleaved
//! numbers, as pydicom's `pixel_array` would return them.
//!
//! Every codec path ends here (native data directly, codecs after they
//! produced little-endian native bytes), so bit handling, de-planarising
//! and YBR → RGB happen in one place and match the references in
//! `tests/data/pixel_references.csv`. Values are kept as `f32`: exact for
//! every integer up to 24 bits, which covers all but 32-bit samples; the
//! statistics are accumulated in `f64` from the exact integers.

use crate::message::PixelStats;

use super::DecodeError;

/// Byte order of the sample stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endian {
    Little,
    Big,
}

/// What a stored sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SampleKind {
    /// An integer of `bits_allocated` bits, of which the low `bits` are
    /// significant (the rest are masked off, or replaced by the sign).
    Int { bits: u16, signed: bool },
    /// IEEE float of `bits_allocated` (32 or 64) bits.
    Float,
}

/// How one frame's samples are laid out in its byte stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub rows: u32,
    pub cols: u32,
    pub samples: u16,
    /// 1, 8, 16, 32 or 64.
    pub bits_allocated: u16,
    pub kind: SampleKind,
    /// PlanarConfiguration 1: RRR..GGG..BBB.. instead of RGBRGB..
    pub planar: bool,
    pub endian: Endian,
    /// Native YBR_FULL_422: two luma samples share one Cb and one Cr,
    /// stored as Y0 Y1 Cb Cr (PS3.5 8.2.1), so a frame is 2/3 the size.
    pub ybr422: bool,
}

impl Layout {
    pub fn pixels(&self) -> usize {
        self.rows as usize * self.cols as usize
    }

    /// Number of samples stored for one frame.
    pub fn stored_samples(&self) -> usize {
        if self.ybr422 {
            self.pixels() * 2
        } else {
            self.pixels() * self.samples as usize
        }
    }

    /// Size of one frame in bits (bits, not bytes: 1-bit frames need not
    /// start on a byte boundary).
    pub fn frame_bits(&self) -> u64 {
        self.stored_samples() as u64 * u64::from(self.bits_allocated)
    }
}

/// One frame's stored values, interleaved, YBR already turned into RGB.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub samples: Samples,
    pub channels: u8,
    pub stats: PixelStats,
    /// Columns × Rows actually decoded, when a codec decoded a reduced
    /// size (DCT-scaled JPEG); `None` means the object's own size.
    pub reduced: Option<(u32, u32)>,
}

/// Stored values as the codec gave them: plain unsigned bytes (the 8-bit
/// photograph, by far the commonest frame) stay bytes, everything else is
/// held as exact floats.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Samples {
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

impl Samples {
    pub fn into_floats(self) -> Vec<f32> {
        match self {
            Samples::Floats(v) => v,
            Samples::Bytes(b) => b.into_iter().map(f32::from).collect(),
        }
    }
}

impl Stored {
    /// An interleaved frame of unsigned 8-bit samples (1 or 3 per pixel),
    /// kept as bytes, with exact statistics.
    pub fn from_bytes(bytes: Vec<u8>, channels: u8) -> Self {
        let stats = byte_stats(&bytes);
        Stored { samples: Samples::Bytes(bytes), channels, stats, reduced: None }
    }
}

/// Reads one frame from `raw`, which starts at bit `bit_offset` (non-zero
/// only for 1-bit data) and must hold at least [`Layout::frame_bits`].
///
/// YBR (`ybr` true, or `layout.ybr422`) is converted to RGB the way
/// pydicom does, which is what the references record.
pub(crate) fn read_frame(raw: &[u8], bit_offset: u64, layout: &Layout, ybr: bool) -> Result<Stored, DecodeError> {
    let n = layout.stored_samples();
    let need_bits = bit_offset + layout.frame_bits();
    if (raw.len() as u64) * 8 < need_bits {
        return Err(DecodeError::Invalid(format!(
            "decoded frame has {} bytes, Rows/Columns/SamplesPerPixel/BitsAllocated need {}",
            raw.len(),
            need_bits.div_ceil(8)
        )));
    }
    let plain_bytes = layout.kind == (SampleKind::Int { bits: 8, signed: false })
        && layout.bits_allocated == 8
        && bit_offset % 8 == 0
        && !layout.ybr422
        && !ybr
        && (layout.samples == 1 || (layout.samples == 3 && !layout.planar));
    if plain_bytes {
        let start = (bit_offset / 8) as usize;
        let channels = layout.samples as u8;
        return Ok(Stored::from_bytes(raw[start..start + n].to_vec(), channels));
    }
    let (mut values, exact) = read_samples(raw, bit_offset, n, layout)?;
    if layout.planar && layout.samples > 1 && !layout.ybr422 {
        values = deplanarize(&values, layout.samples as usize);
    }
    let channels = if layout.samples >= 3 { 3 } else { 1 };
    if layout.samples != 1 && layout.samples != 3 {
        return Err(DecodeError::Unsupported(format!("SamplesPerPixel {}", layout.samples)));
    }
    let stats = if layout.ybr422 || ybr {
        if layout.ybr422 {
            values = expand_ybr422(&values);
        }
        let bits = match layout.kind {
            SampleKind::Int { bits, .. } => bits,
            SampleKind::Float => return Err(DecodeError::Unsupported("YBR colour with float samples".into())),
        };
        ybr_to_rgb(&mut values, bits);
        stats_of(&values)
    } else {
        exact
    };
    Ok(Stored { samples: Samples::Floats(values), channels, stats, reduced: None })
}

/// Reads `n` samples; returns them with exact statistics.
fn read_samples(raw: &[u8], bit_offset: u64, n: usize, layout: &Layout) -> Result<(Vec<f32>, PixelStats), DecodeError> {
    let mut acc = StatsAcc::default();
    let mut out = Vec::with_capacity(n);
    let ba = layout.bits_allocated;
    match (layout.kind, ba) {
        (SampleKind::Int { .. }, 1) => {
            // pydicom unpacks little-endian bit order: bit 0 is the first pixel.
            for i in 0..n as u64 {
                let bit = bit_offset + i;
                let v = (raw[(bit / 8) as usize] >> (bit % 8)) & 1;
                acc.push(f64::from(v));
                out.push(f32::from(v));
            }
        }
        (SampleKind::Int { bits: 8, signed: false }, 8) => {
            // The common case (JPEG baseline output, 8-bit photographs): no
            // bit fixing, and passes the compiler vectorises, instead of the
            // general per-sample path, which cost a third of a whole run.
            let start = (bit_offset / 8) as usize;
            let bytes = &raw[start..start + n];
            out.extend(bytes.iter().map(|&b| f32::from(b)));
            return Ok((out, byte_stats(bytes)));
        }
        (SampleKind::Int { bits, signed }, 8 | 16 | 32) => {
            let bytes = usize::from(ba / 8);
            let start = (bit_offset / 8) as usize;
            let fix = BitFix::new(ba, bits, signed);
            for chunk in raw[start..start + n * bytes].chunks_exact(bytes) {
                let v = fix.apply(read_uint(chunk, layout.endian));
                acc.push(v as f64);
                out.push(v as f32);
            }
        }
        (SampleKind::Float, 32 | 64) => {
            let bytes = usize::from(ba / 8);
            let start = (bit_offset / 8) as usize;
            for chunk in raw[start..start + n * bytes].chunks_exact(bytes) {
                let bits = read_uint(chunk, layout.endian);
                let v = if ba == 32 { f64::from(f32::from_bits(bits as u32)) } else { f64::from_bits(bits) };
                acc.push(v);
                out.push(v as f32);
            }
        }
        (kind, ba) => {
            return Err(DecodeError::Unsupported(format!(
                "BitsAllocated {ba} for {} samples",
                if kind == SampleKind::Float { "float" } else { "integer" }
            )))
        }
    }
    Ok((out, acc.finish()))
}

/// Exact statistics of unsigned bytes (integer sum, so the same mean as
/// the general path's f64 accumulation). Lane arrays over fixed chunks let
/// the compiler use vector min/max/add; per block so u32 lanes never overflow.
fn byte_stats(bytes: &[u8]) -> PixelStats {
    const LANES: usize = 32;
    if bytes.is_empty() {
        return StatsAcc::default().finish();
    }
    let (mut lo, mut hi, mut total) = (u8::MAX, u8::MIN, 0u64);
    for block in bytes.chunks(1 << 20) {
        let (mut mn, mut mx, mut sum) = ([u8::MAX; LANES], [u8::MIN; LANES], [0u32; LANES]);
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for i in 0..LANES {
                mn[i] = mn[i].min(chunk[i]);
                mx[i] = mx[i].max(chunk[i]);
                sum[i] += u32::from(chunk[i]);
            }
        }
        for &b in chunks.remainder() {
            (lo, hi, total) = (lo.min(b), hi.max(b), total + u64::from(b));
        }
        lo = lo.min(mn.into_iter().min().unwrap_or(u8::MAX));
        hi = hi.max(mx.into_iter().max().unwrap_or(u8::MIN));
        total += sum.iter().map(|&v| u64::from(v)).sum::<u64>();
    }
    PixelStats { mean: total as f64 / bytes.len() as f64, min: f64::from(lo), max: f64::from(hi) }
}

fn read_uint(chunk: &[u8], endian: Endian) -> u64 {
    let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
    match endian {
        Endian::Big => chunk.iter().fold(0, fold),
        Endian::Little => chunk.iter().rev().fold(0, fold),
    }
}

/// Keeps the significant bits of a sample: pydicom's "unused bits"
/// correction (shift left then right in the sample's own type), which masks
/// unsigned values and sign-extends signed ones from `bits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BitFix {
    bits: u32,
    signed: bool,
}

impl BitFix {
    pub fn new(bits_allocated: u16, bits: u16, signed: bool) -> Self {
        let bits = u32::from(bits.clamp(1, bits_allocated.max(1)));
        Self { bits, signed }
    }

    pub fn apply(self, v: u64) -> i64 {
        let mask = if self.bits >= 64 { u64::MAX } else { (1u64 << self.bits) - 1 };
        let v = v & mask;
        if self.signed && self.bits < 64 && (v >> (self.bits - 1)) & 1 == 1 {
            v as i64 - (1i64 << self.bits)
        } else {
            v as i64
        }
    }
}

/// RRR..GGG..BBB.. → RGBRGB..
pub(crate) fn deplanarize<T: Copy>(planes: &[T], channels: usize) -> Vec<T> {
    let n = planes.len() / channels;
    let mut out = Vec::with_capacity(n * channels);
    for p in 0..n {
        for c in 0..channels {
            out.push(planes[c * n + p]);
        }
    }
    out
}

/// Y0 Y1 Cb Cr (two pixels) → Y0 Cb Cr Y1 Cb Cr, as pydicom does: over the
/// flat frame, ignoring row ends (odd widths are not allowed for 422).
pub(crate) fn expand_ybr422(packed: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(packed.len() / 2 * 3);
    for q in packed.chunks_exact(4) {
        out.extend_from_slice(&[q[0], q[2], q[3], q[1], q[2], q[3]]);
    }
    out
}

/// YBR_FULL → RGB in place, with pydicom's coefficients (float32) and
/// rounding (`floor(x + 0.5)`, then clipped to the sample range), so that
/// lossless YBR objects match its `pixel_array` exactly (PS3.3 C.7.6.3.1.2).
pub(crate) fn ybr_to_rgb(values: &mut [f32], bits: u16) {
    let half = (1u32 << (bits.clamp(1, 24) - 1)) as f32;
    let max = (2.0 * half) - 1.0;
    // numpy computes these in f64, then stores them in the f32 matrix.
    let g_cb = (-0.114f64 * 1.772 / 0.587) as f32;
    let g_cr = (-0.299f64 * 1.402 / 0.587) as f32;
    for px in values.chunks_exact_mut(3) {
        let y = px[0];
        let cb = px[1] - half;
        let cr = px[2] - half;
        let r = y + 1.402f32 * cr;
        let g = y + g_cb * cb + g_cr * cr;
        let b = y + 1.772f32 * cb;
        for (o, v) in px.iter_mut().zip([r, g, b]) {
            *o = (v + 0.5).floor().clamp(0.0, max);
        }
    }
}

/// Mean, min and max of values already held exactly.
pub(crate) fn stats_of(values: &[f32]) -> PixelStats {
    let mut acc = StatsAcc::default();
    for &v in values {
        acc.push(f64::from(v));
    }
    acc.finish()
}

#[derive(Default)]
struct StatsAcc {
    sum: f64,
    min: f64,
    max: f64,
    n: u64,
}

impl StatsAcc {
    #[inline]
    fn push(&mut self, v: f64) {
        if self.n == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.sum += v;
        self.n += 1;
    }

    fn finish(self) -> PixelStats {
        let mean = if self.n == 0 { 0.0 } else { self.sum / self.n as f64 };
        PixelStats { mean, min: self.min, max: self.max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ybr_full_to_rgb_matches_pydicom() {
        // Grey stays grey; pure colours from pydicom's conversion of
        // YBR (76, 85, 255) -> (254, 0, 0) and (150, 44, 21) -> (0, 255, 1).
        let mut v = vec![128.0, 128.0, 128.0, 76.0, 85.0, 255.0, 150.0, 44.0, 21.0];
        ybr_to_rgb(&mut v, 8);
        assert_eq!(&v[..3], &[128.0, 128.0, 128.0]);
        assert_eq!(&v[3..6], &[254.0, 0.0, 0.0]);
        assert_eq!(&v[6..], &[0.0, 255.0, 1.0]);
    }

    #[test]
    fn ybr422_expands_shared_chroma() {
        let v = expand_ybr422(&[1.0, 2.0, 10.0, 20.0]);
        assert_eq!(v, vec![1.0, 10.0, 20.0, 2.0, 10.0, 20.0]);
    }

    #[test]
    fn planar_is_deplanarised() {
        assert_eq!(deplanarize(&[1, 2, 10, 20, 100, 200], 3), vec![1, 10, 100, 2, 20, 200]);
        // Through the reader: 2 pixels, planar, 16-bit big endian.
        let layout = Layout {
            rows: 1,
            cols: 2,
            samples: 3,
            bits_allocated: 16,
            kind: SampleKind::Int { bits: 16, signed: false },
            planar: true,
            endian: Endian::Big,
            ybr422: false,
        };
        let raw = [0, 1, 0, 2, 0, 10, 0, 20, 1, 0, 2, 0];
        let s = read_frame(&raw, 0, &layout, false).unwrap();
        assert_eq!(s.samples, Samples::Floats(vec![1.0, 10.0, 256.0, 2.0, 20.0, 512.0]));
        assert_eq!((s.stats.min, s.stats.max), (1.0, 512.0));
        assert!(read_frame(&raw[..11], 0, &layout, false).is_err());
    }

    #[test]
    fn unused_bits_are_masked_or_sign_extended() {
        // 12 bits stored in 16: high garbage bits are dropped.
        assert_eq!(BitFix::new(16, 12, false).apply(0xF123), 0x123);
        assert_eq!(BitFix::new(16, 12, true).apply(0x0FFF), -1);
        assert_eq!(BitFix::new(16, 12, true).apply(0x07FF), 2047);
        assert_eq!(BitFix::new(16, 16, true).apply(0x8000), -32768);
        assert_eq!(BitFix::new(32, 32, false).apply(0xFFFF_FFFF), 0xFFFF_FFFF);
    }

    #[test]
    fn one_bit_frames_unpack_lsb_first() {
        let layout = Layout {
            rows: 1,
            cols: 4,
            samples: 1,
            bits_allocated: 1,
            kind: SampleKind::Int { bits: 1, signed: false },
            planar: false,
            endian: Endian::Little,
            ybr422: false,
        };
        // Second frame starts at bit 4 of the same byte.
        let s = read_frame(&[0b1001_0110], 4, &layout, false).unwrap();
        assert_eq!(s.samples, Samples::Floats(vec![1.0, 0.0, 0.0, 1.0]));
    }
}
