//! `nightscreen doctor`: can a run work on this machine?
//!
//! Reports where ONNX Runtime was looked for and what was found (version,
//! execution providers, CUDA), then every model card in the models folder
//! with its digest check and, when the runtime loaded, whether a session
//! opens and matches the card. It never stops at the first problem and
//! never panics, so its answer is useful exactly when something is wrong.

use std::io::Write;
use std::path::Path;

use crate::model::{self, ModelError, VerifiedModel};
use crate::runtime::{self, Device, Provider, Runtime};

/// Writes the report; returns whether everything needed for a run is fine.
///
/// # Errors
/// Only failures writing to `out`.
pub fn report(models_dir: &Path, out: &mut impl Write) -> std::io::Result<bool> {
    let mut healthy = true;

    writeln!(out, "ONNX Runtime")?;
    match runtime::ort_dylib_path_env() {
        Some(v) if !v.is_empty() => writeln!(out, "  ORT_DYLIB_PATH: {}", Path::new(&v).display())?,
        _ => writeln!(out, "  ORT_DYLIB_PATH: not set")?,
    }
    writeln!(out, "  searched (after ORT_DYLIB_PATH):")?;
    for dir in runtime::search_dirs() {
        writeln!(out, "    {}", dir.display())?;
    }
    let rt = match Runtime::load(Device::Cpu) {
        Ok(rt) => {
            writeln!(out, "  library: {}", rt.library_path.display())?;
            writeln!(out, "  version: {}", rt.version)?;
            writeln!(out, "  build: {}", rt.build_info.trim())?;
            writeln!(out, "  loaded in: {:.0} ms", rt.load_time.as_secs_f64() * 1000.0)?;
            writeln!(out, "  providers: {}", rt.available_providers.join(", "))?;
            let cuda = if rt.has_cuda() {
                match Runtime::load(Device::Cuda) {
                    Ok(_) => "yes".to_string(),
                    Err(err) => format!("built in, but cannot start: {}", crate::error::chain(&err)),
                }
            } else {
                format!("no ({} is not in this build; --device cuda will fail, auto uses CPU)", Provider::Cuda)
            };
            writeln!(out, "  CUDA: {cuda}")?;
            Some(rt)
        }
        Err(err) => {
            healthy = false;
            writeln!(out, "  NOT USABLE: {}", crate::error::chain(&err))?;
            None
        }
    };

    writeln!(out)?;
    writeln!(out, "Models in {}", models_dir.display())?;
    let cards = match model::discover(models_dir) {
        Ok(cards) => cards,
        Err(err) => {
            writeln!(out, "  {}", crate::error::chain(&err))?;
            return Ok(false);
        }
    };
    if cards.is_empty() {
        writeln!(out, "  no model cards (*.toml) found")?;
        healthy = false;
    }
    for (path, card) in cards {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let card = match card {
            Ok(card) => card,
            Err(err) => {
                healthy = false;
                writeln!(out, "  {name}: INVALID CARD: {}", crate::error::chain(&err))?;
                continue;
            }
        };
        writeln!(out, "  {name}: id {}, version {}, file {}", card.id, card.version, card.file)?;
        if !card.clinical_use {
            writeln!(out, "    not for clinical use (card says clinical_use = false)")?;
        }
        if let Some(eval) = &card.evaluation {
            let figures: Vec<String> = eval.figures.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(out, "    evaluated on {} ({}): {}", eval.data, eval.command, figures.join(", "))?;
        }
        let verified = match model::verify(card, &path, Default::default()) {
            Ok(m) => {
                writeln!(out, "    sha256: ok")?;
                if let Some(gate) = &m.domain {
                    let label = gate.model.card.output.labels.get(gate.output).map_or("?", String::as_str);
                    writeln!(
                        out,
                        "    domain gate: {} {} (inside when {label} >= {}; outside: {})",
                        gate.model.card.id, gate.model.card.version, gate.threshold, gate.outside
                    )?;
                }
                if let Some(look) = &m.second_look {
                    let input = &look.model.card.input;
                    writeln!(
                        out,
                        "    second look: {} {} for {} at {}x{} (the programme's rules pick the images)",
                        look.model.card.id, look.model.card.version, look.finding, input.width, input.height
                    )?;
                }
                m
            }
            Err(ModelError::DigestMismatch { expected, actual, .. }) => {
                healthy = false;
                writeln!(out, "    sha256: MISMATCH expected {expected} got {actual}")?;
                continue;
            }
            Err(ModelError::Onnx { path, source }) if source.kind() == std::io::ErrorKind::NotFound => {
                healthy = false;
                writeln!(out, "    sha256: missing file {}", path.display())?;
                continue;
            }
            Err(err) => {
                healthy = false;
                writeln!(out, "    sha256: cannot check: {}", crate::error::chain(&err))?;
                continue;
            }
        };
        if let Some(rt) = &rt {
            healthy &= check_session(rt, &verified, out)?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", if healthy { "healthy" } else { "NOT healthy: see above" })?;
    Ok(healthy)
}

/// Opens a session (one thread) to check the graph against the card.
fn check_session(rt: &Runtime, model: &VerifiedModel, out: &mut impl Write) -> std::io::Result<bool> {
    match rt.session(model, 1) {
        Ok(_) => {
            writeln!(out, "    session: ok ({})", rt.provider)?;
            Ok(true)
        }
        Err(err) => {
            writeln!(out, "    session: FAILED: {}", crate::error::chain(&err))?;
            Ok(false)
        }
    }
}
