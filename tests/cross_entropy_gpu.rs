//! Cross-entropy on the device (ops::cross_entropy, Loss::CrossEntropy) against the f64
//! reference.

mod common;

use polygrad::ops::cross_entropy::{cross_entropy, Targets};
use polygrad::reference::{cross_entropy::cross_entropy as reference, relative_error, widen};
use polygrad::validate::{check_model, random_model_input, small_model_config, MODEL_TOLERANCE};
use polygrad::{Attention, GpuTensor, Loss, Model};
use rand::Rng;

/// Ragged rows and classes, logits up to +-30 (exp would overflow without the max), about a
/// fifth of the rows ignored: the loss and dL/dlogits against f64.
#[test]
fn the_kernel_matches_f64() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("cross-entropy");
    let mut worst: f64 = 0.0;
    for (rows, classes) in [(1, 1), (1, 7), (5, 2), (37, 256), (300, 65), (64, 1000)] {
        let scale = 30.0;
        let logits = common::random_vec(&mut rng, rows * classes, scale);
        let targets: Vec<i64> = (0..rows)
            .map(|_| {
                if rng.random_bool(0.2) {
                    -1
                } else {
                    rng.random_range(0..classes as i64)
                }
            })
            .collect();
        let gpu_logits = GpuTensor::upload(&ctx, "logits", &[rows, classes], &logits).unwrap();
        let checked = Targets::new(&targets, -1, rows, classes).unwrap();
        let (loss, grad) = cross_entropy(&ctx, &gpu_logits, &checked).unwrap();
        let (want_loss, want_grad) = reference(&widen(&logits), classes, &targets, -1);
        let label = format!("{rows} x {classes}");
        let loss_err = (loss - want_loss).abs() / want_loss.abs().max(1e-30);
        let grad_err = relative_error(&grad.download(&ctx).unwrap(), &want_grad);
        if checked.counted() == 0 {
            assert_eq!(loss, 0.0, "{label}: every row ignored");
            assert!(grad.download(&ctx).unwrap().iter().all(|&g| g == 0.0));
            continue;
        }
        assert!(loss_err <= 1e-5, "{label}: loss {loss} against {want_loss}");
        assert!(
            grad_err <= 1e-5,
            "{label}: dL/dlogits relative error {grad_err:.2e}"
        );
        worst = worst.max(loss_err).max(grad_err);
    }
    eprintln!("worst relative error {worst:.2e}");
}

/// A whole model trained on cross-entropy: y, the loss and every gradient against the f64
/// reference model given the same targets.
#[test]
fn a_model_with_cross_entropy_matches_the_reference() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("model cross-entropy");
    for attention in [Attention::Exact, Attention::Poly { degree: 2 }] {
        let seed: u64 = rng.random();
        let config = small_model_config(2, 2, true, attention);
        let model = Model::random(config, seed).unwrap();
        let (x, _) = random_model_input(model.config(), 2, 19, seed + 1);
        let d = model.config().d_model as i64;
        let targets: Vec<i64> = (0..38)
            .map(|i| if i % 7 == 3 { -100 } else { (i * 5) % d })
            .collect();
        let loss = Loss::CrossEntropy {
            targets,
            ignore_index: -100,
        };
        for check in check_model(&ctx, &model, &x, &loss).unwrap() {
            assert!(
                check.passed(MODEL_TOLERANCE),
                "{attention} seed {seed}: {} relative error {:e}",
                check.tensor,
                check.error
            );
        }
    }
}

/// A row whose target leads by 40: its loss, about 4e-18, is far below f32's epsilon; summed
/// as ln(sum) it would round to 0. Both sides take ln(1 + the rest). The targets' gradients
/// are as tiny, and taken as minus the other terms over the sum.
#[test]
fn a_dominant_target_keeps_its_tiny_loss() {
    let Some(ctx) = common::gpu() else { return };
    let logits = [40.0f32, 0.0, -3.0, 37.5, 1.0, 2.0];
    let targets = [0, 0];
    let gpu_logits = GpuTensor::upload(&ctx, "logits", &[2, 3], &logits).unwrap();
    let (loss, grad) = cross_entropy(
        &ctx,
        &gpu_logits,
        &Targets::new(&targets, -1, 2, 3).unwrap(),
    )
    .unwrap();
    let (want, want_grad) = reference(&widen(&logits), 3, &targets, -1);
    let exact = ((-40.0f64).exp() + (-43.0f64).exp()).ln_1p() / 2.0
        + ((-35.5f64).exp() + (-36.5f64).exp()).ln_1p() / 2.0;
    assert!(
        (want - exact).abs() <= 1e-12 * exact,
        "reference {want:e} against {exact:e}"
    );
    assert!(
        (loss - want).abs() <= 1e-5 * want,
        "{loss:e} against {want:e}"
    );
    // The targets' gradients are minus the other terms over the sum, far below either float's
    // epsilon: 1 / sum - 1 would give 0 (a relative error of 1 over these rows).
    let exact_target =
        -((-40.0f64).exp() + (-43.0f64).exp()) / (1.0 + (-40.0f64).exp() + (-43.0f64).exp()) / 2.0;
    assert!(
        (want_grad[0] - exact_target).abs() <= 1e-12 * exact_target.abs(),
        "reference dL/dl_00 {:e} against {exact_target:e}",
        want_grad[0]
    );
    let err = relative_error(&grad.download(&ctx).unwrap(), &want_grad);
    assert!(err <= 1e-5, "dL/dlogits relative error {err:.2e}");
}

#[test]
fn bad_targets_are_refused_by_name() {
    let Some(ctx) = common::gpu() else { return };
    let config = small_model_config(1, 1, true, Attention::Exact);
    let model = Model::random(config, 1).unwrap();
    let (x, _) = random_model_input(model.config(), 1, 4, 2);
    let gpu = polygrad::GpuModel::new(&ctx, &model).unwrap();
    let cases = [
        (vec![0, 1, 2], "4 values"),
        (vec![0, 1, 16, 2], "row 2: class 16 is outside 0..16"),
        (vec![0, -5, 1, 2], "row 1: class -5"),
    ];
    for (targets, expected) in cases {
        let loss = Loss::CrossEntropy {
            targets,
            ignore_index: -100,
        };
        let err = gpu.gradients(&ctx, &x, &loss).unwrap_err().to_string();
        assert!(err.contains("targets") && err.contains(expected), "{err}");
    }
    // Every row ignored: loss 0, gradients 0.
    let loss = Loss::CrossEntropy {
        targets: vec![-100; 4],
        ignore_index: -100,
    };
    let g = gpu.gradients(&ctx, &x, &loss).unwrap();
    assert_eq!(g.loss, Some(0.0));
    assert!(g.grad_x.data.iter().all(|&v| v == 0.0));
}
