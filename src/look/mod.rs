//! Look: second looks, between infer and triage.
//!
//! [`Scored`] in, [`Scored`] out. When a programme's rule picks an image of
//! a model whose card names a `[second_look]` (DESP: p(r3) in the band
//! where the DR model cannot tell new vessels from R2 at its own size), the
//! frame is decoded again at the companion's input size (the first decode
//! stopped at what the host model needed), from the bytes decode kept (or
//! the source, opened again), prepared for the companion and scored; the
//! answer rides on the message. Everything else passes straight through.
//!
//! Looks run on the stage's own workers (one per session [`Looks::open`]
//! was given: the plan gives half as many as decode workers), through a
//! queue that holds one look per worker: past that a look waits for a
//! worker, so the stages upstream slow down with it and nothing piles up.
//! (On the decode pool they would wait behind every decode until the input
//! ran out, since the decode workers never return to the pool while
//! instances remain.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::decode::Decoder;
use crate::error::chain;
use crate::message::{LookAnswer, Msg, Scored};
use crate::model::{ModelId, Models};
use crate::preprocess::InputPreparer;
use crate::runtime::{LookSession, Runtime, RuntimeError};
use crate::source::Source;

/// Which of a model's images get a second look: those whose output
/// `label` lies in `from..below`, when `only_if` (an output and its
/// threshold) holds too. DESP: p(r3) from `r3_second_look.from` up to
/// `r3_at_least`, on a gradable image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LookWhen {
    pub label: usize,
    pub from: f32,
    pub below: f32,
    pub only_if: Option<(usize, f32)>,
}

impl LookWhen {
    /// Whether an image with these outputs is looked at again.
    pub fn holds(&self, outputs: &[f32]) -> bool {
        let at = |i: usize| outputs.get(i).copied().unwrap_or(0.0);
        let p = at(self.label);
        p >= self.from && p < self.below && self.only_if.is_none_or(|(i, t)| at(i) >= t)
    }
}

/// One model's second look, ready to run on any pool worker.
struct ModelLook {
    when: LookWhen,
    preparer: InputPreparer,
    /// The companion's input (width, height): the decode covers it.
    size: (u32, u32),
    /// One single-threaded session per pool worker, by its index (so each
    /// lock is only ever taken by one thread).
    sessions: Vec<Mutex<LookSession>>,
}

impl ModelLook {
    /// Decodes the image again at the companion's size and scores it with
    /// worker `worker`'s session.
    fn answer(&self, worker: usize, source: &dyn Source, decoder: &Decoder, scored: &Scored) -> LookAnswer {
        let tensor = match self.tensor(source, decoder, scored) {
            Ok(tensor) => tensor,
            Err(reason) => return LookAnswer::Failed(reason),
        };
        let Some(session) = self.sessions.get(worker) else {
            return LookAnswer::Failed("no session for the second look".into());
        };
        // A poisoned lock only means another image's call panicked; the
        // session holds no state between calls.
        let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
        match session.look(&tensor) {
            Ok(p) => LookAnswer::Scored(p),
            Err(e) => LookAnswer::Failed(format!("the second look's model failed: {}", chain(&e))),
        }
    }

    fn tensor(&self, source: &dyn Source, decoder: &Decoder, scored: &Scored) -> Result<Vec<f32>, String> {
        let meta = &scored.meta;
        let reopened;
        let blob = match scored.bytes.as_deref() {
            Some(kept) => kept,
            None => {
                reopened = source
                    .open(&meta.instance.source)
                    .map_err(|e| format!("the file could not be opened again: {}", chain(&e)))?;
                &reopened
            }
        };
        let image = decoder
            .decode_frame(&meta.instance, blob, meta.frame_index, self.size)
            .map_err(|e| format!("the full decode failed: {}", chain(&e)))?;
        self.preparer.tensor(&image.frame).map_err(|e| format!("its input could not be made: {}", chain(&e)))
    }
}

