//! Reading instances out of a WADO-RS `multipart/related` answer: one for
//! an instance retrieve, each in turn for a series retrieve.
//!
//! Written here (no crate reads multipart/related from a blocking reader
//! without taking the whole body): the boundary from the Content-Type, the
//! part's headers, then its bytes — by the part's Content-Length when the
//! server sends one (Orthanc does), refusing an instance over the size
//! limit before reading it, else up to the closing delimiter.

use std::io::{BufRead, Read};

/// Why an answer holds no usable instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("answer is not multipart/related (Content-Type {0:?})")]
    NotMultipart(String),
    #[error("multipart answer has no boundary")]
    NoBoundary,
    #[error("multipart answer ended before {0}")]
    Truncated(&'static str),
    #[error("multipart part is not application/dicom ({0:?})")]
    WrongType(String),
    #[error("instance is {bytes} bytes, over the max_file_bytes limit of {limit}: refused before reading it")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("instance is over the max_file_bytes limit of {limit}: refused after {limit} bytes")]
    TooLong { limit: u64 },
    #[error("multipart part headers are malformed: {0}")]
    BadHeaders(String),
    #[error("answer holds more than one instance")]
    ExtraParts,
    #[error("answer holds no instance")]
    NoParts,
    #[error("reading the answer: {0}")]
    Io(String),
}

/// The boundary of a `multipart/related` Content-Type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.eq_ignore_ascii_case("multipart/related") {
        return Err(MultipartError::NotMultipart(content_type.chars().take(100).collect()));
    }
    parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or(MultipartError::NoBoundary)
}

fn io(e: std::io::Error) -> MultipartError {
    MultipartError::Io(e.to_string())
}

/// A reader that can put bytes back in front of what it has not read yet:
/// a part without a Content-Length is read past its end, and what follows
/// its delimiter belongs to the next part.
struct Rewind<R> {
    inner: R,
    buffer: Vec<u8>,
    at: usize,
}

const CHUNK: usize = 64 << 10;

impl<R: Read> Rewind<R> {
    fn new(inner: R) -> Self {
        Self { inner, buffer: Vec::new(), at: 0 }
    }

    fn unread(&mut self, bytes: &[u8]) {
        let mut front = bytes.to_vec();
        front.extend_from_slice(&self.buffer[self.at..]);
        self.buffer = front;
        self.at = 0;
    }
}

impl<R: Read> Read for Rewind<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Rewind<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.at >= self.buffer.len() {
            self.buffer.resize(CHUNK, 0);
            self.at = 0;
            let n = loop {
                match self.inner.read(&mut self.buffer) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buffer.clear();
                        return Err(e);
                    }
                }
            };
            self.buffer.truncate(n);
        }
        Ok(&self.buffer[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.buffer.len());
    }
}

/// Reads one line (CRLF or LF), at most `max` bytes; `None` at the end.
fn line(reader: &mut impl BufRead, max: u64) -> Result<Option<Vec<u8>>, MultipartError> {
    let mut out = Vec::new();
    let n = reader.by_ref().take(max).read_until(b'\n', &mut out).map_err(io)?;
    if n == 0 {
        return Ok(None);
    }
    // A line without its end is the answer's last, unless it filled `max`.
    if out.last() != Some(&b'\n') && n as u64 >= max {
        return Err(MultipartError::BadHeaders("a line is too long".into()));
    }
    while matches!(out.last(), Some(b'\n' | b'\r')) {
        out.pop();
    }
    Ok(Some(out))
}

/// The parts of a `multipart/related` answer, one at a time, each at most
/// `limit` bytes: a series retrieve holds many, an instance retrieve one.
pub struct Parts<R> {
    reader: Rewind<R>,
    delimiter: String,
    limit: u64,
    started: bool,
    done: bool,
}

impl<R: Read> Parts<R> {
    /// # Errors
    /// The Content-Type is not multipart/related with a boundary.
    pub fn new(content_type: &str, body: R, limit: u64) -> Result<Self, MultipartError> {
        let delimiter = format!("--{}", boundary(content_type)?);
        Ok(Self { reader: Rewind::new(body), delimiter, limit, started: false, done: false })
    }

    /// Whether the closing delimiter has been read.
    pub fn ended(&self) -> bool {
        self.done
    }

