//! Screening-accuracy figures: sensitivity, specificity, PPV and NPV with
//! Wilson intervals, and ROC curves with their AUC.
//!
//! Each follows scikit-learn's definition (`confusion_matrix`,
//! `roc_curve(drop_intermediate=False)`, `roc_auc_score`) and SciPy's
//! Wilson interval, so a programme board can check our numbers with the
//! tools its analysts already trust; `tests/evaluate.rs` compares them to
//! 1e-6. Undefined figures (no positives, say) are NaN, never a guess.

/// The two-sided 95 % normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// A proportion k / n with its 95 % Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Proportion {
    pub numerator: u64,
    pub denominator: u64,
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// k of n with the Wilson interval (NaN when n is 0), as
/// `scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`.
pub fn wilson(k: u64, n: u64) -> Proportion {
    if n == 0 {
        return Proportion { numerator: k, denominator: n, value: f64::NAN, lower: f64::NAN, upper: f64::NAN };
    }
    let (kf, nf) = (k as f64, n as f64);
    let p = kf / nf;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
    let half = Z95 / (1.0 + z2 / nf) * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    Proportion {
        numerator: k,
        denominator: n,
        value: p,
        lower: (centre - half).max(0.0),
        upper: (centre + half).min(1.0),
    }
}

/// Counts of a binary call against the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    pub true_positive: u64,
    pub false_positive: u64,
    pub true_negative: u64,
    pub false_negative: u64,
}

impl Confusion {
    /// Tallies `(called positive, truly positive)` pairs.
    pub fn tally(pairs: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let mut c = Self::default();
        for (called, truth) in pairs {
            match (called, truth) {
                (true, true) => c.true_positive += 1,
                (true, false) => c.false_positive += 1,
                (false, false) => c.true_negative += 1,
                (false, true) => c.false_negative += 1,
            }
        }
        c
    }

    pub fn sensitivity(&self) -> Proportion {
        wilson(self.true_positive, self.true_positive + self.false_negative)
    }

    pub fn specificity(&self) -> Proportion {
        wilson(self.true_negative, self.true_negative + self.false_positive)
    }

    /// Positive predictive value (precision).
    pub fn ppv(&self) -> Proportion {
        wilson(self.true_positive, self.true_positive + self.false_positive)
    }

    /// Negative predictive value.
    pub fn npv(&self) -> Proportion {
        wilson(self.true_negative, self.true_negative + self.false_negative)
    }
}

/// A ROC curve: one point per distinct score, from (0, 0) at an infinite
/// threshold down to (1, 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Roc {
    pub false_positive_rate: Vec<f64>,
    pub true_positive_rate: Vec<f64>,
    /// Score at or above which a case is called positive at each point.
    pub thresholds: Vec<f64>,
}

/// The ROC curve of `scores` against `positive`, as scikit-learn's
/// `roc_curve(drop_intermediate=False)`. NaN scores are not allowed (the
/// caller leaves ungraded cases out).
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Roc {
    let mut order: Vec<usize> = (0..scores.len().min(positive.len())).collect();
    // Descending by score; a stable sort keeps ties in input order, as
    // NumPy's mergesort does (ties are then merged into one point anyway).
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tps, mut fps, mut thresholds) = (vec![0.0], vec![0.0], vec![f64::INFINITY]);
    let (mut tp, mut fp) = (0.0, 0.0);
    for (i, &idx) in order.iter().enumerate() {
        if positive[idx] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(i + 1).is_none_or(|&next| scores[next] != scores[idx]);
        if last_of_tie {
            tps.push(tp);
            fps.push(fp);
            thresholds.push(scores[idx]);
        }
    }
    let rate = |counts: Vec<f64>, total: f64| {
        counts.into_iter().map(|c| if total > 0.0 { c / total } else { f64::NAN }).collect()
    };
    Roc { false_positive_rate: rate(fps, fp), true_positive_rate: rate(tps, tp), thresholds }
}

/// One row of the operating-point table: what calling "positive" at
/// `threshold` and above would mean.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    /// Share of cases called negative: those that would need no first
    /// human grade if the programme let the model clear them.
    pub workload_saved: f64,
}

