//! A linear layer in f64 from the definition: y = x W^T (+ b), W stored `[out, in]`.

use super::Real;

/// y `[rows, out]` from x `[rows, inp]`, w `[out, inp]` and an optional bias `[out]`.
pub fn linear_forward<T: Real>(x: &[T], w: &[T], bias: Option<&[T]>, out: usize) -> Vec<T> {
    let inp = w.len() / out;
    let rows = x.len() / inp;
    let mut y = vec![T::zero(); rows * out];
    for r in 0..rows {
        for o in 0..out {
            let dot: T = (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum();
            y[r * out + o] = dot + bias.map_or(T::zero(), |b| b[o]);
        }
    }
    y
}

/// Gradients of a linear layer: (dx = dy W, dW = dy^T x, db = column sums of dy).
pub fn linear_backward<T: Real>(
    x: &[T],
    w: &[T],
    dy: &[T],
    out: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let inp = w.len() / out;
    let rows = x.len() / inp;
    let mut dx = vec![T::zero(); rows * inp];
    let mut dw = vec![T::zero(); out * inp];
    let mut db = vec![T::zero(); out];
    for r in 0..rows {
        for o in 0..out {
            let g = dy[r * out + o];
            db[o] += g;
            for i in 0..inp {
                dx[r * inp + i] += g * w[o * inp + i];
                dw[o * inp + i] += g * x[r * inp + i];
            }
        }
    }
    (dx, dw, db)
}
