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

// log(1 + x) for x >= 0, accurate where 1 + x rounds (Goldberg's correction: the rounding of
// 1 + x cancels in log(u) x / (u - 1)).
fn log_one_plus(x: f32) -> f32 {
    let u = 1.0 + x;
    if (u == 1.0) {
        return x;
    }
    return log(u) * x / (u - 1.0);
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
    var rest = 0.0;
    for (var j = 0u; j < params.classes; j++) {
        if (j != top) {
            rest += exp(logits[base + j] - m);
        }
    }
    let sum = 1.0 + rest;
    for (var j = 0u; j < params.classes; j++) {
        let p = exp(logits[base + j] - m) / sum;
        grad[base + j] = (p - select(0.0, 1.0, j == wanted)) * params.scale;
    }
    row_loss[r] = log_one_plus(rest) + (m - logits[base + wanted]);
}
