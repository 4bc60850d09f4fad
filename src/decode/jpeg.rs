//! JPEG baseline / extended (8-bit) frames, decoded with `jpeg-decoder`.
//!
//! Done here rather than by dicom-pixeldata so that decode controls the
//! colour transform: an RGB object whose JPEG stream has neither a JFIF nor
//! an Adobe marker holds RGB components, and converting them as YCbCr (what
//! a plain JPEG decoder assumes for component ids 1, 2, 3) gives wrong
//! colours without any error (pydicom's `SC_jpeg_no_color_transform.dcm`).
//! This is also where reduced-size (DCT-scaled) decoding belongs.

use jpeg_decoder::{ColorTransform, Decoder, PixelFormat};

use super::attrs::{Photometric, PixelAttrs};
use super::codec::{layout, FragmentCodec};
use super::pixels::{read_frame, Endian, Stored};
use super::DecodeError;

/// What the markers before the first scan say about a JPEG stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JpegHeader {
    /// SOF sample precision (8 or 12 for DCT processes).
    pub precision: u8,
    /// SOF number of lines and samples per line (0 lines: set later by DNL).
    pub height: u16,
    pub width: u16,
    pub component_ids: Vec<u8>,
    /// JFIF APP0: components are YCbCr.
    pub jfif: bool,
    /// Adobe APP14 transform flag: 0 none (RGB), 1 YCbCr, 2 YCCK.
    pub adobe_transform: Option<u8>,
}

/// Reads markers up to the first SOS. The frame header may be any SOF,
/// including lossless (SOF3) and JPEG-LS (SOF55, `FF F7`), which share its
/// layout.
///
/// # Errors
/// Not a JPEG stream, or no frame header before the scan.
pub(crate) fn scan_header(data: &[u8]) -> Result<JpegHeader, DecodeError> {
    let bad = |why: &str| DecodeError::Invalid(format!("JPEG stream: {why}"));
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(bad("does not start with SOI"));
    }
    let mut h = JpegHeader::default();
    let mut seen_sof = false;
    let mut pos = 2;
    loop {
        // Skip to the next marker (fill bytes FF are allowed before it).
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else { break };
        pos += 1;
        if marker == 0xD8 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // no length field
        }
        let Some(len) = data.get(pos..pos + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            break;
        };
        let seg = data.get(pos + 2..pos + len.max(2)).ok_or_else(|| bad("segment runs past end"))?;
        match marker {
            0xC0..=0xCF | 0xF7 if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let ncomp = usize::from(*seg.get(5).ok_or_else(|| bad("short SOF"))?);
                h.precision = seg[0];
                h.height = u16::from_be_bytes([seg[1], seg[2]]);
                h.width = u16::from_be_bytes([seg[3], seg[4]]);
                h.component_ids = (0..ncomp).filter_map(|i| seg.get(6 + 3 * i).copied()).collect();
                seen_sof = true;
            }
            0xE0 if seg.starts_with(b"JFIF\0") => h.jfif = true,
            0xEE if seg.starts_with(b"Adobe") => h.adobe_transform = seg.get(11).copied(),
            0xDA | 0xD9 => break,
            _ => {}
        }
        pos += len;
    }
    if !seen_sof {
        return Err(bad("no frame header (SOF) before the scan"));
    }
    Ok(h)
}

/// The colour transform for a 3-component stream: the stream's own
/// markers win (RGB component ids, Adobe, JFIF), then the DICOM
/// PhotometricInterpretation.
pub(crate) fn color_transform(h: &JpegHeader, pi: &Photometric) -> ColorTransform {
    if h.component_ids == b"RGB" {
        return ColorTransform::RGB;
    }
    match h.adobe_transform {
        Some(0) => return ColorTransform::RGB,
        Some(1) => return ColorTransform::YCbCr,
        _ => {}
    }
    if h.jfif {
        return ColorTransform::YCbCr;
    }
    match pi {
        Photometric::Rgb => ColorTransform::RGB,
        _ => ColorTransform::YCbCr,
    }
}

