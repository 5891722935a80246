// The inputs of attention's error certificate (shared/DESIGN.md §3), in O(n d): for every head
// and span of rows of q, k [heads, rows, d_qk] and v [heads, rows, d_v], the largest squared
// row norm of q and of k and the largest |v| entry. The host takes the maximum over spans and
// forms R = max |q| max |k| / sqrt(d_qk). Spans keep each invocation's loop iterations under
// llvmpipe's limit (the host sizes them).

override WORKGROUP: u32 = 64u;

struct Params {
    heads: u32,
    rows: u32,
    d_qk: u32,
    d_v: u32,
    span: u32,   // rows per span
    spans: u32,  // spans per head
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
// [heads, spans, 4]: max |q_a|^2, max |k_b|^2, max |v|, 0.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

// One invocation per (head, span).
@compute @workgroup_size(WORKGROUP)
fn span_maxima(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(wid, lid, nwg);
    let h = id / params.spans;
    if (h >= params.heads) {
        return;
    }
    let begin = (id % params.spans) * params.span;
    let end = min(begin + params.span, params.rows);
    var max_q = 0.0;
    var max_k = 0.0;
    var max_v = 0.0;
    for (var r = begin; r < end; r++) {
        let qk_row = (h * params.rows + r) * params.d_qk;
        var norm_q = 0.0;
        var norm_k = 0.0;
        for (var i = 0u; i < params.d_qk; i++) {
            let a = q[qk_row + i];
            let b = k[qk_row + i];
            norm_q += a * a;
            norm_k += b * b;
        }
        max_q = max(max_q, norm_q);
        max_k = max(max_k, norm_k);
        let v_row = (h * params.rows + r) * params.d_v;
        for (var j = 0u; j < params.d_v; j++) {
            max_v = max(max_v, abs(v[v_row + j]));
        }
    }
    out[4u * id] = max_q;
    out[4u * id + 1u] = max_k;
    out[4u * id + 2u] = max_v;
    out[4u * id + 3u] = 0.0;
}
