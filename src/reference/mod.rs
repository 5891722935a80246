//! The f64 CPU reference, written straight from the definitions in shared/DESIGN.md §1-2, in
//! O(n^2), sharing no code with the GPU path. Slow and obvious on purpose: it is what every GPU
//! result is compared against.

pub mod adamw;
pub mod attention;
pub mod certificate;
pub mod cross_entropy;
pub mod finite_diff;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod matmul;
pub mod model;
pub mod sampled_check;

/// The float type the reference computes in: f64 for every check, and f32 for the plain f32
/// evaluation that an accuracy bar can be set against (FlashAttention's rule: no further from
/// f64 than twice what plain f32 is).
pub trait Real:
    num_traits::Float + std::iter::Sum + std::ops::AddAssign + std::fmt::Debug + Send + Sync + 'static
{
    /// A constant or a count in this type.
    fn of(x: f64) -> Self;
}

impl Real for f64 {
    fn of(x: f64) -> f64 {
        x
    }
}

impl Real for f32 {
    fn of(x: f64) -> f32 {
        x as f32
    }
}

/// ‖a − b‖ / ‖b‖ over the whole tensor (b is the reference). 0 when both are zero, infinite
/// when a holds a NaN, so that an unwritten (poisoned) element always fails.
pub fn relative_error(actual: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(
        actual.len(),
        reference.len(),
        "relative_error: length mismatch"
    );
    let mut diff = 0.0;
    let mut norm = 0.0;
    for (&a, &r) in actual.iter().zip(reference) {
        if !a.is_finite() {
            return f64::INFINITY;
        }
        diff += (a as f64 - r).powi(2);
        norm += r * r;
    }
    if norm == 0.0 {
        return if diff == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (diff / norm).sqrt()
}

/// The error measure of every GPU check: [`relative_error`], except where the reference is zero
/// up to f64 rounding (RMS below 1e-12), as dq and dk are at n = 1 (o_0 = v_0 whatever q and
/// k are). A relative error is meaningless there, so this returns the RMS of `actual`, an
/// absolute error on the scale of O(1) inputs.
pub fn gradient_error(actual: &[f32], reference: &[f64]) -> f64 {
    let rms = |n2: f64| (n2 / reference.len().max(1) as f64).sqrt();
    if rms(reference.iter().map(|r| r * r).sum()) < 1e-12 {
        if actual.iter().any(|a| !a.is_finite()) {
            return f64::INFINITY;
        }
        return rms(actual.iter().map(|&a| (a as f64).powi(2)).sum());
    }
    relative_error(actual, reference)
}

/// f32 to f64, for feeding GPU inputs to the reference.
pub fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
