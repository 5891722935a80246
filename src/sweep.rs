//! `polygrad error`: polynomial attention's error against exact softmax attention, measured and
//! certified, over a sweep of logit scales and degrees for one shape. The exact side is the f64
//! reference in full (quadratic in n, on the CPU): the measured error is the GPU's whole error,
//! f32 rounding included, which is what the certificate (shared/DESIGN.md §3) must cover.

use crate::attention::{Attention, AttentionShape};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::certificate::largest_logit_bound;
use crate::ops::{attention_forward_backward, AttentionInputs};
use crate::poly::{output_error_bound, ROUNDING_FLOOR};
use crate::reference::attention::{attention_backward, attention_forward};
use crate::reference::{certificate, gradient_error, relative_error, widen};
use crate::validate::{max_abs_logit, random_attention_inputs, scale_logits_to};

/// One (logit scale, degree) of the sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorPoint {
    /// The degree.
    pub degree: u32,
    /// The largest |s| = |q.k| / sqrt(d_qk) over the pairs the rows see, measured.
    pub max_logit: f64,
    /// The certificate's logit bound R = max |q| max |k| / sqrt(d_qk) (over heads).
    pub logit_bound: f64,
    /// The certified bound on max |o(poly) - o(exact)| / max |v|, rounding floor included;
    /// None where eps >= 1.
    pub certified: Option<f64>,
    /// The measured max |o(poly) - o(exact)| / max |v|: what the certificate bounds.
    pub o_max_error: f64,
    /// Relative errors ‖poly − exact‖ / ‖exact‖ over the whole tensor.
    pub o: f64,
    /// Relative error of dq.
    pub dq: f64,
    /// Relative error of dk.
    pub dk: f64,
    /// Relative error of dv.
    pub dv: f64,
}

/// For each target largest |logit| (q scaled to reach it), polynomial attention at each degree
/// on the GPU against the f64 reference. Inputs are drawn from `seed`, the same for every point.
pub fn error_sweep(
    ctx: &GpuContext,
    shape: AttentionShape,
    max_logits: &[f64],
    degrees: &[u32],
    seed: u64,
) -> Result<Vec<ErrorPoint>> {
    shape.validate()?;
    let mut points = Vec::new();
    for &target in max_logits {
        let mut inputs = random_attention_inputs(&shape, 1.0, seed);
        scale_logits_to(&shape, &mut inputs, target);
        let max_logit = max_abs_logit(&shape, &inputs[0], &inputs[1]);
        let [q, k, v, d_o] = inputs.each_ref().map(|x| widen(x));
        let o = attention_forward(&shape, Attention::Exact, &q, &k, &v);
        let grads = attention_backward(&shape, Attention::Exact, &q, &k, &v, &d_o);
        let heads = certificate::head_bounds(&shape, &q, &k, &v);
        let logit_bound = largest_logit_bound(&heads);
        let max_v = heads.iter().map(|h| h.max_abs_v).fold(0.0, f64::max);
        for &degree in degrees {
            let attention = Attention::Poly { degree };
            let gpu = attention_forward_backward(
                ctx,
                attention,
                shape,
                AttentionInputs::from_array(&inputs),
            )?;
            let bound = output_error_bound(logit_bound, degree, 1.0);
            let o_max_error = (gpu.o.iter().zip(&o))
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(
                    0.0,
                    |m: f64, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
                )
                / max_v;
            points.push(ErrorPoint {
                degree,
                max_logit,
                logit_bound,
                certified: bound.is_finite().then_some(bound + ROUNDING_FLOOR),
                o_max_error,
                o: relative_error(&gpu.o, &o),
                dq: gradient_error(&gpu.dq, &grads.dq),
                dk: gradient_error(&gpu.dk, &grads.dk),
                dv: gradient_error(&gpu.dv, &grads.dv),
            });
        }
    }
    Ok(points)
}
