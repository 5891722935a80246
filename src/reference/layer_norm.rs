//! LayerNorm over the last axis in f64, biased variance:
//! y = (x - mean) / sqrt(var + eps) * w + b.

use super::Real;

/// (mean, 1 / sqrt(var + eps)) of one row.
fn row_stats<T: Real>(x: &[T], eps: f64) -> (T, T) {
    let width = T::of(x.len() as f64);
    let mean = x.iter().copied().sum::<T>() / width;
    let var = x.iter().map(|&v| (v - mean).powi(2)).sum::<T>() / width;
    (mean, T::one() / (var + T::of(eps)).sqrt())
}

/// y for every row of x (rows of `w.len()` values).
pub fn layer_norm_forward<T: Real>(x: &[T], w: &[T], b: &[T], eps: f64) -> Vec<T> {
    let width = w.len();
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(width) {
        let (mean, rstd) = row_stats(row, eps);
        y.extend((0..width).map(|i| (row[i] - mean) * rstd * w[i] + b[i]));
    }
    y
}

/// (dx, dw, db) given dy. With xhat = (x - mean) rstd and g = dy w:
/// dx = rstd (g - mean(g) - xhat mean(g xhat)).
pub fn layer_norm_backward<T: Real>(
    x: &[T],
    w: &[T],
    eps: f64,
    dy: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let width = w.len();
    let count = T::of(width as f64);
    let mut dx = Vec::with_capacity(x.len());
    let mut dw = vec![T::zero(); width];
    let mut db = vec![T::zero(); width];
    for (row, dy_row) in x.chunks(width).zip(dy.chunks(width)) {
        let (mean, rstd) = row_stats(row, eps);
        let xhat: Vec<T> = row.iter().map(|&v| (v - mean) * rstd).collect();
        let g: Vec<T> = (0..width).map(|i| dy_row[i] * w[i]).collect();
        let mean_g = g.iter().copied().sum::<T>() / count;
        let mean_gx = (0..width).map(|i| g[i] * xhat[i]).sum::<T>() / count;
        dx.extend((0..width).map(|i| rstd * (g[i] - mean_g - xhat[i] * mean_gx)));
        for i in 0..width {
            dw[i] += dy_row[i] * xhat[i];
            db[i] += dy_row[i];
        }
    }
    (dx, dw, db)
}
