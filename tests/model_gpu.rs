//! The whole model on the GPU against the f64 reference, fresh random models and inputs.

mod common;

use polygrad::validate::{check_model, random_model_input, small_model_config, MODEL_TOLERANCE};
use polygrad::{Attention, Loss, Model};

fn check_case(
    layers: usize,
    heads: usize,
    batch: usize,
    seq_len: usize,
    causal: bool,
    attention: Attention,
    seed: u64,
) {
    let Some(ctx) = common::gpu() else { return };
    let config = small_model_config(layers, heads, causal, attention);
    let model = Model::random(config, seed).unwrap();
    let (x, dy) = random_model_input(model.config(), batch, seq_len, seed + 1);
    let checks = check_model(&ctx, &model, &x, &Loss::Vjp(dy)).unwrap();
    let label = format!(
        "L={layers} H={heads} B={batch} n={seq_len} causal={causal} {attention} seed={seed}"
    );
    let worst = checks
        .iter()
        .max_by(|a, b| a.error.total_cmp(&b.error))
        .unwrap();
    eprintln!("{label}: worst {} {:.1e}", worst.tensor, worst.error);
    for c in &checks {
        assert!(
            c.passed(MODEL_TOLERANCE),
            "{label}: {} relative error {:e}",
            c.tensor,
            c.error
        );
    }
}

/// The matrix for one attention: L in {1, 3}, H in {1, 4}, B in {1, 2}, n in
/// {1, 33, 200}, causal and not, a fresh model and input per case.
fn matrix(attention: Attention) {
    let mut rng = common::fresh_rng(&format!("matrix {attention}"));
    for layers in [1, 3] {
        for heads in [1, 4] {
            for batch in [1, 2] {
                for seq_len in [1, 33, 200] {
                    for causal in [false, true] {
                        let seed = rand::Rng::random(&mut rng);
                        check_case(layers, heads, batch, seq_len, causal, attention, seed);
                    }
                }
            }
        }
    }
}

#[test]
fn exact_models_match_the_reference() {
    matrix(Attention::Exact);
}

#[test]
fn poly_degree_2_models_match_the_reference() {
    matrix(Attention::Poly { degree: 2 });
}

#[test]
fn poly_degree_4_models_match_the_reference() {
    matrix(Attention::Poly { degree: 4 });
}

fn bits(t: &polygrad::HostTensor) -> Vec<u32> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

/// Every tensor of two results, bit for bit.
fn assert_identical(a: &polygrad::ModelGradients, b: &polygrad::ModelGradients, what: &str) {
    assert_eq!(bits(&a.y), bits(&b.y), "{what}: y differs");
    assert_eq!(bits(&a.grad_x), bits(&b.grad_x), "{what}: grad.x differs");
    assert_eq!(a.grads.len(), b.grads.len());
    for (name, g) in &a.grads {
        assert_eq!(bits(g), bits(&b.grads[name]), "{what}: grad.{name} differs");
    }
}

#[test]
fn two_runs_give_bit_identical_gradients() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("bit-identical");
    for attention in [Attention::Exact, Attention::Poly { degree: 2 }] {
        let seed = rand::Rng::random(&mut rng);
        let model = Model::random(small_model_config(2, 4, true, attention), seed).unwrap();
        let (x, dy) = random_model_input(model.config(), 2, 65, seed + 1);
        let gpu_model = polygrad::GpuModel::new(&ctx, &model).unwrap();
        let first = gpu_model
            .gradients(&ctx, &x, &Loss::Vjp(dy.clone()))
            .unwrap();
        let second = gpu_model.gradients(&ctx, &x, &Loss::Vjp(dy)).unwrap();
        assert_identical(&first, &second, &format!("{attention}"));
        // The forward alone computes the same y.
        let y = gpu_model.forward(&ctx, &x).unwrap();
        assert_eq!(bits(&y), bits(&first.y), "{attention}: forward's y differs");
    }
}

#[test]
fn mse_loss_matches_the_reference() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("mse");
    let seed = rand::Rng::random(&mut rng);
    let model = Model::random(
        small_model_config(2, 2, true, Attention::Poly { degree: 2 }),
        seed,
    )
    .unwrap();
    let (x, target) = random_model_input(model.config(), 2, 20, seed + 1);
    for c in check_model(&ctx, &model, &x, &Loss::Mse(target.clone())).unwrap() {
        assert!(
            c.passed(MODEL_TOLERANCE),
            "mse: {} relative error {:e}",
            c.tensor,
            c.error
        );
    }
    let gpu = polygrad::GpuModel::new(&ctx, &model).unwrap();
    let result = gpu.gradients(&ctx, &x, &Loss::Mse(target.clone())).unwrap();
    let expected: f64 = result
        .y
        .data
        .iter()
        .zip(&target.data)
        .map(|(&y, &t)| (y as f64 - t as f64).powi(2))
        .sum::<f64>()
        / x.data.len() as f64;
    assert!((result.loss.unwrap() - expected).abs() <= 1e-12 * expected.max(1.0));
}

