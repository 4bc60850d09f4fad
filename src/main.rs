//! The `nightscreen` binary: parses the command line, calls the library and
//! maps the outcome to an exit code. Everything else lives in the library.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, DoctorArgs, EvaluateArgs, KeygenArgs, MergeArgs, RunArgs, SendArgs, SynthArgs};
use nightscreen::config::{Config, Overrides};
use nightscreen::privacy::PseudonymKey;
use nightscreen::progress::{Mode, Progress};
use nightscreen::sink::names::{FAILED_FILES, WORKLIST_CSV};
use nightscreen::sink::Table;
use nightscreen::source::dicomweb::RemoteInput;

/// Finished, but some inputs could not be read.
const EXIT_INPUT_ERRORS: u8 = 1;
/// The run could not start or could not write its outputs.
const EXIT_FATAL: u8 = 2;
/// `merge`: some shards have not finished yet (nothing was written).
const EXIT_SHARDS_PENDING: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(&cli.command, Command::Run(a) if a.quiet);
    init_logging(quiet);
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Doctor(args) => doctor(args),
        Command::Keygen(args) => keygen(args),
        Command::Synth(args) => synth(args),
        Command::Evaluate(args) => evaluate(args),
        Command::Merge(args) => merge(args),
        Command::Send(args) => send(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("nightscreen: error: {err:#}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

fn init_logging(quiet: bool) {
    // OpenJPEG logs every tile, and codestream errors that reach us anyway
    // as error rows with their reason: keep its messages out of the log.
    let default = if quiet { "warn,openjp2=off,jpeg2k=off" } else { "warn,openjp2=off,jpeg2k=off,nightscreen=info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).format_target(false).init();
}

fn run(args: RunArgs) -> anyhow::Result<u8> {
    let mut inputs = Vec::new();
    let mut remote_inputs = Vec::new();
    for input in &args.inputs {
        match RemoteInput::parse(input) {
            Some(remote) => remote_inputs.push(remote.map_err(anyhow::Error::msg)?),
            None => inputs.push(std::path::PathBuf::from(input)),
        }
    }
    let overrides = Overrides {
        inputs,
        remote_inputs,
        out: Some(args.out.clone()),
        device: args.device,
        batch_size: args.batch_size,
        threads: args.threads,
        overwrite: args.force,
        retry_failed: args.retry_failed,
        shadow: args.shadow,
        no_explain: args.no_explain,
    };
    let mut cfg = Config::load(&args.config)
        .with_context(|| format!("loading config {}", args.config.display()))?
        .with_overrides(&overrides);
    cfg.key = Some(PseudonymKey::resolve(args.key_file.as_deref())?);
    cfg.shard = match args.shard {
        Some(shard) => Some(shard),
        None => nightscreen::run::shard::from_environment(|name| std::env::var(name).ok(), args.shards)?,
    };
    if let Some(shard) = cfg.shard {
        log::info!("shard {} of {} ({})", shard.index, shard.count, shard.tag());
    }
    let progress = Progress::new(Mode::detect(args.quiet));
    let summary = nightscreen::run(&cfg, &progress)?;
    let bands: Vec<String> = summary.bands.iter().map(|(b, n)| format!("{b} {n}")).collect();
    log::info!(
        "done in {:.1} s on {}: {} files, {} frames scored, {} studies ({}), {} skipped, {} errors",
        summary.seconds,
        summary.execution_provider,
        summary.files_seen,
        summary.frames_scored,
        summary.studies,
        bands.join(", "),
        summary.skipped,
        summary.errors
    );
    log::info!("worklist: {}", summary.out.join(WORKLIST_CSV).display());
    if summary.errors > 0 {
        log::warn!(
            "{} input(s) could not be read: see {} (paths; identifiable) and {} (pseudonymised)",
            summary.errors,
            summary.out.join(FAILED_FILES).display(),
            summary.out.join(Table::Errors.dir()).display()
        );
        return Ok(EXIT_INPUT_ERRORS);
    }
    Ok(0)
}

fn keygen(args: KeygenArgs) -> anyhow::Result<u8> {
    let key = PseudonymKey::generate_file(&args.out)?;
    log::info!(
        "wrote a new pseudonymisation key to {} (id {}); keep it with the programme's secrets: \
         losing it breaks the link between this and later runs' pseudonyms",
        args.out.display(),
        key.key_id()
    );
    Ok(0)
}

fn doctor(args: DoctorArgs) -> anyhow::Result<u8> {
    let mut stdout = std::io::stdout().lock();
    let healthy = nightscreen::doctor::report(&args.models, &mut stdout).context("writing the report")?;
    Ok(if healthy { 0 } else { EXIT_FATAL })
}

fn evaluate(args: EvaluateArgs) -> anyhow::Result<u8> {
    let key = PseudonymKey::resolve(args.key_file.as_deref())?;
    let options = nightscreen::evaluate::Options {
        report: args.report.unwrap_or_else(|| args.results.join("evaluation")),
        results: args.results,
        reference: args.reference,
        resamples: args.resamples,
        seed: args.seed,
    };
    let evaluation = nightscreen::evaluate::run(&options, &key)?;
    let m = &evaluation.matched;
    println!(
        "{} of {} studies matched ({} eyes, {} of them outside the model's domain); {} without a result",
        m.studies, evaluation.reference.studies, m.eyes, m.eyes_outside_domain, m.studies_without_result
    );
    for (level, figures) in [("eye", &evaluation.per_eye), ("study", &evaluation.per_study)] {
        for (name, f) in figures {
            let pct = |p: &nightscreen::evaluate::metrics::Proportion| {
                format!("{:.1} % [{:.1}-{:.1}]", 100.0 * p.value, 100.0 * p.lower, 100.0 * p.upper)
            };
            println!(
                "per {level:5} {name:10}  sensitivity {}  specificity {}  AUC {:.3} [{:.3}-{:.3}]",
                pct(&f.sensitivity),
                pct(&f.specificity),
                f.auc.auc,
                f.auc.lower,
                f.auc.upper
            );
        }
    }
    println!("report: {}", options.report.join("report.html").display());
    Ok(0)
}

fn merge(args: MergeArgs) -> anyhow::Result<u8> {
    let key = PseudonymKey::resolve(args.key_file.as_deref())?;
    let summary = match nightscreen::run::merge::run(&args.out, &key) {
        Err(nightscreen::error::Error::ShardsPending(why)) => {
            eprintln!("nightscreen: {why}");
            return Ok(EXIT_SHARDS_PENDING);
        }
        other => other?,
    };
    log::info!(
        "merged {} shards into {} ({}): {} studies, {} errors; worklist: {}",
        summary.shards,
        args.out.display(),
        summary.run_id,
        summary.studies,
        summary.errors,
        args.out.join(WORKLIST_CSV).display()
    );
    Ok(if summary.errors > 0 { EXIT_INPUT_ERRORS } else { 0 })
}

fn send(args: SendArgs) -> anyhow::Result<u8> {
    let cfg = Config::load(&args.config).with_context(|| format!("loading config {}", args.config.display()))?;
    let Some(nightscreen::source::dicomweb::SourceConfig::Dicomweb(source)) = cfg.sources.get(&args.to) else {
        anyhow::bail!("--to {}: no [sources.{}] in {}", args.to, args.to, args.config.display());
    };
    if let Some(problem) = source.problems(&args.to).into_iter().next() {
        anyhow::bail!("{problem}");
    }
    let summary = nightscreen::send::send(&nightscreen::send::SendOptions {
        out: &args.out,
        destination: &args.to,
        source,
        shadow_ok: args.shadow_ok,
    })?;
    for (file, reason) in &summary.failed {
        eprintln!("nightscreen: not stored: {file}: {reason}");
    }
    log::info!(
        "sent to {}: {} stored, {} already there, {} refused (ledger: {})",
        args.to,
        summary.stored,
        summary.already,
        summary.failed.len(),
        args.out.join(nightscreen::send::ledger::FILE_NAME).display()
    );
    Ok(if summary.failed.is_empty() { 0 } else { EXIT_INPUT_ERRORS })
}

fn synth(args: SynthArgs) -> anyhow::Result<u8> {
    let mut cfg = nightscreen::synth::SynthConfig::new(args.studies, args.out, args.seed);
    cfg.overwrite = args.overwrite;
    cfg.generator = args.generator;
    cfg.grade_mix = args.grade_mix.unwrap_or_default();
    let summary = nightscreen::synth::run(&cfg)?;
    let outcomes: Vec<String> = summary.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
    let grades: Vec<String> = summary.eye_grades.iter().map(|(g, n)| format!("{g} {n}")).collect();
    log::info!(
        "{} studies, {} images ({} ungradable) in {:.1} s",
        summary.studies,
        summary.images,
        summary.ungradable_images,
        summary.seconds
    );
    log::info!("eyes: {}", grades.join(", "));
    log::info!("studies: {}", outcomes.join(", "));
    log::info!("truth: {} (generator {})", cfg.out.join("truth.csv").display(), cfg.generator);
    Ok(0)
}
