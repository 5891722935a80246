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
        attention: polygrad::AttentionKind::from_name(attention).unwrap(),
        degree,
        ln_eps: 1e-5,
        vocab_size: None,
        max_seq: None,
        head: None,
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

#[test]
fn the_default_config_is_valid_and_the_builder_checks_what_it_builds() {
    let default = polygrad::ModelConfig::default();
    default.validate().unwrap();
    let config = polygrad::ModelConfig::builder()
        .layers(3)
        .width(48)
        .heads(2, 8, 12)
        .mlp(96)
        .causal(false)
        .attention(polygrad::Attention::Exact)
        .ln_eps(1e-6)
        .build()
        .unwrap();
    assert_eq!(
        (
            config.n_layers,
            config.d_model,
            config.n_heads,
            config.d_qk,
            config.d_v
        ),
        (3, 48, 2, 8, 12)
    );
    assert_eq!(
        (config.d_ff, config.causal, config.ln_eps),
        (96, false, 1e-6)
    );
    assert_eq!(config.attention_kind().unwrap(), polygrad::Attention::Exact);
    let err = polygrad::ModelConfig::builder()
        .heads(0, 8, 8)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("n_heads"), "{err}");
    let err = polygrad::ModelConfig::builder()
        .attention(polygrad::Attention::Poly { degree: 3 })
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("degree"), "{err}");
}

#[test]
fn init_is_gpt2s_initialisation() {
    let config = polygrad::ModelConfig::builder().layers(3).build().unwrap();
    let model = polygrad::Model::init(config.clone(), 5).unwrap();
    let std = |x: &[f32]| {
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
        (mean, var.sqrt())
    };
    let residual = 0.02 / (2.0 * 3.0f64).sqrt();
    for (name, t) in model.params() {
        if t.shape.len() == 2 {
            let expected = if name.ends_with("attn.o.weight") || name.ends_with("mlp.fc2.weight") {
                residual
            } else {
                0.02
            };
            let (mean, sd) = std(&t.data);
            // At least 65536 draws each: the sample deviation is within 0.5% of the true one
            // at 3 sigma; 5% cannot fail by chance.
            assert!(
                (sd / expected - 1.0).abs() < 0.05,
                "{name}: sd {sd}, expected {expected}"
            );
            assert!(mean.abs() < 0.05 * expected, "{name}: mean {mean}");
        } else if name.ends_with(".weight") {
            assert!(t.data.iter().all(|&v| v == 1.0), "{name}");
        } else {
            assert!(t.data.iter().all(|&v| v == 0.0), "{name}");
        }
    }
    // The seed decides every draw.
    assert_eq!(
        polygrad::Model::init(config.clone(), 5).unwrap().params(),
        model.params()
    );
    assert_ne!(
        polygrad::Model::init(config, 6).unwrap().params(),
        model.params()
    );
}

/// Cross-entropy with an ignored row: the reference model's loss and grad.x against finite
/// differences of the loss, and the loss against its definition written out here.
#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let model =
        ReferenceModel::from_model(&Model::random(tiny_config("poly", 2, true), 41).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (batch, seq_len, classes) = (2, 3, model.config.d_model);
    let x = random(&mut rng, batch * seq_len * classes);
    let ignore_index = -100;
    let targets = [2, 0, ignore_index, 3, 1, 1];
    let loss = ReferenceLoss::CrossEntropy {
        targets: &targets,
        ignore_index,
    };
    let grads = model.gradients(&x, batch, seq_len, loss);
    let cross_entropy = |x: &[f64]| {
        let y = model.forward(x, batch, seq_len);
        let mut total = 0.0;
        for (r, &t) in targets.iter().enumerate() {
            if t != ignore_index {
                let row = &y[r * classes..(r + 1) * classes];
                total += row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[t as usize];
            }
        }
        total / 5.0
    };
    assert!((grads.loss.unwrap() - cross_entropy(&x)).abs() < 1e-12);
    let numeric = central_gradient(cross_entropy, &x, 1e-5);
    let gap = max_relative_gap(&grads.grad_x, &numeric);
    assert!(
        gap < 1e-6,
        "cross-entropy grad.x differs from finite differences by {gap:e}"
    );
}

