//! The DESP programme bound to a run: the DR model's outputs, the
//! operating point, and the configured band of each DESP outcome.

use super::{grade_eyes, study_outcome, DespConfig, EyeOutcome, Field, Grade, ImageGrade, Outcome, Outputs};
use crate::dicom::laterality::Laterality;
use crate::message::LookAnswer;
use crate::model::ModelId;
use crate::triage::band::{Band, Bands};

/// The DR card's words the reasons quote.
#[derive(Debug, Clone)]
pub struct CardWords {
    /// What an image outside the domain is (`[domain] outside`).
    pub outside: String,
    /// What the second look looks for (`[second_look] finding`).
    pub finding: String,
}

/// Where DESP places a study: band, score, reason, and each eye's outcome.
#[derive(Debug, Clone)]
pub struct StudyGrade {
    /// `None` when nothing in the study was graded (only unreadable
    /// fields): the generic rules then place it.
    pub placed: Option<(Band, f32, String)>,
    pub right: Option<EyeOutcome>,
    pub left: Option<EyeOutcome>,
}

/// The DESP programme: grades the DR model's images, then eyes, then studies.
#[derive(Debug, Clone)]
pub struct DespGrader {
    /// The DR model.
    pub model: ModelId,
    pub outputs: Outputs,
    pub config: DespConfig,
    /// What an image outside the DR model's domain is, in the card's words.
    pub outside: String,
    /// What the DR model's second look looks for, in the card's words.
    pub finding: String,
    /// Each [`Outcome`]'s band in the configured table.
    bands: [Band; 6],
}

impl DespGrader {
    /// Binds the grader to the DR model's outputs and the configured bands
    /// (a missing band name falls back as [`Bands::position_or_last`] does;
    /// config validation refuses it first).
    pub fn new(model: ModelId, outputs: Outputs, config: DespConfig, bands: &Bands, words: CardWords) -> Self {
        let CardWords { outside, finding } = words;
        Self { model, outputs, config, outside, finding, bands: Outcome::ALL.map(|o| bands.position_or_last(o.name())) }
    }

    /// Grades one image of the DR model; `None` for other models' images.
    /// An image its gate found outside the domain is not graded.
    pub fn grade(
        &self,
        model: ModelId,
        outputs: &[f32],
        outside_domain: bool,
        look: Option<&LookAnswer>,
    ) -> Option<ImageGrade> {
        (model == self.model).then(|| {
            if outside_domain {
                ImageGrade::outside_domain()
            } else {
                self.config.grade_looked(&self.outputs, outputs, look)
            }
        })
    }

    /// The study's DESP placement from its graded fields.
    pub fn study(&self, fields: &[Field]) -> StudyGrade {
        let eyes = grade_eyes(fields);
        // Only unreadable fields: the generic rules say so. An eye outside
        // the domain is the programme's to place, with its reason.
        let graded = eyes.iter().any(|e| e.grade.is_gradable() || e.grade == Grade::OutOfDomain)
            || fields.iter().any(|f| f.grade.p_gradable > 0.0);
        let placed = graded.then(|| {
            let (outcome, score, reason) = study_outcome(&eyes, &self.outside, &self.finding);
            (self.bands[outcome as usize], score, reason)
        });
        let eye = |side: Laterality| {
            eyes.iter().find(|e| e.eye == side).map(|e| EyeOutcome { grade: e.grade, probs: e.probs })
        };
        StudyGrade { placed, right: eye(Laterality::Right), left: eye(Laterality::Left) }
    }
}
