//! Lookup tables read from the object: Modality and VOI LUT sequences and
//! palette colour LUTs, including segmented palettes (PS3.3 C.7.9.2).
//!
//! Entry size follows pydicom: the length of the data, not the
//! descriptor's bit count, says whether entries are 8 or 16 bits.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;

use super::attrs::{file_bytes, Obj};
use super::pixels::Endian;
use super::DecodeError;

/// A lookup table: input `first + i` maps to `data[i]`; inputs outside
/// the table take the first or last entry (PS3.3 C.11.1.1).
#[derive(Debug, Clone)]
pub(crate) struct Lut {
    pub first: i64,
    pub data: Vec<f32>,
}

impl Lut {
    pub fn get(&self, x: f32) -> f32 {
        let last = self.data.len().saturating_sub(1) as i64;
        let i = ((x.round() as i64) - self.first).clamp(0, last);
        self.data.get(i as usize).copied().unwrap_or(0.0)
    }
}

/// A Modality or VOI LUT sequence item (LUTDescriptor + LUTData).
/// `normalise` divides the output by the largest entry the bit depth
/// allows, as a VOI LUT's output is a display value.
pub(crate) fn seq_lut(item: &Obj, signed: bool, endian: Endian, normalise: bool) -> Result<Lut, DecodeError> {
    let name = "LUTDescriptor";
    let (entries, first, bits) = descriptor(item.get(tags::LUT_DESCRIPTOR), signed, name)?;
    let words = words(item.get(tags::LUT_DATA), endian, "LUTData")?;
    let data = entries_of(words, entries, name)?;
    Ok(finish(first, data, bits, normalise))
}

/// The red, green and blue palette LUTs, output in `0..=1`.
pub(crate) fn palette(obj: &Obj, signed: bool, endian: Endian) -> Result<(Lut, Lut, Lut), DecodeError> {
    let one = |desc: Tag, data: Tag, seg: Tag, name: &'static str| -> Result<Lut, DecodeError> {
        let (entries, first, bits) = descriptor(obj.get(desc), signed, name)?;
        let values = if let Some(e) = obj.get(data) {
            entries_of(words(Some(e), endian, name)?, entries, name)?
        } else if let Some(e) = obj.get(seg) {
            if bits != 16 {
                return Err(DecodeError::Unsupported(format!("{bits}-bit segmented palette")));
            }
            let (w, _) = words(Some(e), endian, name)?;
            let mut out = Vec::new();
            expand_segmented(&w, None, None, 0, &mut out)
                .map_err(|why| DecodeError::InvalidAttribute { name, value: why })?;
            out
        } else {
            return Err(DecodeError::MissingAttribute { name });
        };
        Ok(finish(first, values, bits, true))
    };
    Ok((
        one(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "RedPaletteColorLookupTableDescriptor",
        )?,
        one(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "GreenPaletteColorLookupTableDescriptor",
        )?,
        one(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "BluePaletteColorLookupTableDescriptor",
        )?,
    ))
}

/// `[entries, first mapped value, bits]`.
fn descriptor(e: Option<&InMemElement>, signed: bool, name: &'static str) -> Result<(usize, i64, u16), DecodeError> {
    let bad = |why: &str| DecodeError::InvalidAttribute { name, value: why.to_string() };
    let desc: Vec<i64> =
        e.ok_or(DecodeError::MissingAttribute { name })?.to_multi_int().map_err(|_| bad("not numbers"))?;
    let [entries, first, bits] = desc[..] else {
        return Err(bad("needs 3 values"));
    };
    // 0 entries means 2^16 (PS3.3 C.7.6.3.1.5).
    let entries = if entries == 0 { 65536 } else { entries.clamp(1, 65536) } as usize;
    // The first mapped value is SS when pixels are signed, but is often
    // written as US.
    let first = if signed && first > 32767 { first - 65536 } else { first };
    Ok((entries, first, bits.clamp(1, 16) as u16))
}

/// LUT data as 16-bit words, plus the raw bytes for 8-bit entries.
fn words(e: Option<&InMemElement>, endian: Endian, name: &'static str) -> Result<(Vec<u16>, Vec<u8>), DecodeError> {
    let e = e.ok_or(DecodeError::MissingAttribute { name })?;
    let bytes = e
        .value()
        .primitive()
        .and_then(|p| file_bytes(p, endian))
        .ok_or_else(|| DecodeError::InvalidAttribute { name, value: "not binary".into() })?;
    let words = bytes
        .chunks_exact(2)
        .map(|c| match endian {
            Endian::Little => u16::from_le_bytes([c[0], c[1]]),
            Endian::Big => u16::from_be_bytes([c[0], c[1]]),
        })
        .collect();
    Ok((words, bytes.into_owned()))
}