/// Every model's second look that a programme asks for.
#[derive(Default)]
pub struct Looks {
    models: BTreeMap<ModelId, ModelLook>,
}

impl Looks {
    /// Opens `workers` single-threaded sessions of each second look that
    /// `when` asks for (by model) and the model's card names.
    ///
    /// # Errors
    /// A companion's session cannot be opened.
    pub fn open(
        runtime: &Runtime,
        models: &Models,
        when: &BTreeMap<ModelId, LookWhen>,
        workers: usize,
    ) -> Result<Self, RuntimeError> {
        let mut out = BTreeMap::new();
        for (id, model) in models.iter() {
            let (Some(look), Some(&when)) = (&model.second_look, when.get(&id)) else { continue };
            let mut sessions = Vec::with_capacity(workers.max(1));
            for _ in 0..workers.max(1) {
                if let Some(session) = runtime.look_session(model, 1)? {
                    sessions.push(Mutex::new(session));
                }
            }
            let input = &look.model.card.input;
            out.insert(
                id,
                ModelLook { when, preparer: InputPreparer::new(input), size: (input.width, input.height), sessions },
            );
        }
        Ok(Self { models: out })
    }

    /// No second looks: the stage passes everything through.
    pub fn none() -> Self {
        Self::default()
    }

    /// The models that have a second look: decode keeps their bytes.
    pub fn models(&self) -> Vec<ModelId> {
        self.models.keys().copied().collect()
    }

    /// How many looks run at once: every model has a session per worker.
    fn workers(&self) -> usize {
        self.models.values().map(|look| look.sessions.len()).min().unwrap_or(0)
    }

    fn wanted(&self, scored: &Scored) -> Option<&ModelLook> {
        let look = self.models.get(&scored.model)?;
        (!scored.outputs.is_empty() && look.when.holds(&scored.outputs)).then_some(look)
    }
}

