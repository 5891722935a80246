//! Language models on the device (token embedding, positions, output head tied or separate,
//! cross-entropy) against the f64 reference.

mod common;

use polygrad::reference::model::{ReferenceLoss, ReferenceModel};
use polygrad::reference::{gradient_error, relative_error};
use polygrad::validate::{small_model_config, MODEL_TOLERANCE};
use polygrad::{Attention, GpuModel, HeadKind, Loss, Model, ModelConfig, Tokens};
use rand::Rng;

fn lm_config(attention: Attention, head: Option<HeadKind>, max_seq: Option<usize>) -> ModelConfig {
    ModelConfig {
        vocab_size: Some(11),
        max_seq,
        head,
        ..small_model_config(2, 2, true, attention)
    }
}

/// Every head (tied, separate, none), with and without positions, both attentions: the output,
/// the loss, dL/dx of the embedded input and every parameter's gradient against f64, with a
/// few rows ignored and a token absent from the batch.
#[test]
fn language_models_match_the_reference() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("language model");
    let cases = [
        (
            Attention::Poly { degree: 2 },
            Some(HeadKind::Tied),
            Some(40),
        ),
        (
            Attention::Poly { degree: 2 },
            Some(HeadKind::Separate),
            None,
        ),
        (Attention::Exact, Some(HeadKind::Separate), Some(33)),
        (Attention::Exact, None, Some(33)),
    ];
    for (attention, head, max_seq) in cases {
        let seed: u64 = rng.random();
        let config = lm_config(attention, head, max_seq);
        let model = Model::random(config.clone(), seed).unwrap();
        let (batch, n) = (2, 33);
        // Token 10 never occurs.
        let ids: Vec<u32> = (0..batch * n).map(|_| rng.random_range(0..10)).collect();
        let tokens = Tokens::new(batch, n, ids).unwrap();
        let classes = config.output_width() as i64;
        let targets: Vec<i64> = (0..batch * n)
            .map(|i| {
                if i % 9 == 4 {
                    -100
                } else {
                    rng.random_range(0..classes)
                }
            })
            .collect();
        let loss = Loss::CrossEntropy {
            targets: targets.clone(),
            ignore_index: -100,
        };
        let gpu = GpuModel::new(&ctx, &model).unwrap();
        let got = gpu.gradients_tokens(&ctx, &tokens, &loss).unwrap();
        let reference = ReferenceModel::<f64>::from_model(&model);
        let want = reference.gradients_tokens(
            &tokens,
            ReferenceLoss::CrossEntropy {
                targets: &targets,
                ignore_index: -100,
            },
        );
        let label = format!("{attention} head {head:?} max_seq {max_seq:?} seed {seed}");
        assert_eq!(got.y.shape, vec![batch, n, classes as usize], "{label}");
        let loss_err = (got.loss.unwrap() - want.loss.unwrap()).abs() / want.loss.unwrap();
        let mut checks = vec![
            ("output", relative_error(&got.y.data, &want.y)),
            ("loss", loss_err),
            ("grad.x", gradient_error(&got.grad_x.data, &want.grad_x)),
        ];
        assert_eq!(got.grads.len(), want.grads.len(), "{label}: gradient count");
        for (name, g) in &want.grads {
            checks.push((name.as_str(), gradient_error(&got.grads[name].data, g)));
        }
        let worst = checks.iter().fold(0.0f64, |w, (_, e)| w.max(*e));
        eprintln!("{label}: worst {worst:.1e}");
        for (what, err) in checks {
            assert!(
                err <= MODEL_TOLERANCE,
                "{label}: {what} relative error {err:e}"
            );
        }
        let absent = &got.grads["tok_emb.weight"].data[10 * 16..11 * 16];
        if head != Some(HeadKind::Tied) {
            assert!(
                absent.iter().all(|&g| g == 0.0),
                "{label}: absent token's row"
            );
        }
    }
}

/// forward_keep_tokens + backward_loss, then the same through gradients_tokens: the same bits.
#[test]
fn a_language_model_pass_in_two_halves_is_bit_identical() {
    let Some(ctx) = common::gpu() else { return };
    let config = lm_config(
        Attention::Poly { degree: 2 },
        Some(HeadKind::Tied),
        Some(16),
    );
    let model = Model::init(config, 3).unwrap();
    let tokens = Tokens::new(1, 16, (0..16).map(|i| i % 11).collect()).unwrap();
    let loss = Loss::CrossEntropy {
        targets: (0..16).map(|i| (i + 1) % 11).collect(),
        ignore_index: -1,
    };
    let gpu = GpuModel::new(&ctx, &model).unwrap();
    let whole = gpu.gradients_tokens(&ctx, &tokens, &loss).unwrap();
    let pass = gpu.forward_keep_tokens(&ctx, &tokens).unwrap();
    let logits = pass.y(&ctx).unwrap();
    let split = gpu
        .backward_loss(&ctx, pass, &loss)
        .unwrap()
        .read_back(&ctx)
        .unwrap();
    assert_eq!(logits, whole.y);
    assert_eq!(split.loss, whole.loss);
    for (name, g) in &whole.grads {
        let same = g
            .data
            .iter()
            .zip(&split.grads[name].data)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name}");
    }
}

