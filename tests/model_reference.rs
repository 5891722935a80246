//! The f64 reference model's analytic gradients against central finite differences, for every
//! parameter tensor and the input, with both attentions. No GPU needed.

use polygrad::reference::finite_diff::central_gradient;
use polygrad::reference::model::{ReferenceLoss, ReferenceModel};
use polygrad::{Model, ModelConfig};
use rand::{Rng, SeedableRng};

fn tiny_config(attention: &str, degree: u32, causal: bool) -> ModelConfig {
    ModelConfig {
        n_layers: 2,
        d_model: 4,
        n_heads: 2,
        d_qk: 2,
        d_v: 3,
        d_ff: 6,
        causal,
        attention: attention.into(),
        degree,
        ln_eps: 1e-5,
    }
}

/// max |a - b| / max |b| over the tensor.
fn max_relative_gap(analytic: &[f64], numeric: &[f64]) -> f64 {
    let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gap = analytic
        .iter()
        .zip(numeric)
        .fold(0.0f64, |m, (a, n)| m.max((a - n).abs()));
    gap / scale.max(1e-300)
}

fn random(rng: &mut impl Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn check_against_finite_differences(config: ModelConfig, seed: u64) {
    let label = format!(
        "{} g={} causal={}",
        config.attention, config.degree, config.causal
    );
    let model = ReferenceModel::from_model(&Model::random(config, seed).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
    let (batch, seq_len) = (2, 4);
    let len = batch * seq_len * model.config.d_model;
    let (x, dy) = (random(&mut rng, len), random(&mut rng, len));
    let grads = model.gradients(&x, batch, seq_len, ReferenceLoss::Vjp(&dy));
    // L = y . dy, whose gradient is exactly what a VJP with dy computes.
    let loss_of = |m: &ReferenceModel, x: &[f64]| -> f64 {
        m.forward(x, batch, seq_len)
            .iter()
            .zip(&dy)
            .map(|(a, b)| a * b)
            .sum()
    };
    let h = 1e-5;
    let numeric_x = central_gradient(|x| loss_of(&model, x), &x, h);
    let gap = max_relative_gap(&grads.grad_x, &numeric_x);
    assert!(
        gap < 1e-6,
        "{label}: grad.x differs from finite differences by {gap:e}"
    );
    assert_eq!(
        grads.grads.len(),
        model.params.len(),
        "{label}: a parameter has no gradient"
    );
    for (name, value) in &model.params {
        let numeric = central_gradient(
            |p| {
                let mut m = model.clone();
                m.params.insert(name.clone(), p.to_vec());
                loss_of(&m, &x)
            },
            value,
            h,
        );
        let gap = max_relative_gap(&grads.grads[name], &numeric);
        assert!(
            gap < 1e-6,
            "{label}: grad.{name} differs from finite differences by {gap:e}"
        );
    }
}

#[test]
fn exact_model_gradients_match_finite_differences() {
    check_against_finite_differences(tiny_config("exact", 2, true), 11);
    check_against_finite_differences(tiny_config("exact", 2, false), 12);
}

#[test]
fn poly_model_gradients_match_finite_differences() {
    check_against_finite_differences(tiny_config("poly", 2, true), 21);
    check_against_finite_differences(tiny_config("poly", 4, false), 22);
}

#[test]
fn mse_gradient_matches_finite_differences() {
    let model =
        ReferenceModel::from_model(&Model::random(tiny_config("poly", 2, true), 31).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(32);
    let (batch, seq_len) = (1, 3);
    let len = batch * seq_len * model.config.d_model;
    let (x, target) = (random(&mut rng, len), random(&mut rng, len));
    let grads = model.gradients(&x, batch, seq_len, ReferenceLoss::Mse(&target));
    let mse = |x: &[f64]| {
        let y = model.forward(x, batch, seq_len);
        y.iter()
            .zip(&target)
            .map(|(a, t)| (a - t).powi(2))
            .sum::<f64>()
            / len as f64
    };
    assert!((grads.loss.unwrap() - mse(&x)).abs() < 1e-12);
    let numeric = central_gradient(mse, &x, 1e-5);
    let gap = max_relative_gap(&grads.grad_x, &numeric);
    assert!(
        gap < 1e-6,
        "mse grad.x differs from finite differences by {gap:e}"
    );
}
