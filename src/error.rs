//! Crate-level errors: only what stops a whole run (setup, output I/O).
//!
//! A failure on one input file is never an [`Error`]: it becomes a
//! [`crate::message::Rejected`] row and the batch goes on.

use std::path::PathBuf;

/// A fatal error: the run cannot start or cannot write its outputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
    Key(#[from] crate::privacy::KeyError),
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
    #[error("a pipeline stage stopped unexpectedly: {0}")]
    Stage(String),
    /// `merge` before every shard has finished: not a failure of the merge,
    /// which the last shard to finish (or a later attempt) makes.
    #[error("{0}")]
    ShardsPending(String),
}

/// Result alias for fatal errors.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