/// The smallest DCT-scaled size (k/8 of each side, k = 1, 2 or 4, rounded
/// up as jpeg-decoder does) that is at least `needed` in *both* axes;
/// `None` when only the full size is (k = 8).
pub(crate) fn reduced_size(width: u16, height: u16, needed: (u32, u32)) -> Option<(u16, u16)> {
    let scaled = |len: u16, k: u32| ((u32::from(len) * k).saturating_sub(1) / 8 + 1) as u16;
    [1, 2, 4]
        .into_iter()
        .map(|k| (scaled(width, k), scaled(height, k)))
        .find(|&(w, h)| u32::from(w) >= needed.0 && u32::from(h) >= needed.1 && (w, h) != (width, height))
}

/// A decoded JPEG frame: its samples, components per pixel and (width, height).
type DecodedJpeg = (Vec<u8>, u8, (u32, u32));

/// Decodes one frame to 8-bit samples (interleaved RGB or grey), reduced
/// by DCT scaling when `needed` (Columns × Rows) allows it. Returns the
/// samples, the channel count and the decoded Columns × Rows.
///
/// # Errors
/// 12-bit streams (jpeg-decoder has no 12-bit DCT), a size different from
/// Rows/Columns, or a corrupt stream.
pub(crate) fn decode_frame(
    data: &[u8],
    pi: &Photometric,
    rows: u32,
    cols: u32,
    needed: Option<(u32, u32)>,
) -> Result<DecodedJpeg, DecodeError> {
    let header = scan_header(data)?;
    match header.precision {
        8 => {}
        12 => return Err(DecodeError::Jpeg12Bit),
        p => return Err(DecodeError::Unsupported(format!("JPEG sample precision {p}"))),
    }
    let mut dec = Decoder::new(data);
    if header.component_ids.len() == 3 {
        dec.set_color_transform(color_transform(&header, pi));
    }
    dec.read_info().map_err(DecodeError::Jpeg)?;
    let info = dec.info().ok_or_else(|| DecodeError::Invalid("JPEG stream has no frame".into()))?;
    if u32::from(info.width) != cols || u32::from(info.height) != rows {
        return Err(DecodeError::Invalid(format!(
            "JPEG frame is {}x{} but Columns x Rows is {cols}x{rows}",
            info.width, info.height
        )));
    }
    let mut size = (cols, rows);
    if let Some((w, h)) = needed.and_then(|n| reduced_size(info.width, info.height, n)) {
        let got = dec.scale(w, h).map_err(DecodeError::Jpeg)?;
        if got != (w, h) {
            return Err(DecodeError::Invalid(format!("JPEG scaling to {w}x{h} gave {}x{}", got.0, got.1)));
        }
        size = (u32::from(w), u32::from(h));
    }
    let pixels = dec.decode().map_err(DecodeError::Jpeg)?;
    let channels = match info.pixel_format {
        PixelFormat::L8 => 1,
        PixelFormat::RGB24 => 3,
        other => return Err(DecodeError::Unsupported(format!("JPEG pixel format {other:?}"))),
    };
    let expected = size.0 as usize * size.1 as usize * usize::from(channels);
    if pixels.len() != expected {
        return Err(DecodeError::Invalid(format!(
            "JPEG decoder returned {} samples, expected {expected}",
            pixels.len()
        )));
    }
    Ok((pixels, channels, size))
}

/// The jpeg-decoder adapter for JPEG baseline and extended frames.
pub(crate) struct JpegCodec;

impl FragmentCodec for JpegCodec {
    fn frames_start_with_soi(&self) -> bool {
        true
    }

