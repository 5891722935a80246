// Linear layers, y = x W^T + b, and the products of their backward pass.
//
// Every product is one kernel, C = A B^T (+ C) (+ bias), with A [rows, K] and B [cols, K] both
// contiguous along the summed index k, which is what lets each invocation read 4 consecutive
// k at a time:
//   forward   y  = x W^T + b         A = x,     B = W
//   backward  dx = dy W = dy (W^T)^T  A = dy,    B = transpose(W)
//             dW = dy^T x            A = dy^T,  B = x^T      (K = rows of x)
//             db = row sums of dy^T
// The transposes are cheap next to the products (O(rows * width) against O(rows * width^2)).
//
// No shared memory: each invocation computes a 4 x 4 block of C from vec4 loads, which ran
// 10x faster than shared-memory tiles on llvmpipe (barriers are costly there). The k loop is
// the only loop that is not unrolled; the host keeps k_end - k_begin within the driver's loop
// budget and accumulates longer sums span by span (flag ADD_INTO_C), in a fixed order.

override WORKGROUP: u32 = 64u;

const ADD_INTO_C: u32 = 1u;
const ADD_BIAS: u32 = 2u;
// Terms per partial sum of the two-level sums (a multiple of 4).
const SUM_BLOCK: u32 = 128u;

struct Params {
    rows: u32,
    cols: u32,
    k_begin: u32,
    k_end: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
// The same A and B seen as vec4 along k, for matmul_nt_vec4 (K a multiple of 4).
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

// The top-left corner (row, column) of the 4 x 4 block of C this invocation computes; the row
// is `rows` (out of range) for invocations past the last block.
fn block_origin(id: u32) -> vec2<u32> {
    let col_blocks = (params.cols + 3u) / 4u;
    if (id >= ((params.rows + 3u) / 4u) * col_blocks) {
        return vec2<u32>(params.rows, 0u);
    }
    return vec2<u32>((id / col_blocks) * 4u, (id % col_blocks) * 4u);
}

// Start offsets of rows first..first+3 of a matrix with `count` rows and row stride `stride`.
// Blocks that hang over the edge read the last row again; those results are not stored.
fn row_offsets(first: u32, count: u32, stride: u32) -> vec4<u32> {
    let last = count - 1u;
    return vec4<u32>(min(first, last), min(first + 1u, last), min(first + 2u, last), min(first + 3u, last)) * stride;
}

// A[row, k..k+3] and B[row, k..k+3] from scalar loads.
fn a_at(base: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(a[base + k], a[base + k + 1u], a[base + k + 2u], a[base + k + 3u]);
}

fn b_at(base: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(b[base + k], b[base + k + 1u], b[base + k + 2u], b[base + k + 3u]);
}

// One row x of A (4 consecutive k) against the same k of the block's four rows of B.
fn dots(x: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(x, b0), dot(x, b1), dot(x, b2), dot(x, b3));
}

// A 4 x 4 block of C: four rows, each a vec4 over the block's four columns.
struct Block {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

fn add_blocks(x: Block, y: Block) -> Block {
    return Block(x.r0 + y.r0, x.r1 + y.r1, x.r2 + y.r2, x.r3 + y.r3);
}

// The block's sum over k in [k, end) (multiples of 4) from scalar loads.
fn partial_scalar(a_rows: vec4<u32>, b_rows: vec4<u32>, k_start: u32, end: u32) -> Block {
    var p = Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k = k_start; k < end; k += 4u) {
        let b0 = b_at(b_rows.x, k);
        let b1 = b_at(b_rows.y, k);
        let b2 = b_at(b_rows.z, k);
        let b3 = b_at(b_rows.w, k);
        p.r0 += dots(a_at(a_rows.x, k), b0, b1, b2, b3);
        p.r1 += dots(a_at(a_rows.y, k), b0, b1, b2, b3);
        p.r2 += dots(a_at(a_rows.z, k), b0, b1, b2, b3);
        p.r3 += dots(a_at(a_rows.w, k), b0, b1, b2, b3);
    }
    return p;
}

// The same from vector loads; offsets and k counted in vec4.
fn partial_vec4(a_rows: vec4<u32>, b_rows: vec4<u32>, k4_start: u32, end4: u32) -> Block {
    var p = Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k4 = k4_start; k4 < end4; k4 += 1u) {
        let b0 = b4[b_rows.x + k4];
        let b1 = b4[b_rows.y + k4];
        let b2 = b4[b_rows.z + k4];
        let b3 = b4[b_rows.w + k4];
        p.r0 += dots(a4[a_rows.x + k4], b0, b1, b2, b3);
        p.r1 += dots(a4[a_rows.y + k4], b0, b1, b2, b3);
        p.r2 += dots(a4[a_rows.z + k4], b0, b1, b2, b3);
        p.r3 += dots(a4[a_rows.w + k4], b0, b1, b2, b3);
    }
    return p;
}

