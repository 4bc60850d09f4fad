//! Infer: ONNX Runtime loading, sessions checked against cards, batch
//! scoring on the fixture models, and the batching stage.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::bounded;
use std::collections::BTreeMap;

use nightscreen::infer::{self, DecodeGates, InferConfig};
use nightscreen::message::{
    DomainCheck, Header, ImageMeta, Instance, Msg, PixelStats, Prepared, RejectKind, Rejected, Scored, SourceId, Stage,
};
use nightscreen::model::{
    Accepts, Activation, ChannelOrder, DomainGate, InputSpec, Layout, ModelCard, ModelId, Models, VerifiedModel,
};
use nightscreen::runtime::{self, Device, ModelSession, Provider, Runtime, RuntimeError};

use crate::util;

/// Both fixture models compute means in float32; 1e-6 is far below any
/// difference that matters and above float32 summation noise on these
/// small, exactly representable inputs.
const TOLERANCE: f32 = 1e-6;

const H: usize = 4;
const W: usize = 5;

/// The ONNX Runtime shared by the tests, or None (skip) when the library
/// is missing and the run is not strict.
fn runtime() -> Option<Runtime> {
    util::onnxruntime()?;
    Some(Runtime::load(Device::Cpu).expect("ONNX Runtime loads"))
}

/// A card written in the test, so these tests don't depend on the real
/// cards in models/ (the digest is not checked by `Runtime::session`).
fn card(id: &str, input: &str, layout: Layout, channels: u8, output: &str, labels: &[&str]) -> ModelCard {
    ModelCard {
        id: id.into(),
        version: "test".into(),
        file: format!("{id}.onnx"),
        sha256: "0".repeat(64),
        intended_use: "fixture".into(),
        limitations: String::new(),
        clinical_use: false,
        input: InputSpec {
            name: input.into(),
            layout,
            channels,
            height: H as u32,
            width: W as u32,
            scale: 1.0,
            mean: vec![],
            std: vec![],
            channel_order: ChannelOrder::RGB,
        },
        output: nightscreen::model::card::OutputSpec {
            name: output.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            activation: Activation::None,
        },
        accepts: Accepts::default(),
        thresholds: Default::default(),
        evaluation: None,
        explain: None,
        domain: None,
        second_look: None,
    }
}

fn verified(card: ModelCard) -> VerifiedModel {
    let models = util::root().join("models");
    VerifiedModel {
        onnx_path: models.join(&card.file),
        card_path: models.join(format!("{}.toml", card.id)),
        card,
        route: Accepts::default(),
        domain: None,
        second_look: None,
    }
}

fn channel_means() -> VerifiedModel {
    verified(card("channel-means", "image", Layout::NCHW, 3, "means", &["r", "g", "b"]))
}

fn grey_means() -> VerifiedModel {
    verified(card("grey-means-nhwc", "pixels", Layout::NHWC, 1, "stats", &["mean", "max"]))
}

/// A deterministic image of `len` values, different per `seed`, all
/// multiples of 1/64 so sums are exact in float32.
fn tensor(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + seed * 13) % 29) as f32 / 64.0).collect()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= TOLERANCE, "got {got:?}, want {want:?}");
    }
}

/// Per-channel means of a CHW tensor, in f64.
fn chw_means(t: &[f32]) -> Vec<f32> {
    t.chunks(H * W).map(|c| (c.iter().map(|&v| v as f64).sum::<f64>() / c.len() as f64) as f32).collect()
}

#[test]
fn runtime_reports_library_and_cpu() {
    let Some(rt) = runtime() else { return };
    assert!(rt.library_path.is_file(), "{}", rt.library_path.display());
    assert!(rt.version.starts_with("1."), "{}", rt.version);
    assert!(rt.available_providers.iter().any(|p| p == "CPUExecutionProvider"), "{:?}", rt.available_providers);
    assert_eq!(rt.provider, Provider::Cpu);
    assert_eq!(rt.provider.as_str(), "CPUExecutionProvider");
    eprintln!("ONNX Runtime {} loaded in {:?}", rt.version, rt.load_time);
}

#[test]
fn scores_nchw_channel_means() {
    let Some(rt) = runtime() else { return };
    let mut session = rt.session(&channel_means(), 1).expect("session");
    let images: Vec<Vec<f32>> = (0..3).map(|s| tensor(3 * H * W, s)).collect();
    let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    let out = session.score(&refs).expect("score");
    assert_eq!(out.len(), 3);
    for (img, got) in images.iter().zip(&out) {
        assert_close(got, &chw_means(img));
    }
}

