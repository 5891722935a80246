//! The training backend's pieces (issue 14): the pass in two halves, parameters written in place
//! on the device.

mod common;

use polygrad::validate::{random_model_input, small_model_config};
use polygrad::{Attention, GpuModel, HostTensor, Loss, Model, ModelGradients};
use rand::Rng;

/// Whether two results are the same bits: y, grad.x and every parameter's gradient.
fn assert_bitwise_equal(a: &ModelGradients, b: &ModelGradients, label: &str) {
    let same = |x: &HostTensor, y: &HostTensor, what: &str| {
        assert_eq!(x.shape, y.shape, "{label}: {what} shape");
        let differ = (x.data.iter().zip(&y.data)).position(|(p, q)| p.to_bits() != q.to_bits());
        assert!(differ.is_none(), "{label}: {what} differs at {differ:?}");
    };
    same(&a.y, &b.y, "y");
    same(&a.grad_x, &b.grad_x, "grad.x");
    assert_eq!(a.grads.len(), b.grads.len(), "{label}: gradient count");
    for (name, g) in &a.grads {
        same(g, &b.grads[name], &format!("grad.{name}"));
    }
}

#[test]
fn forward_keep_then_backward_equals_gradients_bit_for_bit() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("split pass");
    for attention in [Attention::Exact, Attention::Poly { degree: 2 }] {
        for (causal, seq_len) in [(true, 37), (false, 20)] {
            let seed = rng.random();
            let config = small_model_config(2, 2, causal, attention);
            let model = Model::random(config, seed).unwrap();
            let (x, dy) = random_model_input(model.config(), 2, seq_len, seed + 1);
            let gpu = GpuModel::new(&ctx, &model).unwrap();
            let whole = gpu.gradients(&ctx, &x, &Loss::Vjp(dy.clone())).unwrap();

            let pass = gpu.forward_keep(&ctx, &x).unwrap();
            let y = pass.y(&ctx).unwrap();
            let split = gpu
                .backward(&ctx, pass, &dy)
                .unwrap()
                .read_back(&ctx)
                .unwrap();
            let label = format!("{attention} causal={causal} n={seq_len} seed={seed}");
            assert_eq!(
                y.data, split.y.data,
                "{label}: y before and after the backward"
            );
            assert_bitwise_equal(&whole, &split, &label);
            assert_eq!(split.attention_bounds.len(), 2);
            assert_eq!(
                split.attention_bounds[1].logit_bound, whole.attention_bounds[1].logit_bound,
                "{label}: certificates"
            );
        }
    }
}

#[test]
fn backward_refuses_a_dy_of_another_shape_or_not_finite() {
    let Some(ctx) = common::gpu() else { return };
    let config = small_model_config(1, 1, true, Attention::Poly { degree: 2 });
    let model = Model::random(config, 7).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 9, 8);
    let gpu = GpuModel::new(&ctx, &model).unwrap();

    let short = HostTensor::new("dy", vec![1, 8, 16], vec![0.5; 8 * 16]).unwrap();
    let pass = gpu.forward_keep(&ctx, &x).unwrap();
    let err = gpu.backward(&ctx, pass, &short).err().unwrap().to_string();
    assert!(err.contains("dy") && err.contains("[1, 8, 16]"), "{err}");

    let mut nan = dy.clone();
    nan.data[5] = f32::NAN;
    let pass = gpu.forward_keep(&ctx, &x).unwrap();
    let err = gpu.backward(&ctx, pass, &nan).err().unwrap().to_string();
    assert!(err.contains("dy") && err.contains("index 5"), "{err}");

    // The device is still usable.
    let pass = gpu.forward_keep(&ctx, &x).unwrap();
    let grads = gpu
        .backward(&ctx, pass, &dy)
        .unwrap()
        .read_back(&ctx)
        .unwrap();
    grads.check_finite().unwrap();
}

