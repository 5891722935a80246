// Moving between the model's layout [B, n, H, d] (one row per token, heads side by side, as
// the projections produce it) and attention's layout [B, H, n, d] (one block per head).
// Pure copies, one element per invocation, consecutive invocations writing consecutive outputs;
// where d is a multiple of 4, one row of d per invocation as vec4s (split_heads_rows,
// merge_heads_rows: the index arithmetic once per row, and a CPU driver stores a vec4 for about
// the cost of an f32).

override WORKGROUP: u32 = 64u;

struct Params {
    batch: u32,
    seq_len: u32,
    heads: u32,
    width: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

// Index in [B, n, H, d] of the element at index `i` of [B, H, n, d].
fn token_major(i: u32) -> u32 {
    let d = params.width;
    let n = params.seq_len;
    let h_count = params.heads;
    let e = i % d;
    let t = (i / d) % n;
    let h = (i / (d * n)) % h_count;
    let b = i / (d * n * h_count);
    return ((b * n + t) * h_count + h) * d + e;
}

// dst [B, H, n, d] from src [B, n, H, d].
@compute @workgroup_size(WORKGROUP)
fn split_heads(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.batch * params.seq_len * params.heads * params.width) {
        return;
    }
    dst[i] = src[token_major(i)];
}

// dst [B, n, H, d] from src [B, H, n, d].
@compute @workgroup_size(WORKGROUP)
fn merge_heads(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.batch * params.seq_len * params.heads * params.width) {
        return;
    }
    dst[token_major(i)] = src[i];
}

// Row `r` of [B, H, n, d] (r = (b H + h) n + t) is row (b n + t) H + h of [B, n, H, d].
fn token_major_row(r: u32) -> u32 {
    let n = params.seq_len;
    let h_count = params.heads;
    let t = r % n;
    let h = (r / n) % h_count;
    let b = r / (n * h_count);
    return (b * n + t) * h_count + h;
}

// Row src_row of src4 into row dst_row of dst4, rows of d = 4 quads.
fn copy_row4(src_row: u32, dst_row: u32) {
    let quads = params.width / 4u;
    for (var q = 0u; q < quads; q += 1u) {
        dst4[dst_row * quads + q] = src4[src_row * quads + q];
    }
}

// split_heads, one row of d = 4 quads per invocation.
@compute @workgroup_size(WORKGROUP)
fn split_heads_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = linear_id(wid, lid, nwg);
    if (r >= params.batch * params.heads * params.seq_len) {
        return;
    }
    copy_row4(token_major_row(r), r);
}

// merge_heads, one row of d = 4 quads per invocation.
@compute @workgroup_size(WORKGROUP)
fn merge_heads_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = linear_id(wid, lid, nwg);
    if (r >= params.batch * params.heads * params.seq_len) {
        return;
    }
    copy_row4(r, token_major_row(r));
}
