//! LayerNorm over the last axis in f64, biased variance:
//! y = (x - mean) / sqrt(var + eps) * w + b.

/// (mean, 1 / sqrt(var + eps)) of one row.
fn row_stats(x: &[f64], eps: f64) -> (f64, f64) {
    let width = x.len() as f64;
    let mean = x.iter().sum::<f64>() / width;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width;
    (mean, 1.0 / (var + eps).sqrt())
}

/// y for every row of x (rows of `w.len()` values).
pub fn layer_norm_forward(x: &[f64], w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
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
pub fn layer_norm_backward(
    x: &[f64],
    w: &[f64],
    eps: f64,
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let width = w.len();
    let mut dx = Vec::with_capacity(x.len());
    let mut dw = vec![0.0; width];
    let mut db = vec![0.0; width];
    for (row, dy_row) in x.chunks(width).zip(dy.chunks(width)) {
        let (mean, rstd) = row_stats(row, eps);
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * rstd).collect();
        let g: Vec<f64> = (0..width).map(|i| dy_row[i] * w[i]).collect();
        let mean_g = g.iter().sum::<f64>() / width as f64;
        let mean_gx = (0..width).map(|i| g[i] * xhat[i]).sum::<f64>() / width as f64;
        dx.extend((0..width).map(|i| rstd * (g[i] - mean_g - xhat[i] * mean_gx)));
        for i in 0..width {
            dw[i] += dy_row[i] * xhat[i];
            db[i] += dy_row[i];
        }
    }
    (dx, dw, db)
}
