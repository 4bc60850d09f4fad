//! Parquet part files: one file per table per run, zstd-compressed, written
//! under a temporary name and renamed only when complete, so a reader (or a
//! crashed run) never sees half a file.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Writes one part file of a table, a row group at a time.
pub struct PartWriter {
    tmp_path: PathBuf,
    final_path: PathBuf,
    writer: ArrowWriter<File>,
}

impl PartWriter {
    /// Opens `dir/part-<tag>.parquet.tmp` for a table whose rows look like `schema_of`.
    ///
    /// # Errors
    /// The folder or file cannot be created.
    pub fn create(dir: &Path, tag: &str, schema_of: &RecordBatch, row_group_rows: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Output { path: dir.to_path_buf(), source })?;
        let final_path = dir.join(format!("part-{tag}.parquet"));
        let tmp_path = dir.join(format!(".part-{tag}.parquet.tmp"));
        let file = File::create(&tmp_path).map_err(|source| Error::Output { path: tmp_path.clone(), source })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .build();
        let writer = ArrowWriter::try_new(file, schema_of.schema(), Some(props))
            .map_err(|source| Error::Parquet { path: tmp_path.clone(), source })?;
        Ok(Self { tmp_path, final_path, writer })
    }

    /// Appends rows; full row groups are flushed to disk as they fill.
    ///
    /// # Errors
    /// Writing fails.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|source| Error::Parquet { path: self.tmp_path.clone(), source })
    }

    /// Finishes the file, syncs it and gives it its final name.
    ///
    /// # Errors
    /// Closing, syncing or renaming fails.
    pub fn close(self) -> Result<PathBuf> {
        let file = self.writer.into_inner().map_err(|source| Error::Parquet { path: self.tmp_path.clone(), source })?;
        file.sync_all().map_err(|source| Error::Output { path: self.tmp_path.clone(), source })?;
        std::fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|source| Error::Output { path: self.final_path.clone(), source })?;
        Ok(self.final_path)
    }
}