    fn decode_frame(&self, data: &[u8], a: &PixelAttrs, needed: Option<(u32, u32)>) -> Result<Stored, DecodeError> {
        let (px, channels, (cols, rows)) = decode_frame(data, &a.photometric, a.rows, a.cols, needed)?;
        if u16::from(channels) != a.samples {
            return Err(DecodeError::Invalid(format!(
                "JPEG frame has {channels} components, SamplesPerPixel is {}",
                a.samples
            )));
        }
        let jpeg_attrs = PixelAttrs { bits_allocated: 8, planar: false, rows, cols, ..a.clone() };
        let bits = a.bits_stored.min(8);
        let mut stored = if bits == 8 {
            // Already interleaved unsigned bytes: keep the codec's buffer.
            Stored::from_bytes(px, channels)
        } else {
            read_frame(&px, 0, &layout(&jpeg_attrs, Endian::Little, false, bits), false)?
        };
        if (cols, rows) != (a.cols, a.rows) {
            stored.reduced = Some((cols, rows));
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_colour_transform_choice() {
        use crate::decode::attrs::Photometric;
        use jpeg_decoder::ColorTransform;
        let h = |ids: &[u8], jfif, adobe| JpegHeader {
            precision: 8,
            height: 1,
            width: 1,
            component_ids: ids.to_vec(),
            jfif,
            adobe_transform: adobe,
        };
        let ct = |hd: &JpegHeader, pi| color_transform(hd, pi);
        // See: pydicom SC_jpeg_no_color_transform.dcm
        assert_eq!(ct(&h(&[1, 2, 3], false, None), &Photometric::Rgb), ColorTransform::RGB);
        assert_eq!(ct(&h(&[1, 2, 3], true, None), &Photometric::Rgb), ColorTransform::YCbCr);
        assert_eq!(ct(&h(&[1, 2, 3], false, Some(1)), &Photometric::Rgb), ColorTransform::YCbCr);
        assert_eq!(ct(&h(&[1, 2, 3], false, Some(0)), &Photometric::YbrFull422), ColorTransform::RGB);
        assert_eq!(ct(&h(b"RGB", true, None), &Photometric::YbrFull), ColorTransform::RGB);
        assert_eq!(ct(&h(&[1, 2, 3], false, None), &Photometric::YbrFull422), ColorTransform::YCbCr);
    }

    #[test]
    fn jpeg_reduced_size_covers_the_model_input_in_both_axes() {
        // 1600 x 1200 for a 384 x 384 model: 1/4 would give 400 x 300 (too few rows).
        assert_eq!(reduced_size(1600, 1200, (384, 384)), Some((800, 600)));
        assert_eq!(reduced_size(1600, 1200, (200, 150)), Some((200, 150)));
        assert_eq!(reduced_size(1601, 1201, (100, 100)), Some((201, 151)));
        assert_eq!(reduced_size(1600, 1200, (1000, 600)), None);
        assert_eq!(reduced_size(8, 8, (4, 4)), Some((4, 4)));
        assert_eq!(reduced_size(1, 1, (1, 1)), None);
    }

    #[test]
    fn jpeg_header_scan() {
        // SOI, APP0 JFIF, SOF0 (precision 12, 1 component id 1), SOS.
        let mut d = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 7];
        d.extend_from_slice(b"JFIF\0");
        d.extend_from_slice(&[0xFF, 0xC1, 0, 11, 12, 0, 4, 0, 4, 1, 1, 0x11, 0]);
        d.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        let h = scan_header(&d).unwrap();
        assert_eq!((h.precision, h.jfif, h.component_ids), (12, true, vec![1]));
        assert_eq!((h.width, h.height), (4, 4));
        assert!(matches!(
            decode_frame(&d, &crate::decode::attrs::Photometric::Monochrome2, 4, 4, None),
            Err(DecodeError::Jpeg12Bit)
        ));
        assert!(scan_header(&[0, 1, 2]).is_err());
        assert!(scan_header(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]).is_err());
    }
}
