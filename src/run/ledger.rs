//! Which input files are complete: every message a file became has reached
//! the sinks.
//!
//! Decode announces each file once it is fully handed on ([`FileDone`],
//! with the number of messages it became); the file's rows arrive later,
//! through inference and triage, in any order and interleaved with other
//! files. A file is complete when both sides agree. Only complete files are
//! written and committed, so a checkpoint never holds half a file and a
//! resumed run can skip committed files whole.

use std::collections::HashMap;

use crate::message::{FileDone, Msg, SourceId};
use crate::triage::Finding;

/// A file whose every row has arrived.
#[derive(Debug)]
pub struct CompleteFile {
    pub source: SourceId,
    /// Whether ingest accepted it as an image instance.
    pub instance: bool,
    pub rows: Vec<Msg<Finding>>,
}

#[derive(Default)]
struct OpenFile {
    /// Messages decode said the file became; `None` until it says so.
    expected: Option<u32>,
    instance: bool,
    rows: Vec<Msg<Finding>>,
}

/// Files with rows in flight. Holds at most the files the bounded queues
/// between decode and the sinks can hold, so it stays small.
#[derive(Default)]
pub struct Ledger {
    open: HashMap<SourceId, OpenFile>,
}

/// The input a row belongs to.
pub fn row_source(row: &Msg<Finding>) -> &SourceId {
    match row {
        Ok(finding) => &finding.scored.meta.instance.source,
        Err(rejected) => &rejected.source,
    }
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a row; returns its file if that was the last row missing.
    pub fn arrive(&mut self, row: Msg<Finding>) -> Option<CompleteFile> {
        let source = row_source(&row).clone();
        let file = self.open.entry(source.clone()).or_default();
        file.rows.push(row);
        self.take_if_complete(source)
    }

    /// Records decode's word on a file; returns it if all its rows are in.
    pub fn expect(&mut self, done: FileDone) -> Option<CompleteFile> {
        let file = self.open.entry(done.source.clone()).or_default();
        // The same path listed twice (two inputs overlapping) adds up.
        file.expected = Some(file.expected.unwrap_or(0) + done.units);
        file.instance |= done.instance;
        self.take_if_complete(done.source)
    }

    fn take_if_complete(&mut self, source: SourceId) -> Option<CompleteFile> {
        let file = self.open.get(&source)?;
        if file.expected != Some(file.rows.len() as u32) {
            return None;
        }
        let file = self.open.remove(&source)?;
        Some(CompleteFile { source, instance: file.instance, rows: file.rows })
    }

    /// Every file still open, once no more rows can come. Counts that do
    /// not match mean a stage dropped or added a message; the rows are kept
    /// all the same (losing them would be worse) and the mismatch logged.
    pub fn drain(&mut self) -> Vec<CompleteFile> {
        let mut files: Vec<CompleteFile> = self
            .open
            .drain()
            .map(|(source, file)| {
                if file.expected != Some(file.rows.len() as u32) {
                    log::warn!(
                        "internal: {} rows reached the sinks for a file decode counted as {:?}",
                        file.rows.len(),
                        file.expected
                    );
                }
                CompleteFile { source, instance: file.instance, rows: file.rows }
            })
            .collect();
        files.sort_by(|a, b| a.source.cmp(&b.source));
        files
    }

    /// Files with rows still in flight.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{RejectKind, Rejected, Stage};

    fn file(path: &str) -> SourceId {
        SourceId::File(path.into())
    }

    fn rejected(path: &str) -> Msg<Finding> {
        Err(Rejected {
            source: file(path),
            stage: Stage::Decode,
            kind: RejectKind::Error,
            reason: "x".into(),
            header: None,
            frame: Some(0),
        })
    }

    fn done(path: &str, units: u32) -> FileDone {
        FileDone { source: file(path), units, instance: true }
    }

    #[test]
    fn a_file_completes_when_its_count_and_rows_agree_in_either_order() {
        let mut ledger = Ledger::new();
        assert!(ledger.arrive(rejected("a")).is_none());
        assert!(ledger.expect(done("b", 1)).is_none());
        assert!(ledger.expect(done("a", 2)).is_none(), "one of a's two rows is still in flight");
        let a = ledger.arrive(rejected("a")).expect("a is complete");
        assert_eq!((&a.source, a.rows.len(), a.instance), (&file("a"), 2, true));
        let b = ledger.arrive(rejected("b")).expect("b is complete");
        assert_eq!(b.rows.len(), 1);
        assert_eq!(ledger.open_files(), 0);
        // A file that became nothing is complete at once.
        assert!(ledger.expect(done("c", 0)).is_some());
    }

    #[test]
    fn drain_keeps_rows_of_files_whose_counts_never_matched() {
        let mut ledger = Ledger::new();
        ledger.arrive(rejected("x"));
        ledger.expect(done("y", 3));
        let left = ledger.drain();
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].rows.len(), 1);
        assert_eq!(ledger.open_files(), 0);
    }
}
