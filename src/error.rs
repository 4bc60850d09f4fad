//! Crate-level errors: only what stops a whole run (setup, output I/O).
//!
//! A failure on one input file is never an [`Error`]: it becomes a
//! [`crate::message::Rejected`] row and the batch goes on. Each variant
//! names what failed, so a caller (and `main`'s exit code) can tell a bad
//! config from a refused output folder or an unfinished shard.

use std::path::PathBuf;

/// A fatal error: the run cannot start or cannot write its outputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config's values, all problems at once (`Config::validate`).
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot read config {path}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path} is not valid")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Triage(#[from] crate::triage::RuleError),
    #[error(transparent)]
    Key(#[from] crate::privacy::KeyError),
    /// The output folder may not be used as asked (someone else's files, a
    /// finished run without `--force`, an unfinished run of another setup).
    /// A remote source cannot be used: unreachable, credentials refused,
    /// its query could not be planned. Raised before OUT is written.
    #[error("source {source_name}: {problem}")]
    Source { source_name: String, problem: String },
    #[error("output folder {path}: {problem}")]
    OutDir { path: PathBuf, problem: String },
    /// A checkpoint that this version cannot resume.
    #[error("checkpoint {path}: {problem}; pass --force to start the run again")]
    Checkpoint { path: PathBuf, problem: String },
    /// Shards that cannot be merged as they are.
    #[error("cannot merge {out}: {problem}")]
    Merge { out: PathBuf, problem: String },
    /// A record nightscreen wrote (run.json, a shard's handoff) that does not parse.
    #[error("{path} is not a record this version can read")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot start the decode thread pool")]
    ThreadPool(#[source] rayon::ThreadPoolBuildError),
    #[error("writing {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A table's columns did not make a batch: a bug in the column
    /// builders, reported instead of writing an empty batch and dropping rows.
    #[error("internal error building a batch of table {table}")]
    Batch {
        table: &'static str,
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A row names a model the run does not have: a bug upstream, reported
    /// instead of writing the row under another model's name.
    #[error("internal error: a row of table {table} was scored by model {model}, which this run does not have")]
    UnknownModel { table: &'static str, model: crate::model::ModelId },
    /// A stage thread panicked (the panic message, when it had one).
    #[error("the {stage} stage stopped unexpectedly: {message}")]
    Stage { stage: &'static str, message: String },
    /// `merge` before every shard has finished: not a failure of the merge,
    /// which the last shard to finish (or a later attempt) makes.
    #[error("{0}")]
    ShardsPending(String),
}

/// Result alias for fatal errors.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text a panic was raised with ("unknown panic" when it carried none):
/// a caught panic becomes an error row or a stage error, never a crash.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// An error with all its sources, "outer: inner: root" — for reject rows
/// and reports, which are data rather than `{:#}`-formatted output.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod panic_tests {
    use super::panic_text;

    #[test]
    fn a_panic_message_is_kept_whatever_its_type() {
        let text = std::panic::catch_unwind(|| panic!("boom {}", 1)).err().map(|p| panic_text(p.as_ref()));
        assert_eq!(text.as_deref(), Some("boom 1"));
        let literal = std::panic::catch_unwind(|| panic!("static")).err().map(|p| panic_text(p.as_ref()));
        assert_eq!(literal.as_deref(), Some("static"));
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).err().map(|p| panic_text(p.as_ref()));
        assert_eq!(other.as_deref(), Some("unknown panic"));
    }
}
