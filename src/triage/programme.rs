//! The programme seam: what a screening programme adds to the generic
//! rules. A programme grades its images, keeps what it needs of each study
//! while the book fills, and may place the study itself, leaving the
//! generic book to rank and explain. DESP is one; `Rules` adds nothing; a
//! chest-radiograph programme will be a third.

use serde::{Deserialize, Serialize};

use super::band::Band;
use super::desp::{self, DespGrader, EyeOutcome, ImageGrade};
use crate::message::Header;

/// The run's programme, from `[triage] mode`.
#[derive(Debug, Clone)]
pub enum Programme {
    /// The generic `[[triage.rules]]` alone.
    Rules,
    /// English Diabetic Eye Screening Programme grading (`[triage.desp]`).
    Desp(DespGrader),
}

/// What the programme keeps of one study until the worklist is ordered;
/// saved with the study book in each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum StudyEvidence {
    #[default]
    None,
    /// Every graded (or unreadable) field of the study.
    Desp(Vec<desp::Field>),
}

/// The programme's part of a study's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum StudyDetail {
    #[default]
    None,
    /// Each eye's DESP outcome, when the study had an image of it.
    Desp { right: Option<EyeOutcome>, left: Option<EyeOutcome> },
}

impl StudyDetail {
    /// The right and left eyes' outcomes (none outside DESP).
    pub fn eyes(&self) -> (Option<&EyeOutcome>, Option<&EyeOutcome>) {
        match self {
            Self::None => (None, None),
            Self::Desp { right, left } => (right.as_ref(), left.as_ref()),
        }
    }
}

/// Where a programme placed a study.
#[derive(Debug, Clone)]
pub struct Placement {
    pub band: Band,
    pub score: f32,
    pub reason: String,
}

impl Programme {
    /// One scored image's programme grade (DESP: the DR model's images).
    pub fn grade(&self, scored: &crate::message::Scored) -> Option<ImageGrade> {
        match self {
            Self::Rules => None,
            Self::Desp(grader) => {
                grader.grade(scored.model, &scored.outputs, scored.outside_domain(), scored.second_look.as_ref())
            }
        }
    }

    /// Records one image of a study.
    pub fn record_image(&self, evidence: &mut StudyEvidence, header: &Header, grade: Option<ImageGrade>) {
        let (Self::Desp(_), Some(grade)) = (self, grade) else { return };
        push_desp(evidence, desp::Field { eye: header.laterality, field: header.field, grade });
    }

    /// Records a file of the study that could not be read.
    pub fn record_unreadable(&self, evidence: &mut StudyEvidence, header: &Header) {
        // Under DESP an unreadable field counts as an ungradable one.
        if matches!(self, Self::Desp(_)) && header.laterality != crate::dicom::laterality::Laterality::Unknown {
            let field = desp::Field { eye: header.laterality, field: header.field, grade: ImageGrade::unreadable() };
            push_desp(evidence, field);
        }
    }

    /// The programme's placement of a study (`None`: the generic rules
    /// place it) and its detail for the outputs.
    pub fn place(&self, evidence: &StudyEvidence) -> (Option<Placement>, StudyDetail) {
        let Self::Desp(grader) = self else { return (None, StudyDetail::None) };
        let fields = match evidence {
            StudyEvidence::Desp(fields) => fields.as_slice(),
            StudyEvidence::None => &[],
        };
        let study = grader.study(fields);
        let placed = study.placed.map(|(band, score, reason)| Placement { band, score, reason });
        (placed, StudyDetail::Desp { right: study.right, left: study.left })
    }
}

fn push_desp(evidence: &mut StudyEvidence, field: desp::Field) {
    match evidence {
        StudyEvidence::Desp(fields) => fields.push(field),
        StudyEvidence::None => *evidence = StudyEvidence::Desp(vec![field]),
    }
}
