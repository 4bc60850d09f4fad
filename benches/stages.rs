//! Stage costs for `make bench`: decode, preprocess (thumbnail, model
//! input and the model's domain gate on that input, one image at a time,
//! as the pipeline's decode workers do), inference of the shipped DR
//! model and its second look, each on one thread, plus the whole pipeline
//! on all cores.
//! `tools/bench_report.py` turns the single-thread costs into the
//! machine limit (cores ÷ core-seconds per image), so each bench here must
//! do exactly one stage's work for one image (or one batch).
//!
//! Data: the folder in `NIGHTSCREEN_BENCH_INPUT` (`make bench` passes its
//! 1 000-image batch, so decode reads the same files the pipeline reads,
//! from the page cache rather than a CPU cache a 16-file loop would stay
//! in), else a few synthetic studies made here with the library's synth:
//! the same kind of 1600 × 1200 JPEG photographs as `make demo`. Needs ONNX
//! Runtime (`make ort`; found like the binary finds it, e.g. `ORT_DYLIB_PATH`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nightscreen::config::Overrides;
use nightscreen::decode::Decoder;
use nightscreen::message::{DecodedImage, Instance, SourceId};
use nightscreen::model::{self, ModelId, Models, VerifiedModel};
use nightscreen::preprocess::{InputPreparer, Preprocessor};
use nightscreen::progress::{Mode, Progress};
use nightscreen::runtime::{Device, Runtime};
use nightscreen::source::{Blob, FileSystem, Source};
use nightscreen::{ingest, synth, Config};

const STUDIES: usize = 4;
const SEED: u64 = 5;

struct Fixture {
    _dir: tempfile::TempDir,
    input: PathBuf,
    config: Config,
    model: VerifiedModel,
    /// The same model as the run's registry of one.
    models: Models,
    instances: Vec<Arc<Instance>>,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = match std::env::var_os("NIGHTSCREEN_BENCH_INPUT") {
        Some(given) => PathBuf::from(given),
        None => {
            let input = dir.path().join("studies");
            synth::run(&synth::SynthConfig::new(STUDIES, &input, SEED)).expect("synth");
            input
        }
    };
    let mut config = Config::load(&repo().join("configs/desp.toml")).expect("configs/desp.toml");
    config.key = Some(nightscreen::privacy::PseudonymKey::from_hex(&"b3c4".repeat(16), "bench key").expect("key"));
    let entry = &config.models[0];
    let model = model::load(&config.models_dir, &entry.id, entry.route.clone()).expect("model");
    let source = FileSystem::new(&config.ingest, std::slice::from_ref(&input));
    let models = Models::new(vec![model.clone()]).expect("one model");
    let inventory = ingest::scan(source.list().instances, &source, &models);
    let instances: Vec<Arc<Instance>> = inventory.items.into_iter().filter_map(Result::ok).map(Arc::new).collect();
    assert!(instances.len() >= 8, "at least a batch of images in {}", input.display());
    Fixture { _dir: dir, input, config, model, models, instances }
}

/// One thread for everything a stage might parallelise internally
/// (jpeg-decoder's rayon worker runs on the current pool).
fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool")
}

/// An instance's bytes, as the pipeline's file source opens them.
fn blob(inst: &Instance) -> Blob {
    let SourceId::File(path) = &inst.source else { panic!("the bench reads files") };
    Blob::open_file(path).expect("open synthetic image")
}

fn decode_all(decoder: &Decoder, instances: &[Arc<Instance>]) -> Vec<DecodedImage> {
    let mut frames = Vec::new();
    for inst in instances {
        let blob = blob(inst);
        decoder.decode_each(inst, &blob, |msg| frames.push(msg.expect("synthetic image decodes")));
    }
    frames
}

