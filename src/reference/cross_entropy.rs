//! Cross-entropy of rows of logits against target classes, from its definition: the mean over
//! the rows not ignored of log(sum_j exp(l_j)) - l_target, and its gradient.

use super::Real;

/// The mean loss over rows whose target is not `ignore_index` (0 where every row is ignored)
/// and dL/dlogits, for `logits` of rows of `classes`.
pub fn cross_entropy<T: Real>(
    logits: &[T],
    classes: usize,
    targets: &[i64],
    ignore_index: i64,
) -> (f64, Vec<T>) {
    let counted = targets.iter().filter(|&&t| t != ignore_index).count();
    let scale = T::of(1.0 / counted.max(1) as f64);
    let mut grad = vec![T::zero(); logits.len()];
    let mut total = T::zero();
    for (r, &target) in targets.iter().enumerate() {
        if target == ignore_index {
            continue;
        }
        let row = &logits[r * classes..(r + 1) * classes];
        let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let top = row
            .iter()
            .position(|&l| l == m)
            .expect("a row has a largest logit");
        // The largest logit's term is 1: ln(1 + the rest), which keeps a loss far below the
        // float's epsilon that ln(sum) would round to 0.
        let rest: T = (row.iter().enumerate())
            .filter(|&(j, _)| j != top)
            .map(|(_, &l)| (l - m).exp())
            .sum();
        let sum = T::one() + rest;
        total += rest.ln_1p() + (m - row[target as usize]);
        // The target's p - 1 as -(the other terms) / sum: 1 / sum - 1 rounds to 0 where the
        // target dominates by more than the float's epsilon (a logit gap over 37 in f64).
        let others: T = (row.iter().enumerate())
            .filter(|&(j, _)| j as i64 != target)
            .map(|(_, &l)| (l - m).exp())
            .sum();
        for (j, g) in grad[r * classes..(r + 1) * classes].iter_mut().enumerate() {
            let p = if j as i64 == target {
                -others / sum
            } else {
                (row[j] - m).exp() / sum
            };
            *g = p * scale;
        }
    }
    let mean = (total * scale).to_f64().expect("a float converts to f64");
    (mean, grad)
}
