//! Checks of GPU results against the f64 reference, shared by `polygrad validate` and the tests.

use rand::{Rng, SeedableRng};

use crate::attention::{Attention, AttentionShape};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::model::{GpuModel, HostTensor, Loss, Model, ModelConfig, ModelGradients};
use crate::ops::{attention_forward_backward, AttentionInputs};
use crate::reference::attention::{attention_backward, attention_forward};
use crate::reference::model::{ReferenceLoss, ReferenceModel};
use crate::reference::{gradient_error, relative_error, widen};

/// The bar every attention output and gradient must clear (relative error over the tensor).
pub const ATTENTION_TOLERANCE: f64 = 1e-5;

/// One tensor's comparison.
#[derive(Clone, Debug)]
pub struct TensorCheck {
    /// The tensor's name.
    pub tensor: String,
    /// Its relative error.
    pub error: f64,
}

impl TensorCheck {
    /// Whether the error is within `tolerance` (false for NaN).
    pub fn passed(&self, tolerance: f64) -> bool {
        self.error <= tolerance // false for NaN
    }
}

/// Fresh inputs uniform in [-scale, scale] (never zeros) for q, k and uniform in [-1, 1] for
/// v and dL/do.
pub fn random_attention_inputs(shape: &AttentionShape, qk_scale: f32, seed: u64) -> [Vec<f32>; 4] {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let qk = shape.total_heads() * shape.seq_len * shape.d_qk;
    let vl = shape.total_heads() * shape.seq_len * shape.d_v;
    let mut draw = |len: usize, scale: f32| -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-scale..=scale)).collect()
    };
    [
        draw(qk, qk_scale),
        draw(qk, qk_scale),
        draw(vl, 1.0),
        draw(vl, 1.0),
    ]
}

/// The largest |s_ab| = |q_a . k_b| / sqrt(d_qk) over every head and every pair a row sees.
pub fn max_abs_logit(shape: &AttentionShape, q: &[f32], k: &[f32]) -> f64 {
    let (n, d) = (shape.seq_len, shape.d_qk);
    let mut max = 0.0f64;
    for h in 0..shape.total_heads() {
        let (q, k) = (
            &q[h * n * d..(h + 1) * n * d],
            &k[h * n * d..(h + 1) * n * d],
        );
        for a in 0..n {
            let qa = &q[a * d..(a + 1) * d];
            let visible = if shape.causal { a + 1 } else { n };
            for b in 0..visible {
                let kb = &k[b * d..(b + 1) * d];
                let s: f64 = qa.iter().zip(kb).map(|(&x, &y)| x as f64 * y as f64).sum();
                max = max.max(s.abs());
            }
        }
    }
    max / (d as f64).sqrt()
}

/// Scales q (in place) so that the largest |logit| of the call is `target`: large logits are
/// where exact softmax must stay finite and accurate.
pub fn scale_logits_to(shape: &AttentionShape, inputs: &mut [Vec<f32>; 4], target: f64) {
    let max = max_abs_logit(shape, &inputs[0], &inputs[1]);
    if max > 0.0 {
        let factor = (target / max) as f32;
        inputs[0].iter_mut().for_each(|x| *x *= factor);
    }
}

/// Runs `attention` forward and backward on the GPU (outputs poisoned first) and compares o,
/// dq, dk, dv with the f64 reference on the same inputs.
pub fn check_attention(
    ctx: &GpuContext,
    attention: Attention,
    shape: AttentionShape,
    inputs: &[Vec<f32>; 4],
) -> Result<[TensorCheck; 4]> {
    ctx.set_poison_outputs(true);
    let gpu =
        attention_forward_backward(ctx, attention, shape, AttentionInputs::from_array(inputs))?;
    let [q, k, v, d_o] = inputs;
    let (q, k, v, d_o) = (widen(q), widen(k), widen(v), widen(d_o));
    let o = attention_forward(&shape, attention, &q, &k, &v);
    let g = attention_backward(&shape, attention, &q, &k, &v, &d_o);
    Ok([
        TensorCheck {
            tensor: "o".into(),
            error: relative_error(&gpu.o, &o),
        },
        TensorCheck {
            tensor: "dq".into(),
            error: gradient_error(&gpu.dq, &g.dq),
        },
        TensorCheck {
            tensor: "dk".into(),
            error: gradient_error(&gpu.dk, &g.dk),
        },
        TensorCheck {
            tensor: "dv".into(),
            error: relative_error(&gpu.dv, &g.dv),
        },
    ])
}

/// The largest |logit| `polygrad validate` gives exact attention: large enough that an
/// overflow-prone or imprecise softmax fails.
pub const EXACT_VALIDATION_LOGIT: f64 = 30.0;

/// Fresh inputs for one validation case: exact attention gets logits up to
/// [`EXACT_VALIDATION_LOGIT`], polynomial attention the moderate logits it is meant for.
pub fn validation_inputs(attention: Attention, shape: &AttentionShape, seed: u64) -> [Vec<f32>; 4] {
    let mut inputs = random_attention_inputs(shape, 1.0, seed);
    if attention == Attention::Exact {
        scale_logits_to(shape, &mut inputs, EXACT_VALIDATION_LOGIT);
    }
    inputs
}

