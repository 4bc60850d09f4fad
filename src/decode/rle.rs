//! RLE Lossless frames (PS3.5 Annex G), decoded here rather than by
//! dicom-pixeldata because its decoder stops at 16 bits per sample, and
//! RT dose and 32-bit RGB objects use 32.
//!
//! A frame is a 64-byte header (segment count, then 15 offsets) and one
//! PackBits segment per byte plane: for each sample, most significant byte
//! first. The output is interleaved little-endian native bytes.

use super::attrs::PixelAttrs;
use super::codec::{decoded_layout, int_bits, FragmentCodec};
use super::pixels::{read_frame, Stored};
use super::DecodeError;

/// Decode's own RLE Lossless adapter.
pub(crate) struct RleCodec;

impl FragmentCodec for RleCodec {
    fn frames_start_with_soi(&self) -> bool {
        false
    }

    fn decode_frame(&self, data: &[u8], a: &PixelAttrs, _needed: Option<(u32, u32)>) -> Result<Stored, DecodeError> {
        if !matches!(a.bits_allocated, 8 | 16 | 32) {
            return Err(DecodeError::Unsupported(format!("RLE with BitsAllocated {}", a.bits_allocated)));
        }
        let bytes = usize::from(a.bits_allocated / 8);
        let px = decode_frame(data, a.rows as usize * a.cols as usize, usize::from(a.samples), bytes)?;
        read_frame(&px, 0, &decoded_layout(a, int_bits(a)), a.photometric.is_ybr())
    }
}

/// Decodes one frame into `rows × cols × samples × bytes_per_sample` bytes.
///
/// # Errors
/// A header that does not match the image attributes, or a segment that
/// decodes to too few bytes.
pub(crate) fn decode_frame(
    data: &[u8],
    pixels: usize,
    samples: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, DecodeError> {
    let bad = |why: String| DecodeError::Invalid(format!("RLE frame: {why}"));
    let header = data.get(..64).ok_or_else(|| bad(format!("{} bytes, shorter than its header", data.len())))?;
    let word = |i: usize| {
        u32::from_le_bytes([header[4 * i], header[4 * i + 1], header[4 * i + 2], header[4 * i + 3]]) as usize
    };
    let nseg = word(0);
    let expected = samples * bytes_per_sample;
    if nseg != expected {
        return Err(bad(format!("{nseg} segments, SamplesPerPixel and BitsAllocated need {expected}")));
    }
    let stride = samples * bytes_per_sample;
    let mut out = vec![0u8; pixels * stride];
    let mut plane = Vec::with_capacity(pixels);
    for seg in 0..nseg {
        let start = word(seg + 1);
        let end = if seg + 1 < nseg { word(seg + 2) } else { data.len() };
        let src = data
            .get(start..end.min(data.len()))
            .filter(|_| start <= end)
            .ok_or_else(|| bad(format!("segment {seg} offsets {start}..{end} out of range")))?;
        unpack_bits(src, pixels, &mut plane);
        if plane.len() < pixels {
            return Err(bad(format!("segment {seg} decodes to {} of {pixels} bytes", plane.len())));
        }
        // Segment order is sample-major, MSB first; output is LE interleaved.
        let sample = seg / bytes_per_sample;
        let byte = bytes_per_sample - 1 - seg % bytes_per_sample;
        let offset = sample * bytes_per_sample + byte;
        for (p, &b) in plane.iter().take(pixels).enumerate() {
            out[p * stride + offset] = b;
        }
    }
    Ok(out)
}

/// PackBits: `n` in 0..=127 copies n+1 literal bytes, -127..=-1 repeats the
/// next byte 1-n times, -128 is a no-op. Stops once `limit` bytes are out.
pub(crate) fn unpack_bits(src: &[u8], limit: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < src.len() && out.len() < limit {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let len = n as usize + 1;
            let end = (i + len).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if n != -128 {
            if let Some(&b) = src.get(i) {
                out.extend(std::iter::repeat_n(b, 1 + (-(n as i32)) as usize));
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_packbits() {
        let mut out = Vec::new();
        // literal run of 3, repeat 0xAA 4 times, no-op, literal 1.
        unpack_bits(&[2, 1, 2, 3, 0xFD, 0xAA, 0x80, 0, 9], 100, &mut out);
        assert_eq!(out, vec![1, 2, 3, 0xAA, 0xAA, 0xAA, 0xAA, 9]);
    }

    #[test]
    fn rle_frame_interleaves_little_endian() {
        // 2 pixels, 1 sample, 16 bits: segment 0 = high bytes, 1 = low bytes.
        let mut data = vec![0u8; 64];
        data[0] = 2;
        data[4] = 64;
        data[8] = 67;
        data.extend_from_slice(&[1, 0x01, 0x02, 1, 0x10, 0x20]);
        let px = decode_frame(&data, 2, 1, 2).unwrap();
        assert_eq!(px, vec![0x10, 0x01, 0x20, 0x02]);
        assert!(decode_frame(&data[..10], 2, 1, 2).is_err());
        assert!(decode_frame(&data, 2, 3, 1).is_err());
    }
}
