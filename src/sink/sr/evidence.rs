//! The evidence journal: which images each study's SR cites.
//!
//! The study book keeps a few bytes per image on purpose, so the image
//! references (SOP class and instance, series, laterality, field, size,
//! frames, the rules that fired) are appended here as files complete, one
//! JSON line per image instance, in the run's folder. Each commit flushes
//! and syncs it and records its length in the checkpoint; a resumed run
//! first cuts it back to that length, so lines of files it redoes are
//! never doubled and a killed run ends with the same lines as an
//! uninterrupted one (in another order: readers sort). At publish only an
//! index (offset and length per line, by study) is held, and each study's
//! lines are read back when its SR is written, so memory grows by ~16
//! bytes per image, not by the images' references.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dicom::laterality::{FundusField, Laterality};
use crate::error::{Error, Result};
use crate::run::ledger::CompleteFile;
use crate::triage::Band;

/// The journal's file name in the run's folder.
pub const JOURNAL: &str = "sr-evidence.jsonl";

/// A rule that fired on the image (rules mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleHit {
    pub band: Band,
    pub finding: String,
    pub label: String,
    pub value: f32,
    pub threshold: f32,
}

/// One scored image instance of a study, as its SR references it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEvidence {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub modality: String,
    pub laterality: Laterality,
    pub field: FundusField,
    pub rows: u32,
    pub columns: u32,
    /// Frames in the instance.
    pub frames: u32,
    /// Scored frames, 0-based, ascending.
    pub scored_frames: Vec<u32>,
    pub hits: Vec<RuleHit>,
    /// When its last frame was scored (the SR's content time is the
    /// study's latest).
    pub scored_at: chrono::DateTime<chrono::Utc>,
}

impl ImageEvidence {
    /// The scored images of one complete file (one instance; none when
    /// nothing in it was scored).
    pub fn of_file(file: &CompleteFile) -> Option<Self> {
        let mut scored = file.rows.iter().filter_map(|r| r.as_ref().ok());
        let first = scored.next()?;
        let h = &first.scored.meta.instance.header;
        let mut evidence = Self {
            study_uid: h.study_uid.0.clone(),
            series_uid: h.series_uid.0.clone(),
            sop_class_uid: h.sop_class_uid.clone(),
            sop_instance_uid: h.sop_instance_uid.0.clone(),
            modality: h.modality.clone(),
            laterality: h.laterality,
            field: h.field,
            rows: h.rows,
            columns: h.columns,
            frames: h.frames,
            scored_frames: Vec::new(),
            hits: Vec::new(),
            scored_at: first.scored.scored_at,
        };
        for finding in std::iter::once(first).chain(scored) {
            evidence.scored_frames.push(finding.scored.meta.frame_index);
            evidence.scored_at = evidence.scored_at.max(finding.scored.scored_at);
            evidence.hits.extend(finding.hits.iter().map(|hit| RuleHit {
                band: hit.band,
                finding: hit.finding.clone(),
                label: hit.label.clone(),
                value: hit.value,
                threshold: hit.threshold,
            }));
        }
        evidence.scored_frames.sort_unstable();
        evidence.scored_frames.dedup();
        Some(evidence)
    }
}

/// The journal being appended to.
pub struct Journal {
    path: PathBuf,
    writer: BufWriter<File>,
    /// Bytes appended so far (committed and pending).
    len: u64,
}

impl Journal {
    /// Opens `dir`'s journal, cut back to `committed` bytes: whatever a
    /// killed attempt wrote after its last commit is dropped.
    ///
    /// # Errors
    /// The file cannot be opened or truncated.
    pub fn open(dir: &Path, committed: u64) -> Result<Self> {
        let path = dir.join(JOURNAL);
        let io = |source| Error::Output { path: path.clone(), source };
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < committed {
            return Err(Error::Checkpoint {
                path: path.clone(),
                problem: format!("the SR evidence journal has {len} bytes, the checkpoint committed {committed}"),
            });
        }
        file.set_len(committed).map_err(io)?;
        let mut writer = BufWriter::new(file);
        std::io::Seek::seek(&mut writer, std::io::SeekFrom::Start(committed)).map_err(io)?;
        Ok(Self { path, writer, len: committed })
    }