#[test]
fn scores_nhwc_mean_and_max() {
    let Some(rt) = runtime() else { return };
    let mut session = rt.session(&grey_means(), 1).expect("session");
    let images: Vec<Vec<f32>> = (0..3).map(|s| tensor(H * W, s + 5)).collect();
    let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    let out = session.score(&refs).expect("score");
    for (img, got) in images.iter().zip(&out) {
        let mean = (img.iter().map(|&v| v as f64).sum::<f64>() / img.len() as f64) as f32;
        let max = img.iter().copied().fold(f32::MIN, f32::max);
        assert_close(got, &[mean, max]);
    }
}

#[test]
fn applies_card_activation() {
    let Some(rt) = runtime() else { return };
    let mut model = channel_means();
    model.card.output.activation = Activation::Softmax;
    let mut session = rt.session(&model, 1).expect("session");
    let img = tensor(3 * H * W, 2);
    let out = session.score(&[&img]).expect("score");
    let mut want = chw_means(&img);
    runtime::softmax(&mut want);
    assert_close(&out[0], &want);
}

#[test]
fn wrong_tensor_size_is_an_error() {
    let Some(rt) = runtime() else { return };
    let mut session = rt.session(&channel_means(), 1).expect("session");
    let err = session.score(&[&[0.0; 7]]).unwrap_err();
    assert!(err.to_string().contains("60"), "{err}");
}

