//! Files on disk: folders (walked recursively, in name order), DICOMDIRs
//! (their records followed) and single files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{dicomdir, Blob, Listed, Listing, Source, SourceError};
use crate::ingest::IngestConfig;
use crate::message::{RejectKind, Rejected, SkipReason, SourceId, Stage};

/// The `--input` folders, DICOMDIRs and files of one run.
#[derive(Debug, Clone)]
pub struct FileSystem {
    inputs: Vec<PathBuf>,
    follow_symlinks: bool,
    skip_hidden: bool,
}

impl FileSystem {
    pub fn new(cfg: &IngestConfig, inputs: &[PathBuf]) -> Self {
        Self { inputs: inputs.to_vec(), follow_symlinks: cfg.follow_symlinks, skip_hidden: cfg.skip_hidden }
    }
}

fn rejected(path: PathBuf, kind: RejectKind, reason: String) -> Rejected {
    Rejected { source: SourceId::File(path), stage: Stage::Ingest, kind, reason, header: None, frame: None }
}

impl Source for FileSystem {
    /// A file reached twice (two inputs, a DICOMDIR and its folder) is listed once.
    fn list(&self) -> Listing {
        let mut listing = Listing::default();
        let mut seen = HashSet::new();
        let mut push = |path: PathBuf, root: &Path, listing: &mut Listing| {
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.insert(key) {
                let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                listing.instances.push(Listed { id: SourceId::File(path), name, expected_sop: None });
            }
        };
        for input in &self.inputs {
            let root =
                if input.is_dir() { input.clone() } else { input.parent().map(Path::to_path_buf).unwrap_or_default() };
            if dicomdir::is_dicomdir(input) {
                match dicomdir::referenced_files(input) {
                    Ok(list) => list.into_iter().for_each(|p| push(p, &root, &mut listing)),
                    Err(reason) => listing.rejected.push(rejected(input.clone(), RejectKind::Error, reason)),
                }
                continue;
            }
            let skip_hidden = self.skip_hidden;
            let walker = walkdir::WalkDir::new(input).follow_links(self.follow_symlinks).sort_by_file_name();
            let walker = walker.into_iter().filter_entry(move |e| {
                !(skip_hidden && e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.'))
            });
            for entry in walker {
                match entry {
                    Ok(e) if e.file_type().is_file() => push(e.into_path(), &root, &mut listing),
                    Ok(e) if e.path_is_symlink() => listing.rejected.push(rejected(
                        e.into_path(),
                        RejectKind::Skip(SkipReason::SymlinkNotFollowed),
                        "symbolic link not followed (set ingest.follow_symlinks)".into(),
                    )),
                    Ok(e) if e.file_type().is_dir() => {}
                    // A named pipe, socket or device would block or never end if
                    // read: counted, never opened.
                    Ok(e) => listing.rejected.push(rejected(
                        e.into_path(),
                        RejectKind::Skip(SkipReason::NotARegularFile),
                        "not a regular file (pipe, socket or device): not read".into(),
                    )),
                    Err(err) => listing.rejected.push(rejected(
                        err.path().map(Path::to_path_buf).unwrap_or_else(|| input.clone()),
                        RejectKind::Error,
                        walk_error_reason(&err),
                    )),
                }
            }
        }
        listing
    }

    fn open(&self, id: &SourceId) -> Result<Blob, SourceError> {
        let SourceId::File(path) = id else { return Err(SourceError::Foreign) };
        Ok(Blob::open_file(path)?)
    }
}

/// The reason names no path: folder names may hold patient names, and
/// reasons reach the analyst tables (the row's path goes to the
/// identifiable `failed_files.csv`).
fn walk_error_reason(err: &walkdir::Error) -> String {
    if let Some(ancestor) = err.loop_ancestor() {
        let levels = err.path().map_or(0, |p| p.components().count().saturating_sub(ancestor.components().count()));
        return format!("symbolic link loop back to an ancestor folder {levels} level(s) up");
    }
    match err.io_error() {
        Some(io) => format!("cannot read: {io}"),
        None => "cannot walk this entry".to_string(),
    }
}
