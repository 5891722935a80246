//! Exact softmax attention on the GPU against the f64 CPU reference: fresh random inputs,
//! outputs poisoned with NaN, relative error over the whole tensor, logits up to |s| = 50.

mod common;

use polygrad::gpu::kernel::WINDOW_BYTES;
use polygrad::ops::exact_attention::{ExactAttention, ExactTiles};
use polygrad::ops::{upload_inputs, AttentionInputs};
use polygrad::reference::attention::{attention_backward, attention_forward};
use polygrad::reference::{gradient_error, relative_error, widen};
use polygrad::validate::{
    check_attention, random_attention_inputs, scale_logits_to, ATTENTION_TOLERANCE as TOLERANCE,
};
use polygrad::{Attention, AttentionShape, GpuContext, GpuTensor};

fn shape(b: usize, h: usize, n: usize, d_qk: usize, d_v: usize, causal: bool) -> AttentionShape {
    AttentionShape::new(b, h, n, d_qk, d_v, causal)
}

/// Fresh inputs (seed printed) whose largest |logit| is `max_logit`.
fn inputs_with_logits(s: &AttentionShape, max_logit: f64) -> ([Vec<f32>; 4], u64) {
    let seed = common::seed();
    let mut inputs = random_attention_inputs(s, 1.0, seed);
    scale_logits_to(s, &mut inputs, max_logit);
    (inputs, seed)
}

/// The errors of a plain f32 evaluation of the reference (its own code run in f32) against the
/// f64 one: o, dq, dk, dv.
fn plain_f32_errors(s: &AttentionShape, inputs: &[Vec<f32>; 4]) -> [f64; 4] {
    let [q, k, v, d_o] = inputs;
    let (q64, k64, v64, d_o64) = (widen(q), widen(k), widen(v), widen(d_o));
    let o = attention_forward(s, Attention::Exact, &q64, &k64, &v64);
    let g = attention_backward(s, Attention::Exact, &q64, &k64, &v64, &d_o64);
    let o32 = attention_forward(s, Attention::Exact, q, k, v);
    let g32 = attention_backward(s, Attention::Exact, q, k, v, d_o);
    [
        relative_error(&o32, &o),
        gradient_error(&g32.dq, &g.dq),
        gradient_error(&g32.dk, &g.dk),
        relative_error(&g32.dv, &g.dv),
    ]
}

/// Checks every case and fails with the list of those above their bar: the tolerance, or,
/// where a plain f32 evaluation of the same attention is further from f64 than that, its error
/// (the inputs' conditioning, not the kernels', sets the bar there: at d_qk = 1 and |s| = 50 a
/// row's dq sums terms that cancel 70-fold, and one draw in a few hundred leaves above 1e-5
/// what plain f32 leaves ten times further off).
fn assert_cases(ctx: &GpuContext, cases: &[(AttentionShape, f64)]) {
    let mut failures = Vec::new();
    for &(s, max_logit) in cases {
        let (inputs, seed) = inputs_with_logits(&s, max_logit);
        let checks = check_attention(ctx, Attention::Exact, s, &inputs)
            .unwrap_or_else(|e| panic!("{s} (seed {seed}): {e}"));
        let e = checks.map(|c| c.error);
        let plain = plain_f32_errors(&s, &inputs);
        let bars = plain.map(|p| p.max(TOLERANCE));
        let line = format!(
            "{s} max|s|={max_logit}: o {:.2e} dq {:.2e} dk {:.2e} dv {:.2e}; plain f32 o {:.2e} \
             dq {:.2e} dk {:.2e} dv {:.2e} (seed {seed})",
            e[0], e[1], e[2], e[3], plain[0], plain[1], plain[2], plain[3]
        );
        eprintln!("{line}");
        if !e.iter().zip(&bars).all(|(&x, &bar)| x <= bar) {
            failures.push(line);
        }
    }
    assert!(
        failures.is_empty(),
        "relative error above {TOLERANCE} and above a plain f32 evaluation's:\n{}",
        failures.join("\n")
    );
}

