//! A run's DICOMweb inputs, made ready before anything is written: each
//! source's credentials are checked against its server, and its manifest
//! is either the one frozen in OUT (a resumed or retried run never asks
//! the server again) or planned now.

use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::source::dicomweb::{self, manifest, Client, DicomWeb, DicomWebConfig, Manifest, SourceConfig};

/// One connected input and its manifest.
pub struct Remote {
    client: Client,
    cfg: DicomWebConfig,
    manifest: Manifest,
}

/// The connected inputs; `planned` when their manifests are new and must be saved.
pub struct RemoteInputs {
    pub inputs: Vec<Remote>,
    pub planned: bool,
}

fn source_error(name: &str, problem: impl std::fmt::Display) -> Error {
    Error::Source { source_name: name.to_string(), problem: problem.to_string() }
}

/// Connects every `--input dicomweb:` of `cfg`, taking frozen manifests
/// from `run_dir` unless `--force`.
///
/// # Errors
/// A source is not configured, cannot be reached or refuses the
/// credentials; a frozen manifest was planned for other inputs; planning fails.
pub fn connect(cfg: &Config, run_dir: &Path, now: chrono::DateTime<chrono::Utc>) -> Result<RemoteInputs> {
    if cfg.remote_inputs.is_empty() {
        return Ok(RemoteInputs { inputs: Vec::new(), planned: false });
    }
    let frozen = if cfg.overwrite {
        None
    } else {
        manifest::load(run_dir).map_err(|e| Error::OutDir { path: run_dir.to_path_buf(), problem: e.to_string() })?
    };
    let mut inputs = Vec::new();
    for input in &cfg.remote_inputs {
        let name = &input.source;
        let Some(SourceConfig::Dicomweb(web)) = cfg.sources.get(name) else {
            return Err(Error::Config(format!("input {}: no [sources.{name}] in the config", input.describe())));
        };
        let asked = std::time::Instant::now();
        let client = Client::new(name, web).map_err(|e| source_error(name, e))?;
        dicomweb::probe(&client)
            .map_err(|e| source_error(name, format!("{} does not answer as it should: {e}", web.url)))?;
        let manifest = match &frozen {
            Some(manifests) => manifests.iter().find(|m| m.input == input.describe()).cloned().ok_or_else(|| {
                let planned: Vec<&str> = manifests.iter().map(|m| m.input.as_str()).collect();
                Error::OutDir {
                    path: run_dir.to_path_buf(),
                    problem: format!(
                        "its frozen {} was planned for {}, not {}: give the same inputs to resume, or --force to plan again",
                        manifest::FILE_NAME,
                        planned.join(", "),
                        input.describe()
                    ),
                }
            })?,
            None => dicomweb::plan(&client, web, input, cfg.shard, now).map_err(|e| source_error(name, e))?,
        };
        log::info!(
            "{}: {} studies, {} instances{}",
            input.describe(),
            manifest.studies.len(),
            manifest.instance_count(),
            if frozen.is_some() {
                " (manifest frozen in OUT)".to_string()
            } else {
                format!(", planned with {} searches in {:.2} s", manifest.requests, asked.elapsed().as_secs_f64())
            }
        );
        inputs.push(Remote { client, cfg: web.clone(), manifest });
    }
    Ok(RemoteInputs { inputs, planned: frozen.is_none() })
}

impl RemoteInputs {
    /// Freezes new manifests in `run_dir` (after OUT is prepared).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        if !self.planned || self.inputs.is_empty() {
            return Ok(());
        }
        let manifests: Vec<Manifest> = self.inputs.iter().map(|r| r.manifest.clone()).collect();
        manifest::save(run_dir, &manifests)
            .map_err(|e| Error::OutDir { path: run_dir.to_path_buf(), problem: e.to_string() })?;
        Ok(())
    }

    /// What run.json records of each input.
    pub fn records(&self, run_dir: &Path) -> Vec<super::report::SourceRecord> {
        let digest = manifest::file_digest(run_dir).unwrap_or_default();
        self.inputs
            .iter()
            .map(|r| super::report::SourceRecord {
                input: r.manifest.input.clone(),
                name: r.manifest.source.clone(),
                url: r.manifest.url.clone(),
                query: r.manifest.query.clone(),
                planned_at: r.manifest.planned_at,
                studies: r.manifest.studies.len() as u64,
                instances: r.manifest.instance_count() as u64,
                manifest_sha256: digest.clone(),
            })
            .collect()
    }

    /// The sources the pipeline reads.
    pub fn into_sources(self, max_file_bytes: u64) -> Vec<DicomWeb> {
        self.inputs.into_iter().map(|r| DicomWeb::new(r.client, &r.cfg, r.manifest, max_file_bytes)).collect()
    }
}
