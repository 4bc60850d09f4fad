//! Building a run: every stage and the output folder, before the first
//! input file is read, so setup errors appear at once.
//!
//! Config → models → rules → runtime → sessions → decoder → pool → stamps
//! and fingerprint → output folder → checkpoint → audit trail; then
//! [`Plan::discover`] lists the inputs, drops those a resumed run has
//! already committed and records the start (or resumption) in the trail.

use super::audit::{AuditEvent, AuditLog, AuditModel};
use super::checkpoint::{file_key, Checkpoint, Fingerprint};
use super::{outdir, report};
use crate::config::Config;
use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::infer::DecodeGates;
use crate::look::Looks;
use crate::message::{Rejected, SourceId};
use crate::model::{self, ModelId, Models};
use crate::privacy::PseudonymKey;
use crate::runtime::ModelSession;
use crate::runtime::Runtime;
use crate::sink::{ModelStamp, OutPaths, RunStamp};
use crate::source::{FileSystem, Listed, Listing, Source, Sources};
use crate::triage::RuleSet;
use std::collections::BTreeMap;

/// Everything one run needs, built and checked.
pub struct Plan<'c> {
    pub cfg: &'c Config,
    pub paths: OutPaths,
    /// Where the instances come from: the `--input` folders and files, and
    /// the DICOMweb inputs.
    pub source: Sources,
    /// What run.json records of the DICOMweb inputs.
    pub source_records: Vec<super::report::SourceRecord>,
    pub key: PseudonymKey,
    pub models: Models,
    pub rules: RuleSet,
    pub runtime: Runtime,
    /// One per model; handed to the infer stage by [`crate::pipeline::execute`].
    pub sessions: BTreeMap<ModelId, ModelSession>,
    /// The models' domain gates, asked on the decode workers.
    pub gates: DecodeGates,
    /// The second looks the programme asks for, run on the decode pool.
    pub looks: Looks,
    pub decoder: Decoder,
    pub pool: rayon::ThreadPool,
    pub decode_threads: usize,
    pub infer_threads: usize,
    pub stamps: Vec<ModelStamp>,
    pub run: RunStamp,
    /// Whether an unfinished run in the output folder is taken up again.
    pub resumed: bool,
    pub audit: AuditLog,
}

/// The inputs left to run, and what the whole input list was.
pub struct Inputs {
    pub files: Vec<Listed>,
    pub walk_rejects: Vec<Rejected>,
    /// Files found, committed ones of a resumed run included.
    pub files_seen: u64,
    pub file_list_sha256: String,
    /// Who started this attempt.
    pub user: String,
}

impl Inputs {
    /// Files this attempt will read.
    pub fn left(&self) -> u64 {
        (self.files.len() + self.walk_rejects.len()) as u64
    }
}

fn new_run_id(now: &chrono::DateTime<chrono::Utc>) -> String {
    format!("{}-{:04x}", now.format("%Y%m%dT%H%M%SZ"), (now.timestamp_subsec_nanos() ^ std::process::id()) & 0xffff)
}

/// Splits cores between decode and ONNX Runtime's intra-op threads.
///
/// Inference gets half the cores; decode gets all of them. Decode workers
/// wait on the bounded tensor queue whenever inference is behind, so the
/// extra workers cost nothing then, and they fill the cores inference
/// leaves idle between batches and at the end of the run. Measured on 2
/// cores: 2 decode + 1 inference thread beat 1 + 1 (see README, Benchmarks).
fn split_threads(cfg: &Config) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = if cfg.pipeline.threads > 0 { cfg.pipeline.threads } else { cores };
    let infer = if cfg.infer.threads > 0 { cfg.infer.threads } else { (total / 2).max(1) };
    let decode = if cfg.decode.threads > 0 { cfg.decode.threads } else { total };
    (decode, infer)
}

