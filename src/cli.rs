//! Command-line arguments: raw values only. Resolution into a [`Config`]
//! happens in `main.rs`; stages never see these types.
//!
//! [`Config`]: nightscreen::Config

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use nightscreen::runtime::Device;

/// Batch screening of DICOM studies with ONNX models: a triaged worklist for
/// clinicians and Parquet tables for analysts.
#[derive(Debug, Parser)]
#[command(name = "nightscreen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Screen every DICOM file under the inputs and write OUT.
    ///
    /// Exit codes: 0 all inputs accounted for without error; 1 finished, but
    /// some inputs could not be read (see OUT/errors); 2 fatal setup error
    /// (bad config or arguments, missing or mismatched model, no ONNX Runtime,
    /// unwritable output).
    Run(RunArgs),
    /// Check the installation: ONNX Runtime, execution providers, models.
    Doctor(DoctorArgs),
    /// Make a programme's pseudonymisation key (a new file, mode 0600).
    ///
    /// The analyst tables name patients, studies and files only by keyed
    /// pseudonyms; the same key gives the same pseudonyms on every run, so
    /// make one key per programme, keep it with the programme's secrets and
    /// never give it to analysts.
    Keygen(KeygenArgs),
    /// Write synthetic diabetic eye screening studies (fundus photographs,
    /// 2 eyes x 2 fields per study) with their grades in truth.csv.
    Synth(SynthArgs),
    /// Compare a finished run with reference grades (truth.csv format):
    /// sensitivity, specificity, PPV, NPV, ROC/AUC, calibration and
    /// operating points, per eye and per study, in DIR.
    Evaluate(EvaluateArgs),
    /// Join the shards of a sharded run (`run --shard`) in OUT: the global
    /// worklist (CSV, JSON, HTML), one ranked studies table and a run.json
    /// listing every shard.
    ///
    /// Exit codes: 0 merged; 1 merged, but some inputs could not be read;
    /// 2 fatal (shards disagree, wrong key, unwritable); 3 some shards are
    /// missing or unfinished (listed; nothing written).
    Merge(MergeArgs),
    /// Store a finished run's DICOM SRs (OUT/sr) into their studies on a
    /// DICOMweb server (a [sources.NAME] of the config) with STOW-RS,
    /// recording each in OUT/sent.jsonl; sending again stores nothing new.
    ///
    /// Exit codes: 0 every SR stored (now or before); 1 the server refused
    /// some (listed with its reason); 2 fatal (no finished run, a shadow
    /// run without --shadow-ok, credentials refused, server unreachable).
    Send(SendArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The output folder the shards share.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The programme key the shards used (else NIGHTSCREEN_KEY_FILE or
    /// NIGHTSCREEN_KEY).
    #[arg(long, value_name = "FILE", env = "NIGHTSCREEN_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Output folder of a finished `nightscreen run`.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The destination: a `[sources.NAME]` of the config.
    #[arg(long, value_name = "NAME")]
    pub to: String,
    /// The configuration holding the destination's table.
    #[arg(long, short = 'c', value_name = "FILE", env = "NIGHTSCREEN_CONFIG", default_value = "configs/desp.toml")]
    pub config: PathBuf,
    /// Send a shadow run's results anyway (only to a destination that is
    /// not clinical: a pilot's results must not reach the graders it measures).
    #[arg(long)]
    pub shadow_ok: bool,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Output folder of a finished `nightscreen run`.
    #[arg(long, value_name = "OUT")]
    pub results: PathBuf,
    /// Reference grades, one row per eye: study_uid, eye, r_grade, m_grade,
    /// gradable (and optionally outcome), as `nightscreen synth` writes.
    #[arg(long, value_name = "CSV")]
    pub reference: PathBuf,
    /// Report folder [default: OUT/evaluation].
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// The programme key the run used (else NIGHTSCREEN_KEY_FILE or
    /// NIGHTSCREEN_KEY): it links the reference's UIDs to the run's
    /// pseudonyms.
    #[arg(long, value_name = "FILE", env = "NIGHTSCREEN_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Bootstrap resamples for the AUC intervals.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub resamples: usize,
    /// Seed of the bootstrap, so a report can be reproduced exactly.
    #[arg(long, value_name = "N", default_value_t = 20_261_124)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input folder, DICOMDIR or file, or a DICOMweb query of a configured
    /// source, `dicomweb:NAME[?StudyDate=20261123-20261124&ModalitiesInStudy=OP]`
    /// (repeatable; folders and sources mix).
    #[arg(long = "input", short = 'i', value_name = "DIR|dicomweb:NAME?QUERY", required = true)]
    pub inputs: Vec<String>,
    /// Output folder.
    #[arg(long, short = 'o', value_name = "OUT")]
    pub out: PathBuf,
    /// Run configuration (TOML).
    #[arg(long, short = 'c', value_name = "FILE", env = "NIGHTSCREEN_CONFIG", default_value = "configs/desp.toml")]
    pub config: PathBuf,
    /// Execution provider: cpu, cuda (fails if unavailable) or auto.
    #[arg(long, value_enum)]
    pub device: Option<Device>,
    /// Images per inference batch.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Cores to use in all (decode + inference); default: all.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Compute again from scratch: replace a finished run in OUT, or start
    /// an interrupted one over instead of resuming it.
    #[arg(long, visible_alias = "overwrite", conflicts_with = "retry_failed")]
    pub force: bool,
    /// Take up the finished run in OUT again and fetch and screen only the
    /// instances its server failed to deliver (error rows of stage fetch),
    /// from its frozen manifest; ends with the rows an uninterrupted run gives.
    #[arg(long)]
    pub retry_failed: bool,
    /// Shadow mode for a pilot beside human graders: record everything as
    /// usual, but mark every worklist row "SHADOW — not for clinical use".
    #[arg(long)]
    pub shadow: bool,
    /// Skip the occlusion maps model cards ask for (faster; the worklist
    /// page then shows no attention overlays).
    #[arg(long)]
    pub no_explain: bool,
    /// Run only shard I of N (0-based, e.g. 2/4): the studies whose
    /// StudyInstanceUID hashes to I. Without it, a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX (with --shards N or NIGHTSCREEN_SHARDS) or a
    /// Slurm array's SLURM_ARRAY_TASK_ID/COUNT pick the shard. Shards share
    /// OUT; `nightscreen merge OUT` joins them.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<nightscreen::run::shard::Shard>,
    /// Shard count for a Kubernetes Indexed Job (its completions).
    #[arg(long, value_name = "N", env = "NIGHTSCREEN_SHARDS")]
    pub shards: Option<usize>,
    /// Pseudonymisation key file (from `nightscreen keygen`); else the key
    /// itself in NIGHTSCREEN_KEY.
    #[arg(long, value_name = "FILE", env = "NIGHTSCREEN_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// No progress output; warnings and errors only.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key; an existing file is never replaced.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Folder of model cards to check.
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models: PathBuf,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of studies (4 images each).
    #[arg(long, value_name = "N")]
    pub studies: usize,
    /// Output folder (created; must be empty unless --overwrite).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,
    /// Random seed: the same seed gives byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Replace a previous synthetic data set in DIR.
    #[arg(long)]
    pub overwrite: bool,
    /// Generator version: v1 (today's images, byte for byte; what the
    /// shipped model was trained on) or v2 (spans real cameras: sizes,
    /// encodings, field masks, pigmentation, look; issue 16).
    #[arg(long, value_name = "V", default_value = "v1")]
    pub generator: nightscreen::synth::GeneratorVersion,
    /// Each eye's R grade weights R0,R1,R2,R3 (normalised), for training
    /// batches that need more of a grade; default 0.55,0.22,0.14,0.09.
    #[arg(long, value_name = "W")]
    pub grade_mix: Option<nightscreen::synth::GradeMix>,
}