    /// The next part's bytes; `None` after the closing delimiter.
    ///
    /// # Errors
    /// The answer is cut short or malformed, or the part is not
    /// application/dicom or over the limit.
    pub fn next_part(&mut self) -> Result<Option<Vec<u8>>, MultipartError> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            // Preamble: anything before the first delimiter line.
            loop {
                match line(&mut self.reader, 1 << 16)? {
                    None => return Err(MultipartError::NoParts),
                    Some(l) if l == self.delimiter.as_bytes() => break,
                    Some(l) if l == format!("{}--", self.delimiter).as_bytes() => {
                        self.done = true;
                        return Ok(None);
                    }
                    Some(_) => {}
                }
            }
            self.started = true;
        }
        let length = self.headers()?;
        let closing = format!("\r\n{}", self.delimiter);
        let limit = self.limit;
        let data = match length {
            Some(bytes) if bytes > limit => return Err(MultipartError::TooLarge { bytes, limit }),
            Some(bytes) => {
                let mut data = Vec::with_capacity(bytes as usize);
                self.reader.by_ref().take(bytes).read_to_end(&mut data).map_err(io)?;
                if (data.len() as u64) < bytes {
                    return Err(MultipartError::Truncated("the instance's bytes ended"));
                }
                let mut after = vec![0u8; closing.len()];
                self.reader.read_exact(&mut after).map_err(|_| MultipartError::Truncated("the closing delimiter"))?;
                if after != closing.as_bytes() {
                    return Err(MultipartError::BadHeaders("the part is longer than its Content-Length".into()));
                }
                data
            }
            None => self.up_to_delimiter(&closing)?,
        };
        self.after_delimiter()?;
        Ok(Some(data))
    }

    /// The part's headers; its Content-Length when it has one.
    fn headers(&mut self) -> Result<Option<u64>, MultipartError> {
        let mut length = None;
        loop {
            let header =
                line(&mut self.reader, 8 << 10)?.ok_or(MultipartError::Truncated("the part's headers ended"))?;
            if header.is_empty() {
                return Ok(length);
            }
            let text = String::from_utf8_lossy(&header);
            let (name, value) =
                text.split_once(':').ok_or_else(|| MultipartError::BadHeaders(text.chars().take(80).collect()))?;
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| MultipartError::BadHeaders(format!("Content-Length {value:?}")))?,
                );
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                let media = value.split(';').next().unwrap_or("").trim();
                if !media.eq_ignore_ascii_case("application/dicom") {
                    return Err(MultipartError::WrongType(value.chars().take(100).collect()));
                }
            }
        }
    }

    /// A part without a Content-Length: its bytes up to the delimiter,
    /// reading at most the limit plus the delimiter.
    fn up_to_delimiter(&mut self, closing: &str) -> Result<Vec<u8>, MultipartError> {
        let mut data = Vec::new();
        self.reader.by_ref().take(self.limit + closing.len() as u64 + 4).read_to_end(&mut data).map_err(io)?;
        // A delimiter is the boundary line followed by `--`, or by optional
        // blanks and CRLF (RFC 2046 §5.1.1): the same bytes inside an
        // instance, followed by anything else, are data.
        let is_delimiter = |at: &usize| {
            let after = &data[at + closing.len()..];
            let rest =
                after.iter().position(|b| *b != b' ' && *b != b'\t').map_or(&after[after.len()..], |i| &after[i..]);
            after.starts_with(b"--") || rest.starts_with(b"\r\n") || rest.starts_with(b"\n")
        };
        let Some(at) = memchr::memmem::find_iter(&data, closing.as_bytes()).find(is_delimiter) else {
            return Err(if data.len() as u64 > self.limit {
                MultipartError::TooLong { limit: self.limit }
            } else {
                MultipartError::Truncated("the closing delimiter")
            });
        };
        let rest = data.split_off(at);
        self.reader.unread(&rest[closing.len()..]);
        Ok(data)
    }

    /// After a delimiter: `--` closes the answer, blanks and a line end
    /// open the next part.
    fn after_delimiter(&mut self) -> Result<(), MultipartError> {
        let mut two = [0u8; 2];
        self.reader.read_exact(&mut two).map_err(|_| MultipartError::Truncated("the closing delimiter"))?;
        if &two == b"--" {
            self.done = true;
            return Ok(());
        }
        if &two == b"\r\n" || two[0] == b'\n' {
            if two[0] == b'\n' {
                self.reader.unread(&two[1..]);
            }
            return Ok(());
        }
        self.reader.unread(&two);
        let rest = line(&mut self.reader, 1 << 10)?.ok_or(MultipartError::Truncated("the closing delimiter"))?;
        if rest.iter().all(|b| *b == b' ' || *b == b'\t') {
            Ok(())
        } else {
            Err(MultipartError::BadHeaders("text after a delimiter".into()))
        }
    }
}

