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
