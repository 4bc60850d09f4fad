//! Look: second looks, between infer and triage.
//!
//! [`Scored`] in, [`Scored`] out. When a programme's rule picks an image of
//! a model whose card names a `[second_look]` (DESP: p(r3) in the band
//! where the DR model cannot tell new vessels from R2 at its own size), the
//! instance is opened again from its source, that frame decoded at the
//! companion's input size (the first decode stopped at what the host model
//! needed), prepared for the companion and scored; the answer rides on the
//! message. Everything else passes straight through.
//!
//! Looks run on the decode pool, so they share its cores instead of adding
//! threads. The stage's own thread never waits for a look: it hands each one
//! to the pool and goes on draining inference, so a pool busy decoding can
//! never wait on it in turn (decode → infer → look → decode would otherwise
//! be a cycle of full queues).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender};

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
    /// Decodes the image again at the companion's size and scores it.
    fn answer(&self, source: &dyn Source, decoder: &Decoder, scored: &Scored) -> LookAnswer {
        let meta = &scored.meta;
        let tensor = source
            .open(&meta.instance.source)
            .map_err(|e| format!("the file could not be opened again: {}", chain(&e)))
            .and_then(|blob| {
                decoder
                    .decode_frame(&meta.instance, &blob, meta.frame_index, self.size)
                    .map_err(|e| format!("the full decode failed: {}", chain(&e)))
            })
            .and_then(|image| {
                self.preparer.tensor(&image.frame).map_err(|e| format!("its input could not be made: {}", chain(&e)))
            });
        let tensor = match tensor {
            Ok(tensor) => tensor,
            Err(reason) => return LookAnswer::Failed(reason),
        };
        let slot = rayon::current_thread_index().unwrap_or(0) % self.sessions.len().max(1);
        let Some(session) = self.sessions.get(slot) else {
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

    fn wanted(&self, scored: &Scored) -> Option<&ModelLook> {
        let look = self.models.get(&scored.model)?;
        (!scored.outputs.is_empty() && look.when.holds(&scored.outputs)).then_some(look)
    }
}

/// Runs the look stage until `rx` ends or downstream stops; returns once
/// every look it started has been sent on.
pub fn run(
    looks: &Looks,
    source: &dyn Source,
    decoder: &Decoder,
    pool: &rayon::ThreadPool,
    rx: Receiver<Msg<Scored>>,
    tx: Sender<Msg<Scored>>,
) {
    let hung_up = Arc::new(AtomicBool::new(false));
    pool.in_place_scope(|scope| {
        for msg in rx {
            if hung_up.load(Ordering::Relaxed) {
                break;
            }
            let wanted = msg.as_ref().ok().and_then(|scored| looks.wanted(scored));
            let (look, mut scored) = match (wanted, msg) {
                (Some(look), Ok(scored)) => (look, scored),
                (_, msg) => {
                    if tx.send(msg).is_err() {
                        break;
                    }
                    continue;
                }
            };
            let (tx, hung_up) = (tx.clone(), Arc::clone(&hung_up));
            scope.spawn(move |_| {
                scored.second_look = Some(look.answer(source, decoder, &scored));
                if tx.send(Ok(scored)).is_err() {
                    hung_up.store(true, Ordering::Relaxed);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
        use crate::message::{Header, ImageMeta, Instance, PixelStats, SourceId};
        let instance = Arc::new(Instance {
            source: SourceId::File(path.to_path_buf()),
            name: String::new(),
            header: Arc::new(Header::default()),
            models: vec![ModelId::new(0)],
        });
        let meta = Arc::new(ImageMeta {
            instance,
            frame_index: 0,
            width: 8,
            height: 8,
            stored: PixelStats::default(),
            thumbnail: None,
        });
        let scored_at = chrono::Utc::now();
        Scored { meta, model: ModelId::new(0), outputs, domain: None, attention: None, second_look: None, scored_at }
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
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let (tx_in, rx_in) = crossbeam_channel::bounded(8);
        let (tx_out, rx_out) = crossbeam_channel::unbounded();
        tx_in.send(Ok(scored(&dir.path().join("gone.dcm"), vec![0.2]))).expect("send");
        tx_in.send(Ok(scored(&garbage, vec![0.3]))).expect("send");
        tx_in.send(Ok(scored(&garbage, vec![0.9]))).expect("send");
        drop(tx_in);
        run(&looks, &source, &decoder, &pool, rx_in, tx_out);
        let mut answers: Vec<(f32, Option<LookAnswer>)> =
            rx_out.iter().map(|m| m.expect("scored")).map(|s| (s.outputs[0], s.second_look)).collect();
        answers.sort_by(|a, b| a.0.total_cmp(&b.0));
        let why = |a: &Option<LookAnswer>| match a {
            Some(LookAnswer::Failed(why)) => why.clone(),
            other => panic!("expected a failed look, got {other:?}"),
        };
        assert_eq!(answers.len(), 3);
        assert!(why(&answers[0].1).starts_with("the file could not be opened again"), "{:?}", answers[0]);
        assert!(why(&answers[1].1).starts_with("the full decode failed"), "{:?}", answers[1]);
        assert_eq!(answers[2].1, None, "above the band: not looked at");
    }
}