/// The single instance of a WADO-RS instance retrieve, at most `limit` bytes.
///
/// # Errors
/// The answer is not multipart, is cut short, holds another type, more or
/// fewer than one part, or an instance over `limit`.
pub fn single_instance(content_type: &str, body: &mut dyn Read, limit: u64) -> Result<Vec<u8>, MultipartError> {
    let mut parts = Parts::new(content_type, body, limit)?;
    let first = parts.next_part()?.ok_or(MultipartError::NoParts)?;
    if parts.ended() {
        Ok(first)
    } else {
        Err(MultipartError::ExtraParts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/related; type=\"application/dicom\"; boundary=XyZ";

    fn body(parts: &[&[u8]], with_length: bool) -> Vec<u8> {
        let mut out = b"preamble\r\n".to_vec();
        for part in parts {
            out.extend_from_slice(b"--XyZ\r\nContent-Type: application/dicom\r\n");
            if with_length {
                out.extend_from_slice(format!("Content-Length: {}\r\n", part.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    #[test]
    fn one_part_is_read_with_or_without_its_length_even_when_it_holds_crlf_dashes() {
        let instance: &[u8] = b"DICM\r\n--XyZ-not-quite\r\n\x00\x01";
        for with_length in [true, false] {
            let got = single_instance(CT, &mut body(&[instance], with_length).as_slice(), 1 << 20).expect("read");
            assert_eq!(got, instance, "with_length {with_length}");
        }
    }

    #[test]
    fn cut_short_oversized_wrong_typed_and_extra_parts_are_each_named() {
        let full = body(&[b"0123456789"], true);
        let cut = &full[..full.len() - 12];
        assert!(matches!(single_instance(CT, &mut &cut[..], 100), Err(MultipartError::Truncated(_))));
        assert_eq!(single_instance(CT, &mut full.as_slice(), 4), Err(MultipartError::TooLarge { bytes: 10, limit: 4 }));
        let unsized_body = body(&[b"0123456789"], false);
        assert_eq!(single_instance(CT, &mut unsized_body.as_slice(), 4), Err(MultipartError::TooLong { limit: 4 }));
        let two = body(&[b"a", b"b"], true);
        assert_eq!(single_instance(CT, &mut two.as_slice(), 100), Err(MultipartError::ExtraParts));
        let html = b"--XyZ\r\nContent-Type: text/html\r\n\r\nx\r\n--XyZ--".to_vec();
        assert!(matches!(single_instance(CT, &mut html.as_slice(), 100), Err(MultipartError::WrongType(_))));
        assert!(matches!(
            single_instance("application/json", &mut &b""[..], 100),
            Err(MultipartError::NotMultipart(_))
        ));
        assert_eq!(single_instance(CT, &mut &b"--XyZ--\r\n"[..], 100), Err(MultipartError::NoParts));
    }

    #[test]
    fn a_series_answer_yields_each_part_in_turn_and_a_cut_names_the_part_it_cut() {
        let parts: [&[u8]; 3] = [b"first\r\n--XyZ-not-quite", b"", b"third\n--XyZ--x"];
        for with_length in [true, false] {
            let whole = body(&parts, with_length);
            let mut reader = Parts::new(CT, whole.as_slice(), 1 << 20).expect("multipart");
            for part in parts {
                assert_eq!(reader.next_part().expect("part").as_deref(), Some(part), "with_length {with_length}");
            }
            assert_eq!(reader.next_part(), Ok(None));
            let cut = &whole[..whole.len() - 20];
            let mut reader = Parts::new(CT, cut, 1 << 20).expect("multipart");
            assert!(reader.next_part().expect("first").is_some());
            assert!(reader.next_part().expect("second").is_some());
            assert!(matches!(reader.next_part(), Err(MultipartError::Truncated(_))), "with_length {with_length}");
        }
        let empty = Parts::new(CT, &b"--XyZ--"[..], 10).and_then(|mut p| p.next_part());
        assert_eq!(empty, Ok(None));
    }

    #[test]
    fn the_boundary_may_be_quoted() {
        assert_eq!(boundary("multipart/related; boundary=\"a b\"; type=x").expect("b"), "a b");
        assert_eq!(boundary("multipart/related; type=x"), Err(MultipartError::NoBoundary));
    }
}
