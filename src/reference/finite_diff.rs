//! Central finite differences, the independent check of every analytic gradient.

/// Gradient of `f` at `x` by central differences with step `h`: (f(x + h e_i) - f(x - h e_i)) / 2h.
pub fn central_gradient(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + h;
            let up = f(&probe);
            probe[i] = x[i] - h;
            let down = f(&probe);
            probe[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn gradient_of_a_cubic() {
        let g = super::central_gradient(|x| x[0].powi(3) + 2.0 * x[0] * x[1], &[1.5, -0.5], 1e-5);
        assert!((g[0] - (3.0 * 1.5 * 1.5 - 1.0)).abs() < 1e-8);
        assert!((g[1] - 3.0).abs() < 1e-8);
    }
}
