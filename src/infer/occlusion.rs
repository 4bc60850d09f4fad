//! Occlusion sensitivity: which parts of the image the score depends on,
//! for models whose card asks for it (`[explain]`, see
//! [`crate::model::ExplainSpec`]).
//!
//! Model-agnostic and honest: it measures the model's own output with parts
//! of the input hidden, rather than a gradient the graph may not expose.
//! Blanking sets a cell to 0 in the normalised tensor, the training mean.

use crate::message::Attention;
use crate::model::{ExplainRule, ExplainWhen, Layout, ModelCard};

/// One rule resolved to label indices.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The label names, joined with "+", for the map's caption.
    explains: String,
    labels: Vec<usize>,
    at_least: f32,
}

impl Trigger {
    fn new(card: &ModelCard, rule: &ExplainRule) -> Self {
        Self {
            explains: rule.labels.join("+"),
            labels: rule.labels.iter().filter_map(|l| card.label_index(l)).collect(),
            at_least: rule.at_least,
        }
    }

    /// The summed probability of the labels.
    fn score(&self, outputs: &[f32]) -> f32 {
        self.labels.iter().filter_map(|&i| outputs.get(i)).sum()
    }

    fn holds(&self, outputs: &[f32]) -> bool {
        self.score(outputs) >= self.at_least
    }
}

/// A card's explanation settings resolved to label indices.
#[derive(Debug, Clone)]
pub struct Occlusion {
    grid: usize,
    any_of: Vec<Trigger>,
    only_if: Option<Trigger>,
}

impl Occlusion {
    /// `None` when the card declares no explanation. `when` (a programme's
    /// referral rules) replaces the card's own rule when given.
    pub fn new(card: &ModelCard, when: Option<&ExplainWhen>) -> Option<Self> {
        let spec = card.explain.as_ref()?;
        let own = spec.when();
        let when = when.unwrap_or(&own);
        Some(Self {
            grid: spec.grid,
            any_of: when.any_of.iter().map(|r| Trigger::new(card, r)).collect(),
            only_if: when.only_if.as_ref().map(|r| Trigger::new(card, r)),
        })
    }

    /// The rule an image scoring `outputs` is explained by, if it is worth
    /// its grid² inferences.
    pub fn wants(&self, outputs: &[f32]) -> Option<&Trigger> {
        if self.only_if.as_ref().is_some_and(|t| !t.holds(outputs)) {
            return None;
        }
        self.any_of.iter().find(|t| t.holds(outputs))
    }

    /// One copy of `tensor` per grid cell, row by row, with that cell
    /// blanked. `shape` is the per-image shape in `layout` (CHW or HWC).
    pub fn occluded(&self, tensor: &[f32], layout: Layout, shape: [usize; 3]) -> Vec<Vec<f32>> {
        let (channels, height, width) = match layout {
            Layout::NCHW => (shape[0], shape[1], shape[2]),
            Layout::NHWC => (shape[2], shape[0], shape[1]),
        };
        let span = |i: usize, n: usize| (i * n / self.grid, (i + 1) * n / self.grid);
        let mut copies = Vec::with_capacity(self.grid * self.grid);
        for row in 0..self.grid {
            let (y0, y1) = span(row, height);
            for col in 0..self.grid {
                let (x0, x1) = span(col, width);
                let mut copy = tensor.to_vec();
                for y in y0..y1 {
                    for x in x0..x1 {
                        for c in 0..channels {
                            let at = match layout {
                                Layout::NCHW => (c * height + y) * width + x,
                                Layout::NHWC => (y * width + x) * channels + c,
                            };
                            if let Some(v) = copy.get_mut(at) {
                                *v = 0.0;
                            }
                        }
                    }
                }
                copies.push(copy);
            }
        }
        copies
    }

    /// The map from the image's own outputs and each occluded copy's: a
    /// cell's weight is the fall of the picked rule's score when it is
    /// hidden (never below 0; a rise means the cell argued against it).
    pub fn attention(&self, trigger: &Trigger, outputs: &[f32], occluded: &[Vec<f32>]) -> Attention {
        let base = trigger.score(outputs);
        let cells = occluded.iter().map(|o| (base - trigger.score(o)).max(0.0)).collect();
        Attention { explains: trigger.explains.clone(), grid: self.grid, score: base, cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(explains: &str, labels: Vec<usize>, at_least: f32) -> Trigger {
        Trigger { explains: explains.into(), labels, at_least }
    }

    fn occlusion(grid: usize) -> Occlusion {
        Occlusion { grid, any_of: vec![trigger("b+c", vec![1, 2], 0.5)], only_if: None }
    }

    #[test]
    fn each_copy_blanks_exactly_its_cell_in_either_layout() {
        let (c, h, w) = (3, 4, 6);
        let ones = vec![1.0; c * h * w];
        for (layout, shape) in [(Layout::NCHW, [c, h, w]), (Layout::NHWC, [h, w, c])] {
            let copies = occlusion(2).occluded(&ones, layout, shape);
            assert_eq!(copies.len(), 4);
            for copy in &copies {
                assert_eq!(copy.iter().filter(|v| **v == 0.0).count(), c * h * w / 4, "{layout:?}");
            }
            // Cell (row 1, col 0) of NCHW channel 0: y 2..4, x 0..3.
            if layout == Layout::NCHW {
                assert_eq!(copies[2][2 * w], 0.0);
                assert_eq!(copies[2][2 * w + 3], 1.0);
                assert_eq!(copies[2][0], 1.0);
            }
        }
    }

    #[test]
    fn weights_are_the_fall_in_the_summed_score() {
        let o = occlusion(2);
        assert!(o.wants(&[0.1, 0.3, 0.3]).is_some() && o.wants(&[0.9, 0.05, 0.05]).is_none());
        let map = o.attention(
            &o.any_of[0],
            &[0.0, 0.4, 0.4],
            &[vec![0.0, 0.1, 0.1], vec![0.0, 0.4, 0.4], vec![0.0, 0.5, 0.5], vec![0.0, 0.2, 0.4]],
        );
        let expected = [0.6, 0.0, 0.0, 0.2];
        assert_eq!(map.grid, 2);
        for (a, b) in map.cells.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{:?}", map.cells);
        }
    }

    #[test]
    fn the_first_rule_that_holds_picks_the_map_and_only_if_gates_them_all() {
        let o = Occlusion {
            grid: 2,
            any_of: vec![trigger("c", vec![2], 0.3), trigger("b+c", vec![1, 2], 0.4)],
            only_if: Some(trigger("a", vec![0], 0.5)),
        };
        let picked = |outputs: &[f32]| o.wants(outputs).map(|t| t.explains.clone());
        assert_eq!(picked(&[0.9, 0.1, 0.35]).as_deref(), Some("c"));
        assert_eq!(picked(&[0.9, 0.2, 0.25]).as_deref(), Some("b+c"));
        assert_eq!(picked(&[0.9, 0.1, 0.1]), None);
        assert_eq!(picked(&[0.4, 0.1, 0.9]), None, "only_if fails");
        let trigger = o.wants(&[0.9, 0.2, 0.25]).expect("picked");
        let map = o.attention(trigger, &[0.9, 0.2, 0.25], &vec![vec![0.9, 0.1, 0.05]; 4]);
        assert_eq!(map.explains, "b+c");
        assert!((map.score - 0.45).abs() < 1e-6 && (map.cells[0] - 0.3).abs() < 1e-6);
    }
}