#[test]
fn parameters_written_in_place_equal_a_new_model() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("parameters in place");
    let (seed_a, seed_b): (u64, u64) = (rng.random(), rng.random());
    let config = small_model_config(2, 2, true, Attention::Poly { degree: 2 });
    let a = Model::random(config.clone(), seed_a).unwrap();
    let b = Model::random(config, seed_b).unwrap();
    let (x, dy) = random_model_input(a.config(), 1, 24, seed_a ^ seed_b);
    let loss = Loss::Vjp(dy);
    let label = format!("seeds {seed_a} {seed_b}");

    let mut gpu = GpuModel::new(&ctx, &a).unwrap();
    ctx.reset_allocation_counters();
    gpu.write_params(&ctx, b.params()).unwrap();
    assert_eq!(
        ctx.allocated_bytes(),
        0,
        "{label}: writing parameters allocated"
    );
    assert_eq!(&gpu.read_params(&ctx).unwrap(), b.params(), "{label}");
    let written = gpu.gradients(&ctx, &x, &loss).unwrap();
    let fresh = GpuModel::new(&ctx, &b)
        .unwrap()
        .gradients(&ctx, &x, &loss)
        .unwrap();
    assert_bitwise_equal(&written, &fresh, &label);

    // One tensor at a time, back to a's values.
    for (name, value) in a.params() {
        gpu.write_param(&ctx, name, value).unwrap();
    }
    let back = gpu.gradients(&ctx, &x, &loss).unwrap();
    let of_a = GpuModel::new(&ctx, &a)
        .unwrap()
        .gradients(&ctx, &x, &loss)
        .unwrap();
    assert_bitwise_equal(&back, &of_a, &label);
}

#[test]
fn refused_parameter_writes_name_the_tensor_and_change_nothing() {
    let Some(ctx) = common::gpu() else { return };
    let config = small_model_config(1, 1, true, Attention::Exact);
    let a = Model::random(config.clone(), 3).unwrap();
    let b = Model::random(config, 4).unwrap();
    let mut gpu = GpuModel::new(&ctx, &a).unwrap();

    let w = &b.params()["blocks.0.attn.q.weight"];
    let err = gpu.write_param(&ctx, "blocks.0.attn.x.weight", w);
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("blocks.0.attn.x.weight"));
    let wrong = HostTensor::new("w", vec![w.data.len()], w.data.clone()).unwrap();
    let err = gpu.write_param(&ctx, "blocks.0.attn.q.weight", &wrong);
    assert!(err.unwrap_err().to_string().contains("expected shape"));

    // b's parameters with one NaN in the last tensor: nothing is written.
    let mut poisoned = b.params().clone();
    let last = poisoned.keys().last().unwrap().clone();
    poisoned.get_mut(&last).unwrap().data[0] = f32::NAN;
    let err = gpu.write_params(&ctx, &poisoned).unwrap_err().to_string();
    assert!(err.contains(&last), "{err}");
    assert_eq!(&gpu.read_params(&ctx).unwrap(), a.params());
}

