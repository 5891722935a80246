//! The polynomial algebra behind polynomial attention: Taylor coefficients of exp, the
//! monomials of the feature map phi, the feature dimension, and the error bound of
//! shared/DESIGN.md §3.
//!
//! phi(u)_alpha = u^alpha / sqrt(alpha!) for every multi-index alpha with |alpha| <= g, so that
//! phi(u) . phi(w) = sum_{i <= g} (u . w)^i / i! = P_g(u . w) by the multinomial theorem.

use crate::error::{Error, Result};

/// The degrees polygrad accepts. Even degrees keep P_g positive on the whole real line, so the
/// attention normaliser never vanishes; 8 is where the feature dimension stops being useful.
pub const SUPPORTED_DEGREES: [u32; 4] = [2, 4, 6, 8];

/// Largest query/key width per head the feature kernels handle (their private row arrays).
pub const MAX_D_QK: usize = 64;

/// Checks that `degree` is one polygrad supports, with an error saying why not.
pub fn check_degree(degree: u32) -> Result<()> {
    if degree % 2 == 1 {
        return Err(Error::InvalidDegree {
            degree,
            reason: "an odd Taylor polynomial of exp has a real root, so the attention \
                     normaliser can vanish; use an even degree (2, 4, 6 or 8)"
                .into(),
        });
    }
    if !SUPPORTED_DEGREES.contains(&degree) {
        return Err(Error::InvalidDegree {
            degree,
            reason: format!("supported degrees are {SUPPORTED_DEGREES:?}"),
        });
    }
    Ok(())
}

/// P_g(s) = sum_{i=0..g} s^i / i!, the degree-g Taylor polynomial of exp at 0 (Horner form).
pub fn taylor_exp<T: num_traits::Float>(s: T, degree: u32) -> T {
    let mut acc = T::one();
    for i in (1..=degree).rev() {
        acc = T::one() + acc * s / T::from(i).expect("a degree is a small integer");
    }
    acc
}

/// The rounding floor added to every certified bound: f32 arithmetic after its reductions is
/// about this far from exact even where the mathematics is (shared/DESIGN.md §3).
pub const ROUNDING_FLOOR: f64 = 1e-6;

/// The feature dimension C(d + g, g): the number of monomials of degree <= g in d variables.
/// `None` when it does not fit in a `usize`.
pub fn feature_dim(d: usize, degree: u32) -> Option<usize> {
    // C(d + g, g) = prod_{i=1..g} (d + i) / i, exact at every step.
    let mut c: usize = 1;
    for i in 1..=degree as usize {
        c = c.checked_mul(d + i)? / i;
    }
    Some(c)
}

/// Every monomial of degree <= g in `d` variables, as the sorted list of its variables with
/// repetition (x0^2 x3 is [0, 0, 3]), in graded order: the constant first, then degree 1, ...
pub fn monomials(d: usize, degree: u32) -> Vec<Vec<u32>> {
    let mut all = vec![Vec::new()];
    let mut previous_degree = vec![Vec::new()];
    for _ in 0..degree {
        let mut next = Vec::new();
        for m in &previous_degree {
            let first_var = m.last().copied().unwrap_or(0);
            for var in first_var..d as u32 {
                let mut grown = m.clone();
                grown.push(var);
                next.push(grown);
            }
        }
        all.extend(next.iter().cloned());
        previous_degree = next;
    }
    all
}

/// 1 / sqrt(alpha!) for the monomial given by its sorted variable list.
pub fn monomial_coefficient(vars: &[u32]) -> f64 {
    let mut alpha_factorial = 1.0;
    let mut run = 0;
    for (i, v) in vars.iter().enumerate() {
        run = if i > 0 && vars[i - 1] == *v {
            run + 1
        } else {
            1
        };
        alpha_factorial *= run as f64;
    }
    1.0 / alpha_factorial.sqrt()
}

/// phi(u) in f64, in the order of [`monomials`].
pub fn phi(u: &[f64], degree: u32) -> Vec<f64> {
    monomials(u.len(), degree)
        .iter()
        .map(|m| monomial_coefficient(m) * m.iter().map(|&v| u[v as usize]).product::<f64>())
        .collect()
}

/// eps = e^R R^(g+1) / (g+1)!: for |s| <= R, |P_g(s) - e^s| <= eps e^s (Taylor remainder).
pub fn taylor_relative_error_bound(max_abs_logit: f64, degree: u32) -> f64 {
    let r = max_abs_logit;
    let mut bound = r.exp();
    for i in 1..=(degree + 1) {
        bound *= r / i as f64;
    }
    bound
}

/// Bound on |o_a(poly) - o_a(exact)| per element: each row's weights move by at most a factor
/// 2 eps / (1 - eps), so the output moves by at most that times max_b |v_b|. Infinite when
/// eps >= 1, where the approximation promises nothing.
pub fn output_error_bound(max_abs_logit: f64, degree: u32, max_abs_value: f64) -> f64 {
    let eps = taylor_relative_error_bound(max_abs_logit, degree);
    if eps >= 1.0 {
        return f64::INFINITY;
    }
    2.0 * eps / (1.0 - eps) * max_abs_value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_dim_matches_design_examples() {
        assert_eq!(feature_dim(16, 2), Some(153));
        assert_eq!(feature_dim(16, 4), Some(4845));
        assert_eq!(feature_dim(1, 2), Some(3));
        for d in 1..8 {
            for g in [2, 4, 6] {
                assert_eq!(monomials(d, g).len(), feature_dim(d, g).unwrap());
            }
        }
    }

    #[test]
    fn coefficients_are_inverse_sqrt_multinomial_factorials() {
        assert_eq!(monomial_coefficient(&[]), 1.0);
        assert_eq!(monomial_coefficient(&[3]), 1.0);
        assert!((monomial_coefficient(&[0, 0, 2]) - 1.0 / 2f64.sqrt()).abs() < 1e-15);
        assert!((monomial_coefficient(&[1, 1, 1, 4, 4]) - 1.0 / 12f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn odd_and_unsupported_degrees_are_refused() {
        assert!(check_degree(3).unwrap_err().to_string().contains("odd"));
        assert!(check_degree(10).is_err());
        assert!(check_degree(0).is_err());
        assert!(check_degree(4).is_ok());
    }

    #[test]
    fn taylor_bound_covers_the_actual_error() {
        for g in [2, 4, 6, 8] {
            for r in [0.1, 0.5, 1.0, 2.0] {
                let eps = taylor_relative_error_bound(r, g);
                for i in 0..=200 {
                    let s = -r + 2.0 * r * i as f64 / 200.0;
                    let rel = (taylor_exp(s, g) - s.exp()).abs() / s.exp();
                    // f64 rounding of P_g(s) - e^s itself is a few ulps.
                    assert!(
                        rel <= eps + 8.0 * f64::EPSILON,
                        "g={g} s={s}: {rel} > {eps}"
                    );
                }
            }
        }
    }
}