/// A language model (token embedding, positions, a tied or a separate head) trained on
/// cross-entropy with an ignored row: every parameter's gradient, the new tables and the head
/// included, against central finite differences of the loss.
#[test]
fn language_model_gradients_match_finite_differences() {
    use polygrad::{HeadKind, Tokens};
    for (head, seed) in [
        (Some(HeadKind::Tied), 51),
        (Some(HeadKind::Separate), 52),
        (None, 53),
    ] {
        let config = ModelConfig {
            vocab_size: Some(5),
            max_seq: Some(4),
            head,
            ..tiny_config("poly", 2, true)
        };
        let model = ReferenceModel::from_model(&Model::random(config, seed).unwrap());
        // Token 4 never occurs (its row's gradient is 0 but for a tied head), 1 occurs thrice.
        let tokens = Tokens::new(2, 3, vec![1, 3, 1, 0, 2, 1]).unwrap();
        let classes = model.config.output_width();
        let targets: Vec<i64> = vec![2, 0, -1, 3, 1, (classes - 1) as i64];
        let loss = ReferenceLoss::CrossEntropy {
            targets: &targets,
            ignore_index: -1,
        };
        let grads = model.gradients_tokens(&tokens, loss);
        let loss_of = |m: &ReferenceModel| -> f64 {
            let out = m.forward_tokens(&tokens);
            let (value, _) =
                polygrad::reference::cross_entropy::cross_entropy(&out, classes, &targets, -1);
            value
        };
        assert!((grads.loss.unwrap() - loss_of(&model)).abs() < 1e-12);
        assert_eq!(
            grads.grads.len(),
            model.params.len(),
            "{head:?}: a parameter has no gradient"
        );
        for (name, value) in &model.params {
            let numeric = central_gradient(
                |p| {
                    let mut m = model.clone();
                    m.params.insert(name.clone(), p.to_vec());
                    loss_of(&m)
                },
                value,
                1e-5,
            );
            let gap = max_relative_gap(&grads.grads[name], &numeric);
            assert!(
                gap < 1e-6,
                "{head:?}: grad.{name} differs from finite differences by {gap:e}"
            );
        }
    }
}

#[test]
fn language_model_configs_are_checked_by_field() {
    use polygrad::{HeadKind, Tokens};
    let base = tiny_config("exact", 2, true);
    let bad = |c: ModelConfig| c.validate().unwrap_err().to_string();
    assert!(bad(ModelConfig {
        vocab_size: Some(0),
        ..base.clone()
    })
    .contains("vocab_size"));
    assert!(bad(ModelConfig {
        max_seq: Some(8),
        ..base.clone()
    })
    .contains("max_seq"));
    assert!(bad(ModelConfig {
        head: Some(HeadKind::Tied),
        ..base.clone()
    })
    .contains("head"));
    let lm = ModelConfig {
        vocab_size: Some(10),
        max_seq: Some(4),
        head: Some(HeadKind::Separate),
        ..base.clone()
    };
    lm.validate().unwrap();
    let json = lm.to_json();
    assert!(json.contains("\"head\":\"separate\""), "{json}");
    assert_eq!(ModelConfig::from_json(&json).unwrap(), lm);
    assert!(
        !base.to_json().contains("vocab_size"),
        "a plain config's JSON is unchanged"
    );
    let names: Vec<String> = lm.parameter_shapes().into_iter().map(|(n, _)| n).collect();
    for name in ["tok_emb.weight", "pos_emb.weight", "head.weight"] {
        assert!(names.contains(&name.to_string()), "{names:?}");
    }
    assert_eq!(names.len(), lm.parameter_count());
    let err = |t: Tokens| lm.check_tokens(&t).unwrap_err().to_string();
    assert!(err(Tokens::new(1, 2, vec![3, 10]).unwrap()).contains("id 10 at flat index 1"));
    assert!(err(Tokens::new(1, 5, vec![0; 5]).unwrap()).contains("max_seq 4"));
    assert!(Tokens::new(2, 2, vec![0; 3]).is_err());
    assert!(base
        .check_tokens(&Tokens::new(1, 1, vec![0]).unwrap())
        .is_err());
}
