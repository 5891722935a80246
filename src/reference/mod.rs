//! The f64 CPU reference, written straight from the definitions in shared/DESIGN.md §1-2, in
//! O(n^2), sharing no code with the GPU path. Slow and obvious on purpose: it is what every GPU
//! result is compared against.

pub mod attention;
pub mod finite_diff;

/// ‖a − b‖ / ‖b‖ over the whole tensor (b is the reference). 0 when both are zero, infinite
/// when a holds a NaN, so that an unwritten (poisoned) element always fails.
pub fn relative_error(actual: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(actual.len(), reference.len(), "relative_error: length mismatch");
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

/// f32 to f64, for feeding GPU inputs to the reference.
pub fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