/// SHA-256 of the input file list (one path per line, in walk order): two
/// runs over the same files have the same digest, whatever the files hold.
fn file_list_digest<'a>(inputs: impl Iterator<Item = &'a SourceId>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for input in inputs {
        hasher.update(input.key_bytes());
        hasher.update(b"\n");
    }
    format!("{:x}", hasher.finalize())
}

impl<'c> Plan<'c> {
    /// Builds every stage and prepares the output folder; returns the plan
    /// and the checkpoint the run starts from (empty for a new run).
    ///
    /// # Errors
    /// A setup problem: config, models, rules, ONNX Runtime, the decode
    /// pool, or an output folder that may not be used.
    pub fn build(cfg: &'c Config) -> Result<(Self, Checkpoint)> {
        let started_at = chrono::Utc::now();
        cfg.validate()?;
        let root = cfg.out.clone().ok_or_else(|| Error::Config("no output folder given (--out DIR)".into()))?;
        let paths = match cfg.shard {
            Some(shard) => OutPaths::shard(&root, shard),
            None => OutPaths::single(&root),
        };
        let key = cfg.key.clone().ok_or(crate::privacy::KeyError::Missing)?;
        let models = Models::new(
            cfg.models
                .iter()
                .map(|entry| model::load(&cfg.models_dir, &entry.id, entry.route.clone()))
                .collect::<std::result::Result<_, _>>()?,
        )?;
        let rules = RuleSet::new(&cfg.triage, &models)?;
        let (decode_threads, infer_threads) = split_threads(cfg);
        // Before anything is written: a source that refuses us is a setup
        // error. Its planning (server-bound) overlaps loading the models.
        let (remote, sessions) = std::thread::scope(|scope| {
            let remote = scope.spawn(|| super::remote::connect(cfg, &paths.run, started_at));
            let sessions = (|| -> Result<_> {
                let runtime = Runtime::load(cfg.infer.device)?;
                log::info!(
                    "ONNX Runtime {} from {} on {}",
                    runtime.version,
                    runtime.library_path.display(),
                    runtime.provider
                );
                let sessions = models
                    .iter()
                    .map(|(id, m)| Ok((id, runtime.session(m, infer_threads)?)))
                    .collect::<std::result::Result<BTreeMap<_, _>, crate::runtime::RuntimeError>>()?;
                let gates = DecodeGates::open(&runtime, &models, decode_threads)?;
                let looks = Looks::open(&runtime, &models, &rules.look_when(), look_workers(decode_threads))?;
                Ok((runtime, sessions, gates, looks))
            })();
            let remote =
                remote.join().unwrap_or_else(|_| Err(Error::Config("planning the remote inputs failed".into())));
            (remote, sessions)
        });
        let remote = remote?;
        let (runtime, sessions, gates, looks) = sessions?;
        let decoder = Decoder::new(&cfg.decode)
            .with_model_inputs(models.ids().filter_map(|id| models.input_size(id)).collect())
            .keeping_bytes_for(looks.models());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(decode_threads)
            .thread_name(|i| format!("decode-{i}"))
            .build()
            .map_err(Error::ThreadPool)?;
        let stamps = models.stamps();
        let fingerprint = Fingerprint {
            software_version: crate::VERSION.to_string(),
            config_sha256: cfg.source_sha256.clone(),
            models: stamps.iter().map(ModelStamp::fingerprint_line).collect(),
            pseudonym_key_id: key.key_id(),
        };
        let retried = if cfg.retry_failed {
            super::retry::prepare(&paths.run, &paths.tables, &fingerprint, &rules, cfg.sinks.row_group_rows.max(1))?
        } else {
            0
        };
        let resumed = outdir::prepare(&paths, cfg.overwrite, &fingerprint)?;
        remote.save(&paths.run)?;
        let source_records = remote.records(&paths.run);
        let is_resume = resumed.is_some();
        let mut state = resumed.unwrap_or_else(|| Checkpoint::new(new_run_id(&started_at), started_at, fingerprint));
        if is_resume {
            // Recorded before any work, so attempts killed early still count.
            state.attempt += 1;
            state.save(&paths.run)?;
        }
        let run = RunStamp {
            run_id: state.run_id.clone(),
            software_version: crate::VERSION.to_string(),
            config_sha256: cfg.source_sha256.clone(),
            key: key.clone(),
        };
        let mut audit = AuditLog::open(&paths.run, &run.run_id)?;
        if retried > 0 {
            log::info!("retrying {retried} instance(s) the server failed to deliver");
            audit.event(&AuditEvent::RunRetried { instances: retried })?;
        }
        let plan = Self {
            cfg,
            paths,
            source: Sources {
                files: FileSystem::new(&cfg.ingest, &cfg.inputs),
                web: remote.into_sources(cfg.decode.max_file_bytes),
            },
            source_records,
            key,
            models,
            rules,
            runtime,
            sessions,
            gates,
            looks,
            decoder,
            pool,
            decode_threads,
            infer_threads,
            stamps,
            run,
            resumed: is_resume,
            audit,
        };
        Ok((plan, state))
    }