fn entries_of(
    (words, bytes): (Vec<u16>, Vec<u8>),
    entries: usize,
    name: &'static str,
) -> Result<Vec<f32>, DecodeError> {
    if words.len() >= entries {
        Ok(words.iter().take(entries).map(|&w| f32::from(w)).collect())
    } else if bytes.len() >= entries {
        Ok(bytes.iter().take(entries).map(|&b| f32::from(b)).collect())
    } else {
        Err(DecodeError::InvalidAttribute {
            name,
            value: format!("{} bytes of data for {entries} entries", bytes.len()),
        })
    }
}

fn finish(first: i64, mut data: Vec<f32>, bits: u16, normalise: bool) -> Lut {
    if normalise {
        let top = data.iter().copied().fold(0.0f32, f32::max);
        let mut max = ((1u32 << bits) - 1) as f32;
        // Entries declared 8-bit but holding 16-bit values exist in the wild.
        if top > max {
            max = 65535.0;
        }
        data.iter_mut().for_each(|v| *v /= max);
    }
    Lut { first, data }
}

/// Longest expanded segmented LUT accepted; real ones have 2^16 entries at
/// most, so more means hostile or corrupt data.
const MAX_SEGMENTED: usize = 1 << 17;

/// Expands segmented LUT data (16-bit words) as pydicom does: opcode 0
/// discrete, 1 linear from the previous value, 2 indirect (copy `n`
/// segments starting at a word offset).
pub(crate) fn expand_segmented(
    data: &[u16],
    max_segments: Option<usize>,
    last: Option<f32>,
    depth: u32,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    if depth > 4 {
        return Err("segmented LUT: indirect segments nest too deep".into());
    }
    let mut pos = 0;
    let mut segments = 0;
    while pos + 1 < data.len() {
        let (op, len) = (data[pos], usize::from(data[pos + 1]));
        pos += 2;
        match op {
            0 => {
                let end = (pos + len).min(data.len());
                out.extend(data[pos..end].iter().map(|&v| f32::from(v)));
                pos = end;
            }
            1 => {
                let y0 = out.last().copied().or(last).ok_or("segmented LUT starts with a linear segment")?;
                let y1 = f32::from(*data.get(pos).ok_or("segmented LUT: truncated linear segment")?);
                pos += 1;
                let step = (y1 - y0) / len.max(1) as f32;
                out.extend((1..=len).map(|k| (y0 + step * k as f32).round()));
            }
            2 => {
                if out.is_empty() && last.is_none() {
                    return Err("segmented LUT starts with an indirect segment".into());
                }
                let lo = u32::from(*data.get(pos).ok_or("segmented LUT: truncated indirect segment")?);
                let hi = u32::from(*data.get(pos + 1).ok_or("segmented LUT: truncated indirect segment")?);
                pos += 2;
                let at = ((hi << 16) | lo) as usize;
                let prev = out.last().copied();
                let rest = data.get(at..).ok_or("segmented LUT: indirect offset out of range")?;
                expand_segmented(rest, Some(len), prev, depth + 1, out)?;
            }
            other => return Err(format!("segmented LUT: unknown segment type {other}")),
        }
        if out.len() > MAX_SEGMENTED {
            return Err("segmented LUT expands to more than 2^17 entries".into());
        }
        segments += 1;
        if Some(segments) == max_segments {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmented_palette_expands() {
        // discrete [0, 10], linear to 40 over 3, indirect: repeat the first
        // (discrete) segment.
        let data = [0, 2, 0, 10, 1, 3, 40, 2, 1, 0, 0];
        let mut out = Vec::new();
        expand_segmented(&data, None, None, 0, &mut out).unwrap();
        assert_eq!(out, vec![0.0, 10.0, 20.0, 30.0, 40.0, 0.0, 10.0]);
        // A linear first segment and self-referencing indirection fail.
        assert!(expand_segmented(&[1, 3, 40], None, None, 0, &mut Vec::new()).is_err());
        let looped = [0, 1, 5, 2, 1, 7, 0, 2, 1, 0, 0];
        assert!(expand_segmented(&looped, None, None, 0, &mut Vec::new()).is_err());
    }
}