#[test]
fn safetensors_round_trip_gives_identical_results() {
    let Some(ctx) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::fresh_rng("round trip");
    let seed = rand::Rng::random(&mut rng);
    let model = Model::random(small_model_config(2, 4, false, Attention::Exact), seed).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 17, seed + 1);
    let model_path = dir.path().join("model.safetensors");
    polygrad::io::write_model(&model_path, &model).unwrap();
    let read_back = polygrad::io::read_model(&model_path).unwrap();
    assert_eq!(read_back, model, "the model read back differs");

    let input_path = dir.path().join("input.safetensors");
    let tensors = polygrad::model::Tensors::from([
        ("x".to_string(), x.clone()),
        ("dy".to_string(), dy.clone()),
    ]);
    polygrad::io::write_tensors(&input_path, &tensors, Default::default()).unwrap();
    let (x2, loss2) = polygrad::io::read_input(&input_path, polygrad::io::LossKind::Vjp).unwrap();

    let original = polygrad::GpuModel::new(&ctx, &model)
        .unwrap()
        .gradients(&ctx, &x, &Loss::Vjp(dy))
        .unwrap();
    let reread = polygrad::GpuModel::new(&ctx, &read_back)
        .unwrap()
        .gradients(&ctx, &x2, &loss2)
        .unwrap();
    assert_identical(&original, &reread, "after a safetensors round trip");

    let out_path = dir.path().join("grads.safetensors");
    polygrad::io::write_gradients(&out_path, &original).unwrap();
    let (written, _) = polygrad::io::read_tensors(&out_path).unwrap();
    assert_eq!(written["y"], original.y);
    assert_eq!(written["grad.x"], original.grad_x);
    for (name, g) in &original.grads {
        assert_eq!(
            &written[&format!("grad.{name}")],
            g,
            "grad.{name} written wrongly"
        );
    }
    assert_eq!(written.len(), 2 + original.grads.len());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        3,
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn bad_inputs_are_refused_by_name_and_the_device_stays_usable() {
    let Some(ctx) = common::gpu() else { return };
    let model = Model::random(
        small_model_config(1, 2, true, Attention::Poly { degree: 2 }),
        5,
    )
    .unwrap();
    let gpu = polygrad::GpuModel::new(&ctx, &model).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 8, 6);
    let err = |x: &polygrad::HostTensor, loss: Loss| {
        gpu.gradients(&ctx, x, &loss).unwrap_err().to_string()
    };

    let mut wide = random_model_input(
        &polygrad::ModelConfig {
            d_model: 17,
            ..model.config().clone()
        },
        1,
        8,
        7,
    )
    .0;
    let e = err(&wide, Loss::Vjp(dy.clone()));
    assert!(e.contains("x") && e.contains("16"), "{e}");
    wide.shape = vec![8, 17];
    assert!(err(&wide, Loss::Vjp(dy.clone())).contains("x"));

    let mut nan_x = x.clone();
    nan_x.data[5] = f32::NAN;
    let e = err(&nan_x, Loss::Vjp(dy.clone()));
    assert!(
        e.contains("x") && e.contains("non-finite") && e.contains("5"),
        "{e}"
    );

    let short_dy = random_model_input(model.config(), 1, 7, 8).1;
    let e = err(&x, Loss::Vjp(short_dy));
    assert!(e.contains("dy"), "{e}");
    let mut inf_target = dy.clone();
    inf_target.data[0] = f32::INFINITY;
    let e = err(&x, Loss::Mse(inf_target));
    assert!(e.contains("target") && e.contains("non-finite"), "{e}");

    // Still usable afterwards.
    for c in check_model(&ctx, &model, &x, &Loss::Vjp(dy)).unwrap() {
        assert!(
            c.passed(MODEL_TOLERANCE),
            "after errors: {} {:e}",
            c.tensor,
            c.error
        );
    }
}

