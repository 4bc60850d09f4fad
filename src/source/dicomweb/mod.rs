//! A DICOMweb server as a [`Source`]: plan with QIDO-RS into a frozen
//! [`manifest::Manifest`], then fetch each instance with WADO-RS as stored
//! (`transfer-syntax=*`), ahead of ingest and within a byte budget.
//!
//! Keys, pseudonyms and reports name an instance by its canonical
//! `dicomweb://NAME/studies/…` ([`crate::message::WebInstance`]), never by
//! the server's URL.

pub mod client;
pub mod config;
mod fetch;
mod instances;
pub mod manifest;
pub mod multipart;
mod plan;

pub use client::{Client, HttpError, SetupError};
pub use config::{DicomWebConfig, RemoteInput, SourceConfig};
pub use manifest::Manifest;
pub use plan::{plan, PlanError};

use super::{Blob, Listed, Listing, Source, SourceError};
use crate::message::{SourceId, WebInstance};

/// One remote input: its source's client, its frozen manifest and the
/// fetch workers.
pub struct DicomWeb {
    client: Client,
    manifest: Manifest,
    fetcher: fetch::Fetcher,
}

impl DicomWeb {
    /// A source reading `manifest`'s instances from the server `client` talks to.
    pub fn new(client: Client, cfg: &DicomWebConfig, manifest: Manifest, max_file_bytes: u64) -> Self {
        let fetcher =
            fetch::Fetcher::new(client.clone(), cfg.fetch_workers, cfg.fetch_budget_mib << 20, max_file_bytes);
        Self { client, manifest, fetcher }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether `id` is one of this input's instances.
    pub fn holds(&self, id: &SourceId) -> bool {
        matches!(id, SourceId::Web(w) if w.source == self.manifest.source)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Checks that the server answers and accepts our credentials: one study
/// search for nothing (a UID no study has).
///
/// # Errors
/// The server cannot be reached or refuses us.
pub fn probe(client: &Client) -> Result<(), HttpError> {
    client.search("studies?StudyInstanceUID=2.25.0&limit=1").map(|_| ())
}

/// Studies and series no larger than this are retrieved in one request
/// when all their instances are wanted: the cost per request falls, and one
/// answer overshoots the fetch budget by no more than this many instances.
const WHOLE_RETRIEVE_MAX: usize = 32;

/// `order` as retrieval units in the same order: a study whose instances
/// on the server are all planned and in `order` is one unit; else a series
/// whose planned instances are all in `order` (a first run, not a resume
/// that finished some) is one; any other instance is its own.
fn fetch_units(manifest: &Manifest, order: Vec<WebInstance>) -> Vec<fetch::Unit> {
    use fetch::{Scope, Unit};
    use std::collections::{HashMap, HashSet};
    let wanted: HashSet<&str> = order.iter().map(|w| w.sop.as_str()).collect();
    let mut scope_of: HashMap<(&str, &str), Scope> = HashMap::new();
    for study in &manifest.studies {
        let planned: usize = study.series.iter().map(|se| se.instances.len()).sum();
        let whole_study = study.instances_in_study == u32::try_from(planned).ok()
            && all_wanted(&wanted, study.series.iter().flat_map(|se| &se.instances));
        for series in &study.series {
            let scope = if whole_study {
                Scope::Study
            } else if all_wanted(&wanted, series.instances.iter()) {
                Scope::Series
            } else {
                Scope::Instance
            };
            scope_of.insert((study.study.as_str(), series.series.as_str()), scope);
        }
    }
    let mut units: Vec<Unit> = Vec::new();
    let mut unit_of: HashMap<String, usize> = HashMap::new();
    for instance in order {
        let scope =
            scope_of.get(&(instance.study.as_str(), instance.series.as_str())).copied().unwrap_or(Scope::Instance);
        let key = match scope {
            Scope::Study => instance.study.as_str().to_string(),
            Scope::Series => format!("{}/{}", instance.study, instance.series),
            Scope::Instance => {
                units.push(Unit { scope, instances: vec![instance] });
                continue;
            }
        };
        match unit_of.get(&key) {
            Some(&i) => units[i].instances.push(instance),
            None => {
                unit_of.insert(key, units.len());
                units.push(Unit { scope, instances: vec![instance] });
            }
        }
    }
    units
}

/// Whether every one of `instances` is wanted, and they are few enough for one request.
fn all_wanted<'a>(
    wanted: &std::collections::HashSet<&str>,
    mut instances: impl Iterator<Item = &'a manifest::PlannedInstance>,
) -> bool {
    let mut n = 0;
    instances.all(|i| {
        n += 1;
        wanted.contains(i.sop.as_str())
    }) && n <= WHOLE_RETRIEVE_MAX
}

impl Source for DicomWeb {
    fn list(&self) -> Listing {
        let instances = self
            .manifest
            .instances()
            .map(|(web, planned)| Listed {
                name: web.path(),
                id: SourceId::Web(std::sync::Arc::new(web)),
                expected_sop: Some(planned.sop.clone()),
            })
            .collect();
        Listing { instances, rejected: Vec::new() }
    }

    fn open(&self, id: &SourceId) -> Result<Blob, SourceError> {
        let SourceId::Web(web) = id else { return Err(SourceError::Foreign) };
        self.fetcher.get(web).map(Blob::bytes).map_err(SourceError::Fetch)
    }

    fn prepare(&self, order: &[Listed]) {
        let mine: Vec<WebInstance> = order
            .iter()
            .filter_map(|l| match &l.id {
                SourceId::Web(w) if w.source == self.manifest.source => Some(w.as_ref().clone()),
                _ => None,
            })
            .collect();
        self.fetcher.start(fetch_units(&self.manifest, mine));
    }

    fn release(&self, id: &SourceId) {
        if let SourceId::Web(web) = id {
            self.fetcher.release(web);
        }
    }
}
