//! A cheap structural check run before dicom-rs sees a file.
//!
//! dicom-rs allocates an element's declared length before reading it, so a
//! header claiming gigabytes (a corrupt or hostile length) costs gigabytes of
//! memory before the read fails, and deeply nested sequences recurse without
//! limit. This walk reads only tags and lengths, and refuses a file whose
//! declared lengths cannot fit in it or whose nesting is absurd — so the
//! parser only ever sees files whose every length is bounded by the file size.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use flate2::bufread::DeflateDecoder;

use crate::dicom::ts::TsKind;
use crate::source::{Blob, BlobReader};

/// Deeper nesting than this is refused (real objects rarely exceed 10).
pub const MAX_SEQUENCE_DEPTH: usize = 64;

/// An inflated data set (deflate transfer syntax) may not declare values
/// past this many bytes; a file's lengths are bounded by its size instead.
/// It is the default `max_file_bytes` (4 GiB): a small deflated file must
/// not bring in more than the largest plain one.
pub const MAX_INFLATED_BYTES: u64 = 4 << 30;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const KNOWN_LONG_VRS: [&[u8; 2]; 13] =
    [b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"];
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQ_END: (u16, u16) = (0xFFFE, 0xE0DD);

/// One element header as read: tag (group, element), VR if explicit, length.
type ElementHeader = ((u16, u16), Option<[u8; 2]>, u32);

#[derive(Clone, Copy, PartialEq)]
enum Syntax {
    ExplicitLittle,
    ImplicitLittle,
    ExplicitBig,
}

struct Walk<R> {
    src: R,
    pos: u64,
    /// Bytes in the source; `u64::MAX` for an inflated stream, whose size is
    /// only known at its end ([`Skip::skip`] then checks each length).
    size: u64,
}

/// A byte source the walk can pass over: a file seeks, an inflated stream
/// reads and discards.
trait Skip: BufRead {
    /// Passes over up to `n` bytes; returns how many there were.
    fn skip(&mut self, n: u64) -> std::io::Result<u64>;
}

impl Skip for BlobReader<'_> {
    fn skip(&mut self, n: u64) -> std::io::Result<u64> {
        self.skip_forward(n)?;
        Ok(n)
    }
}

impl Skip for BufReader<DeflateDecoder<BlobReader<'_>>> {
    fn skip(&mut self, n: u64) -> std::io::Result<u64> {
        std::io::copy(&mut self.take(n), &mut std::io::sink())
    }
}

