//! DICOMDIR: a media directory that lists the files of a CD or export.
//! Following its records (rather than walking the folder) finds exactly the
//! files the exporting system meant, in their original order.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

use super::Blob;

/// True when a path names a DICOMDIR file (by name, as media require).
pub fn is_dicomdir(path: &Path) -> bool {
    path.is_file() && path.file_name().is_some_and(|n| n.eq_ignore_ascii_case("DICOMDIR"))
}

/// The files referenced by a DICOMDIR's records, resolved against its folder.
/// A record whose ID would leave that folder is refused, not followed.
///
/// # Errors
/// The DICOMDIR cannot be read or has no Directory Record Sequence.
pub fn referenced_files(dicomdir: &Path) -> Result<Vec<PathBuf>, String> {
    // Read through a blob: dicom-rs's own file errors would name the path.
    let blob = Blob::open_file(dicomdir).map_err(|e| format!("cannot read DICOMDIR: {e}"))?;
    let obj = blob.object(None).map_err(|e| format!("cannot read DICOMDIR: {e}"))?;
    let records = obj
        .get(tags::DIRECTORY_RECORD_SEQUENCE)
        .and_then(|e| e.items())
        .ok_or_else(|| "DICOMDIR has no Directory Record Sequence".to_string())?;
    let base = dicomdir.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for record in records {
        let Some(id) = record.get(tags::REFERENCED_FILE_ID) else { continue };
        let Ok(parts) = id.to_multi_str() else { continue };
        let mut path = base.to_path_buf();
        let mut safe = true;
        for part in parts.iter() {
            let part = part.trim_end_matches(['\0', ' ']).trim();
            if part.is_empty() || part == "." {
                continue;
            }
            if part == ".." || part.contains('/') || part.contains('\\') {
                safe = false;
                break;
            }
            path.push(part);
        }
        if safe {
            files.push(path);
        }
    }
    Ok(files)
}