/// Issue 11's case: q and k weights times 500 put logits near 4e5, where exact attention
/// used to give NaN (e^x's reduction overflowed for x below about -4e5). Every tensor is
/// finite, and no further from the f64 reference than twice a plain f32 evaluation of the
/// same model (FlashAttention's rule; for the q and k weights' gradients, at least
/// LOGIT_ROUNDINGS roundings of the largest logit), wherever that rule is about the evaluation
/// rather than the instance: f32 rounds a logit of 4e5 by about 0.02, so in a row whose two largest logits
/// lie within a few units of each other the weights move by up to 1% whoever evaluates them,
/// and two f32 evaluations land at unrelated points of that range (measured: a gap of 1.18 gave
/// the GPU 1.1e-3 and plain f32 3.6e-4 on y). Such draws are checked for finiteness and
/// counted (5 in 405 draws); the rule is asserted on draws whose every top-two gap is at least
/// WELL_SEPARATED, where e^-gap is below f32's resolution. Over 400 such draws the worst
/// tensor other than the q and k weights' gradients used 35% of its bar.
#[test]
fn exact_attention_stays_finite_with_logits_near_4e5() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("huge logits");
    let (mut checked, mut near_ties) = (0, 0);
    while checked < HUGE_LOGIT_CASES {
        let seed: u64 = rand::Rng::random(&mut rng);
        if huge_logits_case(&ctx, seed) {
            checked += 1;
        } else {
            near_ties += 1;
            assert!(
                near_ties <= HUGE_LOGIT_CASES,
                "{near_ties} draws with near-tied logits"
            );
        }
    }
    eprintln!("{checked} draws checked against plain f32, {near_ties} near-tied draws only for finiteness");
}

/// Fresh well-separated models per run (each about 30 ms).
const HUGE_LOGIT_CASES: usize = 20;

/// The smallest top-two logit gap at which a row's second weight, e^-gap, is below f32's
/// resolution even after f32 rounds its logits (e^-20 = 2e-9).
const WELL_SEPARATED: f64 = 20.0;

/// One draw: asserts every tensor finite and, where every attention row is well separated
/// (returns true), within twice plain f32's error.
fn huge_logits_case(ctx: &polygrad::GpuContext, seed: u64) -> bool {
    let model = Model::random(small_model_config(1, 2, true, Attention::Exact), seed).unwrap();
    let config = model.config().clone();
    let mut params = model.params().clone();
    for (name, t) in params.iter_mut() {
        if name.contains("attn.q.") || name.contains("attn.k.") {
            t.data.iter_mut().for_each(|v| *v *= 500.0);
        }
    }
    let model = Model::new(config, params).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 33, seed + 1);
    let checks = check_model(ctx, &model, &x, &Loss::Vjp(dy.clone())).unwrap();
    for c in &checks {
        assert!(
            c.error.is_finite(),
            "seed {seed}: {} is not finite",
            c.tensor
        );
    }
    let (gap, range) = logit_gap_and_range(&model, &x);
    if gap < WELL_SEPARATED {
        eprintln!("seed {seed}: two logits {gap:.3} apart: checked for finiteness only");
        return false;
    }
    let plain = plain_f32_errors(&model, &x, &dy);
    for c in &checks {
        let twice_plain = 2.0 * plain[&c.tensor] + PLAIN_F32_SLACK;
        let bar = if c.tensor.contains("attn.q.") || c.tensor.contains("attn.k.") {
            twice_plain.max(LOGIT_ROUNDINGS * range * f64::from(f32::EPSILON) / 2.0)
        } else {
            twice_plain
        };
        eprintln!(
            "seed {seed}: {} relative error {:e} (bar {bar:e}; plain f32 {:e}; |s| up to {range:.3e})",
            c.tensor, c.error, plain[&c.tensor]
        );
        assert!(
            c.error <= bar,
            "seed {seed}: {} relative error {:e} above {bar:e}",
            c.tensor,
            c.error
        );
    }
    true
}

/// In f64, for a one-layer model on x: the smallest gap between the two largest logits of any
/// attention row (causal rows with at least two keys), and the largest |logit|.
fn logit_gap_and_range(model: &Model, x: &polygrad::HostTensor) -> (f64, f64) {
    use polygrad::reference::{layer_norm::layer_norm_forward, linear::linear_forward, widen};
    let c = model.config();
    let p = |name: &str| widen(&model.params()[&format!("blocks.0.{name}")].data);
    let h1 = layer_norm_forward(&widen(&x.data), &p("ln1.weight"), &p("ln1.bias"), c.ln_eps);
    let width = c.n_heads * c.d_qk;
    let (q, k) = (
        linear_forward(&h1, &p("attn.q.weight"), None, width),
        linear_forward(&h1, &p("attn.k.weight"), None, width),
    );
    let n = x.shape[1];
    let scale = 1.0 / (c.d_qk as f64).sqrt();
    let (mut smallest, mut largest) = (f64::INFINITY, 0.0f64);
    for b in 0..x.shape[0] {
        for h in 0..c.n_heads {
            let at = |i: usize| (b * n + i) * width + h * c.d_qk;
            for a in 1..n {
                let mut logits: Vec<f64> = (0..=a)
                    .map(|j| {
                        let (qa, kj) = (&q[at(a)..at(a) + c.d_qk], &k[at(j)..at(j) + c.d_qk]);
                        qa.iter().zip(kj).map(|(u, w)| u * w).sum::<f64>() * scale
                    })
                    .collect();
                largest = logits.iter().fold(largest, |m, s| m.max(s.abs()));
                logits.sort_by(|u, w| w.total_cmp(u));
                smallest = smallest.min(logits[0] - logits[1]);
            }
        }
    }
    (smallest, largest)
}

