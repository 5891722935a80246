//! The matrix product in f64 from its definition, for checking ops::matmul:
//! `C[b] = alpha op(A[b]) op(B[b]) (+ C[b]) (+ bias)`, with the same strided layouts.

use crate::ops::matmul::{Layout, Shape};

/// op(A)[row, col] of matrix `batch` of a tensor stored as the layout says.
fn op_at(
    x: &[f64],
    trans: bool,
    ld: usize,
    stride: usize,
    batch: usize,
    row: usize,
    col: usize,
) -> f64 {
    let (r, c) = if trans { (col, row) } else { (row, col) };
    x[batch * stride + r * ld + c]
}

/// C after the product: `c` holds its old value (read when `add_into_c`) and is returned
/// updated; elements outside the batch's m x n matrices keep their values.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    shape: &Shape,
    layout: &Layout,
    alpha: f64,
    add_into_c: bool,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c: &[f64],
) -> Vec<f64> {
    let l = layout;
    let mut out = c.to_vec();
    for batch in 0..shape.batch {
        for i in 0..shape.m {
            for j in 0..shape.n {
                let dot: f64 = (0..shape.k)
                    .map(|p| {
                        op_at(a, l.trans_a, l.lda, l.stride_a, batch, i, p)
                            * op_at(b, l.trans_b, l.ldb, l.stride_b, batch, p, j)
                    })
                    .sum();
                let at = batch * l.stride_c
                    + if l.trans_c {
                        j * l.ldc + i
                    } else {
                        i * l.ldc + j
                    };
                let old = if add_into_c { c[at] } else { 0.0 };
                out[at] = old + alpha * dot + bias.map_or(0.0, |bias| bias[j]);
            }
        }
    }
    out
}
