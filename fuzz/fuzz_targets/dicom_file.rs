//! One file's whole journey short of inference: header probe (with the
//! length guard), decode under tight limits, and preprocess for the shipped
//! DR model, all from the fuzzer's bytes in memory (no temporary file). Any
//! panic, abort or runaway allocation is a bug: hostile input must end as an
//! error value.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use nightscreen::decode::{DecodeConfig, Decoder};
use nightscreen::ingest::{probe, Probe};
use nightscreen::message::{Instance, SourceId};
use nightscreen::model::{self, Accepts};
use nightscreen::preprocess::Preprocessor;
use nightscreen::source::Blob;

struct Harness {
    decoder: Decoder,
    pre: Preprocessor,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
        let model = model::load(&models, "dr-screen", Accepts::default()).expect("models/dr-screen");
        let size = (model.card.input.width, model.card.input.height);
        // Limits small enough that a legal-but-huge image is refused quickly.
        let cfg = DecodeConfig {
            max_pixels_per_frame: 4_000_000,
            max_frames: 16,
            max_file_bytes: 64 << 20,
            ..DecodeConfig::default()
        };
        Harness {
            decoder: Decoder::new(&cfg).with_model_inputs(vec![size]),
            pre: Preprocessor::new(std::slice::from_ref(&model)),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let blob = Blob::bytes(data.to_vec());
    let Ok(Probe::Image(header)) = probe(&blob) else { return };
    let inst = Arc::new(Instance {
        // A name only: decode reads the blob, nothing opens this path.
        source: SourceId::File(PathBuf::from("fuzz-input.dcm")),
        name: "fuzz-input.dcm".into(),
        header: Arc::new(header),
        models: vec![0],
    });
    h.decoder.decode_each(&inst, &blob, |msg| {
        if let Ok(image) = msg {
            let _ = h.pre.prepare(&image.frame, 0);
        }
    });
});
