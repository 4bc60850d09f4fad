//! Models: finding cards in a models folder, checking each ONNX file against
//! its card's digest, and the run's registry of models ([`Models`], by
//! [`ModelId`]) that decides which models see which image.

pub mod card;
mod domain;
mod registry;
mod second_look;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use card::{
    Accepts, Activation, CardError, ChannelOrder, DomainSpec, ExplainMethod, ExplainRule, ExplainSpec, ExplainWhen,
    InputSpec, Layout, ModelCard, SecondLookSpec,
};
pub use domain::DomainGate;
pub use second_look::SecondLook;

pub use registry::{ModelId, ModelStamp, Models};

use crate::message::Header;

/// A model whose file matched its card, ready for a session.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedModel {
    pub card: ModelCard,
    pub card_path: PathBuf,
    pub onnx_path: PathBuf,
    /// Extra routing filter from the run config, on top of the card's.
    pub route: Accepts,
    /// The card's domain gate, verified, when it names one.
    pub domain: Option<Box<DomainGate>>,
    /// The model's second look, when its card names one.
    pub second_look: Option<Box<SecondLook>>,
}

impl VerifiedModel {
    /// Whether this model should score an image with this header.
    pub fn accepts(&self, header: &Header) -> bool {
        self.card.accepts.matches(header) && self.route.matches(header)
    }
}

/// Why a model cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("no model card for {id:?} in {dir} (looked for {dir}/*.toml with id = {id:?})")]
    NotFound { id: String, dir: PathBuf },
    #[error("cannot read models folder {dir}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read model file {path}")]
    Onnx {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model {id}: {path} has sha256 {actual}, but its card says {expected}; refusing to use it")]
    DigestMismatch { id: String, path: PathBuf, expected: String, actual: String },
    #[error("model {id}: domain gate {gate:?}: {problem}")]
    Domain { id: String, gate: String, problem: String },
    #[error("model {id}: second look {look:?}: {problem}")]
    SecondLook { id: String, look: String, problem: String },
    #[error("{count} models are configured; at most {max} are supported")]
    TooMany { count: usize, max: usize },
}

/// Hex SHA-256 of a file, streamed so large models need no extra memory.
///
/// # Errors
/// The file cannot be opened or read.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A card file found in a models folder, loaded or with why not.
pub type DiscoveredCard = (PathBuf, Result<ModelCard, CardError>);

/// Every card (`*.toml`) in a models folder, sorted by file name, each
/// loaded or with the reason it could not be.
///
/// # Errors
/// The folder itself cannot be listed.
pub fn discover(dir: &Path) -> Result<Vec<DiscoveredCard>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Dir { dir: dir.to_path_buf(), source })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let card = ModelCard::load(&p);
            (p, card)
        })
        .collect())
}

/// Checks a card's ONNX file against its digest, and its domain gate
/// (from the same folder) when the card names one.
///
/// # Errors
/// The file is missing, unreadable or has another digest, or the gate
/// fails [`DomainGate::load`].
pub fn verify(card: ModelCard, card_path: &Path, route: Accepts) -> Result<VerifiedModel, ModelError> {
    let dir = card_path.parent().unwrap_or(Path::new("."));
    let domain = match &card.domain {
        Some(spec) => Some(Box::new(DomainGate::load(dir, &card, spec)?)),
        None => None,
    };
    let second_look = match &card.second_look {
        Some(spec) => Some(Box::new(SecondLook::load(dir, &card, spec)?)),
        None => None,
    };
    let mut model = verify_file(card, card_path, route)?;
    model.domain = domain;
    model.second_look = second_look;
    Ok(model)
}

/// Checks only the card's own ONNX file against its digest.
fn verify_file(card: ModelCard, card_path: &Path, route: Accepts) -> Result<VerifiedModel, ModelError> {
    let onnx_path = card_path.parent().unwrap_or(Path::new(".")).join(&card.file);
    let actual = sha256_file(&onnx_path).map_err(|source| ModelError::Onnx { path: onnx_path.clone(), source })?;
    if !actual.eq_ignore_ascii_case(&card.sha256) {
        return Err(ModelError::DigestMismatch {
            id: card.id.clone(),
            path: onnx_path,
            expected: card.sha256.clone(),
            actual,
        });
    }
    Ok(VerifiedModel { card, card_path: card_path.to_path_buf(), onnx_path, route, domain: None, second_look: None })
}

/// Finds the card with this id in `dir` and verifies its model.
///
/// # Errors
/// No card has that id, the card is invalid, or the model fails [`verify`].
pub fn load(dir: &Path, id: &str, route: Accepts) -> Result<VerifiedModel, ModelError> {
    find(dir, id, route, verify)
}

/// [`load`] without the gate: a gate is loaded this way, so it cannot
/// chain to another.
fn load_verified(dir: &Path, id: &str, route: Accepts) -> Result<VerifiedModel, ModelError> {
    find(dir, id, route, verify_file)
}

fn find(
    dir: &Path,
    id: &str,
    route: Accepts,
    verify: fn(ModelCard, &Path, Accepts) -> Result<VerifiedModel, ModelError>,
) -> Result<VerifiedModel, ModelError> {
    for (path, card) in discover(dir)? {
        // A broken card that is not the one asked for must not stop the run.
        match card {
            Ok(card) if card.id == id => return verify(card, &path, route),
            Err(err) if path.file_stem().is_some_and(|s| s == id) => return Err(err.into()),
            _ => {}
        }
    }
    Err(ModelError::NotFound { id: id.to_string(), dir: dir.to_path_buf() })
}