/// The q and k weights' gradients consist only of the rows' small weights e^-gap, which move
/// relatively by the rounding of their logits, |s| 2^-24, in any f32 evaluation: measured over
/// 400 draws, up to 0.95 |s|max 2^-24 (the GPU) and 5.7 times plain f32's own error. Their
/// bar is the larger of twice plain f32's error and this many roundings of the largest logit.
const LOGIT_ROUNDINGS: f64 = 4.0;

/// Added to twice plain f32's error: where plain f32 happens to land within a few roundings
/// of f64, a bar of twice that is below what any f32 evaluation can promise.
const PLAIN_F32_SLACK: f64 = 1e-6;

/// The error of a plain f32 evaluation (the reference's code, computed in f32) of every
/// tensor check_model reports, by the same name and measure.
fn plain_f32_errors(
    model: &Model,
    x: &polygrad::HostTensor,
    dy: &polygrad::HostTensor,
) -> std::collections::BTreeMap<String, f64> {
    use polygrad::reference::model::{ReferenceLoss, ReferenceModel};
    use polygrad::reference::{gradient_error, relative_error, widen};
    let (batch, n) = (x.shape[0], x.shape[1]);
    let exact = ReferenceModel::<f64>::from_model(model).gradients(
        &widen(&x.data),
        batch,
        n,
        ReferenceLoss::Vjp(&widen(&dy.data)),
    );
    let plain = ReferenceModel::<f32>::from_model(model).gradients(
        &x.data,
        batch,
        n,
        ReferenceLoss::Vjp(&dy.data),
    );
    let mut errors = std::collections::BTreeMap::new();
    errors.insert("y".to_string(), relative_error(&plain.y, &exact.y));
    errors.insert(
        "grad.x".to_string(),
        gradient_error(&plain.grad_x, &exact.grad_x),
    );
    for (name, g) in &exact.grads {
        errors.insert(
            format!("grad.{name}"),
            gradient_error(&plain.grads[name], g),
        );
    }
    errors
}

/// The estimate made before a pass bounds what the pass holds at once, within 3x of it and
/// no more than what it allocates in all: for both attentions, causal and not, one batch
/// element and a batch too big for windows-16x4, one chunk and many. (Measured: 1.5x at
/// n = 8000, 2.2x at n = 33, where 64 KiB packing windows dominate.)
#[test]
fn the_memory_estimate_bounds_what_a_pass_holds() {
    let Some(ctx) = common::gpu() else { return };
    let cases = [
        (Attention::Poly { degree: 2 }, true, 1, 33),
        (Attention::Poly { degree: 2 }, true, 1, 700),
        (Attention::Poly { degree: 4 }, false, 5, 200),
        (Attention::Exact, true, 1, 300),
        (Attention::Exact, false, 5, 40),
        (Attention::Poly { degree: 2 }, true, 2, 8000),
    ];
    for (attention, causal, batch, seq_len) in cases {
        let config = small_model_config(2, 2, causal, attention);
        let model = Model::random(config, 7).unwrap();
        let (x, dy) = random_model_input(model.config(), batch, seq_len, 8);
        let estimate =
            polygrad::GpuModel::memory_estimate(&ctx, model.config(), batch, seq_len).unwrap();
        ctx.reset_allocation_counters();
        let gpu = polygrad::GpuModel::new(&ctx, &model).unwrap();
        gpu.gradients(&ctx, &x, &Loss::Vjp(dy)).unwrap();
        drop(gpu);
        let (peak, allocated) = (ctx.peak_live_bytes(), ctx.allocated_bytes());
        // The estimate also counts the readback's staging, which the meter does not see.
        let buffers = estimate.device_bytes - estimate.result_bytes;
        eprintln!(
            "{attention} causal={causal} B={batch} n={seq_len}: peak {peak}, estimate {buffers}, \
             allocated in all {allocated}"
        );
        assert!(
            peak <= buffers,
            "{attention} n={seq_len}: peak {peak} above the estimate {buffers}"
        );
        assert!(
            buffers <= 3 * peak,
            "{attention} n={seq_len}: estimate {buffers} is loose against the peak {peak}"
        );
        assert!(
            buffers <= allocated,
            "{attention} n={seq_len}: estimate {buffers} above everything allocated, {allocated}"
        );
        assert!(ctx.largest_allocation() <= estimate.largest_buffer);
    }
}
