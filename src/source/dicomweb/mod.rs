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
pub mod manifest;
pub mod multipart;
mod plan;

pub use client::{Client, HttpError, SetupError};
pub use config::{DicomWebConfig, RemoteInput, SourceConfig};
pub use manifest::Manifest;
pub use plan::{plan, PlanError};

use super::{Blob, Listed, Listing, Source, SourceError};
use crate::message::SourceId;

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
        let mine = order.iter().filter_map(|l| match &l.id {
            SourceId::Web(w) if w.source == self.manifest.source => Some(w.as_ref().clone()),
            _ => None,
        });
        self.fetcher.start(mine.collect());
    }

    fn release(&self, id: &SourceId) {
        if let SourceId::Web(web) = id {
            self.fetcher.release(web);
        }
    }
}
