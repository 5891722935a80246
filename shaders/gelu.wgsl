// tanh-GELU, elementwise (the arithmetic: gelu_math.wgsl, prepended to this file).

override WORKGROUP: u32 = 64u;

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
    out[i] = gelu(t[i]);
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
    out[i] = gelu_grad(t[i], upstream[i]);
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
    out4[i] = gelu4(t4[i]);
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
    out4[i] = gelu_grad4(t4[i], upstream4[i]);
}