impl<R: Skip> Walk<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut buf = [0u8; N];
        self.src
            .read_exact(&mut buf)
            .map_err(|_| format!("file ends inside an element header at byte {}", self.pos))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u16(&mut self, big: bool) -> Result<u16, String> {
        let b = self.bytes::<2>()?;
        Ok(if big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }

    fn u32(&mut self, big: bool) -> Result<u32, String> {
        let b = self.bytes::<4>()?;
        Ok(if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let got = self.src.skip(n).map_err(|e| e.to_string())?;
        if got < n {
            return Err(format!(
                "an element at byte {} declares {n} bytes but the data set ends after {got}",
                self.pos
            ));
        }
        self.pos += n;
        Ok(())
    }

    /// Whether the data set has ended (cleanly, between elements).
    fn at_end(&mut self) -> Result<bool, String> {
        Ok(self.pos >= self.size || self.src.fill_buf().map_err(|e| e.to_string())?.is_empty())
    }

    fn fits(&self, tag: (u16, u16), len: u32) -> Result<(), String> {
        if self.size == u64::MAX && len != UNDEFINED && self.pos + u64::from(len) > MAX_INFLATED_BYTES {
            return Err(format!(
                "element ({:04X},{:04X}) at byte {} declares {len} bytes, past the {MAX_INFLATED_BYTES}-byte limit for an inflated data set",
                tag.0, tag.1, self.pos
            ));
        }
        if len != UNDEFINED && self.pos + u64::from(len) > self.size {
            return Err(format!(
                "element ({:04X},{:04X}) declares {len} bytes but only {} remain in the file",
                tag.0,
                tag.1,
                self.size - self.pos
            ));
        }
        Ok(())
    }

    /// One element header: tag, VR (if explicit) and length.
    fn header(&mut self, syntax: Syntax) -> Result<ElementHeader, String> {
        let big = syntax == Syntax::ExplicitBig;
        let group = self.u16(big)?;
        let element = self.u16(big)?;
        let tag = (group, element);
        if group == 0xFFFE || syntax == Syntax::ImplicitLittle {
            let len = self.u32(big)?;
            return Ok((tag, None, len));
        }
        let vr = self.bytes::<2>()?;
        // As dicom-rs reads it: only these VRs have a 16-bit length; any
        // other VR, including an unknown one (read as UN), has 2 reserved
        // bytes and a 32-bit length.
        let short = matches!(
            &vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        );
        let len = if short {
            u32::from(self.u16(big)?)
        } else {
            self.bytes::<2>()?;
            self.u32(big)?
        };
        // Unknown VRs are UN to the parser; report them as such.
        let vr = if short || KNOWN_LONG_VRS.contains(&&vr) { vr } else { *b"UN" };
        Ok((tag, Some(vr), len))
    }
}

/// Checks a DICOM Part 10 object's declared lengths up to its pixel data.
///
/// # Errors
/// A description of the first impossible length or excessive nesting.
pub fn check(blob: &Blob) -> Result<(), String> {
    let mut w = Walk { src: blob.reader(), pos: 0, size: blob.len() };
    // Preamble + "DICM", or (rarely) the meta group straight away.
    let head = w.bytes::<4>().ok();
    if head.as_ref() != Some(b"DICM") && head.map(|h| h[0..2] == [0x02, 0x00]) != Some(true) {
        w.skip(124)?;
        if w.bytes::<4>().ok().as_ref() != Some(b"DICM") {
            return Ok(()); // not Part 10: ingest classifies it, nothing to allocate
        }
    } else if head.as_ref() != Some(b"DICM") {
        w.src.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        w.pos = 0;
    }
    // File meta group: always explicit VR little endian.
    let mut syntax = Syntax::ExplicitLittle;
    let mut deflated = false;
    loop {
        let start = w.pos;
        let Ok((tag, _, len)) = w.header(Syntax::ExplicitLittle) else { return Ok(()) };
        if tag.0 != 0x0002 {
            w.src.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
            w.pos = start;
            break;
        }
        w.fits(tag, len)?;
        if tag == (0x0002, 0x0010) && len < 256 {
            let mut uid = vec![0u8; len as usize];
            w.src.read_exact(&mut uid).map_err(|e| e.to_string())?;
            w.pos += u64::from(len);
            let uid = String::from_utf8_lossy(&uid);
            syntax = match TsKind::from_uid(&uid) {
                TsKind::ImplicitVrLittleEndian => Syntax::ImplicitLittle,
                TsKind::ExplicitVrBigEndian => Syntax::ExplicitBig,
                TsKind::DeflatedExplicitVrLittleEndian => {
                    deflated = true;
                    Syntax::ExplicitLittle
                }
                _ => Syntax::ExplicitLittle,
            };
        } else {
            w.skip(u64::from(len))?;
        }
    }
    if deflated {
        // dicom-rs inflates the data set and allocates from the lengths it
        // finds there, so walk the inflated stream (read once, never held).
        let src = BufReader::new(DeflateDecoder::new(w.src));
        let mut z = Walk { src, pos: 0, size: u64::MAX };
        return walk_data_set(&mut z, syntax).map_err(|e| format!("deflated data set: {e}"));
    }
    walk_data_set(&mut w, syntax)
}

/// An open sequence, item or encapsulated pixel data, with its end offset
/// when its length is defined.
struct Open {
    end: Option<u64>,
    fragments: bool,
}

fn walk_data_set<R: Skip>(w: &mut Walk<R>, syntax: Syntax) -> Result<(), String> {
    let mut open: Vec<Open> = Vec::new();
    loop {
        while open.last().is_some_and(|o| o.end.is_some_and(|end| w.pos >= end)) {
            open.pop();
        }
        if w.at_end()? {
            return Ok(());
        }
        let (tag, vr, len) = w.header(syntax)?;
        w.fits(tag, len)?;
        let end = (len != UNDEFINED).then(|| w.pos + u64::from(len));
        match tag {
            ITEM_END | SEQ_END => {
                open.pop();
            }
            // Encapsulated pixel data: items are compressed fragments, not elements.
            ITEM if open.last().is_some_and(|o| o.fragments) => w.skip(u64::from(len))?,
            ITEM => open.push(Open { end, fragments: false }),
            // Defined-length pixel data is skipped like any other value: the
            // parser reads on after it, so whatever follows is walked too.
            (0x7FE0, 0x0010) if len == UNDEFINED => open.push(Open { end: None, fragments: true }),
            // dicom-rs misreads these (it allocates a length taken from the
            // sequence's content), so refuse them here with a clear reason.
            _ if vr.as_ref() == Some(b"UN") && len == UNDEFINED => {
                return Err(format!(
                    "element ({:04X},{:04X}) is an undefined-length UN sequence, which the DICOM parser cannot read",
                    tag.0, tag.1
                ));
            }
            _ if vr.as_ref() == Some(b"SQ") || (vr.is_none() && len == UNDEFINED) => {
                open.push(Open { end, fragments: false });
            }
            _ if len == UNDEFINED => {
                return Err(format!("element ({:04X},{:04X}) has an undefined length", tag.0, tag.1));
            }
            _ => w.skip(u64::from(len))?,
        }
        if open.len() > 2 * MAX_SEQUENCE_DEPTH {
            return Err(format!("sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part10(body: &[u8], ts: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut meta = Vec::new();
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        meta.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        meta.extend_from_slice(&uid);
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        f.write_all(&[0u8; 128]).expect("w");
        f.write_all(b"DICM").expect("w");
        f.write_all(&meta).expect("w");
        f.write_all(body).expect("w");
        f
    }

    fn on_disk(f: &tempfile::NamedTempFile) -> Blob {
        Blob::file(std::fs::File::open(f.path()).expect("open")).expect("blob")
    }

    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&tag.0.to_le_bytes());
        e.extend_from_slice(&tag.1.to_le_bytes());
        e.extend_from_slice(vr);
        e.extend_from_slice(&(value.len() as u16).to_le_bytes());
        e.extend_from_slice(value);
        e
    }

    const EXPLICIT: &str = dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN;

    #[test]
    fn a_sane_file_passes() {
        let mut body = element((0x0010, 0x0010), b"PN", b"DOE^J ");
        body.extend(element((0x0028, 0x0010), b"US", &4u16.to_le_bytes()));
        assert_eq!(check(&on_disk(&part10(&body, EXPLICIT))), Ok(()));
    }

    #[test]
    fn pixel_data_longer_than_the_file_is_refused_before_any_allocation() {
        let mut body = element((0x0028, 0x0010), b"US", &4u16.to_le_bytes());
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        body.extend_from_slice(&0xF000_0000u32.to_le_bytes());
        body.extend_from_slice(&[0u8; 16]);
        let err = check(&on_disk(&part10(&body, EXPLICIT))).expect_err("must refuse");
        assert!(err.contains("(7FE0,0010) declares 4026531840 bytes"), "{err}");
    }

    #[test]
    fn absurdly_deep_sequences_are_refused() {
        let mut body = Vec::new();
        for _ in 0..(MAX_SEQUENCE_DEPTH + 5) {
            body.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
            body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let err = check(&on_disk(&part10(&body, EXPLICIT))).expect_err("must refuse");
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn a_truncated_header_is_refused() {
        let body = element((0x0010, 0x0010), b"PN", b"DOE^J ");
        let f = part10(&body[..body.len() - 3], EXPLICIT);
        assert!(check(&on_disk(&f)).is_err());
        let bytes = std::fs::read(f.path()).expect("read");
        assert!(check(&Blob::bytes(bytes)).is_err(), "the same bytes in memory");
    }
}
