//! The sampled check (issue 12): exact attention on m query rows per head, on the GPU, against
//! the f64 reference's full comparison restricted to the same rows.

mod common;

use polygrad::attention::AttentionShape;
use polygrad::ops::sampled_check::{self, Checked, KeyLoads, SampledError};
use polygrad::ops::{upload_inputs, AttentionInputs, AttentionOp};
use polygrad::reference::attention::{attention_backward, attention_forward};
use polygrad::reference::sampled_check::rows_relative_error;
use polygrad::reference::widen;
use polygrad::validate::random_attention_inputs;
use polygrad::{Attention, GpuContext};

/// The ways of loading keys this adapter runs: per sample, and shared where it has subgroups.
fn key_loads(ctx: &GpuContext) -> Vec<KeyLoads> {
    let mut loads = vec![KeyLoads::PerSample];
    if let shared @ KeyLoads::Shared { .. } = KeyLoads::for_adapter(ctx) {
        loads.push(shared);
    }
    loads
}

/// Polynomial attention's forward and backward on the GPU, then the sampled check of `rows`
/// (with the backward, or the forward only).
fn check_on_gpu(
    ctx: &GpuContext,
    (shape, degree): (&AttentionShape, u32),
    host: &[Vec<f32>; 4],
    rows: &[usize],
    (with_grad, loads): (bool, KeyLoads),
) -> (SampledError, Vec<f32>, Vec<f32>) {
    let op = AttentionOp::new(ctx, Attention::Poly { degree }, *shape).unwrap();
    let (q, k, v, d_o) = upload_inputs(ctx, shape, AttentionInputs::from_array(host)).unwrap();
    let saved = op.forward(ctx, &q, &k, &v).unwrap();
    let grads = op.backward(ctx, (&q, &k, &v), &saved, &d_o).unwrap();
    let mut encoder = ctx.encoder("sampled check test");
    let checked = Checked {
        o: saved.o(),
        grad: with_grad.then_some((&d_o, &grads.dq)),
    };
    let qkv = (&q, &k, &v);
    let pending =
        sampled_check::record_with(ctx, &mut encoder, (shape, rows), qkv, checked, loads).unwrap();
    ctx.submit("sampled check test", encoder).unwrap();
    let error = pending.measure(ctx).unwrap();
    (
        error,
        saved.o().download(ctx).unwrap(),
        grads.dq.download(ctx).unwrap(),
    )
}

#[test]
fn sampled_errors_equal_the_full_comparison_on_the_same_rows() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("sampled check");
    // Several spans of keys (700 rows at d_qk 16, d_v 64), two column groups of v (d_v 80),
    // widths of 1, full and causal, a sample that is every row, and small logits (an error
    // near 1e-4, where f32 rounding of the exact rows weighs most).
    let cases = [
        (AttentionShape::new(1, 2, 700, 16, 64, true), 2, 32, 1.5),
        (AttentionShape::new(2, 1, 300, 4, 1, false), 4, 17, 1.5),
        (AttentionShape::new(1, 1, 97, 64, 80, false), 2, 8, 1.5),
        (AttentionShape::new(1, 3, 20, 1, 3, true), 2, 20, 1.5),
        (AttentionShape::new(1, 2, 1000, 16, 64, true), 2, 32, 0.4),
    ];
    for (shape, degree, m, qk_scale) in cases {
        let seed: u64 = rand::Rng::random(&mut rng);
        let host = random_attention_inputs(&shape, qk_scale, seed);
        let rows = sampled_check::sample_rows(shape.seq_len, m, seed);
        assert_eq!(rows.len(), m.min(shape.seq_len));
        eprintln!("{shape}: seed {seed}");
        for loads in key_loads(&ctx) {
            check_against_the_full_comparison(&ctx, (&shape, degree), &host, &rows, loads);
        }
    }
}

