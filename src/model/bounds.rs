//! How far each layer's attention may be from exact softmax attention, certified from the
//! layer's logit bound (shared/DESIGN.md §3) and returned with the gradients.

use crate::attention::Attention;
use crate::ops::certificate::HeadBound;
use crate::poly::{output_error_bound, taylor_relative_error_bound, ROUNDING_FLOOR};

/// One layer's certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerBound {
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
}

impl LayerBound {
    pub fn of(layer: usize, heads: Vec<HeadBound>, attention: Attention) -> Self {
        let logit_bound = heads.iter().map(|h| h.logit_bound).fold(0.0, f64::max);
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
        }
    }
}

/// The per-layer report `polygrad grad --report` writes (issue 12's fields that are measured so
/// far; the sampled check and the comparison with exact attention are not yet):
/// `{"layers": [{"layer", "attention", "degree", "logit_bound", "eps", "output_bound",
/// "reason"}, ...]}`. `degree` and `output_bound` are null for exact attention and where no
/// bound holds; a non-finite eps is written as null (JSON has no infinity).
pub fn bounds_report(bounds: &[LayerBound], attention: Attention) -> serde_json::Value {
    let layers = bounds
        .iter()
        .map(|b| {
            let (kind, degree) = match attention {
                Attention::Exact => ("exact", None),
                Attention::Poly { degree } => ("poly", Some(degree)),
            };
            let reason = match (attention, b.output_bound) {
                (Attention::Exact, _) => "exact attention: f32 rounding only".to_string(),
                (_, Some(_)) => format!(
                    "certified: logits within {:.3e}, eps = e^R R^(g+1)/(g+1)! < 1",
                    b.logit_bound
                ),
                (_, None) => format!(
                    "no bound: logits within {:.3e} give eps >= 1; use exact attention",
                    b.logit_bound
                ),
            };
            serde_json::json!({
                "layer": b.layer,
                "attention": kind,
                "degree": degree,
                "logit_bound": b.logit_bound,
                "eps": b.eps,
                "output_bound": b.output_bound,
                "reason": reason,
            })
        })
        .collect::<Vec<_>>();
    serde_json::json!({ "layers": layers })
}
