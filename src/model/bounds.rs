//! How far each layer's attention may be from exact softmax attention, certified from the
//! layer's logit bound (shared/DESIGN.md §3) and returned with the gradients.

use crate::attention::Attention;
use crate::model::auto::Decision;
use crate::model::{HostTensor, ModelGradients};
use crate::ops::certificate::{self, HeadBound};
use crate::ops::sampled_check::{self, SampledError};
use crate::poly::{output_error_bound, taylor_relative_error_bound, ROUNDING_FLOOR};

/// One layer's certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerBound {
    /// The layer's index.
    pub layer: usize,
    /// Per batch element and head, in `[B, H]` order.
    pub heads: Vec<HeadBound>,
    /// The largest logit bound R of the layer's heads.
    pub logit_bound: f64,
    /// The Taylor remainder eps at that R (0 for exact attention).
    pub eps: f64,
    /// Certified |o(poly) - o(exact)| / max |v| over the layer's heads (the same factor bounds
    /// dv against the do-weighted sums), the f32 rounding floor included; `None` where eps >= 1
    /// and no bound holds. Exact attention: the rounding floor.
    pub output_bound: Option<f64>,
    /// The error measured on sampled query rows against exact attention, where the pass was
    /// asked for it ([`ErrorChecks`]) and the layer's attention is polynomial.
    pub sampled: Option<SampledError>,
    /// The layer's attention.
    pub attention: Attention,
    /// Why automatic attention chose it (None where the attention was given).
    pub decision: Option<Decision>,
}

/// What a pass measures of its attention's error besides the certificate, which it always
/// forms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorChecks {
    /// Query rows per layer and head whose exact attention (and its dq) is computed on the GPU
    /// in O(m n d) and compared with the polynomial rows; 0 for none.
    pub sample_rows: usize,
    /// Seed of the rows drawn; each layer draws its own rows from it.
    pub seed: u64,
}

impl ErrorChecks {
    /// The default of `polygrad grad`: 32 rows per layer and head.
    pub const DEFAULT_SAMPLE_ROWS: usize = 32;

    /// Checks of `sample_rows` rows per layer and head, drawn from `seed`.
    pub fn sampled(sample_rows: usize, seed: u64) -> Self {
        ErrorChecks { sample_rows, seed }
    }

    /// The rows layer `layer` samples from `n` (None where no rows are sampled).
    pub fn layer_rows(&self, layer: usize, n: usize) -> Option<Vec<usize>> {
        (self.sample_rows > 0).then(|| {
            let seed = self.seed ^ (layer as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            sampled_check::sample_rows(n, self.sample_rows, seed)
        })
    }
}

impl LayerBound {
    /// The bound of one layer from its heads' bounds, for `attention`.
    pub fn of(
        layer: usize,
        heads: Vec<HeadBound>,
        attention: Attention,
        sampled: Option<SampledError>,
    ) -> Self {
        let logit_bound = certificate::largest_logit_bound(&heads);
        let (eps, output_bound) = match attention {
            Attention::Exact => (0.0, Some(ROUNDING_FLOOR)),
            Attention::Poly { degree } => {
                let bound = output_error_bound(logit_bound, degree, 1.0);
                (
                    taylor_relative_error_bound(logit_bound, degree),
                    bound.is_finite().then_some(bound + ROUNDING_FLOOR),
                )
            }
        };
        LayerBound {
            layer,
            heads,
            logit_bound,
            eps,
            output_bound,
            sampled,
            attention,
            decision: None,
        }
    }

    /// The bound with automatic attention's decision for the layer.
    pub fn decided(self, decision: Option<Decision>) -> Self {
        LayerBound { decision, ..self }
    }
}

/// The per-layer report `polygrad grad --report` writes: `{"layers": [{"layer", "attention",
/// "degree", "logit_bound", "eps", "output_bound", "sampled": {"rows", "o_rel_err",
/// "dq_rel_err"}, "reason"}, ...]}`; with automatic attention, "reason" is its decision. `degree` and `output_bound` are null for exact attention
/// and where no bound holds, `sampled` where no rows were sampled; a non-finite eps or error
/// is written as null (JSON has no infinity).
///
/// With `compare_exact` (from [`compare_with_exact`]), the report also holds
/// `"compare_exact": {"y": .., "grad.x": .., "grad.<name>": ..}`.
pub fn bounds_report(
    bounds: &[LayerBound],
    compare_exact: Option<&[(String, f64)]>,
) -> serde_json::Value {
    let layers = bounds
        .iter()
        .map(|b| {
            let (kind, degree) = match b.attention {
                Attention::Exact => ("exact", None),
                Attention::Poly { degree } => ("poly", Some(degree)),
            };
            let reason = match (&b.decision, b.attention, b.output_bound) {
                (Some(decision), ..) => decision.reason.clone(),
                (None, Attention::Exact, _) => "exact attention: f32 rounding only".to_string(),
                (None, _, Some(_)) => format!(
                    "certified: logits within {:.3e}, eps = e^R R^(g+1)/(g+1)! < 1",
                    b.logit_bound
                ),
                (None, _, None) => format!(
                    "no bound: logits within {:.3e} give eps >= 1; use auto or exact attention",
                    b.logit_bound
                ),
            };
            let sampled = b.sampled.map(|s| {
                serde_json::json!({
                    "rows": s.rows,
                    "o_rel_err": finite_or_null(s.o_rel_err),
                    "dq_rel_err": s.dq_rel_err.and_then(finite_or_null),
                })
            });
            serde_json::json!({
                "layer": b.layer,
                "attention": kind,
                "degree": degree,
                "logit_bound": b.logit_bound,
                "eps": b.eps,
                "output_bound": b.output_bound,
                "sampled": sampled,
                "reason": reason,
            })
        })
        .collect::<Vec<_>>();
    let mut report = serde_json::json!({ "layers": layers });
    if let Some(errors) = compare_exact {
        let errors: serde_json::Map<String, serde_json::Value> = errors
            .iter()
            .map(|(name, e)| (name.clone(), serde_json::json!(finite_or_null(*e))))
            .collect();
        report["compare_exact"] = serde_json::Value::Object(errors);
    }
    report
}

/// How far a pass's results are from the same pass with exact attention (`exact`): the
/// relative error ‖a − b‖ / ‖b‖ of y, grad.x and every parameter's gradient, by the name
/// `polygrad grad` writes them under. Infinite where a value is not finite.
pub fn compare_with_exact(pass: &ModelGradients, exact: &ModelGradients) -> Vec<(String, f64)> {
    let error = |a: &HostTensor, b: &HostTensor| {
        crate::reference::relative_error(&a.data, &crate::reference::widen(&b.data))
    };
    let mut errors = vec![
        ("y".to_string(), error(&pass.y, &exact.y)),
        ("grad.x".to_string(), error(&pass.grad_x, &exact.grad_x)),
    ];
    for (name, g) in &pass.grads {
        errors.push((format!("grad.{name}"), error(g, &exact.grads[name])));
    }
    errors
}

/// JSON has no infinity: a non-finite measurement is written as null.
fn finite_or_null(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
