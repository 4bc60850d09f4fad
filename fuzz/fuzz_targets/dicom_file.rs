//! One file's whole journey short of inference: header probe (with the
//! length guard), decode under tight limits, and preprocess for the shipped
//! DR model. Any panic, abort or runaway allocation is a bug: hostile input
//! must end as an error value.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use nightscreen::decode::{DecodeConfig, Decoder};
use nightscreen::ingest::{probe, Probe};
use nightscreen::message::Instance;
use nightscreen::model::{self, Accepts};
use nightscreen::preprocess::Preprocessor;

struct Harness {
    file: PathBuf,
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
        let dir = std::env::temp_dir().join(format!("nightscreen-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Harness {
            file: dir.join("input.dcm"),
            decoder: Decoder::new(&cfg).with_model_inputs(vec![size]),
            pre: Preprocessor::new(std::slice::from_ref(&model)),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    if std::fs::write(&h.file, data).is_err() {
        return;
    }
    let Ok(Probe::Image(header)) = probe(&h.file) else { return };
    let inst = Arc::new(Instance {
        path: h.file.clone(),
        rel_path: "input.dcm".into(),
        header: Arc::new(header),
        models: vec![0],
    });
    h.decoder.decode_each(&inst, |msg| {
        if let Ok(image) = msg {
            let _ = h.pre.prepare(&image.frame, 0);
        }
    });
});
