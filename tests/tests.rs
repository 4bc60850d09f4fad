//! nightscreen's integration tests: one binary, a module per stage, plus
//! end-to-end runs of the real `nightscreen` executable.

mod util;

mod browser;
mod cli;
mod decode;
mod deploy;
mod desp;
mod dicomweb;
mod domain;
mod evaluate;
mod fhir;
mod golden;
mod hl7;
mod hostile;
mod infer;
mod ingest;
mod pacs;
mod photos;
mod pipeline;
mod privacy;
mod resume;
mod second_look;
mod shard;
mod sr;
mod synth;
mod tls;
