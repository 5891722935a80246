//! Attention in f64 from the definitions, O(n^2) per head:
//!
//! ```text
//! s_ab = q_a . k_b / sqrt(d_qk)                  (causal: only b <= a)
//! exact: w_ab = exp(s_ab - max_b s_ab)   poly: w_ab = P_g(s_ab)
//! Z_a = sum_b w_ab,   o_a = sum_b w_ab v_b / Z_a
//! ```
//!
//! Backward, with delta_a = do_a . o_a:
//!
//! ```text
//! dL/dw_ab = (do_a . v_b - delta_a) / Z_a,   dL/ds_ab = dL/dw_ab * w'(s_ab)
//! dq_a = sum_b dL/ds_ab k_b / sqrt(d_qk),   dk_b = sum_a dL/ds_ab q_a / sqrt(d_qk)
//! dv_b = sum_a (w_ab / Z_a) do_a
//! ```
//!
//! with w' = w for exp and P_g' = P_{g-1}.
//!
//! do_a . v_b - delta_a is evaluated as do_a . (v_b - v_m) - do_a . (o_a - v_m), with m the
//! row's largest weight and o_a - v_m = sum_b w_ab (v_b - v_m) / Z_a: the same number, but where
//! a row is nearly one-hot the textbook form subtracts two nearly equal dot products, and even
//! f64 then keeps only a few digits of dq (measured: 6.5e-4 relative at |s| = 30, where the
//! second largest weight is 3e-13).

use crate::attention::{Attention, AttentionShape};
use crate::poly::taylor_exp;

use super::Real;

/// Gradients of one attention call, f64, in the layout of the inputs.
#[derive(Clone, Debug)]
pub struct AttentionGrads<T = f64> {
    /// dL/dq.
    pub dq: Vec<T>,
    /// dL/dk.
    pub dk: Vec<T>,
    /// dL/dv.
    pub dv: Vec<T>,
}

/// The scores of one head and the weights of each row, with their derivatives.
struct HeadWeights<T> {
    /// w[a][b] for the keys b row a sees.
    w: Vec<Vec<T>>,
    /// dw/ds at the same places.
    dw_ds: Vec<Vec<T>>,
    /// Z_a = sum_b w[a][b].
    z: Vec<T>,
}

fn head_weights<T: Real>(
    shape: &AttentionShape,
    attention: Attention,
    q: &[T],
    k: &[T],
) -> HeadWeights<T> {
    let (n, d) = (shape.seq_len, shape.d_qk);
    let scale = T::one() / T::of(d as f64).sqrt();
    let mut out = HeadWeights {
        w: Vec::new(),
        dw_ds: Vec::new(),
        z: Vec::new(),
    };
    for a in 0..n {
        let visible = if shape.causal { a + 1 } else { n };
        let s: Vec<T> = (0..visible)
            .map(|b| (0..d).map(|i| q[a * d + i] * k[b * d + i]).sum::<T>() * scale)
            .collect();
        let (w, dw_ds): (Vec<T>, Vec<T>) = match attention {
            Attention::Exact => {
                let max = s.iter().copied().fold(T::neg_infinity(), T::max);
                let w: Vec<T> = s.iter().map(|&x| (x - max).exp()).collect();
                (w.clone(), w)
            }
            Attention::Poly { degree } => s
                .iter()
                .map(|&x| (taylor_exp(x, degree), taylor_exp(x, degree - 1)))
                .unzip(),
        };
        out.z.push(w.iter().copied().sum());
        out.w.push(w);
        out.dw_ds.push(dw_ds);
    }
    out
}

/// Slices of head h of a `[B, H, n, d]` tensor.
fn head<T>(x: &[T], h: usize, n: usize, d: usize) -> &[T] {
    &x[h * n * d..(h + 1) * n * d]
}

/// The attention output o, `[B, H, n, d_v]`.
pub fn attention_forward<T: Real>(
    shape: &AttentionShape,
    attention: Attention,
    q: &[T],
    k: &[T],
    v: &[T],
) -> Vec<T> {
    let (n, dk, dv) = (shape.seq_len, shape.d_qk, shape.d_v);
    let mut o = vec![T::zero(); shape.total_heads() * n * dv];
    for h in 0..shape.total_heads() {
        let (qh, kh, vh) = (head(q, h, n, dk), head(k, h, n, dk), head(v, h, n, dv));
        let hw = head_weights(shape, attention, qh, kh);
        for a in 0..n {
            for (b, &w) in hw.w[a].iter().enumerate() {
                for j in 0..dv {
                    o[(h * n + a) * dv + j] += w * vh[b * dv + j] / hw.z[a];
                }
            }
        }
    }
    o
}

/// dq, dk, dv given the upstream gradient `d_o` = dL/do.
pub fn attention_backward<T: Real>(
    shape: &AttentionShape,
    attention: Attention,
    q: &[T],
    k: &[T],
    v: &[T],
    d_o: &[T],
) -> AttentionGrads<T> {
    let (n, dk, dv) = (shape.seq_len, shape.d_qk, shape.d_v);
    let scale = T::one() / T::of(dk as f64).sqrt();
    let mut grads = AttentionGrads {
        dq: vec![T::zero(); q.len()],
        dk: vec![T::zero(); k.len()],
        dv: vec![T::zero(); v.len()],
    };
    for h in 0..shape.total_heads() {
        let (qh, kh, vh) = (head(q, h, n, dk), head(k, h, n, dk), head(v, h, n, dv));
        let doh = head(d_o, h, n, dv);
        let hw = head_weights(shape, attention, qh, kh);
        for a in 0..n {
            let w = &hw.w[a];
            let m = (0..w.len()).fold(0, |m, b| if w[b] > w[m] { b } else { m });
            let do_dot_v_rel = |b: usize| -> T {
                (0..dv)
                    .map(|j| doh[a * dv + j] * (vh[b * dv + j] - vh[m * dv + j]))
                    .sum()
            };
            let delta_rel: T = (0..w.len()).map(|b| w[b] / hw.z[a] * do_dot_v_rel(b)).sum();
            for (b, &w) in hw.w[a].iter().enumerate() {
                let dl_dw = (do_dot_v_rel(b) - delta_rel) / hw.z[a];
                let dl_ds = dl_dw * hw.dw_ds[a][b];
                for i in 0..dk {
                    grads.dq[(h * n + a) * dk + i] += dl_ds * kh[b * dk + i] * scale;
                    grads.dk[(h * n + b) * dk + i] += dl_ds * qh[a * dk + i] * scale;
                }
                for j in 0..dv {
                    grads.dv[(h * n + b) * dv + j] += w / hw.z[a] * doh[a * dv + j];
                }
            }
        }
    }
    grads
}
