//! Polynomial attention on the GPU against the f64 CPU reference: fresh random inputs, outputs
//! poisoned with NaN, relative error over the whole tensor.

mod common;

use polygrad::ops::poly_attention::{FeatureMap, PolyAttention};
use polygrad::ops::{AttentionInputs, attention_forward_backward};
use polygrad::reference::attention::{attention_backward, attention_forward};
use polygrad::reference::{relative_error, widen};
use polygrad::{Attention, AttentionShape, Error, GpuContext, GpuTensor};

const TOLERANCE: f64 = 1e-5;

struct Case {
    shape: AttentionShape,
    degree: u32,
}

fn shape(batch: usize, heads: usize, seq_len: usize, d_qk: usize, d_v: usize, causal: bool) -> AttentionShape {
    AttentionShape { batch, heads, seq_len, d_qk, d_v, causal }
}

/// Runs one case and returns the relative error of (o, dq, dk, dv).
fn errors(ctx: &GpuContext, case: &Case) -> [f64; 4] {
    let s = case.shape;
    let mut rng = common::fresh_rng(&format!("{s} g={}", case.degree));
    let q = common::random_vec(&mut rng, s.total_heads() * s.seq_len * s.d_qk, 1.0);
    let k = common::random_vec(&mut rng, q.len(), 1.0);
    let v = common::random_vec(&mut rng, s.total_heads() * s.seq_len * s.d_v, 1.0);
    let d_o = common::random_vec(&mut rng, v.len(), 1.0);
    let attention = Attention::Poly { degree: case.degree };
    let gpu = attention_forward_backward(ctx, attention, s, AttentionInputs { q: &q, k: &k, v: &v, d_o: &d_o })
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    let (q, k, v, d_o) = (widen(&q), widen(&k), widen(&v), widen(&d_o));
    let o = attention_forward(&s, attention, &q, &k, &v);
    let g = attention_backward(&s, attention, &q, &k, &v, &d_o);
    [
        relative_error(&gpu.o, &o),
        relative_error(&gpu.dq, &g.dq),
        relative_error(&gpu.dk, &g.dk),
        relative_error(&gpu.dv, &g.dv),
    ]
}

fn assert_cases(cases: &[Case]) {
    let Some(ctx) = common::gpu() else { return };
    let mut failures = Vec::new();
    for case in cases {
        let e = errors(&ctx, case);
        let line = format!(
            "{} g={}: o {:.2e} dq {:.2e} dk {:.2e} dv {:.2e}",
            case.shape, case.degree, e[0], e[1], e[2], e[3]
        );
        eprintln!("{line}");
        if e.iter().any(|&x| !(x <= TOLERANCE)) {
            failures.push(line);
        }
    }
    assert!(failures.is_empty(), "relative error above {TOLERANCE}:\n{}", failures.join("\n"));
}

#[test]
fn small_shapes_match_reference() {
    let mut cases = Vec::new();
    for causal in [false, true] {
        for degree in [2, 4] {
            cases.push(Case { shape: shape(1, 1, 7, 4, 16, causal), degree });
            cases.push(Case { shape: shape(3, 1, 65, 1, 1, causal), degree });
            cases.push(Case { shape: shape(1, 3, 64, 16, 64, causal), degree });
        }
    }
    assert_cases(&cases);
}
