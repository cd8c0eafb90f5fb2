//! Choosing one encoding per weight: for a price `λ` of predicted KL in bytes, each weight
//! takes the encoding with the least `bytes + λ · sensitivity · distortion` (a Lagrangian
//! relaxation of "fewest bytes within a predicted KL", whose solutions trace the lower convex
//! hull of the rate–distortion curve); `λ` is then bisected to meet a predicted KL or a byte
//! budget.

use super::candidates::Choices;

/// A choice of one encoding (index into its options) per weight, with its totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// Per weight, the index of the chosen option.
    pub chosen: Vec<usize>,
    /// Stored bytes of the chosen encodings.
    pub bytes: usize,
    /// Predicted KL: the sum of each weight's sensitivity x distortion.
    pub predicted_kl: f64,
}

/// The predicted model-level KL and bytes of each option, per weight.
pub struct Costs {
    /// Per weight, per option: (bytes, predicted KL it adds).
    options: Vec<Vec<(usize, f64)>>,
}

/// Bisection steps on `log λ`: enough for the choice to stop changing.
const STEPS: usize = 80;
/// The range of `λ` searched (bytes per nat of KL).
const LAMBDA: (f64, f64) = (1e-3, 1e18);

impl Costs {
    /// The costs of `choices` with `sensitivity[w]` (KL per unit of distortion) per weight.
    pub fn new(choices: &[Choices], sensitivity: &[f64]) -> Self {
        let options = choices
            .iter()
            .zip(sensitivity)
            .map(|(c, &s)| c.options.iter().map(|o| (o.encoded.stats.bytes, s * o.distortion)).collect())
            .collect();
        Costs { options }
    }

    /// The assignment of given option indices.
    pub fn assignment(&self, chosen: Vec<usize>) -> Assignment {
        let (mut bytes, mut predicted_kl) = (0, 0.0);
        for (opts, &i) in self.options.iter().zip(&chosen) {
            bytes += opts[i].0;
            predicted_kl += opts[i].1;
        }
        Assignment { chosen, bytes, predicted_kl }
    }

    /// Every weight at its option `pick` chooses from its (bytes, KL) list.
    fn each(&self, pick: impl Fn(&[(usize, f64)]) -> usize) -> Assignment {
        self.assignment(self.options.iter().map(|o| pick(o)).collect())
    }

    /// The Lagrangian choice at price `lambda`.
    pub fn at_price(&self, lambda: f64) -> Assignment {
        self.each(|opts| {
            let cost = |&(b, kl): &(usize, f64)| b as f64 + lambda * kl;
            (0..opts.len()).min_by(|&a, &b| cost(&opts[a]).total_cmp(&cost(&opts[b]))).unwrap_or(0)
        })
    }

    /// The cheapest assignment whose predicted KL is at most `kl` (the most accurate one if
    /// none is): the hull point within it, then the KL it leaves over spent greedily on the
    /// narrowings that save the most bytes per predicted KL added (one large weight, such as
    /// an embedding table, makes the hull jump and leave much of the budget unused).
    pub fn within_kl(&self, kl: f64) -> Assignment {
        let hull = self.bisect(|a| a.predicted_kl <= kl);
        self.greedy(hull, |a, (b0, kl0), (b, k)| {
            (b < b0 && a.predicted_kl + (k - kl0) <= kl).then(|| (b0 - b) as f64 / (k - kl0).max(1e-300))
        })
    }

    /// The most accurate assignment within `bytes` (the smallest one if none is): the hull
    /// point within the budget, then the rest of the budget spent greedily on the upgrades
    /// that remove the most predicted KL per byte.
    pub fn within_bytes(&self, bytes: usize) -> Assignment {
        let hull = self.hull_within_bytes(bytes);
        self.greedy(hull, |a, (b0, kl0), (b, k)| {
            (b > b0 && b - b0 <= bytes.saturating_sub(a.bytes) && k < kl0).then(|| (kl0 - k) / (b - b0) as f64)
        })
    }

