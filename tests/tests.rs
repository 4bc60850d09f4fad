//! nightscreen's integration tests: one binary, a module per stage, plus
//! end-to-end runs of the real `nightscreen` executable.

mod util;

mod browser;
mod decode;
mod desp;
mod evaluate;
mod hostile;
mod infer;
mod cli;
mod ingest;
mod pipeline;
mod privacy;
mod resume;
mod shard;
mod deploy;
mod synth;