#[test]
fn token_inputs_are_checked_by_name() {
    let Some(ctx) = common::gpu() else { return };
    let config = lm_config(Attention::Exact, Some(HeadKind::Tied), Some(8));
    let model = Model::random(config, 1).unwrap();
    let gpu = GpuModel::new(&ctx, &model).unwrap();
    let err = |tokens: Tokens| {
        gpu.forward_keep_tokens(&ctx, &tokens)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(err(Tokens::new(1, 3, vec![0, 11, 2]).unwrap()).contains("id 11 at flat index 1"));
    assert!(err(Tokens::new(1, 9, vec![0; 9]).unwrap()).contains("max_seq 8"));
    let x = polygrad::HostTensor::new("x", vec![1, 2, 16], vec![0.5; 32]).unwrap();
    let dy = x.clone();
    let e = gpu
        .gradients(&ctx, &x, &Loss::Vjp(dy))
        .unwrap_err()
        .to_string();
    assert!(e.contains("token ids"), "{e}");
    // A model without an embedding refuses tokens.
    let plain = GpuModel::new(
        &ctx,
        &Model::random(small_model_config(1, 1, true, Attention::Exact), 2).unwrap(),
    )
    .unwrap();
    let e = plain
        .forward_keep_tokens(&ctx, &Tokens::new(1, 1, vec![0]).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("vocab_size"), "{e}");
}

/// The estimate made before a language model's pass bounds what it holds at once, the logits
/// and their gradient included (vocabulary 4000 against a width of 16: the logits dominate).
#[test]
fn the_memory_estimate_counts_a_language_models_logits() {
    let Some(ctx) = common::gpu() else { return };
    let config = ModelConfig {
        vocab_size: Some(4000),
        max_seq: Some(300),
        head: Some(HeadKind::Separate),
        ..small_model_config(2, 2, true, Attention::Poly { degree: 2 })
    };
    let model = Model::random(config, 9).unwrap();
    let (batch, n) = (2, 300);
    let tokens = Tokens::new(
        batch,
        n,
        (0..batch * n).map(|i| (i * 7 % 4000) as u32).collect(),
    )
    .unwrap();
    let loss = Loss::CrossEntropy {
        targets: (0..batch * n).map(|i| (i * 3 % 4000) as i64).collect(),
        ignore_index: -1,
    };
    let estimate = GpuModel::memory_estimate(&ctx, model.config(), batch, n).unwrap();
    ctx.reset_allocation_counters();
    let gpu = GpuModel::new(&ctx, &model).unwrap();
    gpu.gradients_tokens(&ctx, &tokens, &loss).unwrap();
    drop(gpu);
    let peak = ctx.peak_live_bytes();
    let buffers = estimate.device_bytes - estimate.result_bytes;
    eprintln!("peak {peak}, estimate {buffers}");
    assert!(peak <= buffers, "peak {peak} above the estimate {buffers}");
    assert!(
        buffers <= 3 * peak,
        "estimate {buffers} is loose against the peak {peak}"
    );
    assert!(ctx.largest_allocation() <= estimate.largest_buffer);
}

/// Automatic attention in a language model's pass, from the certificates: a layer whose logits
/// are small gets poly g = 2, and its pass is bit for bit the fixed poly g = 2 pass; a layer
/// whose q and k weights are scaled 30x gets exact attention; `attentions()` says which.
#[test]
fn automatic_attention_in_a_language_model_pass() {
    let Some(ctx) = common::gpu() else { return };
    let config = lm_config(
        Attention::Poly { degree: 4 },
        Some(HeadKind::Tied),
        Some(24),
    );
    let model = Model::init(config, 21).unwrap();
    let tokens = Tokens::new(2, 24, (0..48).map(|i| (i * 5 % 11) as u32).collect()).unwrap();
    let loss = Loss::CrossEntropy {
        targets: (0..48).map(|i| (i % 11) as i64).collect(),
        ignore_index: -1,
    };
    let auto = polygrad::AutoAttention::new(1e-2, 4).unwrap();

    let gpu = GpuModel::new(&ctx, &model).unwrap();
    let pass = gpu.forward_keep_tokens_auto(&ctx, &tokens, auto).unwrap();
    let chosen = gpu.backward_loss(&ctx, pass, &loss).unwrap();
    let two = Attention::Poly { degree: 2 };
    assert_eq!(chosen.attentions(), &[two, two]);
    let fixed_model = model
        .with_config(model.config().with_attention(two))
        .unwrap();
    let fixed = GpuModel::new(&ctx, &fixed_model).unwrap();
    let pass = fixed.forward_keep_tokens(&ctx, &tokens).unwrap();
    let fixed_grads = fixed.backward_loss(&ctx, pass, &loss).unwrap();
    let (a, b) = (
        chosen.read_back(&ctx).unwrap(),
        fixed_grads.read_back(&ctx).unwrap(),
    );
    assert_eq!(a.loss, b.loss);
    for (name, g) in &a.grads {
        let same =
            (g.data.iter().zip(&b.grads[name].data)).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name}");
    }

    let sharp = polygrad::validate::with_logit_scales(
        &Model::random(model.config().clone(), 22).unwrap(),
        &[1.0, 30.0],
    )
    .unwrap();
    let gpu = GpuModel::new(&ctx, &sharp).unwrap();
    let pass = gpu.forward_keep_tokens_auto(&ctx, &tokens, auto).unwrap();
    let grads = gpu.backward_loss(&ctx, pass, &loss).unwrap();
    assert_eq!(
        grads.attentions()[1],
        Attention::Exact,
        "{:?}",
        grads.attentions()
    );
    grads.read_back(&ctx).unwrap().check_finite().unwrap();
}
