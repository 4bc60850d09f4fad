//! Sources: where instances come from, and the one way their bytes are read.
//!
//! A [`Source`] lists what an input holds and opens one instance's bytes as
//! a [`Blob`]; every later stage reads through the blob, never a path, so a
//! DICOMweb or DIMSE source is one more implementation of the trait. Folders,
//! single files and DICOMDIRs are [`FileSystem`] (see [`fs`]); a DICOMweb
//! server's studies are [`dicomweb::DicomWeb`]; a run's inputs together are
//! [`Sources`].

mod dicomdir;
pub mod dicomweb;
pub mod fs;
mod sources;

use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;

use dicom_object::file::ReadPreamble;

pub use fs::FileSystem;
pub use sources::Sources;

use crate::message::{Rejected, SopInstanceUid, SourceId};

/// One instance an input holds, with how reports show it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: SourceId,
    /// Its name under its input (a relative path for a file), for ordering.
    pub name: String,
    /// The SOP Instance UID the source promised (a server's manifest):
    /// bytes that say otherwise are refused at ingest.
    pub expected_sop: Option<SopInstanceUid>,
}

/// What listing an input found: instances to probe, and entries that are
/// already a skip or an error (unreadable folders, links not followed).
#[derive(Debug, Default)]
pub struct Listing {
    pub instances: Vec<Listed>,
    pub rejected: Vec<Rejected>,
}

impl Listing {
    /// Every entry, listed or rejected: each ends as exactly one outcome.
    pub fn len(&self) -> usize {
        self.instances.len() + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an instance's bytes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The reason names no path: rows carry the instance's id apart.
    #[error("cannot read file")]
    Io(#[from] std::io::Error),
    /// A remote source could not deliver it; the reason says why (the
    /// server's status and words, never a credential).
    #[error("{0}")]
    Fetch(String),
    /// An id another source listed (a bug in the caller, never input).
    #[error("not an instance this source lists")]
    Foreign,
}

/// Where instances come from.
pub trait Source: Send + Sync {
    /// Everything this input holds, in a stable order.
    fn list(&self) -> Listing;

    /// One listed instance's bytes.
    ///
    /// # Errors
    /// The instance cannot be opened (gone, unreadable, the peer failed).
    fn open(&self, id: &SourceId) -> Result<Blob, SourceError>;

    /// The instances this run will open, in the order it will open them,
    /// once resume has left out the committed ones: a remote source starts
    /// fetching ahead here.
    fn prepare(&self, _order: &[Listed]) {}

    /// The run has read all it needs of this instance (decoded it, or
    /// turned it away): a remote source may drop its bytes.
    fn release(&self, _id: &SourceId) {}
}

/// One instance's bytes: an open file (read as needed, never mapped: a file
/// truncated under a mapping would kill the process) or bytes in memory (a
/// fetched or received object, a fuzz input).
#[derive(Debug)]
pub struct Blob {
    len: u64,
    body: Body,
}

#[derive(Debug)]
enum Body {
    File(std::fs::File),
    Memory(Arc<[u8]>),
}

impl Blob {
    /// An open file; its length is taken now.
    ///
    /// # Errors
    /// The file's metadata cannot be read.
    pub fn file(file: std::fs::File) -> std::io::Result<Self> {
        Ok(Self { len: file.metadata()?.len(), body: Body::File(file) })
    }

    /// The file at `path`, opened.
    ///
    /// # Errors
    /// It cannot be opened or its metadata read.
    pub fn open_file(path: &std::path::Path) -> std::io::Result<Self> {
        Self::file(std::fs::File::open(path)?)
    }

    /// Bytes already in memory.
    pub fn bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        Self { len: bytes.len() as u64, body: Body::Memory(bytes) }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A buffered reader from the first byte. Readers keep their own
    /// position (a file is read with positional reads), so two never
    /// disturb each other.
    pub fn reader(&self) -> BlobReader<'_> {
        match &self.body {
            Body::File(file) => {
                BlobReader::File(std::io::BufReader::with_capacity(64 << 10, FileAt { file, pos: 0, len: self.len }))
            }
            Body::Memory(bytes) => BlobReader::Memory(Cursor::new(bytes)),
        }
    }

    /// The DICOM object, up to (not including) `until` when given, read as
    /// dicom-rs's `open_file` reads a file: the 128-byte preamble is passed
    /// over unless the bytes start with "DICM" — and with no path in any
    /// error (paths may name patients).
    ///
    /// # Errors
    /// The bytes are not a readable DICOM object.
    pub fn object(
        &self,
        until: Option<dicom_core::Tag>,
    ) -> Result<dicom_object::DefaultDicomObject, dicom_object::ReadError> {
        let mut head = [0u8; 4];
        let starts_with_dicm = self.reader().read_exact(&mut head).is_ok() && &head == b"DICM";
        let preamble = if starts_with_dicm { ReadPreamble::Never } else { ReadPreamble::Always };
        let options = dicom_object::OpenFileOptions::new().read_preamble(preamble);
        let options = match until {
            Some(tag) => options.read_until(tag),
            None => options,
        };
        options.from_reader(self.reader())
    }
}

/// A file read at its own offset (`pread`), so a reader needs no seek of the
/// shared file handle and cannot fail to start.
#[derive(Debug)]
pub struct FileAt<'a> {
    file: &'a std::fs::File,
    pos: u64,
    len: u64,
}

impl Read for FileAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileAt<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// Reads a [`Blob`]: `Read + BufRead + Seek` whatever holds the bytes.
pub enum BlobReader<'a> {
    File(std::io::BufReader<FileAt<'a>>),
    Memory(Cursor<&'a Arc<[u8]>>),
}

impl BlobReader<'_> {
    /// Moves `n` bytes on, keeping what is buffered where it can (a walk
    /// over element lengths skips many short values).
    ///
    /// # Errors
    /// The file cannot seek.
    pub fn skip_forward(&mut self, n: u64) -> std::io::Result<()> {
        let n = i64::try_from(n).map_err(|_| std::io::Error::other("skip beyond i64"))?;
        match self {
            Self::File(r) => r.seek_relative(n),
            Self::Memory(r) => r.seek(SeekFrom::Current(n)).map(|_| ()),
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::File(r) => r.read(buf),
            Self::Memory(r) => r.read(buf),
        }
    }
}

impl BufRead for BlobReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match self {
            Self::File(r) => r.fill_buf(),
            Self::Memory(r) => r.fill_buf(),
        }
    }

    fn consume(&mut self, amount: usize) {
        match self {
            Self::File(r) => r.consume(amount),
            Self::Memory(r) => r.consume(amount),
        }
    }
}

impl Seek for BlobReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match self {
            Self::File(r) => r.seek(pos),
            Self::Memory(r) => r.seek(pos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(blob: &Blob) -> Vec<u8> {
        let mut out = Vec::new();
        blob.reader().read_to_end(&mut out).expect("read");
        out
    }

    #[test]
    fn a_blob_reads_from_the_start_every_time_whatever_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.dcm");
        std::fs::write(&path, b"0123456789").expect("write");
        let file = Blob::file(std::fs::File::open(&path).expect("open")).expect("blob");
        let memory = Blob::bytes(b"0123456789".to_vec());
        for blob in [&file, &memory] {
            assert_eq!(blob.len(), 10);
            let mut r = blob.reader();
            r.seek(SeekFrom::Start(4)).expect("seek");
            let mut two = [0u8; 2];
            r.read_exact(&mut two).expect("read");
            assert_eq!(&two, b"45");
            assert_eq!(all(blob), b"0123456789");
        }
    }
}
