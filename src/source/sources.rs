//! A run's inputs together: the `--input` folders and files, and any
//! DICOMweb inputs, behind one [`Source`] that hands each id to the input
//! that listed it.

use super::dicomweb::DicomWeb;
use super::{Blob, FileSystem, Listed, Listing, Source, SourceError};
use crate::message::SourceId;

pub struct Sources {
    pub files: FileSystem,
    pub web: Vec<DicomWeb>,
}

impl Sources {
    fn web_for(&self, id: &SourceId) -> Option<&DicomWeb> {
        self.web.iter().find(|w| w.holds(id))
    }
}

impl Source for Sources {
    fn list(&self) -> Listing {
        let mut listing = self.files.list();
        for web in &self.web {
            listing.instances.extend(web.list().instances);
        }
        listing
    }

    fn open(&self, id: &SourceId) -> Result<Blob, SourceError> {
        match id {
            SourceId::File(_) => self.files.open(id),
            SourceId::Web(_) => self.web_for(id).ok_or(SourceError::Foreign)?.open(id),
        }
    }

    fn prepare(&self, order: &[Listed]) {
        for web in &self.web {
            web.prepare(order);
        }
    }

    fn release(&self, id: &SourceId) {
        if let Some(web) = self.web_for(id) {
            web.release(id);
        }
    }
}
