//! nightscreen: a batch screening pipeline for medical imaging.
//!
//! The data path is the architecture: **source → ingest → decode →
//! preprocess → infer → look → triage → sinks** (look: the second looks
//! some model cards name), one module per stage, joined by
//! typed messages ([`message`]) over bounded channels ([`pipeline`]), built,
//! resumed and reported by [`run`], written by the outputs in [`sink`]. Each
//! stage has a config section, a runtime value built from it, a pure
//! per-item method (easy to test and bench) and a `run` loop.

pub mod config;
pub mod decode;
pub mod dicom;
pub mod doctor;
pub mod error;
pub mod evaluate;
pub mod infer;
pub mod ingest;
pub mod look;
pub mod message;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod privacy;
pub mod progress;
pub mod run;
pub mod runtime;
pub mod send;
pub mod sink;
pub mod source;
pub mod synth;
pub mod thumbnail;
pub mod triage;

pub use config::Config;
pub use error::{Error, Result};
pub use run::{run, RunSummary};

/// The software version recorded on every output row and in `run.json`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
