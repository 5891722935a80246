//! The certificate's inputs on the GPU (per head: the logit bound R and max |v|) against their
//! f64 definition, over several spans; and each layer's bound as a model pass returns it.

mod common;

use polygrad::attention::AttentionShape;
use polygrad::ops::{certificate, upload_inputs, AttentionInputs};
use polygrad::validate::{random_attention_inputs, random_model_input, small_model_config};
use polygrad::{Attention, Loss, Model};

#[test]
fn head_bounds_match_f64_over_several_spans() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("certificate");
    // n = 9000 with widths 4 + 4: three spans of 3640 rows per head.
    for (batch, heads, n, d_qk, d_v) in [(2, 3, 9000, 4, 4), (1, 2, 33, 16, 64)] {
        let shape = AttentionShape::new(batch, heads, n, d_qk, d_v, true);
        let seed: u64 = rand::Rng::random(&mut rng);
        let host = random_attention_inputs(&shape, 2.0, seed);
        let (q, k, v, _) = upload_inputs(&ctx, &shape, AttentionInputs::from_array(&host)).unwrap();
        let mut encoder = ctx.encoder("certificate test");
        let maxima = certificate::record(&ctx, &mut encoder, &shape, (&q, &k, &v)).unwrap();
        ctx.submit("certificate test", encoder).unwrap();
        let got = certificate::head_bounds(&shape, &maxima.download(&ctx).unwrap());
        let widen = polygrad::reference::widen;
        let expected = polygrad::reference::certificate::head_bounds(
            &shape,
            &widen(&host[0]),
            &widen(&host[1]),
            &widen(&host[2]),
        );
        assert_eq!(got.len(), shape.total_heads());
        for (g, e) in got.iter().zip(&expected) {
            let rel = |a: f64, b: f64| (a - b).abs() / b;
            assert!(
                rel(g.logit_bound, e.logit_bound) < 1e-6,
                "{shape} seed {seed}: {g:?} against {e:?}"
            );
            assert!(
                rel(g.max_abs_v, e.max_abs_v) < 1e-6,
                "{shape} seed {seed}: {g:?} against {e:?}"
            );
        }
    }
}

#[test]
fn a_model_pass_returns_each_layers_bound() {
    let Some(ctx) = common::gpu() else { return };
    let config = small_model_config(2, 2, true, Attention::Poly { degree: 2 });
    let model = Model::random(config, 51).unwrap();
    let (x, dy) = random_model_input(model.config(), 2, 40, 52);
    let gpu = polygrad::GpuModel::new(&ctx, &model).unwrap();
    let result = gpu.gradients(&ctx, &x, &Loss::Vjp(dy)).unwrap();
    assert_eq!(result.attention_bounds.len(), 2);
    for (l, b) in result.attention_bounds.iter().enumerate() {
        assert_eq!(b.layer, l);
        assert_eq!(b.heads.len(), 2 * 2);
        assert!(b.logit_bound > 0.0 && b.logit_bound.is_finite(), "{b:?}");
        let eps = polygrad::poly::taylor_relative_error_bound(b.logit_bound, 2);
        assert_eq!(b.eps, eps);
        assert_eq!(b.output_bound.is_some(), eps < 1.0, "{b:?}");
    }
}

#[test]
fn a_checked_pass_measures_each_poly_layer_on_sampled_rows_and_leaves_the_gradients_alone() {
    let Some(ctx) = common::gpu() else { return };
    for attention in [Attention::Poly { degree: 2 }, Attention::Exact] {
        let config = small_model_config(2, 2, true, attention);
        let model = Model::random(config, 53).unwrap();
        let (x, dy) = random_model_input(model.config(), 2, 50, 54);
        let gpu = polygrad::GpuModel::new(&ctx, &model).unwrap();
        let loss = Loss::Vjp(dy);
        let plain = gpu.gradients(&ctx, &x, &loss).unwrap();
        let checks = polygrad::ErrorChecks::sampled(8, 55);
        let checked = gpu.gradients_checked(&ctx, &x, &loss, checks).unwrap();
        assert_eq!(plain.y.data, checked.y.data, "{attention}");
        assert_eq!(plain.grad_x.data, checked.grad_x.data, "{attention}");
        assert_eq!(plain.grads, checked.grads, "{attention}");
        for (p, c) in plain.attention_bounds.iter().zip(&checked.attention_bounds) {
            assert_eq!(p.sampled, None);
            match attention {
                // Exact attention has nothing to measure.
                Attention::Exact => assert_eq!(c.sampled, None),
                Attention::Poly { .. } => {
                    let s = c.sampled.expect("a poly layer is sampled");
                    assert_eq!(s.rows, 8);
                    let dq = s.dq_rel_err.expect("the backward measures dq");
                    // Random weights give logits of order 1: an error well above rounding.
                    assert!(s.o_rel_err > 1e-6 && s.o_rel_err < 1.0, "{c:?}");
                    assert!(dq > 1e-6 && dq.is_finite(), "{c:?}");
                }
            }
        }
        // The same seed draws the same rows: the same measurement again.
        let again = gpu.gradients_checked(&ctx, &x, &loss, checks).unwrap();
        assert_eq!(again.attention_bounds, checked.attention_bounds);
    }
}

#[test]
fn the_certified_bound_holds_over_seeds_scales_and_degrees() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("certificate holds");
    let max_logits = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];
    let mut certified = 0;
    let mut closest = 0.0f64;
    for causal in [true, false] {
        for (heads, n, d_qk, d_v) in [(2, 48, 4, 3), (1, 100, 8, 8)] {
            for _ in 0..2 {
                let seed: u64 = rand::Rng::random(&mut rng);
                let shape = AttentionShape::new(1, heads, n, d_qk, d_v, causal);
                let sweep =
                    polygrad::sweep::error_sweep(&ctx, shape, &max_logits, &[2, 4, 6, 8], seed)
                        .unwrap();
                for p in sweep {
                    assert!(p.o_max_error.is_finite(), "{shape} seed {seed}: {p:?}");
                    if let Some(bound) = p.certified {
                        certified += 1;
                        closest = closest.max(p.o_max_error / bound);
                        assert!(p.o_max_error <= bound, "{shape} seed {seed}: {p:?}");
                    }
                }
            }
        }
    }
    // The sweep reaches logits small enough for bounds at every degree.
    assert!(certified >= 40, "only {certified} points had a bound");
    eprintln!("{certified} certified points; the measured error reached {closest:.3} of its bound");
}