#[test]
fn session_checks_card_against_graph() {
    let Some(rt) = runtime() else { return };
    let check = |model: VerifiedModel, needle: &str| {
        let err = rt.session(&model, 1).unwrap_err();
        assert!(matches!(err, RuntimeError::ModelMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{needle:?} not in: {err}");
    };
    check(
        verified(card("channel-means", "pixels", Layout::NCHW, 3, "means", &["r", "g", "b"])),
        "no input named \"pixels\"",
    );
    check(
        verified(card("channel-means", "image", Layout::NCHW, 3, "score", &["r", "g", "b"])),
        "no output named \"score\"",
    );
    check(
        verified(card("channel-means", "image", Layout::NCHW, 1, "means", &["r", "g", "b"])),
        "dimension 1 is 3, not 1",
    );
    check(verified(card("channel-means", "image", Layout::NHWC, 3, "means", &["r", "g", "b"])), "NHWC");
    check(verified(card("channel-means", "image", Layout::NCHW, 3, "means", &["a", "b"])), "2 labels");
}

#[test]
fn missing_model_file_is_a_session_error() {
    let Some(rt) = runtime() else { return };
    let mut model = channel_means();
    model.onnx_path = util::root().join("models/does-not-exist.onnx");
    let err = rt.session(&model, 1).unwrap_err();
    assert!(matches!(err, RuntimeError::Session { .. }), "{err:?}");
}

#[test]
fn cuda_is_refused_without_a_gpu() {
    let Some(rt) = runtime() else { return };
    if rt.has_cuda() {
        eprintln!("skipping: this ONNX Runtime has CUDA");
        return;
    }
    let err = Runtime::load(Device::Cuda).unwrap_err();
    assert!(matches!(err, RuntimeError::CudaUnavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("CPUExecutionProvider") && msg.contains("--device cpu"), "{msg}");
    // auto falls back to CPU, and says so in `provider`.
    assert_eq!(Runtime::load(Device::Auto).expect("auto").provider.as_str(), "CPUExecutionProvider");
}

#[test]
fn ort_dylib_path_to_missing_file_is_named() {
    let missing = PathBuf::from("/nonexistent/dir/libonnxruntime.so");
    let err = runtime::locate_library_with(Some(missing.as_os_str()), &runtime::search_dirs()).unwrap_err();
    assert!(matches!(err, RuntimeError::EnvPathMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/dir/libonnxruntime.so"), "{err}");
}

#[test]
fn library_not_found_says_how_to_get_it() {
    let dir = util::root().join("target/no-onnxruntime-here");
    let err = runtime::locate_library_with(None, std::slice::from_ref(&dir)).unwrap_err();
    let msg = err.to_string();
    for needle in ["make ort", "tools/fetch_ort.sh", "ORT_DYLIB_PATH", "onnxruntime", "no-onnxruntime-here"] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    // An explicit path wins over the folders.
    let lib = util::onnxruntime();
    if let Some(lib) = lib {
        let found = runtime::locate_library_with(Some(lib.as_os_str()), &[dir]).unwrap();
        assert_eq!(found, lib);
    }
}

fn meta(n: usize) -> Arc<ImageMeta> {
    let instance = Instance {
        source: SourceId::File(PathBuf::from(format!("/in/{n}.dcm"))),
        name: format!("{n}.dcm"),
        header: Arc::new(Header::default()),
        models: vec![],
    };
    Arc::new(ImageMeta {
        instance: Arc::new(instance),
        frame_index: 0,
        width: W as u32,
        height: H as u32,
        stored: PixelStats::default(),
        thumbnail: None,
    })
}

#[test]
fn stage_batches_two_models_and_passes_rejects() {
    let Some(rt) = runtime() else { return };
    let sessions: BTreeMap<ModelId, ModelSession> = BTreeMap::from([
        (ModelId::new(0), rt.session(&channel_means(), 1).expect("session")),
        (ModelId::new(1), rt.session(&grey_means(), 1).expect("session")),
    ]);
    let cfg = InferConfig { batch_size: 2, batch_timeout_ms: 5, ..InferConfig::default() };
    let (tx_in, rx_in) = bounded::<Msg<Prepared>>(64);
    let (tx_out, rx_out) = bounded::<Msg<Scored>>(64);
    let mut expected = std::collections::BTreeMap::new();
    for n in 0..5 {
        let t = tensor(3 * H * W, n);
        expected.insert(format!("/in/{n}.dcm"), chw_means(&t));
        tx_in
            .send(Ok(Prepared { meta: meta(n), model: ModelId::new(0), tensor: t, domain: None, bytes: None }))
            .unwrap();
    }
    for n in 10..13 {
        let t = tensor(H * W, n);
        let mean = (t.iter().map(|&v| v as f64).sum::<f64>() / t.len() as f64) as f32;
        let max = t.iter().copied().fold(f32::MIN, f32::max);
        expected.insert(format!("/in/{n}.dcm"), vec![mean, max]);
        tx_in
            .send(Ok(Prepared { meta: meta(n), model: ModelId::new(1), tensor: t, domain: None, bytes: None }))
            .unwrap();
    }
    // Upstream reject passes through; a wrong-sized tensor fails alone.
    tx_in
        .send(Err(Rejected {
            source: SourceId::File("/in/bad.dcm".into()),
            stage: Stage::Decode,
            kind: RejectKind::Error,
            reason: "broken".into(),
            header: None,
            frame: None,
        }))
        .unwrap();
    tx_in
        .send(Ok(Prepared { meta: meta(20), model: ModelId::new(0), tensor: vec![0.0; 5], domain: None, bytes: None }))
        .unwrap();
    tx_in
        .send(Ok(Prepared { meta: meta(21), model: ModelId::new(7), tensor: vec![0.0; 60], domain: None, bytes: None }))
        .unwrap();
    drop(tx_in);

    infer::run(sessions, &cfg, rx_in, tx_out);
    let results: Vec<Msg<Scored>> = rx_out.iter().collect();
    assert_eq!(results.len(), 11);
    let mut rejects = Vec::new();
    for msg in results {
        match msg {
            Ok(s) => {
                let path = s.meta.instance.source.locator();
                assert_close(&s.outputs, &expected.remove(&path).unwrap_or_else(|| panic!("unexpected {path}")));
            }
            Err(r) => rejects.push((r.source.locator(), r.stage)),
        }
    }
    assert!(expected.is_empty(), "not scored: {expected:?}");
    rejects.sort();
    assert_eq!(
        rejects,
        [
            ("/in/20.dcm".to_string(), Stage::Infer),
            ("/in/21.dcm".to_string(), Stage::Infer),
            ("/in/bad.dcm".to_string(), Stage::Decode)
        ]
    );
}

#[test]
fn stage_flushes_partial_batch_on_timeout() {
    let Some(rt) = runtime() else { return };
    let sessions = BTreeMap::from([(ModelId::new(0), rt.session(&channel_means(), 1).expect("session"))]);
    let cfg = InferConfig { batch_size: 8, batch_timeout_ms: 10, ..InferConfig::default() };
    let (tx_in, rx_in) = bounded::<Msg<Prepared>>(8);
    let (tx_out, rx_out) = bounded::<Msg<Scored>>(8);
    std::thread::scope(|s| {
        s.spawn(move || infer::run(sessions, &cfg, rx_in, tx_out));
        tx_in
            .send(Ok(Prepared {
                meta: meta(1),
                model: ModelId::new(0),
                tensor: tensor(3 * H * W, 1),
                domain: None,
                bytes: None,
            }))
            .unwrap();
        // The input stays open: only the timeout can release this batch of one.
        let got = rx_out.recv_timeout(std::time::Duration::from_secs(10)).expect("flushed by timeout");
        assert!(got.is_ok());
        drop(tx_in);
    });
}

/// channel-means behind the fixture gate red-gate (p = sigmoid(40 (mean R
/// − mean B − 0.1)), inside from 0.5), at this file's input size.
fn gated_channel_means() -> VerifiedModel {
    let mut gate_card = card("red-gate", "image", Layout::NCHW, 3, "in_domain", &["reddish"]);
    gate_card.thresholds.insert("reddish".into(), 0.5);
    let gate = DomainGate {
        model: verified(gate_card),
        output: 0,
        threshold: 0.5,
        outside: "not recognised as a reddish image".into(),
    };
    VerifiedModel { domain: Some(Box::new(gate)), ..channel_means() }
}

/// A CHW tensor with every pixel (r, g, b).
fn flat(r: f32, g: f32, b: f32) -> Vec<f32> {
    [r, g, b].iter().flat_map(|&v| std::iter::repeat_n(v, H * W)).collect()
}

#[test]
fn the_gate_asked_on_decode_workers_agrees_with_inference_and_is_not_asked_twice() {
    let Some(rt) = runtime() else { return };
    let model = gated_channel_means();
    let models = Models::new(vec![model.clone()]).expect("models");
    let gates = DecodeGates::open(&rt, &models, 2).expect("gates");
    let (red, blue) = (flat(0.75, 0.25, 0.25), flat(0.25, 0.25, 0.75));
    let expected = |t: &[f32]| {
        let m = chw_means(t);
        (1.0 / (1.0 + (-40.0 * (m[0] as f64 - m[2] as f64 - 0.1)).exp())) as f32
    };
    let prepared = |n, tensor: &[f32], domain| Prepared {
        meta: meta(n),
        model: ModelId::new(0),
        tensor: tensor.to_vec(),
        domain,
        bytes: None,
    };

    // The decode side's answer is the gate's, on the worker's own session.
    let mut asked_red = prepared(1, &red, None);
    let mut asked_blue = prepared(2, &blue, None);
    gates.ask(&mut asked_red);
    gates.ask(&mut asked_blue);
    let (r, b) = (asked_red.domain.expect("asked"), asked_blue.domain.expect("asked"));
    assert!(r.inside && (r.score - expected(&red)).abs() <= TOLERANCE, "{r:?}");
    assert!(!b.inside && (b.score - expected(&blue)).abs() <= TOLERANCE, "{b:?}");
    // An ungated model is left unasked.
    let mut ungated = Prepared { model: ModelId::new(1), ..prepared(3, &red, None) };
    gates.ask(&mut ungated);
    assert_eq!(ungated.domain, None);

    let sessions = BTreeMap::from([(ModelId::new(0), rt.session(&model, 1).expect("session"))]);
    let cfg = InferConfig { batch_size: 4, batch_timeout_ms: 5, ..InferConfig::default() };
    let (tx_in, rx_in) = bounded::<Msg<Prepared>>(8);
    let (tx_out, rx_out) = bounded::<Msg<Scored>>(8);
    // Unasked: the infer worker asks the card's gate itself.
    tx_in.send(Ok(prepared(10, &red, None))).unwrap();
    tx_in.send(Ok(prepared(11, &blue, None))).unwrap();
    // Asked on decode: trusted as it is, even against what the gate would say.
    let said_outside = DomainCheck { score: 0.0, inside: false };
    tx_in.send(Ok(prepared(12, &red, Some(said_outside)))).unwrap();
    tx_in.send(Ok(asked_blue)).unwrap();
    drop(tx_in);
    infer::run(sessions, &cfg, rx_in, tx_out);
    let mut got: BTreeMap<String, Scored> = BTreeMap::new();
    for msg in rx_out.iter() {
        let s = msg.expect("scored");
        got.insert(s.meta.instance.source.locator(), s);
    }
    assert_eq!(got.len(), 4);
    let red_scored = &got["/in/10.dcm"];
    assert!(red_scored.domain.is_some_and(|d| d.inside), "{:?}", red_scored.domain);
    assert_close(&red_scored.outputs, &chw_means(&red));
    let blue_unasked = &got["/in/11.dcm"];
    assert!(blue_unasked.outside_domain() && blue_unasked.outputs.is_empty());
    assert_eq!(got["/in/12.dcm"].domain, Some(said_outside));
    assert!(got["/in/12.dcm"].outputs.is_empty(), "an image the decode side found outside is never scored");
    assert!(got["/in/2.dcm"].outside_domain() && got["/in/2.dcm"].outputs.is_empty());
}
