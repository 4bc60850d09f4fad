//! Which encapsulated fragments make up which frame (PS3.5 A.4).
//!
//! Used by the codecs decode runs itself (JPEG baseline/extended, RLE).
//! Tried in order: one fragment per frame; the Basic Offset Table; a new
//! frame at every fragment that starts a JPEG stream (SOI, `FF D8`).

use std::borrow::Cow;
use std::ops::Range;

use super::DecodeError;

/// Fragment index ranges, one per frame.
///
/// # Errors
/// No fragments, or no way to find `frames` frames in them.
pub(crate) fn split(
    fragments: &[Vec<u8>],
    offsets: &[u32],
    frames: u32,
    soi_scan: bool,
) -> Result<Vec<Range<usize>>, DecodeError> {
    let n = fragments.len();
    let frames = frames as usize;
    if n == 0 {
        return Err(DecodeError::Invalid("encapsulated pixel data has no fragments".into()));
    }
    if frames == 1 {
        let all = 0..n;
        return Ok(vec![all]);
    }
    if n == frames {
        return Ok((0..n).map(|i| i..i + 1).collect());
    }
    if offsets.len() == frames && offsets.first() == Some(&0) {
        // Each offset is where a frame's first item starts, counted from
        // the first fragment's item tag; each item is 8 bytes of tag and
        // length, then the fragment.
        let mut starts = Vec::with_capacity(n);
        let mut pos = 0u64;
        for f in fragments {
            starts.push(pos);
            pos += 8 + f.len() as u64;
        }
        let mut ranges = Vec::with_capacity(frames);
        let mut ok = true;
        for (i, &off) in offsets.iter().enumerate() {
            let begin = starts.iter().position(|&s| s == u64::from(off));
            let end = match offsets.get(i + 1) {
                Some(&next) => starts.iter().position(|&s| s == u64::from(next)),
                None => Some(n),
            };
            match (begin, end) {
                (Some(b), Some(e)) if b < e => ranges.push(b..e),
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Ok(ranges);
        }
    }
    if soi_scan {
        let starts: Vec<usize> = (0..n).filter(|&i| fragments[i].starts_with(&[0xFF, 0xD8])).collect();
        if starts.len() == frames && starts.first() == Some(&0) {
            let mut ranges: Vec<Range<usize>> = starts.windows(2).map(|w| w[0]..w[1]).collect();
            ranges.push(starts[frames - 1]..n);
            return Ok(ranges);
        }
    }
    Err(DecodeError::Invalid(format!(
        "cannot tell which of {n} fragments belong to which of {frames} frames \
         (no usable basic offset table)"
    )))
}

/// The bytes of one frame: borrowed when it is a single fragment.
pub(crate) fn frame_bytes(fragments: &[Vec<u8>], range: Range<usize>) -> Cow<'_, [u8]> {
    match &fragments[range.clone()] {
        [one] => Cow::Borrowed(one.as_slice()),
        many => Cow::Owned(many.concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_split_by_count_offsets_or_soi() {
        let f = |b: &[u8]| b.to_vec();
        let frags = vec![f(&[0xFF, 0xD8, 1, 2]), f(&[3, 4]), f(&[0xFF, 0xD8, 5, 6])];
        assert_eq!(split(&frags, &[], 1, true).unwrap(), vec![0..3]);
        assert_eq!(split(&frags, &[], 3, true).unwrap(), vec![0..1, 1..2, 2..3]);
        // Offsets count 8 bytes of item header per fragment: 0, 12, 22.
        assert_eq!(split(&frags, &[0, 22], 2, false).unwrap(), vec![0..2, 2..3]);
        assert_eq!(split(&frags, &[], 2, true).unwrap(), vec![0..2, 2..3]);
        assert!(split(&frags, &[], 2, false).is_err());
        assert!(split(&[], &[], 1, true).is_err());
        assert_eq!(&*frame_bytes(&frags, 0..2), &[0xFF, 0xD8, 1, 2, 3, 4]);
    }
}