    /// Lists the input files, leaves out those `state` has committed (on a
    /// resume) and records in the audit trail that the run started or
    /// resumed.
    ///
    /// # Errors
    /// The audit line cannot be written.
    pub fn discover(&mut self, state: &Checkpoint) -> Result<Inputs> {
        let cfg = self.cfg;
        let Listing { instances: mut files, rejected: mut walk_rejects } = self.source.list();
        let files_seen = (files.len() + walk_rejects.len()) as u64;
        let file_list_sha256 =
            file_list_digest(files.iter().map(|f| &f.id).chain(walk_rejects.iter().map(|r| &r.source)));
        let user = report::user();
        if self.resumed {
            files.retain(|f| !state.files.contains(&file_key(&f.id)));
            walk_rejects.retain(|r| !state.files.contains(&file_key(&r.source)));
            let left = (files.len() + walk_rejects.len()) as u64;
            log::info!(
                "resuming run {} (attempt {}): {} of {files_seen} files already committed",
                state.run_id,
                state.attempt,
                files_seen - left
            );
            self.audit.event(&AuditEvent::RunResumed {
                host: report::hostname(),
                user: user.clone(),
                attempt: state.attempt,
                files_seen,
                file_list_sha256: file_list_sha256.clone(),
                files_committed: state.files.len() as u64,
                files_left: left,
                commits: state.commits,
            })?;
        } else {
            self.audit.event(&AuditEvent::RunStarted {
                host: report::hostname(),
                user: user.clone(),
                software_version: crate::VERSION.to_string(),
                config_path: cfg.source_path.as_ref().map(|p| p.display().to_string()),
                config_sha256: cfg.source_sha256.clone(),
                pseudonym_key_id: self.key.key_id(),
                shadow: cfg.sinks.shadow,
                shard: cfg.shard.map(|s| s.tag()),
                models: self
                    .stamps
                    .iter()
                    .flat_map(|m| std::iter::once(m).chain(m.domain.as_deref()))
                    .map(|m| AuditModel { id: m.id.clone(), version: m.version.clone(), sha256: m.sha256.clone() })
                    .collect(),
                inputs: cfg
                    .inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .chain(cfg.remote_inputs.iter().map(|r| r.describe()))
                    .collect(),
                files_seen,
                file_list_sha256: file_list_sha256.clone(),
            })?;
            log::info!("found {files_seen} files");
        }
        // Remote sources start fetching, in the order ingest will open.
        self.source.prepare(&files);
        Ok(Inputs { files, walk_rejects, files_seen, file_list_sha256, user })
    }
}

/// Second-look workers beside `decode_threads` decode workers: half as
/// many. A look sees a fifth of the images or so but is ~30 ms of
/// memory-heavy work (a 1152² frame); one per decode worker oversubscribed
/// the cores, and each look cost ~40 % more CPU (`make bench`'s batch under
/// `time`, 2 cores: 42 against 28 ms a look, the run 5 % slower).
fn look_workers(decode_threads: usize) -> usize {
    decode_threads.div_ceil(2).max(1)
}