fn stages(c: &mut Criterion) {
    let fx = fixture();
    let input = &fx.model.card.input;
    let decoder = Decoder::new(&fx.config.decode).with_model_inputs(vec![(input.width, input.height)]);
    let pool = one_thread();
    let mut group = c.benchmark_group("stage");
    group.throughput(Throughput::Elements(1));

    let mut next = 0;
    group.bench_function("decode", |b| {
        pool.install(|| {
            b.iter(|| {
                let inst = &fx.instances[next % fx.instances.len()];
                next += 1;
                let mut frames = 0;
                decoder.decode_each(inst, &blob(inst), |msg| frames += usize::from(msg.is_ok()));
                assert_eq!(frames, 1);
            })
        })
    });

    // Preprocess works on a frame its worker has just decoded (in cache
    // then too), so a few frames in turn are representative. Its work per
    // frame is the thumbnail and the model input (Preprocessor::apply),
    // then the domain gate on that input (the pipeline's DecodeGates).
    let frames = decode_all(&decoder, &fx.instances[..16.min(fx.instances.len())]);
    let pre = Preprocessor::new(&fx.models);
    let runtime = Runtime::load(Device::Cpu).expect("ONNX Runtime (make ort; ORT_DYLIB_PATH)");
    let mut gate = runtime.gate_session(&fx.model, 1).expect("gate session");
    // Preprocess::apply's work on the next frame in turn: thumbnail and tensor.
    let mut next = 0;
    let mut thumbnail_and_tensor = || {
        let frame = &frames[next % frames.len()].frame;
        next += 1;
        (nightscreen::thumbnail::make(frame).expect("thumbnail"), pre.prepare(frame, ModelId::new(0)).expect("prepare"))
    };
    group.bench_function("preprocess", |b| {
        b.iter(|| {
            let (thumbnail, tensor) = thumbnail_and_tensor();
            let domain = gate.as_mut().map(|g| g.check(&[tensor.as_slice()]).expect("gate"));
            (thumbnail, tensor, domain)
        })
    });
    // For information (not in the machine limit): preprocess without the
    // gate, and the gate alone on one tensor it has just seen (in cache).
    group.bench_function("preprocess_without_gate", |b| b.iter(&mut thumbnail_and_tensor));
    let tensor = pre.prepare(&frames[0].frame, ModelId::new(0)).expect("prepare");
    if let Some(gate) = gate.as_mut() {
        group.bench_function("gate_batch1", |b| b.iter(|| gate.check(&[tensor.as_slice()]).expect("gate")));
    }

    let batch = fx.config.infer.batch_size;
    let tensors: Vec<Vec<f32>> =
        frames.iter().cycle().take(batch).map(|f| pre.prepare(&f.frame, ModelId::new(0)).expect("prepare")).collect();
    let mut session = runtime.session(&fx.model, 1).expect("session");
    let refs: Vec<&[f32]> = tensors.iter().map(Vec::as_slice).collect();
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("infer_batch{batch}"), |b| b.iter(|| session.score(&refs).expect("score")));

    // The second look, on every image here (the machine limit weighs it by
    // the share of images the run looked at again): the frame decoded again
    // at the companion's size, its input made, and the companion asked;
    // each part alone for information.
    if let Some(mut look) = runtime.look_session(&fx.model, 1).expect("look session") {
        let companion = &fx.model.second_look.as_ref().expect("a look session comes from a card's look").model;
        let size = (companion.card.input.width, companion.card.input.height);
        let preparer = InputPreparer::new(&companion.card.input);
        group.throughput(Throughput::Elements(1));
        let mut next = 0;
        let mut decode_again = || {
            let inst = &fx.instances[next % fx.instances.len()];
            next += 1;
            decoder.decode_frame(inst, &blob(inst), 0, size).expect("decode again")
        };
        group.bench_function("look", |b| {
            pool.install(|| {
                b.iter(|| look.look(&preparer.tensor(&decode_again().frame).expect("look input")).expect("look"))
            })
        });
        group.bench_function("look_decode", |b| pool.install(|| b.iter(&mut decode_again)));
        let frame = decode_again().frame;
        group.bench_function("look_prepare", |b| b.iter(|| preparer.tensor(&frame).expect("look input")));
        let tensor = preparer.tensor(&frame).expect("look input");
        group.bench_function("look_model", |b| b.iter(|| look.look(&tensor).expect("look")));
    }
    group.finish();

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(fx.instances.len() as u64));
    let out = fx._dir.path().join("out");
    let overrides =
        Overrides { inputs: vec![fx.input.clone()], out: Some(out), overwrite: true, ..Overrides::default() };
    let config = fx.config.clone().with_overrides(&overrides);
    let progress = Progress::new(Mode::Quiet);
    group.bench_function("end_to_end", |b| {
        b.iter_batched(|| (), |()| nightscreen::run(&config, &progress).expect("run"), BatchSize::PerIteration)
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