/// The operating-point table, one row per distinct score, most lenient
/// last (the ROC curve's points without its infinite-threshold start).
pub fn operating_points(scores: &[f64], positive: &[bool]) -> Vec<OperatingPoint> {
    let roc = roc_curve(scores, positive);
    let n = scores.len().min(positive.len()) as f64;
    let positives = positive.iter().take(scores.len()).filter(|&&p| p).count() as f64;
    let negatives = n - positives;
    (1..roc.thresholds.len())
        .map(|i| {
            let (tpr, fpr) = (roc.true_positive_rate[i], roc.false_positive_rate[i]);
            // Called positive = true + false positives at this threshold.
            let called = tpr * positives + fpr * negatives;
            OperatingPoint {
                threshold: roc.thresholds[i],
                sensitivity: tpr,
                specificity: 1.0 - fpr,
                workload_saved: 1.0 - called / n,
            }
        })
        .collect()
}

/// Area under a curve by the trapezoidal rule (`sklearn.metrics.auc`).
pub fn area(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2).zip(y.windows(2)).map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0).sum()
}

/// `roc_auc_score`: NaN when either class is missing (scikit-learn raises).
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let roc = roc_curve(scores, positive);
    area(&roc.false_positive_rate, &roc.true_positive_rate)
}

/// An AUC with its percentile bootstrap 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AucInterval {
    pub auc: f64,
    pub lower: f64,
    pub upper: f64,
    /// Resamples that held both classes (the others have no AUC).
    pub resamples: usize,
}

/// The AUC with a percentile bootstrap interval over `resamples` resamples
/// of the cases, drawn with SplitMix64 from `seed` so the interval is the
/// same on every run (and reproducible outside nightscreen: see
/// tests/evaluate_reference.py). Percentiles interpolate linearly, as
/// NumPy's default does.
pub fn roc_auc_bootstrap(scores: &[f64], positive: &[bool], resamples: usize, seed: u64) -> AucInterval {
    let n = scores.len().min(positive.len());
    let mut rng = SplitMix64(seed);
    let mut aucs = Vec::with_capacity(resamples);
    let (mut s, mut p) = (vec![0.0; n], vec![false; n]);
    for _ in 0..resamples {
        for i in 0..n {
            let j = (rng.next() % n as u64) as usize;
            s[i] = scores[j];
            p[i] = positive[j];
        }
        let auc = roc_auc(&s, &p);
        if auc.is_finite() {
            aucs.push(auc);
        }
    }
    aucs.sort_by(f64::total_cmp);
    AucInterval {
        auc: roc_auc(scores, positive),
        lower: percentile(&aucs, 0.025),
        upper: percentile(&aucs, 0.975),
        resamples: aucs.len(),
    }
}

/// One bin of a reliability (calibration) diagram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub cases: u64,
    /// Mean predicted probability in the bin.
    pub mean_predicted: f64,
    /// Share of positives in the bin.
    pub observed: f64,
}

/// `sklearn.calibration.calibration_curve(strategy="uniform")`: `bins`
/// equal-width bins over [0, 1], a probability on an inner edge falling in
/// the lower bin; empty bins are left out, as scikit-learn leaves them out.
pub fn calibration(probabilities: &[f64], positive: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    // np.linspace(0, 1, bins + 1): edge i is i * (1 / bins), the last exactly 1.
    let step = 1.0 / bins as f64;
    let edge = |i: usize| if i == bins { 1.0 } else { i as f64 * step };
    let (mut sums, mut hits, mut totals) = (vec![0.0; bins], vec![0u64; bins], vec![0u64; bins]);
    for (&p, &y) in probabilities.iter().zip(positive) {
        // np.searchsorted(inner_edges, p, side="left"): inner edges below p.
        let bin = (1..bins).filter(|&i| edge(i) < p).count();
        sums[bin] += p;
        hits[bin] += u64::from(y);
        totals[bin] += 1;
    }
    (0..bins)
        .filter(|&i| totals[i] > 0)
        .map(|i| {
            let n = totals[i] as f64;
            CalibrationBin {
                lower: edge(i),
                upper: edge(i + 1),
                cases: totals[i],
                mean_predicted: sums[i] / n,
                observed: hits[i] as f64 / n,
            }
        })
        .collect()
}

/// Linear-interpolation percentile of sorted values (NaN when empty).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A tiny, well-known generator, so a reference implementation in any
/// language draws the same resamples.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_useless_scores_have_auc_one_and_a_half() {
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false]), 1.0);
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &[true, false, true, false]), 0.5);
        assert!(roc_auc(&[0.1, 0.2], &[true, true]).is_nan(), "no negatives, no AUC");
    }

    #[test]
    fn wilson_of_nothing_is_undefined_and_of_all_stays_below_one() {
        assert!(wilson(0, 0).value.is_nan());
        let all = wilson(20, 20);
        assert_eq!(all.value, 1.0);
        assert!(all.lower > 0.8 && all.lower < 1.0 && all.upper == 1.0, "{all:?}");
    }
}
