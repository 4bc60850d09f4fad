//! DICOM vocabulary shared by the stages, owned by none: typed transfer
//! syntaxes, photometric interpretations, laterality and fundus field, the
//! one attribute reader, and the data-set writing helpers that synth and
//! the result writers build objects with.

pub mod attrs;
pub mod laterality;
pub mod photometric;
pub mod ts;
pub mod write;