    /// Appends one image's line.
    ///
    /// # Errors
    /// Writing fails.
    pub fn append(&mut self, image: &ImageEvidence) -> Result<()> {
        let io = |source| Error::Output { path: self.path.clone(), source };
        let mut line = serde_json::to_vec(image).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(io)?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Makes every line appended so far durable; returns the journal's length.
    ///
    /// # Errors
    /// Flushing or syncing fails.
    pub fn sync(&mut self) -> Result<u64> {
        let io = |source| Error::Output { path: self.path.clone(), source };
        self.writer.flush().map_err(io)?;
        self.writer.get_ref().sync_data().map_err(io)?;
        Ok(self.len)
    }

    /// The path, for reading back.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where each study's lines are in a synced journal.
pub struct EvidenceIndex {
    file: File,
    path: PathBuf,
    /// Study Instance UID → (offset, length) of its lines.
    lines: HashMap<String, Vec<(u64, u32)>>,
}

impl EvidenceIndex {
    /// Reads the journal once and indexes its lines by study.
    ///
    /// # Errors
    /// The journal cannot be read, or a line is not one this version wrote.
    pub fn build(path: &Path) -> Result<Self> {
        let io = |source| Error::Output { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let mut reader = BufReader::new(file.try_clone().map_err(io)?);
        #[derive(Deserialize)]
        struct StudyOnly {
            study_uid: String,
        }
        let mut lines: HashMap<String, Vec<(u64, u32)>> = HashMap::new();
        let (mut offset, mut line) = (0u64, Vec::new());
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            let study: StudyOnly = serde_json::from_slice(&line).map_err(|e| bad_line(path, offset, &e))?;
            lines.entry(study.study_uid).or_default().push((offset, n as u32));
            offset += n as u64;
        }
        Ok(Self { file, path: path.to_path_buf(), lines })
    }

    /// A study's images, ordered by series and SOP instance, one per SOP
    /// instance (a file listed twice under two paths is cited once).
    ///
    /// # Errors
    /// A line cannot be read back.
    pub fn study(&self, study_uid: &str) -> Result<Vec<ImageEvidence>> {
        let Some(spans) = self.lines.get(study_uid) else { return Ok(Vec::new()) };
        let mut images = Vec::with_capacity(spans.len());
        for &(offset, len) in spans {
            let mut buf = vec![0u8; len as usize];
            self.file
                .read_exact_at(&mut buf, offset)
                .map_err(|source| Error::Output { path: self.path.clone(), source })?;
            images.push(serde_json::from_slice::<ImageEvidence>(&buf).map_err(|e| bad_line(&self.path, offset, &e))?);
        }
        images.sort_by(|a, b| (&a.series_uid, &a.sop_instance_uid).cmp(&(&b.series_uid, &b.sop_instance_uid)));
        images.dedup_by(|later, first| later.sop_instance_uid == first.sop_instance_uid);
        Ok(images)
    }
}

fn bad_line(path: &Path, offset: u64, e: &serde_json::Error) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), problem: format!("evidence line at byte {offset}: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn image(study: &str, sop: &str, eye: Laterality) -> ImageEvidence {
        ImageEvidence {
            study_uid: study.into(),
            series_uid: "1.9".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.77.1.5.1".into(),
            sop_instance_uid: sop.into(),
            modality: "OP".into(),
            laterality: eye,
            field: FundusField::default(),
            rows: 10,
            columns: 12,
            frames: 1,
            scored_frames: vec![0],
            hits: Vec::new(),
            scored_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        }
    }

    #[test]
    fn a_resumed_journal_drops_what_was_not_committed_and_reads_back_by_study() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path(), 0).expect("open");
        journal.append(&image("1.1", "1.1.2", Laterality::Right)).expect("append");
        journal.append(&image("1.2", "1.2.1", Laterality::Left)).expect("append");
        let committed = journal.sync().expect("sync");
        journal.append(&image("1.1", "1.1.9", Laterality::Left)).expect("append");
        journal.sync().expect("sync");
        drop(journal);

        // Killed after the first commit: the line written since is dropped.
        let mut journal = Journal::open(dir.path(), committed).expect("reopen");
        journal.append(&image("1.1", "1.1.1", Laterality::Left)).expect("append");
        journal.append(&image("1.1", "1.1.2", Laterality::Right)).expect("append again");
        journal.sync().expect("sync");
        let index = EvidenceIndex::build(journal.path()).expect("index");
        let sops: Vec<String> = index.study("1.1").expect("study").into_iter().map(|i| i.sop_instance_uid).collect();
        assert_eq!(sops, ["1.1.1", "1.1.2"], "sorted, once each, without the uncommitted 1.1.9");
        assert_eq!(index.study("1.2").expect("study").len(), 1);
        assert!(index.study("1.3").expect("none").is_empty());
    }

    #[test]
    fn a_journal_shorter_than_its_checkpoint_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Journal::open(dir.path(), 0).expect("open"));
        assert!(matches!(Journal::open(dir.path(), 10), Err(Error::Checkpoint { .. })));
    }
}
