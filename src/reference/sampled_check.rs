//! The sampled check's definition in f64: the relative error of a GPU result against the f64
//! reference restricted to the sampled query rows of every head, ‖a − b‖ / ‖b‖ over those rows.

/// `actual` and `reference` are `[heads, n, width]`; `rows` the sampled rows of each head.
pub fn rows_relative_error(
    actual: &[f32],
    reference: &[f64],
    (n, width): (usize, usize),
    rows: &[usize],
) -> f64 {
    assert_eq!(actual.len(), reference.len());
    let heads = actual.len() / (n * width).max(1);
    let mut picked_actual = Vec::new();
    let mut picked_reference = Vec::new();
    for h in 0..heads {
        for &r in rows {
            let at = (h * n + r) * width;
            picked_actual.extend_from_slice(&actual[at..at + width]);
            picked_reference.extend_from_slice(&reference[at..at + width]);
        }
    }
    super::relative_error(&picked_actual, &picked_reference)
}