/// Runs the look stage until `rx` ends or downstream stops; returns once
/// every look it started has been sent on (or downstream has gone).
pub fn run(looks: &Looks, source: &dyn Source, decoder: &Decoder, rx: Receiver<Msg<Scored>>, tx: Sender<Msg<Scored>>) {
    let workers = looks.workers().max(1);
    let (jobs, queued) = bounded::<(&ModelLook, Scored)>(workers);
    let hung_up = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (queued, tx, hung_up) = (queued.clone(), tx.clone(), &hung_up);
            scope.spawn(move || {
                // The JPEG decoder spreads a frame over the current rayon
                // pool: the global one (a thread per core) on a plain
                // thread, so each worker brings its own pool of one.
                let pool =
                    rayon::ThreadPoolBuilder::new().num_threads(1).thread_name(move |_| format!("look-{worker}"));
                let pool =
                    pool.build().inspect_err(|e| log::warn!("second look {worker}: no pool of its own: {e}")).ok();
                for (look, mut scored) in queued {
                    if hung_up.load(Ordering::Relaxed) {
                        break;
                    }
                    let answer = || look.answer(worker, source, decoder, &scored);
                    let answer = match &pool {
                        Some(pool) => pool.install(answer),
                        None => answer(),
                    };
                    scored.second_look = Some(answer);
                    scored.bytes = None;
                    if tx.send(Ok(scored)).is_err() {
                        hung_up.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        drop(queued);
        for msg in rx {
            let sent = match msg {
                Ok(scored) => match looks.wanted(&scored) {
                    Some(look) => jobs.send((look, scored)).is_ok(),
                    None => tx.send(Ok(Scored { bytes: None, ..scored })).is_ok(),
                },
                Err(rejected) => tx.send(Err(rejected)).is_ok(),
            };
            if !sent || hung_up.load(Ordering::Relaxed) {
                break;
            }
        }
        drop(jobs);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Blob;
    use std::sync::Arc;

    #[test]
    fn a_look_is_asked_only_inside_its_band_and_where_the_condition_holds() {
        // Outputs: [r3, gradable].
        let when = LookWhen { label: 0, from: 0.05, below: 0.5, only_if: Some((1, 0.4)) };
        assert!(when.holds(&[0.05, 0.4]));
        assert!(when.holds(&[0.49, 0.9]));
        assert!(!when.holds(&[0.04, 0.9]), "below the band");
        assert!(!when.holds(&[0.5, 0.9]), "sure without a look");
        assert!(!when.holds(&[0.2, 0.39]), "not gradable");
        assert!(!when.holds(&[]), "no outputs: not scored");
        let always = LookWhen { only_if: None, ..when };
        assert!(always.holds(&[0.2, 0.0]));
    }

    fn scored(path: &std::path::Path, outputs: Vec<f32>) -> Scored {
        use crate::message::SourceId;
        Scored::for_test(SourceId::File(path.to_path_buf()), Default::default(), outputs)
    }

    #[test]
    fn a_look_that_cannot_be_made_is_an_answer_that_says_why_and_others_pass_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("not-dicom.dcm");
        std::fs::write(&garbage, b"no preamble, no DICM").expect("write");
        let spec: crate::model::InputSpec = toml::from_str(
            "name = \"image\"\nlayout = \"NCHW\"\nchannels = 3\nheight = 64\nwidth = 64\nscale = 1.0\nmean = []\nstd = []\nchannel_order = \"RGB\"\n",
        )
        .expect("spec");
        let when = LookWhen { label: 0, from: 0.1, below: 0.5, only_if: None };
        // No sessions: both looks fail before a model would be asked.
        let look = ModelLook { when, preparer: InputPreparer::new(&spec), size: (64, 64), sessions: Vec::new() };
        let looks = Looks { models: [(ModelId::new(0), look)].into_iter().collect() };
        let source = crate::source::FileSystem::new(&Default::default(), &[dir.path().to_path_buf()]);
        let decoder = Decoder::new(&Default::default());
        let (tx_in, rx_in) = crossbeam_channel::bounded(8);
        let (tx_out, rx_out) = crossbeam_channel::unbounded();
        tx_in.send(Ok(scored(&dir.path().join("gone.dcm"), vec![0.2]))).expect("send");
        tx_in.send(Ok(scored(&garbage, vec![0.3]))).expect("send");
        tx_in.send(Ok(scored(&garbage, vec![0.9]))).expect("send");
        // Bytes kept from decode are read instead of the source (which has
        // no such file): the look fails at the decode, not the opening.
        let kept = Blob::bytes(b"no preamble, no DICM".to_vec());
        let gone_but_kept = Scored { bytes: Some(Arc::new(kept)), ..scored(&dir.path().join("gone.dcm"), vec![0.4]) };
        tx_in.send(Ok(gone_but_kept)).expect("send");
        drop(tx_in);
        run(&looks, &source, &decoder, rx_in, tx_out);
        let answers =
            rx_out.iter().map(|m| m.expect("scored")).inspect(|s| assert!(s.bytes.is_none(), "bytes dropped here"));
        let mut answers: Vec<(f32, Option<LookAnswer>)> = answers.map(|s| (s.outputs[0], s.second_look)).collect();
        answers.sort_by(|a, b| a.0.total_cmp(&b.0));
        let why = |a: &Option<LookAnswer>| match a {
            Some(LookAnswer::Failed(why)) => why.clone(),
            other => panic!("expected a failed look, got {other:?}"),
        };
        assert_eq!(answers.len(), 4);
        assert!(why(&answers[0].1).starts_with("the file could not be opened again"), "{:?}", answers[0]);
        assert!(why(&answers[1].1).starts_with("the full decode failed"), "{:?}", answers[1]);
        assert!(why(&answers[2].1).starts_with("the full decode failed"), "kept bytes: {:?}", answers[2]);
        assert_eq!(answers[3].1, None, "above the band: not looked at");
    }
}
