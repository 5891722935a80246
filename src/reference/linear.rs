//! A linear layer in f64 from the definition: y = x W^T (+ b), W stored `[out, in]`.

/// y `[rows, out]` from x `[rows, inp]`, w `[out, inp]` and an optional bias `[out]`.
pub fn linear_forward(x: &[f64], w: &[f64], bias: Option<&[f64]>, out: usize) -> Vec<f64> {
    let inp = w.len() / out;
    let rows = x.len() / inp;
    let mut y = vec![0.0; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let dot: f64 = (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum();
            y[r * out + o] = dot + bias.map_or(0.0, |b| b[o]);
        }
    }
    y
}

/// Gradients of a linear layer: (dx = dy W, dW = dy^T x, db = column sums of dy).
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    out: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let inp = w.len() / out;
    let rows = x.len() / inp;
    let mut dx = vec![0.0; rows * inp];
    let mut dw = vec![0.0; out * inp];
    let mut db = vec![0.0; out];
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