/// The shapes `polygrad validate` runs: every kernel path (full and causal, one and several
/// chunks or spans, ragged sizes, widths 1 to 64, both degrees, exact attention), sized to
/// finish in seconds even on a software driver.
pub fn validation_cases() -> Vec<(Attention, AttentionShape)> {
    let shape = AttentionShape::new;
    let mut cases = Vec::new();
    for causal in [false, true] {
        for (n, d_qk, d_v) in [(1, 16, 16), (65, 1, 64), (200, 64, 8), (700, 64, 64)] {
            cases.push((Attention::Exact, shape(1, 2, n, d_qk, d_v, causal)));
        }
        for (degree, d_qk) in [(2, 16), (4, 4), (4, 16)] {
            let attention = Attention::Poly { degree };
            cases.push((attention, shape(1, 1, 1, d_qk, 16, causal)));
            cases.push((attention, shape(2, 3, 65, d_qk, 64, causal)));
            cases.push((attention, shape(1, 2, 200, d_qk, 1, causal)));
        }
        cases.push((
            Attention::Poly { degree: 2 },
            shape(1, 1, 300, 1, 64, causal),
        ));
    }
    cases
}

/// The bar y, grad.x and every parameter gradient of a whole model must clear.
pub const MODEL_TOLERANCE: f64 = 1e-4;

/// Fresh x and dL/dy for a model, uniform in [-1, 1].
pub fn random_model_input(
    config: &ModelConfig,
    batch: usize,
    seq_len: usize,
    seed: u64,
) -> (HostTensor, HostTensor) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let shape = vec![batch, seq_len, config.d_model];
    let len = batch * seq_len * config.d_model;
    let mut fill = || -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..=1.0)).collect() };
    let x = HostTensor {
        shape: shape.clone(),
        data: fill(),
    };
    let dy = HostTensor {
        shape,
        data: fill(),
    };
    (x, dy)
}

/// Runs the model forward and backward on the GPU (outputs poisoned first) and compares y,
/// grad.x and every parameter gradient with the f64 reference on the same inputs.
pub fn check_model(
    ctx: &GpuContext,
    model: &Model,
    x: &HostTensor,
    loss: &Loss,
) -> Result<Vec<TensorCheck>> {
    ctx.set_poison_outputs(true);
    let gpu = GpuModel::new(ctx, model)?.gradients(ctx, x, loss)?;
    let reference = ReferenceModel::from_model(model);
    Ok(compare_with_reference(&gpu, &reference, x, loss))
}

/// [`check_model`]'s comparison of a pass's results with `reference` (which may mix
/// attentions layer by layer, as automatic attention does) on the same input.
pub fn compare_with_reference(
    gpu: &ModelGradients,
    reference: &ReferenceModel,
    x: &HostTensor,
    loss: &Loss,
) -> Vec<TensorCheck> {
    let upstream = loss.tensor().map(|t| widen(&t.data)).unwrap_or_default();
    let reference_loss = match loss {
        Loss::Vjp(_) => ReferenceLoss::Vjp(&upstream),
        Loss::Mse(_) => ReferenceLoss::Mse(&upstream),
        Loss::CrossEntropy {
            targets,
            ignore_index,
        } => ReferenceLoss::CrossEntropy {
            targets,
            ignore_index: *ignore_index,
        },
    };
    let reference = reference.gradients(&widen(&x.data), x.shape[0], x.shape[1], reference_loss);
    let mut checks = vec![
        TensorCheck {
            tensor: "y".into(),
            error: relative_error(&gpu.y.data, &reference.y),
        },
        TensorCheck {
            tensor: "grad.x".into(),
            error: gradient_error(&gpu.grad_x.data, &reference.grad_x),
        },
    ];
    for (name, expected) in &reference.grads {
        let error = gpu
            .grads
            .get(name)
            .map_or(f64::INFINITY, |g| gradient_error(&g.data, expected));
        checks.push(TensorCheck {
            tensor: format!("grad.{name}"),
            error,
        });
    }
    checks
}

/// `model` with layer l's q and k weights multiplied by `scales[l]` (its logits by the
/// square): models whose layers have small and large logits, for the error statement's tests.
pub fn with_logit_scales(model: &Model, scales: &[f32]) -> Result<Model> {
    let mut params = model.params().clone();
    for (l, &scale) in scales.iter().enumerate() {
        for which in ["q", "k"] {
            let name = format!("blocks.{l}.attn.{which}.weight");
            if let Some(t) = params.get_mut(&name) {
                t.data.iter_mut().for_each(|v| *v *= scale);
            }
        }
    }
    Model::new(model.config().clone(), params)
}

/// A small model for validation and tests: width 16, d_qk 4, d_v 8, d_ff 32.
pub fn small_model_config(
    n_layers: usize,
    n_heads: usize,
    causal: bool,
    attention: Attention,
) -> ModelConfig {
    ModelConfig {
        n_layers,
        d_model: 16,
        n_heads,
        d_qk: 4,
        d_v: 8,
        d_ff: 32,
        causal,
        attention: crate::attention::AttentionKind::Poly,
        degree: 2,
        ln_eps: 1e-5,
        vocab_size: None,
        max_seq: None,
        head: None,
    }
    .with_attention(attention)
}

/// The whole-model cases `polygrad validate` runs: (config, batch, seq_len), both attentions,
/// causal and not, one and several layers and heads.
pub fn model_validation_cases() -> Vec<(ModelConfig, usize, usize)> {
    let mut cases = Vec::new();
    for causal in [false, true] {
        for attention in [
            Attention::Exact,
            Attention::Poly { degree: 2 },
            Attention::Poly { degree: 4 },
        ] {
            cases.push((small_model_config(2, 4, causal, attention), 2, 33));
            cases.push((small_model_config(1, 1, causal, attention), 1, 200));
        }
    }
    cases
}