/// Relative error over a whole tensor: ||got - want|| / ||want||.
fn relative(got: &[f64], want: &[f64]) -> f64 {
    let diff: f64 = got.iter().zip(want).map(|(g, w)| (g - w) * (g - w)).sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    (diff / norm).sqrt()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Six AdamW steps on the device against f64 AdamW fed the same gradients (the device's, read
/// back after each backward): each tensor's update since the start, both moments and the
/// global norm, with clipping active (the norm above the limit), clipping off, and weight decay.
#[test]
fn adamw_steps_match_f64() {
    use polygrad::reference::adamw::AdamWReference;
    use polygrad::{AdamW, AdamWState};
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("adamw");
    for max_grad_norm in [Some(0.05), None] {
        let seed: u64 = rng.random();
        let opt = AdamW {
            lr: 1e-2,
            weight_decay: 0.1,
            max_grad_norm,
            ..AdamW::default()
        };
        let config = small_model_config(2, 2, true, Attention::Poly { degree: 2 });
        let model = Model::random(config, seed).unwrap();
        let (x, dy) = random_model_input(model.config(), 1, 17, seed + 1);
        let mut gpu = GpuModel::new(&ctx, &model).unwrap();
        let mut state = AdamWState::new(&ctx, &gpu).unwrap();
        let start: Vec<(String, HostTensor)> = model.params().clone().into_iter().collect();
        let mut reference = AdamWReference::new(
            (start.iter())
                .map(|(_, t)| (t.shape.clone(), widen(&t.data)))
                .collect(),
        );
        let label = format!("clip {max_grad_norm:?} seed {seed}");
        let mut worst = 0.0f64;
        for step in 1..=6 {
            let pass = gpu.forward_keep(&ctx, &x).unwrap();
            let grads = gpu.backward(&ctx, pass, &dy).unwrap();
            let host = grads.read_back(&ctx).unwrap();
            let host_grads: Vec<Vec<f64>> = start
                .iter()
                .map(|(name, _)| widen(&host.grads[name].data))
                .collect();
            let norm = reference.step(&opt, &host_grads);
            state.step(&ctx, &opt, &mut gpu, &grads).unwrap();
            if max_grad_norm.is_some() {
                let got = state.last_grad_norm(&ctx).unwrap();
                assert!(norm > 0.05, "{label}: clipping is not active (norm {norm})");
                assert!(
                    (got - norm).abs() <= 1e-5 * norm,
                    "{label}: norm {got} against {norm}"
                );
            }
            let params = gpu.read_params(&ctx).unwrap();
            let (m, v) = state.moments(&ctx).unwrap();
            for (i, (name, p0)) in start.iter().enumerate() {
                let moved = |p: &[f64]| -> Vec<f64> {
                    p.iter().zip(&p0.data).map(|(p, &s)| p - s as f64).collect()
                };
                let checks = [
                    (
                        "update",
                        moved(&widen(&params[name].data)),
                        moved(&reference.params[i]),
                    ),
                    ("m", widen(&m[name].data), reference.m[i].clone()),
                    ("v", widen(&v[name].data), reference.v[i].clone()),
                ];
                for (what, got, want) in checks {
                    let err = relative(&got, &want);
                    worst = worst.max(err);
                    assert!(
                        err <= 1e-5,
                        "{label}: step {step} {name} {what}: relative error {err:.2e}"
                    );
                }
            }
        }
        assert_eq!(state.steps(), 6);
        eprintln!("{label}: worst relative error {worst:.2e}");
    }
}

#[test]
fn adamw_refuses_settings_out_of_range_by_name() {
    use polygrad::AdamW;
    let cases = [
        (
            AdamW {
                lr: -1.0,
                ..AdamW::default()
            },
            "lr",
        ),
        (
            AdamW {
                lr: f64::NAN,
                ..AdamW::default()
            },
            "lr",
        ),
        (
            AdamW {
                beta1: 1.0,
                ..AdamW::default()
            },
            "beta1",
        ),
        (
            AdamW {
                beta2: -0.1,
                ..AdamW::default()
            },
            "beta2",
        ),
        (
            AdamW {
                eps: 0.0,
                ..AdamW::default()
            },
            "eps",
        ),
        (
            AdamW {
                weight_decay: f64::INFINITY,
                ..AdamW::default()
            },
            "weight_decay",
        ),
        (
            AdamW {
                max_grad_norm: Some(0.0),
                ..AdamW::default()
            },
            "max_grad_norm",
        ),
    ];
    for (opt, name) in cases {
        let err = opt.check().unwrap_err().to_string();
        assert!(err.contains(name), "{opt:?}: {err}");
    }
    AdamW::default().check().unwrap();
}

/// Resident memory of this process, from /proc (None where there is none).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// 1000 steps of forward_keep, backward and AdamW on a tiny model: the tensors alive after a
/// step and their peak stay what they were after the tenth, and the process does not grow
/// (device buffers are recycled, nothing accumulates per step).
#[test]
fn a_thousand_training_steps_keep_memory_flat() {
    const STEPS: usize = 1000;
    use polygrad::{AdamW, AdamWState};
    let Some(ctx) = common::gpu() else { return };
    let config = small_model_config(2, 2, true, Attention::Poly { degree: 2 });
    let model = Model::init(config, 11).unwrap();
    let (x, dy) = random_model_input(model.config(), 1, 8, 12);
    let mut gpu = GpuModel::new(&ctx, &model).unwrap();
    let mut state = AdamWState::new(&ctx, &gpu).unwrap();
    let opt = AdamW::default();
    let mut marks = Vec::new();
    for step in 1..=STEPS {
        let pass = gpu.forward_keep(&ctx, &x).unwrap();
        let grads = gpu.backward(&ctx, pass, &dy).unwrap();
        state.step(&ctx, &opt, &mut gpu, &grads).unwrap();
        drop(grads);
        if step == 10 {
            ctx.reset_allocation_counters();
        }
        if [10, 100, 1000].contains(&step) {
            marks.push((
                step,
                ctx.live_bytes(),
                ctx.peak_live_bytes(),
                resident_bytes(),
            ));
        }
    }
    eprintln!("(step, live, peak, resident): {marks:?}");
    let (live10, peak100, rss100) = (marks[0].1, marks[1].2, marks[1].3);
    for &(step, live, peak, _) in &marks[1..] {
        assert_eq!(live, live10, "tensors alive after step {step}");
        assert_eq!(peak, peak100, "peak of live tensors by step {step}");
    }
    if let (Some(before), Some(after)) = (rss100, marks[2].3) {
        // Allowance for the allocator: over 3000 steps it took 3.7 MiB by step 2000, none after.
        assert!(
            after <= before + (8 << 20),
            "resident memory grew from {before} to {after} bytes over 900 steps"
        );
    }
    gpu.read_params(&ctx)
        .unwrap()
        .values()
        .for_each(|p| p.check_finite("p").unwrap());
}

/// One training step whose batch is drawn from (seed, step), as `polygrad train` draws them.
fn train_step(
    ctx: &polygrad::GpuContext,
    (model, state): (&mut GpuModel, &mut polygrad::AdamWState),
    opt: &polygrad::AdamW,
    seed: u64,
) {
    let step = state.steps();
    let (x, dy) = random_model_input(model.config(), 2, 13, seed ^ step.wrapping_mul(0x9e37_79b9));
    let pass = model.forward_keep(ctx, &x).unwrap();
    let grads = model.backward(ctx, pass, &dy).unwrap();
    state.step(ctx, opt, model, &grads).unwrap();
}

/// Six steps straight through, against three, a checkpoint saved and loaded into a fresh model
/// and optimizer, and three more: the same parameters and moments, bit for bit.
#[test]
fn resuming_from_a_checkpoint_equals_an_uninterrupted_run() {
    use polygrad::{AdamW, AdamWState, Checkpoint};
    let Some(ctx) = common::gpu() else { return };
    let seed: u64 = common::fresh_rng("checkpoint").random();
    let config = small_model_config(2, 2, true, Attention::Poly { degree: 2 });
    let model = Model::init(config, seed).unwrap();
    let opt = AdamW {
        lr: 3e-3,
        ..AdamW::default()
    };

    let mut straight = GpuModel::new(&ctx, &model).unwrap();
    let mut straight_state = AdamWState::new(&ctx, &straight).unwrap();
    for _ in 0..6 {
        train_step(&ctx, (&mut straight, &mut straight_state), &opt, seed);
    }

    let mut first = GpuModel::new(&ctx, &model).unwrap();
    let mut first_state = AdamWState::new(&ctx, &first).unwrap();
    for _ in 0..3 {
        train_step(&ctx, (&mut first, &mut first_state), &opt, seed);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt.safetensors");
    Checkpoint::capture(&ctx, &first, (&first_state, opt), seed)
        .unwrap()
        .save(&path)
        .unwrap();
    drop((first, first_state));
    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!((loaded.step, loaded.seed, loaded.adamw), (3, seed, opt));
    let (mut resumed, mut resumed_state) = loaded.resume(&ctx).unwrap();
    for _ in 0..3 {
        train_step(&ctx, (&mut resumed, &mut resumed_state), &opt, seed);
    }

    let a = Checkpoint::capture(&ctx, &straight, (&straight_state, opt), seed).unwrap();
    let b = Checkpoint::capture(&ctx, &resumed, (&resumed_state, opt), seed).unwrap();
    assert_eq!(a.step, 6);
    // Bit for bit: parameters and both moments.
    let bits = |c: &Checkpoint| -> Vec<u32> {
        let (m, v) = &c.moments;
        (c.model
            .params()
            .values()
            .chain(m.values())
            .chain(v.values()))
        .flat_map(|t| t.data.iter().map(|x| x.to_bits()))
        .collect()
    };
    assert!(bits(&a) == bits(&b), "seed {seed}: resumed run differs");
    assert_ne!(a.model.params(), model.params(), "training changed nothing");
}

#[test]
fn a_damaged_checkpoint_is_refused_by_name() {
    use polygrad::{AdamW, AdamWState, Checkpoint};
    let Some(ctx) = common::gpu() else { return };
    let config = small_model_config(1, 1, false, Attention::Exact);
    let model = Model::init(config, 5).unwrap();
    let gpu = GpuModel::new(&ctx, &model).unwrap();
    let state = AdamWState::new(&ctx, &gpu).unwrap();
    let good = Checkpoint::capture(&ctx, &gpu, (&state, AdamW::default()), 9).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");

    let mut missing = good.clone();
    missing.moments.1.remove("ln_f.bias");
    missing.save(&path).unwrap();
    let err = Checkpoint::load(&path)
        .unwrap()
        .resume(&ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ln_f.bias") && err.contains("second"), "{err}");

    // A model file (no optimizer state) is not a checkpoint.
    polygrad::io::write_model(&path, &model).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.contains("adamw"), "{err}");
}