/// One draw of the test above with the keys loaded as `loads`.
fn check_against_the_full_comparison(
    ctx: &GpuContext,
    (shape, degree): (&AttentionShape, u32),
    host: &[Vec<f32>; 4],
    rows: &[usize],
    loads: KeyLoads,
) {
    let shape = *shape;
    let m = rows.len();
    let (got, o, dq) = check_on_gpu(ctx, (&shape, degree), host, rows, (true, loads));
    let [q, k, v, d_o] = host.each_ref().map(|x| widen(x));
    let exact = Attention::Exact;
    let o_exact = attention_forward(&shape, exact, &q, &k, &v);
    let dq_exact = attention_backward(&shape, exact, &q, &k, &v, &d_o).dq;
    let o_full = rows_relative_error(&o, &o_exact, (shape.seq_len, shape.d_v), rows);
    let dq_full = rows_relative_error(&dq, &dq_exact, (shape.seq_len, shape.d_qk), rows);
    let what = format!("{shape} g={degree} m={m} {loads:?}: {got:?}");
    eprintln!(
        "{what}; full comparison on the rows: o {o_full:.3e} (apart by {:.1e}), \
         dq {dq_full:.3e} (apart by {:.1e})",
        (got.o_rel_err - o_full).abs(),
        (got.dq_rel_err.unwrap_or(f64::NAN) - dq_full).abs()
    );
    assert_eq!(got.rows, rows.len(), "{what}");
    // The polynomial error must be there to measure: these logits are not tiny.
    assert!(o_full > 1e-5 && dq_full > 1e-5, "{what}");
    assert!((got.o_rel_err - o_full).abs() <= 1e-6, "{what}: o {o_full}");
    let dq_sampled = got.dq_rel_err.expect("a backward check measures dq");
    assert!((dq_sampled - dq_full).abs() <= 1e-6, "{what}: dq {dq_full}");

    // The forward-only check measures o the same, and no dq.
    let (forward_only, ..) = check_on_gpu(ctx, (&shape, degree), host, rows, (false, loads));
    assert_eq!(forward_only.o_rel_err, got.o_rel_err, "{what}");
    assert_eq!(forward_only.dq_rel_err, None, "{what}");
}

#[test]
fn a_rerun_of_the_check_is_bit_identical() {
    let Some(ctx) = common::gpu() else { return };
    let shape = AttentionShape::new(1, 2, 500, 16, 16, true);
    let host = random_attention_inputs(&shape, 1.0, 7);
    let rows = sampled_check::sample_rows(shape.seq_len, 32, 8);
    for loads in key_loads(&ctx) {
        let (first, ..) = check_on_gpu(&ctx, (&shape, 2), &host, &rows, (true, loads));
        let (second, ..) = check_on_gpu(&ctx, (&shape, 2), &host, &rows, (true, loads));
        assert_eq!(first.o_rel_err.to_bits(), second.o_rel_err.to_bits());
        assert_eq!(
            first.dq_rel_err.map(f64::to_bits),
            second.dq_rel_err.map(f64::to_bits)
        );
    }
}

#[test]
fn rows_that_are_not_a_sample_are_refused() {
    let Some(ctx) = common::gpu() else { return };
    let shape = AttentionShape::new(1, 1, 10, 4, 4, true);
    let host = random_attention_inputs(&shape, 1.0, 3);
    let (q, k, v, _) = upload_inputs(&ctx, &shape, AttentionInputs::from_array(&host)).unwrap();
    for rows in [vec![], vec![3, 3], vec![4, 2], vec![10]] {
        let mut encoder = ctx.encoder("refused rows");
        let checked = Checked { o: &v, grad: None };
        let err = sampled_check::record(&ctx, &mut encoder, &shape, &rows, (&q, &k, &v), checked)
            .err()
            .unwrap_or_else(|| panic!("rows {rows:?} were accepted"));
        assert!(err.to_string().contains("sampled rows"), "{rows:?}: {err}");
    }
}
