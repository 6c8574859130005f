//! How a zcopy bench turns repeated measurements into a verdict: one rule
//! for the goals measured in rounds or runs (the IPC bench's paired
//! rounds, the RDMA bench, the pipeline, the card's engine), so that a
//! short run gives the verdict a long one gives, or none.
//!
//! A goal is judged on the interval between the lower and the upper
//! quartile of its runs (by nearest rank: with 3 runs the lowest and the
//! highest, with 5 the second and the fourth, with 9 the third and the
//! seventh). It is met when the whole interval meets it, not met when none
//! of it does, and otherwise there is no verdict: the runs fall on both
//! sides, and the spread between them, not the code, decides. Fewer than
//! [`MIN_RUNS`] runs give no verdict either.

/// Runs (or paired rounds) a verdict needs; fewer give their figures and
/// no verdict.
pub const MIN_RUNS: usize = 3;

/// The lower and the upper quartile of `v` by nearest rank (`None` when
/// `v` is empty): more runs drop more of the outliers at both ends.
pub fn quartiles(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let k = (v.len() - 1) / 4;
    Some((v[k], v[v.len() - 1 - k]))
}

/// What the runs say about a goal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The whole interval meets the goal.
    Met,
    /// None of the interval meets it.
    NotMet,
    /// The interval (lower, upper) lies on both sides of the goal.
    Straddles(f64, f64),
    /// Only this many runs, fewer than [`MIN_RUNS`].
    TooFew(usize),
}

impl Verdict {
    /// `Some(true)` met, `Some(false)` not met, `None` no verdict.
    pub fn met(self) -> Option<bool> {
        match self {
            Verdict::Met => Some(true),
            Verdict::NotMet => Some(false),
            Verdict::Straddles(..) | Verdict::TooFew(_) => None,
        }
    }

    /// The verdict on two parts of one goal, both of which must be met:
    /// not met when either is not, met when both are, else no verdict
    /// (the first part's reason when it has one).
    pub fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::NotMet, _) | (_, Verdict::NotMet) => Verdict::NotMet,
            (Verdict::Met, v) | (v, Verdict::Met) => v,
            (v, _) => v,
        }
    }
}

/// Judges `runs` runs whose figure lies in `interval` (lower, upper)
/// against a goal that `ok` says a figure meets; `ok` must be a threshold
/// (every figure on one side of it meets the goal).
pub fn judge_interval(runs: usize, interval: (f64, f64), ok: impl Fn(f64) -> bool) -> Verdict {
    let (lo, hi) = interval;
    if runs < MIN_RUNS {
        Verdict::TooFew(runs)
    } else if ok(lo) && ok(hi) {
        Verdict::Met
    } else if !ok(lo) && !ok(hi) {
        Verdict::NotMet
    } else {
        Verdict::Straddles(lo, hi)
    }
}

/// Judges the figures of paired rounds (each one round's ratio, say) on
/// their quartiles, as [`judge_interval`] says.
pub fn judge(figures: &[f64], ok: impl Fn(f64) -> bool) -> Verdict {
    match quartiles(figures) {
        Some(q) => judge_interval(figures.len(), q, ok),
        None => Verdict::TooFew(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_by_nearest_rank() {
        assert_eq!(quartiles(&[]), None);
        assert_eq!(quartiles(&[2.0]), Some((2.0, 2.0)));
        assert_eq!(quartiles(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
        assert_eq!(quartiles(&[5.0, 1.0, 4.0, 2.0, 3.0]), Some((2.0, 4.0)));
        let nine: Vec<f64> = (1..=9).rev().map(f64::from).collect();
        assert_eq!(quartiles(&nine), Some((3.0, 7.0)));
    }

    #[test]
    fn a_verdict_needs_the_whole_interval_on_one_side() {
        let at_most = |r: f64| r <= 1.5;
        assert_eq!(judge(&[1.2, 1.4, 1.3], at_most), Verdict::Met);
        assert_eq!(judge(&[1.6, 1.9, 1.7], at_most), Verdict::NotMet);
        // A median that meets it is not enough: the runs straddle it.
        assert_eq!(
            judge(&[1.42, 1.45, 1.55], at_most),
            Verdict::Straddles(1.42, 1.55)
        );
        // Nine rounds: one outlier at each end does not decide.
        let nine = [1.2, 1.3, 1.3, 1.3, 1.4, 1.4, 1.4, 1.45, 2.0];
        assert_eq!(judge(&nine, at_most), Verdict::Met);
        assert_eq!(judge(&[1.0, 1.0], at_most), Verdict::TooFew(2));
        assert_eq!(judge(&[], at_most), Verdict::TooFew(0));
    }

    #[test]
    fn both_parts_of_a_goal() {
        let s = Verdict::Straddles(0.3, 0.4);
        assert_eq!(Verdict::Met.and(Verdict::Met), Verdict::Met);
        assert_eq!(Verdict::Met.and(Verdict::NotMet), Verdict::NotMet);
        assert_eq!(s.and(Verdict::NotMet), Verdict::NotMet);
        assert_eq!(Verdict::Met.and(s), s);
        assert_eq!(s.and(Verdict::TooFew(1)), s);
        assert_eq!(Verdict::TooFew(1).and(s), Verdict::TooFew(1));
        assert_eq!(Verdict::Met.met(), Some(true));
        assert_eq!(Verdict::NotMet.met(), Some(false));
        assert_eq!(s.met(), None);
    }
}