    /// Moves one weight at a time from `a` to the option `rate` rates highest (`rate` sees the
    /// assignment, the weight's current option and the candidate, as (bytes, predicted KL),
    /// and gives `None` for a move not allowed), until no move is allowed.
    fn greedy(&self, mut a: Assignment, rate: impl Fn(&Assignment, (usize, f64), (usize, f64)) -> Option<f64>) -> Assignment {
        loop {
            let mut best: Option<(usize, usize, f64)> = None;
            for (w, opts) in self.options.iter().enumerate() {
                let current = opts[a.chosen[w]];
                for (i, &option) in opts.iter().enumerate() {
                    if let Some(r) = rate(&a, current, option) {
                        if best.is_none_or(|(_, _, top)| r > top) {
                            best = Some((w, i, r));
                        }
                    }
                }
            }
            let Some((w, i, _)) = best else { return a };
            let mut chosen = a.chosen;
            chosen[w] = i;
            a = self.assignment(chosen);
        }
    }

    /// The most accurate assignment on the hull within `bytes` (the smallest one if none is).
    fn hull_within_bytes(&self, bytes: usize) -> Assignment {
        let smallest = self.at_price(LAMBDA.0);
        if smallest.bytes > bytes {
            return smallest;
        }
        // Bytes grow with the price: the largest price still within the budget.
        let (mut lo, mut hi) = (LAMBDA.0.ln(), LAMBDA.1.ln());
        let mut best = smallest;
        for _ in 0..STEPS {
            let mid = (lo + hi) / 2.0;
            let a = self.at_price(mid.exp());
            if a.bytes <= bytes {
                lo = mid;
                best = a;
            } else {
                hi = mid;
            }
        }
        best
    }

    /// The assignment at the smallest price that satisfies `ok` (predicted KL falls as the
    /// price rises); the highest-price one if none does.
    fn bisect(&self, ok: impl Fn(&Assignment) -> bool) -> Assignment {
        let mut best = self.at_price(LAMBDA.1);
        if !ok(&best) {
            return best;
        }
        let (mut lo, mut hi) = (LAMBDA.0.ln(), LAMBDA.1.ln());
        for _ in 0..STEPS {
            let mid = (lo + hi) / 2.0;
            let a = self.at_price(mid.exp());
            if ok(&a) {
                hi = mid;
                best = a;
            } else {
                lo = mid;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::Costs;

    fn costs() -> Costs {
        // Two weights; the second is ten times as sensitive.
        Costs {
            options: vec![
                vec![(100, 0.08), (200, 0.02), (400, 0.001)],
                vec![(100, 0.8), (200, 0.2), (400, 0.01)],
            ],
        }
    }

    #[test]
    fn the_sensitive_weight_gets_the_bits_first() {
        let a = costs().within_kl(0.3);
        assert_eq!(a.chosen, vec![0, 1]);
        assert!(a.predicted_kl <= 0.3 && a.bytes == 300);
        let b = costs().within_kl(0.05);
        assert_eq!(b.chosen, vec![1, 2]);
    }

    #[test]
    fn a_byte_budget_buys_the_least_predicted_kl() {
        assert_eq!(costs().within_bytes(300).chosen, vec![0, 1]);
        assert_eq!(costs().within_bytes(800).chosen, vec![2, 2]);
        // Below the smallest assignment: the smallest one.
        assert_eq!(costs().within_bytes(10).chosen, vec![0, 0]);
    }

    #[test]
    fn the_budget_left_over_by_the_hull_is_spent_on_the_best_upgrade() {
        // The hull jumps from 300 to 500 bytes; within 450 the first weight takes its middle option.
        let a = costs().within_bytes(450);
        assert_eq!(a.chosen, vec![1, 1]);
        assert_eq!(a.bytes, 400);
    }

    #[test]
    fn the_kl_left_over_by_the_hull_is_spent_on_the_narrowings_that_save_most() {
        // A large weight whose only narrowing costs more than the budget makes the hull keep
        // everything wide; the small weight then narrows twice within the budget.
        let costs = Costs { options: vec![vec![(500, 0.05), (1000, 0.0)], vec![(10, 0.02), (50, 0.01), (100, 0.001)]] };
        assert_eq!(costs.bisect(|a| a.predicted_kl <= 0.03).chosen, vec![1, 2]);
        let a = costs.within_kl(0.03);
        assert_eq!(a.chosen, vec![1, 0]);
        assert_eq!(a.bytes, 1010);
        assert!(a.predicted_kl <= 0.03);
    }

    #[test]
    fn an_unreachable_kl_gives_the_most_accurate_choice() {
        let a = costs().within_kl(1e-9);
        assert_eq!(a.chosen, vec![2, 2]);
    }
}
