// Linear layers, y = x W^T + b: the products (forward, dx = dy W, dW = dy^T x) run on the
// matrix-product core (matmul.wgsl); this file holds what is not a product, the bias gradient,
// and the ordered sum of block partials that it and LayerNorm's parameter gradients share.
//
// db[col] (+)= sum over rows r in [row_begin, row_end) of dy[r, col]: rows in a fixed order,
// two-level sums (blocks of SUM_BLOCK rows summed on their own, then added in block order) so
// rounding grows with SUM_BLOCK + rows / SUM_BLOCK terms. Widths that are multiples of 4 run it
// in two dispatches: bias_grad_blocks sums every (block, 4 columns) in its own invocation, so
// that a long sum fills the device, and sum_blocks adds the blocks' partials in block order.
// Other widths run bias_grad, one invocation per column walking every block; both give the same
// bits. The host keeps each span of rows inside llvmpipe's loop budget and adds spans into db in
// order (ADD_INTO_OUT).

override WORKGROUP: u32 = 64u;

const ADD_INTO_OUT: u32 = 1u;
// Rows per partial sum: the host's SUM_BLOCK, a source constant set from it.
const SUM_BLOCK: u32 = 128u;

struct Params {
    rows: u32,
    cols: u32,
    row_begin: u32,
    row_end: u32,
    flags: u32,
    // sum_blocks: partials4 holds `blocks` rows of `stride` vec4s; it sums each row's vec4s
    // from `offset` to offset + cols / 4.
    blocks: u32,
    stride: u32,
    offset: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
@group(0) @binding(3) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> partials4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

@compute @workgroup_size(WORKGROUP)
fn bias_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let col = linear_id(wid, lid, nwg);
    if (col >= params.cols) {
        return;
    }
    var sum = 0.0;
    var r = params.row_begin;
    while (r < params.row_end) {
        let block_end = min(r + SUM_BLOCK, params.row_end);
        var partial = 0.0;
        while (r < block_end) {
            partial += dy[r * params.cols + col];
            r += 1u;
        }
        sum += partial;
    }
    if ((params.flags & ADD_INTO_OUT) != 0u) {
        sum = db[col] + sum;
    }
    db[col] = sum;
}

// Block b of the span (its rows from row_begin + b * SUM_BLOCK) summed for 4 columns, in row
// order, into partials4[b * cols / 4 + quad]: one invocation per (block, quad).
@compute @workgroup_size(WORKGROUP)
fn bias_grad_blocks(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let quads = params.cols / 4u;
    let i = linear_id(wid, lid, nwg);
    let block = i / quads;
    let quad = i - block * quads;
    let begin = params.row_begin + block * SUM_BLOCK;
    if (begin >= params.row_end) {
        return;
    }
    let end = min(begin + SUM_BLOCK, params.row_end);
    var partial = vec4<f32>(0.0);
    for (var r = begin; r < end; r += 1u) {
        partial += dy4[r * quads + quad];
    }
    partials4[i] = partial;
}

// out4[quad] (+)= the partials of blocks 0, 1, .. in that order: the second level of a
// two-level column sum (bias_grad_blocks, layer_norm.wgsl's param_grad_blocks).
@compute @workgroup_size(WORKGROUP)
fn sum_blocks(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let quad = linear_id(wid, lid, nwg);
    if (quad >= params.cols / 4u) {
        return;
    }
    var sum = vec4<f32>(0.0);
    for (var b = 0u; b < params.blocks; b += 1u) {
        sum += partials4[b * params.stride + params.offset + quad];
    }
    if ((params.flags & ADD_INTO_OUT) != 0u) {
        sum = out4[quad] + sum;
    }
    out4[quad] = sum;
}
