// tanh-GELU, elementwise:
//   gelu(t) = 0.5 t (1 + tanh(z)),  z = sqrt(2/pi) (t + 0.044715 t^3)
//   gelu'(t) = 0.5 (1 + tanh(z)) + 0.5 t (1 - tanh(z)^2) sqrt(2/pi) (1 + 3 * 0.044715 t^2)
// z is clamped to [-10, 10] before tanh: tanh(10) rounds to 1 in f32, and some drivers'
// tanh overflows to NaN for large arguments.

override WORKGROUP: u32 = 64u;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const CUBIC: f32 = 0.044715;

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Pre-activations t.
@group(0) @binding(1) var<storage, read> t: array<f32>;
// Upstream gradient dL/dgelu(t) (backward only).
@group(0) @binding(2) var<storage, read> upstream: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// vec4 views of the same buffers, for forward4 and backward4 (len a multiple of 4): a CPU
// driver stores a vec4 for about the cost of an f32, and runs a quarter of the invocations.
@group(0) @binding(4) var<storage, read> t4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> upstream4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

fn tanh_z(v: f32) -> f32 {
    return tanh(clamp(SQRT_2_OVER_PI * (v + CUBIC * v * v * v), -10.0, 10.0));
}

// The same per component (the same operations, so the same result as forward and backward).
fn tanh_z4(v: vec4<f32>) -> vec4<f32> {
    return tanh(clamp(SQRT_2_OVER_PI * (v + CUBIC * v * v * v), vec4<f32>(-10.0), vec4<f32>(10.0)));
}

@compute @workgroup_size(WORKGROUP)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.len) {
        return;
    }
    let v = t[i];
    out[i] = 0.5 * v * (1.0 + tanh_z(v));
}

@compute @workgroup_size(WORKGROUP)
fn backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.len) {
        return;
    }
    let v = t[i];
    let th = tanh_z(v);
    let dz = SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * v * v);
    out[i] = upstream[i] * (0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * dz);
}

@compute @workgroup_size(WORKGROUP)
fn forward4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.len / 4u) {
        return;
    }
    let v = t4[i];
    out4[i] = 0.5 * v * (1.0 + tanh_z4(v));
}

@compute @workgroup_size(WORKGROUP)
fn backward4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.len / 4u) {
        return;
    }
    let v = t4[i];
    let th = tanh_z4(v);
    let dz = SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * v * v);
    out4[i] = upstream4[i] * (0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * dz);
}
