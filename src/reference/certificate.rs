//! The certificate's inputs in f64, from the definition: per head, R = max_a |q_a| max_b |k_b|
//! / sqrt(d_qk) and max |v| (shared/DESIGN.md §3).

use crate::attention::AttentionShape;
use crate::ops::certificate::HeadBound;

/// Each head's certified logit bound from q, k and v.
pub fn head_bounds(shape: &AttentionShape, q: &[f64], k: &[f64], v: &[f64]) -> Vec<HeadBound> {
    let (n, dk, dv) = (shape.seq_len, shape.d_qk, shape.d_v);
    let largest_norm = |x: &[f64]| {
        x.chunks(dk)
            .map(|row| row.iter().map(|a| a * a).sum::<f64>().sqrt())
            .fold(0.0, f64::max)
    };
    (0..shape.total_heads())
        .map(|h| {
            let (qh, kh) = (
                &q[h * n * dk..(h + 1) * n * dk],
                &k[h * n * dk..(h + 1) * n * dk],
            );
            let vh = &v[h * n * dv..(h + 1) * n * dv];
            HeadBound {
                logit_bound: largest_norm(qh) * largest_norm(kh) / (dk as f64).sqrt(),
                max_abs_v: vh.iter().fold(0.0, |m: f64, x| m.max(x.abs())),
            }
        })
        .collect()
}