/// Every combination of causal, d_qk, d_v and n from the issue; (B, H) cycles through its four
/// combinations and the largest logit between 5 and 50, so each n meets both.
#[test]
fn exact_attention_matches_reference_over_the_issue_matrix() {
    let batch_heads = [(1, 1), (1, 3), (3, 1), (3, 3)];
    let mut cases = Vec::new();
    for causal in [false, true] {
        for d_qk in [1, 16, 64] {
            for d_v in [1, 64] {
                for n in [1, 7, 64, 65, 300, 1000] {
                    let (b, h) = batch_heads[cases.len() % 4];
                    let max_logit = if cases.len() % 3 == 0 { 5.0 } else { 50.0 };
                    cases.push((shape(b, h, n, d_qk, d_v, causal), max_logit));
                }
            }
        }
    }
    cases.push((shape(3, 3, 1000, 64, 64, true), 50.0));
    let Some(ctx) = common::gpu() else { return };
    assert_cases(&ctx, &cases);
}

fn run(
    ctx: &GpuContext,
    s: AttentionShape,
    tiles: ExactTiles,
    span: Option<usize>,
    inputs: &[Vec<f32>; 4],
) -> Vec<Vec<f32>> {
    let op = ExactAttention::with_tiles(ctx, s, tiles, span).unwrap();
    let (q, k, v, d_o) = upload_inputs(ctx, &s, AttentionInputs::from_array(inputs)).unwrap();
    let fwd = op.forward(ctx, &q, &k, &v).unwrap();
    let g = op.backward(ctx, &q, &k, &v, &fwd, &d_o).unwrap();
    [&fwd.o, &g.dq, &g.dk, &g.dv]
        .iter()
        .map(|t| t.download(ctx).unwrap())
        .collect()
}

#[test]
fn two_runs_are_bit_identical() {
    let Some(ctx) = common::gpu() else { return };
    for causal in [false, true] {
        let s = shape(2, 2, 150, 16, 32, causal);
        let (inputs, _) = inputs_with_logits(&s, 20.0);
        let tiles = ExactTiles::default();
        let first = run(&ctx, s, tiles, Some(64), &inputs);
        let second = run(&ctx, s, tiles, Some(64), &inputs);
        for (name, (a, b)) in ["o", "dq", "dk", "dv"]
            .iter()
            .zip(first.iter().zip(&second))
        {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name} differs between two runs ({s})");
        }
    }
}

/// Spans (dispatches per key range) and tiles change the order of the sums only.
#[test]
fn spans_and_tiles_change_nothing_beyond_rounding() {
    let Some(ctx) = common::gpu() else { return };
    for causal in [false, true] {
        let s = shape(1, 2, 300, 8, 40, causal);
        let (inputs, _) = inputs_with_logits(&s, 10.0);
        let base = run(&ctx, s, ExactTiles::default(), None, &inputs);
        let variants = [
            (
                ExactTiles {
                    key_block: 1,
                    col_tile: 1,
                },
                Some(1),
            ),
            (
                ExactTiles {
                    key_block: 16,
                    col_tile: 64,
                },
                Some(7),
            ),
            (
                ExactTiles {
                    key_block: 3,
                    col_tile: 5,
                },
                Some(100),
            ),
            (ExactTiles::default(), Some(299)),
        ];
        for (tiles, span) in variants {
            let other = run(&ctx, s, tiles, span, &inputs);
            for (name, (a, b)) in ["o", "dq", "dk", "dv"].iter().zip(other.iter().zip(&base)) {
                let e = relative_error(a, &widen(b));
                assert!(
                    e <= 1e-6,
                    "{tiles:?} span {span:?} ({s}): {name} differs by {e:.2e}"
                );
            }
        }
    }
}

/// Logits of |s| = 80 overflow a naive exp(s) in f32 (e^80 > 3.4e38); the online softmax
/// subtracts the running max and stays finite and accurate.
#[test]
fn large_logits_stay_finite() {
    let Some(ctx) = common::gpu() else { return };
    assert_cases(
        &ctx,
        &[
            (shape(1, 2, 50, 16, 8, false), 80.0),
            (shape(1, 1, 50, 4, 8, true), 80.0),
        ],
    );
}

