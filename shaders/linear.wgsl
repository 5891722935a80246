// Linear layers, y = x W^T + b: the products (forward, dx = dy W, dW = dy^T x) run on the
// matrix-product core (matmul.wgsl); this file holds what is not a product, the bias gradient.
//
// db[col] (+)= sum over rows r in [row_begin, row_end) of dy[r, col]: one invocation per column,
// rows in a fixed order, two-level sums (blocks of SUM_BLOCK rows summed on their own, then
// added) so rounding grows with SUM_BLOCK + rows / SUM_BLOCK terms. The host keeps each span of
// rows inside llvmpipe's loop budget and adds spans into db in order (ADD_INTO_OUT).

override WORKGROUP: u32 = 64u;

const ADD_INTO_OUT: u32 = 1u;
const SUM_BLOCK: u32 = 128u;

struct Params {
    rows: u32,
    cols: u32,
    row_begin: u32,
    row_end: u32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn bias_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let col = (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
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
