//! The run configuration: one TOML file, one table per stage.
//!
//! Each `<Stage>Config` lives in its stage's module; this file only
//! aggregates them, resolves relative paths against the config file and
//! applies command-line overrides. Stages never see the command line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decode::DecodeConfig;
use crate::error::{Error, Result};
use crate::infer::InferConfig;
use crate::ingest::IngestConfig;
use crate::model::Accepts;
use crate::pipeline::PipelineConfig;
use crate::sink::SinkConfig;
use crate::triage::TriageConfig;

/// One `[[models]]` entry: a model to run, found by card id in
/// `models_dir`, with an optional extra routing filter.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    /// Narrows the card's own `accepts` (both must match).
    #[serde(default)]
    pub route: Accepts,
}

/// The whole run configuration (mirror of the TOML file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder of model cards and ONNX files; relative to the config file.
    #[serde(default = "default_models_dir")]
    pub models_dir: PathBuf,
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub decode: DecodeConfig,
    #[serde(default)]
    pub infer: InferConfig,
    #[serde(default)]
    pub triage: TriageConfig,
    #[serde(default)]
    pub sinks: SinkConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The DICOM SR results (`[sr]`).
    #[serde(default)]
    pub sr: crate::sink::sr::SrConfig,
    /// FHIR R4 result bundles (`[fhir]`).
    #[serde(default)]
    pub fhir: crate::sink::fhir::FhirConfig,
    /// HL7 v2 result messages (`[hl7]`; written when `[sinks] hl7`).
    #[serde(default)]
    pub hl7: crate::sink::hl7::Hl7Config,
    /// Input folders (or DICOMDIR files); usually given with `--input`.
    #[serde(default)]
    pub inputs: Vec<PathBuf>,
    /// Named remote sources (`[sources.NAME]`), read by `--input dicomweb:NAME`
    /// and written to by `nightscreen send --to NAME`.
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, crate::source::dicomweb::SourceConfig>,
    /// DICOMweb inputs (`--input dicomweb:NAME?…`).
    #[serde(skip)]
    pub remote_inputs: Vec<crate::source::dicomweb::RemoteInput>,
    /// Output folder; usually given with `--out`.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// The config text exactly as read, and its SHA-256, for provenance.
    #[serde(skip)]
    pub source_text: String,
    #[serde(skip)]
    pub source_sha256: String,
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
    /// Replace a previous run's outputs in `out` (set by `--force`).
    #[serde(skip)]
    pub overwrite: bool,
    /// Fetch and screen again what the server failed to deliver in the
    /// finished run in `out` (`--retry-failed`).
    #[serde(skip)]
    pub retry_failed: bool,
    /// The programme's pseudonymisation key (never from the config text,
    /// which `run.json` records): `--key-file` or the environment.
    #[serde(skip)]
    pub key: Option<crate::privacy::PseudonymKey>,
    /// This process's slice of a sharded run (`--shard`, or the scheduler's
    /// environment); `None` runs everything.
    #[serde(skip)]
    pub shard: Option<crate::run::shard::Shard>,
}

fn default_models_dir() -> PathBuf {
    PathBuf::from("../models")
}

/// Values the command line may override.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub inputs: Vec<PathBuf>,
    pub remote_inputs: Vec<crate::source::dicomweb::RemoteInput>,
    pub out: Option<PathBuf>,
    pub device: Option<crate::runtime::Device>,
    pub batch_size: Option<usize>,
    pub threads: Option<usize>,
    pub overwrite: bool,
    pub retry_failed: bool,
    pub shadow: bool,
    pub no_explain: bool,
}

impl Config {
    /// Reads a config file; relative paths in it are taken from its folder.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or fails [`Config::validate`].
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::ConfigRead { path: path.to_path_buf(), source })?;
        let mut cfg = Self::from_toml(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.models_dir = base.join(&cfg.models_dir);
        cfg.inputs = cfg.inputs.iter().map(|p| base.join(p)).collect();
        for source in cfg.sources.values_mut() {
            match source {
                crate::source::dicomweb::SourceConfig::Dicomweb(web) => web.rebase(base),
            }
        }
        cfg.out = cfg.out.as_ref().map(|p| base.join(p));
        cfg.source_path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses config text; `origin` names it in errors.
    ///
    /// # Errors
    /// Invalid TOML or unknown keys.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|source| Error::ConfigParse { path: origin.to_path_buf(), source })?;
        cfg.source_text = text.to_string();
        cfg.source_sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(cfg)
    }

    /// Applies command-line values, which win over the file.
    pub fn with_overrides(mut self, o: &Overrides) -> Self {
        if !o.inputs.is_empty() || !o.remote_inputs.is_empty() {
            self.inputs = o.inputs.clone();
            self.remote_inputs = o.remote_inputs.clone();
        }
        if o.out.is_some() {
            self.out = o.out.clone();
        }
        if let Some(d) = o.device {
            self.infer.device = d;
        }
        if let Some(b) = o.batch_size {
            self.infer.batch_size = b;
        }
        self.overwrite |= o.overwrite;
        self.retry_failed |= o.retry_failed;
        self.sinks.shadow |= o.shadow;
        self.infer.explain &= !o.no_explain;
        if let Some(t) = o.threads {
            self.pipeline.threads = t;
        }
        self
    }

    /// Every problem at once, so a bad config is fixed in one go.
    ///
    /// # Errors
    /// A list of the problems found.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.models.is_empty() {
            problems.push("no [[models]] configured".to_string());
        }
        if self.inputs.is_empty() && self.remote_inputs.is_empty() {
            problems.push("no input given (--input DIR or --input dicomweb:NAME)".to_string());
        }
        for (name, source) in &self.sources {
            match source {
                crate::source::dicomweb::SourceConfig::Dicomweb(web) => problems.extend(web.problems(name)),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for input in &self.remote_inputs {
            if !self.sources.contains_key(&input.source) {
                problems.push(format!("input {}: no [sources.{}] in the config", input.describe(), input.source));
            }
            if !seen.insert(&input.source) {
                problems.push(format!("source {} is given as an input twice: one query per source", input.source));
            }
        }
        if self.out.is_none() {
            problems.push("no output folder given (--out DIR)".to_string());
        }
        if self.infer.batch_size == 0 {
            problems.push("infer.batch_size must be at least 1".to_string());
        }
        if self.pipeline.channel_capacity == 0 {
            problems.push("pipeline.channel_capacity must be at least 1".to_string());
        }
        problems.extend(self.triage.problems());
        problems.extend(self.sr.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }
}
