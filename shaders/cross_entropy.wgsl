// Cross-entropy of each row of logits [rows, classes] against its target class, and its
// gradient (src/ops/cross_entropy.rs):
//   loss_r = log(sum_j exp(l_rj - m_r)) + m_r - l_r,t_r        m_r = max_j l_rj
//   dl_rj  = (softmax_j(l_r) - [j = t_r]) * scale               scale = 1 / (rows not ignored)
// Rows whose target is IGNORED get loss 0 and gradient 0. One invocation per row, three passes
// over its classes in order (the host keeps 3 classes within llvmpipe's loop budget), so the
// same bits every run. The host sums the row losses in f64.

override WORKGROUP: u32 = 64u;

// The target of a row the loss ignores (the host maps ignore_index to it).
const IGNORED: u32 = 0xffffffffu;

struct Params {
    rows: u32,
    classes: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;

// log(1 + x) for x >= 0, to f32's relative precision however small x is. Below 1/8 by its
// series, 8 terms (the first left out is under x^8 / 9 < 7e-9 relative); above, by log, whose
// result is then at least 0.11. Not log(u) x / (u - 1) (Goldberg's correction of the rounding
// of u = 1 + x): that needs log(u) accurate relative to its own tiny value near u = 1, and
// llvmpipe's log is accurate only to about 2e-8 absolute there (a loss of 7.5e-6 came out
// 2.7e-3 too large).
fn log_one_plus(x: f32) -> f32 {
    let series = x * (1.0 - x * (1.0 / 2.0 - x * (1.0 / 3.0 - x * (1.0 / 4.0 - x * (1.0 / 5.0
        - x * (1.0 / 6.0 - x * (1.0 / 7.0 - x / 8.0)))))));
    return select(log(1.0 + x), series, x < 0.125);
}

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

@compute @workgroup_size(WORKGROUP)
fn rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = linear_id(wid, lid, nwg);
    if (r >= params.rows) {
        return;
    }
    let base = r * params.classes;
    let wanted = targets[r];
    if (wanted == IGNORED) {
        for (var j = 0u; j < params.classes; j++) {
            grad[base + j] = 0.0;
        }
        row_loss[r] = 0.0;
        return;
    }
    // The largest logit and its first column: its own term of the sum is exactly 1, so the
    // rest is summed apart and log(1 + rest) taken without losing it (a row whose target
    // dominates has a loss far below f32's epsilon, which log(sum) would round to 0).
    var m = logits[base];
    var top = 0u;
    for (var j = 1u; j < params.classes; j++) {
        let l = logits[base + j];
        if (l > m) {
            m = l;
            top = j;
        }
    }
    // rest: every term but the top's; others: every term but the target's, so that the
    // target's gradient p_t - 1 = -others / sum is not 1 / sum - 1, which rounds to 0 (or to a
    // few ulps of 1) when the target dominates and others is far below f32's epsilon.
    var rest = 0.0;
    var others = 0.0;
    for (var j = 0u; j < params.classes; j++) {
        let e = exp(logits[base + j] - m);
        rest += select(e, 0.0, j == top);
        others += select(e, 0.0, j == wanted);
    }
    let sum = 1.0 + rest;
    for (var j = 0u; j < params.classes; j++) {
        let p = exp(logits[base + j] - m) / sum;
        grad[base + j] = select(p, -others / sum, j == wanted) * params.scale;
    }
    row_loss[r] = log_one_plus(rest) + (m - logits[base + wanted]);
}
