//! The JPEG 2000 image header (SIZ), read where the decoder reads it.
//!
//! One parser serves both uses: the size check before openjp2 sees a frame
//! (its buffers are sized from SIZ) and the signedness/precision fix after
//! it decoded one. SIZ is read directly after SOC, in a raw codestream or in
//! the contiguous codestream box (`jp2c`) of a JP2 file, found by walking
//! the boxes: never searched for, so a lookalike earlier in a JP2 box does
//! not count.

/// What the SIZ marker segment (ISO 15444-1 A.5.1) says about the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Siz {
    /// Xsiz - XOsiz.
    pub width: u32,
    /// Ysiz - YOsiz.
    pub height: u32,
    /// Csiz.
    pub components: usize,
    /// Ssiz of the first component: sign bit.
    pub signed: bool,
    /// Ssiz of the first component: bit depth.
    pub precision: u16,
}

/// SOC followed by the SIZ marker.
const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];

/// Reads SIZ from the start of the codestream in `data` (raw, or a JP2 file).
pub(crate) fn siz(data: &[u8]) -> Option<Siz> {
    let data = codestream(data)?;
    if !data.starts_with(&SOC_SIZ) {
        return None;
    }
    // SOC(2) SIZ(2) Lsiz(2) Rsiz(2), then Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz
    // XTOsiz YTOsiz (u32 each), Csiz(2), then Ssiz XRsiz YRsiz per component.
    let u32_at = |k: usize| -> Option<u32> {
        let b = data.get(8 + 4 * k..12 + 4 * k)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let width = u32_at(0)?.checked_sub(u32_at(2)?)?;
    let height = u32_at(1)?.checked_sub(u32_at(3)?)?;
    let c = data.get(40..42)?;
    let ssiz = *data.get(42)?;
    Some(Siz {
        width,
        height,
        components: usize::from(u16::from_be_bytes([c[0], c[1]])),
        signed: ssiz & 0x80 != 0,
        precision: u16::from(ssiz & 0x7F) + 1,
    })
}

/// The codestream: the data itself, or the contents of the `jp2c` box of a
/// JP2 file (ISO 15444-1 I.4), which is what openjp2 decodes when the data
/// starts with the JP2 signature box.
fn codestream(data: &[u8]) -> Option<&[u8]> {
    const JP2_SIGNATURE: [u8; 8] = [0, 0, 0, 12, b'j', b'P', b' ', b' '];
    if !data.starts_with(&JP2_SIGNATURE) {
        return Some(data);
    }
    let mut pos = 0usize;
    while let Some(head) = data.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let (start, end) = match len {
            // Length 0: the box runs to the end of the data.
            0 => (pos + 8, data.len()),
            // Length 1: a 64-bit length follows the type.
            1 => {
                let x = data.get(pos + 8..pos + 16)?;
                let xl = u64::from_be_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
                (pos + 16, pos.checked_add(usize::try_from(xl).ok()?)?)
            }
            n => (pos + 8, pos.checked_add(n)?),
        };
        if &head[4..8] == b"jp2c" {
            return data.get(start..end.min(data.len()));
        }
        if end <= pos {
            return None;
        }
        pos = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A codestream: SOC, SIZ for Xsiz 720, Ysiz 512, XOsiz 8, YOsiz 0,
    /// one component with Ssiz `ssiz`.
    fn raw(ssiz: u8) -> Vec<u8> {
        let mut s = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [720u32, 512, 8, 0, 512, 512, 0, 0] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        s.extend_from_slice(&[0, 1, ssiz, 1, 1]);
        s
    }

    #[test]
    fn siz_gives_size_signedness_and_precision_of_a_raw_codestream() {
        let siz = siz(&raw(0x80 | 12)).expect("SIZ");
        assert_eq!(siz, Siz { width: 712, height: 512, components: 1, signed: true, precision: 13 });
        let unsigned = super::siz(&raw(15)).expect("SIZ");
        assert_eq!((unsigned.signed, unsigned.precision), (false, 16));
        assert_eq!(super::siz(&raw(15)[..42]), None);
        assert_eq!(super::siz(&[0; 10]), None);
    }

    #[test]
    fn siz_is_read_only_where_the_decoder_reads_it() {
        // Not after other bytes.
        assert_eq!(siz(&[&[0, 0][..], &raw(15)].concat()), None);
        // In a JP2 file: the jp2c box, found by walking the boxes; an SOC/SIZ
        // lookalike in an earlier box does not count.
        let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
        jp2.extend_from_slice(&[0, 0, 0, 12, b'x', b'm', b'l', b' ', 0xFF, 0x4F, 0xFF, 0x51]);
        jp2.extend_from_slice(&[0, 0, 0, 0, b'j', b'p', b'2', b'c']);
        jp2.extend_from_slice(&raw(0x80 | 7));
        let siz = siz(&jp2).expect("SIZ in jp2c");
        assert_eq!((siz.width, siz.height, siz.components, siz.signed, siz.precision), (712, 512, 1, true, 8));
        // A JP2 file without a jp2c box has no codestream, whatever it holds.
        let mut lookalike = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
        let mut xml = raw(15);
        let len = (xml.len() + 8) as u32;
        lookalike.extend_from_slice(&len.to_be_bytes());
        lookalike.extend_from_slice(b"xml ");
        lookalike.append(&mut xml);
        assert_eq!(super::siz(&lookalike), None);
    }

    #[test]
    fn j2k_siz_gives_signedness_and_precision() {
        let mut d = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        d.extend_from_slice(&[0; 32]);
        d.extend_from_slice(&[0, 1, 0x80 | 12, 1, 1]);
        assert_eq!(siz(&d).map(|s| (s.signed, s.precision)), Some((true, 13)));
        assert_eq!(siz(&[0; 10]), None);
        // Xsiz 720, Ysiz 512, XOsiz 8, YOsiz 0, tiles, then Csiz 1.
        let mut s = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [720u32, 512, 8, 0, 512, 512, 0, 0] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        s.extend_from_slice(&[0, 1, 15, 1, 1]);
        assert_eq!(siz(&s).map(|s| (s.width, s.height, s.components)), Some((712, 512, 1)));
        assert_eq!(siz(&s[..40]).map(|s| (s.width, s.height, s.components)), None);
        // Only at the start of the codestream, or of a JP2 file's jp2c box.
        assert_eq!(siz(&[&[0, 0][..], &s].concat()).map(|s| (s.width, s.height, s.components)), None);
        let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
        jp2.extend_from_slice(&[0, 0, 0, 12, b'x', b'm', b'l', b' ', 0xFF, 0x4F, 0xFF, 0x51]);
        jp2.extend_from_slice(&[0, 0, 0, 0, b'j', b'p', b'2', b'c']);
        jp2.extend_from_slice(&s);
        assert_eq!(siz(&jp2).map(|s| (s.width, s.height, s.components)), Some((712, 512, 1)));
    }
}