/// At n = 16384 nothing the exact path allocates grows as n^2: the largest buffer is O(n d)
/// and so is the total.
#[test]
fn memory_stays_linear_in_n() {
    let Some(ctx) = common::gpu() else { return };
    let s = shape(1, 1, 16384, 1, 1, true);
    let (inputs, _) = inputs_with_logits(&s, 5.0);
    let (q, k, v, d_o) = upload_inputs(&ctx, &s, AttentionInputs::from_array(&inputs)).unwrap();
    ctx.reset_allocation_counters();
    let op = ExactAttention::new(&ctx, s).unwrap();
    let fwd = op.forward(&ctx, &q, &k, &v).unwrap();
    let grads = op.backward(&ctx, &q, &k, &v, &fwd, &d_o).unwrap();
    let o = fwd.o.download(&ctx).unwrap();
    let dv = grads.dv.download(&ctx).unwrap();
    assert!(
        o.iter().chain(&dv).all(|x| x.is_finite()),
        "non-finite output at n = 16384"
    );
    let allocated = ctx.allocated_bytes();
    let n = s.seq_len as u64;
    let n_squared_bytes = n * n * 4;
    // At d_qk = d_v = 1: q, k, v and dL/do split [n, 1, 2] each, pivots [n, 2], row sums
    // [n, 1, 2], o and its compensation term, row terms [n, 8], pivot keys [n, 1], delta's
    // running sum [n, 2], dq, dk, dv: 28 floats per row; the six tensors windows are placed
    // on have one window's bytes of slack each.
    let windows = 6 * WINDOW_BYTES;
    assert!(
        allocated <= 28 * n * 4 + windows,
        "exact attention allocated {allocated} bytes at n = {n} (n^2 floats: {n_squared_bytes})"
    );
    // The largest: the row terms, eight floats per row, and their slack.
    let largest = ctx.largest_allocation();
    assert!(
        largest <= 8 * n * 4 + WINDOW_BYTES,
        "largest buffer {largest} bytes at n = {n}"
    );
}

#[test]
fn bad_input_gives_clear_errors_and_the_device_survives() {
    let Some(ctx) = common::gpu() else { return };
    let good = shape(1, 2, 9, 4, 8, true);
    let message = |r: Result<ExactAttention, polygrad::Error>| {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    };
    let m = message(ExactAttention::new(&ctx, shape(1, 1, 0, 4, 8, true)));
    assert!(m.contains("seq_len"), "{m}");
    let m = message(ExactAttention::new(&ctx, shape(1, 0, 4, 4, 8, true)));
    assert!(m.contains("heads"), "{m}");
    let tiles = ExactTiles {
        key_block: 17,
        col_tile: 16,
    };
    let m = message(ExactAttention::with_tiles(&ctx, good, tiles, None));
    assert!(m.contains("key_block"), "{m}");
    let m = message(ExactAttention::with_tiles(
        &ctx,
        good,
        ExactTiles::default(),
        Some(0),
    ));
    assert!(m.contains("span"), "{m}");
    // q of 2^30 floats is beyond the storage binding limit.
    let m = message(ExactAttention::new(
        &ctx,
        shape(1, 1, 1 << 24, 64, 8, false),
    ));
    assert!(m.contains("q"), "{m}");

    let (inputs, _) = inputs_with_logits(&good, 5.0);
    let op = ExactAttention::new(&ctx, good).unwrap();
    let q = GpuTensor::upload(&ctx, "q", &good.qk_shape(), &inputs[0]).unwrap();
    let wrong_k = GpuTensor::upload(&ctx, "k", &[1, 2, 3, 12], &inputs[1]).unwrap();
    let v = GpuTensor::upload(&ctx, "v", &good.v_shape(), &inputs[2]).unwrap();
    let err = op
        .forward(&ctx, &q, &wrong_k, &v)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tensor k") && err.contains("[1, 2, 9, 4]"),
        "{err}"
    );
    let k = GpuTensor::upload(&ctx, "k", &good.qk_shape(), &inputs[1]).unwrap();
    let fwd = op.forward(&ctx, &q, &k, &v).unwrap();
    let wrong_do = GpuTensor::upload(&ctx, "d_o", &[1, 2, 9, 4], &inputs[0]).unwrap();
    let err = op
        .backward(&ctx, &q, &k, &v, &fwd, &wrong_do)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tensor d_o"), "{err}");

    assert_cases(&ctx, &[(good, 5.0)]);
}