fn store_block(origin: vec2<u32>, c_block: Block) {
    store_row(origin.x, origin.y, c_block.r0);
    store_row(origin.x + 1u, origin.y, c_block.r1);
    store_row(origin.x + 2u, origin.y, c_block.r2);
    store_row(origin.x + 3u, origin.y, c_block.r3);
}

@compute @workgroup_size(WORKGROUP)
fn matmul_nt(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let origin = block_origin(linear_id(wid, lid, nwg));
    if (origin.x >= params.rows) {
        return;
    }
    let a_rows = row_offsets(origin.x, params.rows, params.lda);
    let b_rows = row_offsets(origin.y, params.cols, params.ldb);
    var total = Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    // Two-level sums: each block of SUM_BLOCK k is summed on its own, then added to the total,
    // so rounding grows with SUM_BLOCK + K / SUM_BLOCK terms rather than K (dW sums over every
    // token of the batch).
    let k_vec_end = params.k_begin + ((params.k_end - params.k_begin) / 4u) * 4u;
    var k = params.k_begin;
    while (k < k_vec_end) {
        let end = min(k + SUM_BLOCK, k_vec_end);
        total = add_blocks(total, partial_scalar(a_rows, b_rows, k, end));
        k = end;
    }
    // The last K mod 4 terms.
    for (; k < params.k_end; k += 1u) {
        let bk = vec4<f32>(b[b_rows.x + k], b[b_rows.y + k], b[b_rows.z + k], b[b_rows.w + k]);
        total.r0 += a[a_rows.x + k] * bk;
        total.r1 += a[a_rows.y + k] * bk;
        total.r2 += a[a_rows.z + k] * bk;
        total.r3 += a[a_rows.w + k] * bk;
    }
    store_block(origin, total);
}

// matmul_nt where K, lda and ldb are multiples of 4: one vector load (and one bounds check)
// per 4 k instead of four. Measured 2x faster than matmul_nt on llvmpipe. Params count k,
// lda and ldb in floats, as for matmul_nt.
@compute @workgroup_size(WORKGROUP)
fn matmul_nt_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let origin = block_origin(linear_id(wid, lid, nwg));
    if (origin.x >= params.rows) {
        return;
    }
    let a_rows = row_offsets(origin.x, params.rows, params.lda / 4u);
    let b_rows = row_offsets(origin.y, params.cols, params.ldb / 4u);
    var total = Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let end4 = params.k_end / 4u;
    var k4 = params.k_begin / 4u;
    // Two-level sums, as in matmul_nt.
    while (k4 < end4) {
        let end = min(k4 + SUM_BLOCK / 4u, end4);
        total = add_blocks(total, partial_vec4(a_rows, b_rows, k4, end));
        k4 = end;
    }
    store_block(origin, total);
}

fn store_row(row: u32, c0: u32, values: vec4<f32>) {
    if (row >= params.rows) {
        return;
    }
    for (var j = 0u; j < 4u; j += 1u) {
        let col = c0 + j;
        if (col < params.cols) {
            let at = row * params.ldc + col;
            var v = values[j];
            if ((params.flags & ADD_INTO_C) != 0u) {
                v = c[at] + v;
            }
            if ((params.flags & ADD_BIAS) != 0u) {
                v = v + bias[col];
            }
            c[at] = v;
        }
    }
}

// c[col, row] = a[row, col] for a [rows, cols] (lda = cols): one element per invocation.
@compute @workgroup_size(WORKGROUP)
fn transpose(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let id = linear_id(wid, lid, nwg);
    if (id >= params.rows * params.cols) {
        return;
    }
    // Consecutive invocations write consecutive outputs.
    let col = id / params.rows;
    let row = id % params.rows;
    c[id] = a[row * params.lda + col];
}

// c[row] (+)= sum of a[row, k] over k in [k_begin, k_end): the bias gradient, from dy^T.
@compute @workgroup_size(WORKGROUP)
fn row_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    // Two-level sum, as in matmul_nt.
    var sum = 0.0;
    var k = params.k_begin;
    while (k < params.k_end) {
        let block_end = min(k + SUM_BLOCK, params.k_end);
        var partial = 0.0;
        while (k < block_end) {
            partial += a[row * params.lda + k];
            k += 1u;
        }
        sum += partial;
    }
    if ((params.flags & ADD_INTO_C) != 0u) {
        sum = c[row] + sum;
    }
    c[row] = sum;
}
