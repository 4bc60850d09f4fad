//! Every name nightscreen writes under OUT, in one place, so the writers,
//! the output-folder rules ([`crate::run::outdir`]), merge and evaluate
//! cannot disagree on one. The table folders are [`super::Table::dir`].

/// The finished run's record ([`crate::run::RunReport`]).
pub const RUN_JSON: &str = "run.json";
/// The append-only audit trail ([`crate::run::audit`]).
pub const AUDIT: &str = "audit.jsonl";
/// An unfinished run's committed state ([`crate::run::checkpoint`]).
pub const CHECKPOINT: &str = "checkpoint.json";
/// A finished run's final state, kept while it has instances the server
/// failed to deliver, for `run --retry-failed` ([`crate::run::retry`]).
pub const RETRY_STATE: &str = "retry-state.json";
/// The graders' worklist ([`super::worklist`]).
pub const WORKLIST_CSV: &str = "worklist.csv";
pub const WORKLIST_JSON: &str = "worklist.json";
/// The worklist page ([`super::html`]).
pub const WORKLIST_HTML: &str = super::html::FILE_NAME;
/// Unreadable inputs with their paths ([`super::failures`]).
pub const FAILED_FILES: &str = super::failures::FILE_NAME;
/// The thumbnails folder ([`super::thumbnails`]).
pub const THUMBNAILS: &str = super::thumbnails::DIR;
/// A finished shard's studies for `merge`, in the shard's folder.
pub const HANDOFF: &str = "shard-studies.json";
/// Where shards keep their own files under OUT.
pub const SHARDS_DIR: &str = "shards";
/// The lock that serialises merges of one OUT.
pub const MERGE_LOCK: &str = ".merge.lock";
/// The DICOMweb inputs' frozen plans ([`crate::source::dicomweb::manifest`]).
pub const SOURCE_MANIFEST: &str = crate::source::dicomweb::manifest::FILE_NAME;
/// The result documents' folders and the file extension of each ([`super::sr`], [`super::fhir`], [`super::hl7`]).
pub const DOCUMENTS: [(&str, &str); 3] =
    [(super::sr::DIR, "dcm"), (super::fhir::DIR, "json"), (super::hl7::DIR, "hl7")];
/// The SR writer's evidence journal and summary ([`super::sr`]).
pub const SR_EVIDENCE: &str = super::sr::evidence::JOURNAL;
pub const SR_SUMMARY: &str = super::sr::SUMMARY;
