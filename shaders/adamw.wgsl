// AdamW on the device (src/optim.rs): the global gradient norm for clipping, then one update
// per parameter tensor, the parameters, moments and gradients never leaving the device.
//
//   square_sums  partial sums of g^2: invocation i sums elements [i span, (i + 1) span) of one
//                tensor in order into partials[offset + i] (one dispatch per tensor)
//   total_norm   one invocation: the partials of every tensor in order, norm = sqrt(sum), and
//                the clipping factor min(1, max_norm / (norm + 1e-6)) (PyTorch's
//                clip_grad_norm_): fixed-order sums, so the same bits every run
//   update       per element, PyTorch's AdamW with g scaled by the clipping factor:
//                  p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//                  p <- p - step_size m / (sqrt(v) / sqrt_bc2 + eps)
//                with step_size = lr / (1 - b1^t) and sqrt_bc2 = sqrt(1 - b2^t) from the host.

override WORKGROUP: u32 = 64u;

// update: scale g by norm[1] (clipping on).
const CLIP: u32 = 1u;

struct Params {
    len: u32,
    // square_sums: first partial of this tensor; total_norm: partials in all.
    offset: u32,
    span: u32,
    flags: u32,
    beta1: f32,
    beta2: f32,
    // 1 - beta1 and 1 - beta2, formed in f64 on the host: in f32, 1 - 0.999 is off by 1.3e-5.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    eps: f32,
    // 1 - lr wd (1 where the tensor is not decayed).
    decay: f32,
    step_size: f32,
    sqrt_bc2: f32,
    max_norm: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> p: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
// [global norm, clipping factor].
@group(0) @binding(6) var<storage, read_write> norm: array<f32>;

// A running sum and the low-order part its rounding lost (Kahan): the norm's error stays near
// one f32 rounding however many squares it sums, and clipping scales every gradient by it.
struct Compensated {
    sum: f32,
    lost: f32,
}

fn add_compensated(acc: Compensated, x: f32) -> Compensated {
    let y = x - acc.lost;
    let t = acc.sum + y;
    return Compensated(t, (t - acc.sum) - y);
}

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

@compute @workgroup_size(WORKGROUP)
fn square_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    let start = i * params.span;
    if (start >= params.len) {
        return;
    }
    let end = min(start + params.span, params.len);
    var sum = Compensated(0.0, 0.0);
    for (var j = start; j < end; j++) {
        sum = add_compensated(sum, grad[j] * grad[j]);
    }
    partials[params.offset + i] = sum.sum;
}

@compute @workgroup_size(1)
fn total_norm() {
    var sum = Compensated(0.0, 0.0);
    for (var i = 0u; i < params.offset; i++) {
        sum = add_compensated(sum, partials[i]);
    }
    let total = sqrt(sum.sum);
    norm[0] = total;
    norm[1] = min(1.0, params.max_norm / (total + 1e-6));
}

@compute @workgroup_size(WORKGROUP)
fn update(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.len) {
        return;
    }
    var g = grad[i];
    if ((params.flags & CLIP) != 0u) {
        g *= norm[1];
    }
    let m1 = params.beta1 * m[i] + params.one_minus_beta1 * g;
    let v1 = params.beta2 * v[i] + params.one_minus_beta2 * g * g;
    m[i] = m1;
    v[i] = v1;
    p[i] = p[i] * params.decay - params.step_size * m1 / (sqrt(v1) / params.sqrt_bc2 + params.eps);
}
