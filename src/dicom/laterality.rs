//! (being written for issue 14; see src/dicom/mod.rs)
