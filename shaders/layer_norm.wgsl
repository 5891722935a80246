// LayerNorm over the last axis, biased variance:
//   mean = sum_i x_i / D,  var = sum_i (x_i - mean)^2 / D,  rstd = 1 / sqrt(var + eps)
//   xhat_i = (x_i - mean) rstd,  y_i = xhat_i w_i + b_i
// Backward, with g_i = dy_i w_i:
//   dx_i = rstd (g_i - mean_j(g_j) - xhat_i mean_j(g_j xhat_j))
//   dw_i = sum_rows dy_i xhat_i,   db_i = sum_rows dy_i
// The forward saves (mean, rstd) per row; the backward recomputes xhat from x.
// One invocation per row (forward, input_grad) or per column (param_grad); every sum runs in a
// fixed order. For widths that are multiples of 4, param_grad_blocks sums each block of SUM_BLOCK
// rows for 4 columns in its own invocation, and linear.wgsl's sum_blocks adds the blocks in
// order: the same sums as param_grad's, spread over the device. forward_rows and input_grad_rows
// are the row kernels for widths that are multiples of 4 up to 4 * ROW_QUADS_MAX: the row is
// loaded once, as vec4s, into a private array, and stored as vec4s (a CPU driver loads lane by
// lane, so the plain kernels' three passes over x cost three loads per element; a vec4 store
// costs about an f32's). The parameter gradients cover a span of rows per dispatch and add into
// their outputs after the first span, so that no invocation loops past the driver's budget.

override WORKGROUP: u32 = 64u;

const ADD_INTO_OUTPUT: u32 = 1u;
// Rows per partial sum in param_grad: the host's SUM_BLOCK, a source constant set from it.
const SUM_BLOCK: u32 = 128u;

struct Params {
    rows: u32,
    width: u32,
    row_begin: u32,
    row_end: u32,
    eps: f32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// (mean, rstd) per row.
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_weight: array<f32>;
@group(0) @binding(9) var<storage, read_write> d_bias: array<f32>;
// Read-only view of the statistics for the backward entry points.
@group(0) @binding(10) var<storage, read> saved_stats: array<f32>;
// The row kernels' vec4 views of the same buffers.
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> weight4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(16) var<storage, read_write> dx4: array<vec4<f32>>;
// param_grad_blocks' output: per block, d_weight's quads then d_bias's.
@group(0) @binding(17) var<storage, read_write> partials4: array<vec4<f32>>;

// The widest row the row kernels hold, in vec4s (the host's ROW_QUADS_MAX).
const ROW_QUADS_MAX: u32 = 64u;

fn sum4(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

@compute @workgroup_size(WORKGROUP)
fn forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    let base = row * params.width;
    let inv_width = 1.0 / f32(params.width);
    var sum = 0.0;
    for (var i = 0u; i < params.width; i += 1u) {
        sum += x[base + i];
    }
    let mean = sum * inv_width;
    var sq = 0.0;
    for (var i = 0u; i < params.width; i += 1u) {
        let c = x[base + i] - mean;
        sq += c * c;
    }
    let rstd = 1.0 / sqrt(sq * inv_width + params.eps);
    for (var i = 0u; i < params.width; i += 1u) {
        y[base + i] = (x[base + i] - mean) * rstd * weight[i] + bias[i];
    }
    stats[2u * row] = mean;
    stats[2u * row + 1u] = rstd;
}

// dx (+)= the input gradient, one row per invocation.
@compute @workgroup_size(WORKGROUP)
fn input_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    let base = row * params.width;
    let mean = saved_stats[2u * row];
    let rstd = saved_stats[2u * row + 1u];
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var i = 0u; i < params.width; i += 1u) {
        let g = dy[base + i] * weight[i];
        sum_g += g;
        sum_gx += g * (x[base + i] - mean) * rstd;
    }
    let inv_width = 1.0 / f32(params.width);
    let mean_g = sum_g * inv_width;
    let mean_gx = sum_gx * inv_width;
    let add = (params.flags & ADD_INTO_OUTPUT) != 0u;
    for (var i = 0u; i < params.width; i += 1u) {
        let xhat = (x[base + i] - mean) * rstd;
        var v = rstd * (dy[base + i] * weight[i] - mean_g - xhat * mean_gx);
        if (add) {
            v = dx[base + i] + v;
        }
        dx[base + i] = v;
    }
}

// d_weight[i], d_bias[i] (+)= sums over rows [row_begin, row_end), one column per invocation.
@compute @workgroup_size(WORKGROUP)
fn param_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let col = linear_id(wid, lid, nwg);
    if (col >= params.width) {
        return;
    }
    // Two-level sums: blocks of SUM_BLOCK rows summed on their own, then added, so rounding
    // grows with SUM_BLOCK + rows / SUM_BLOCK terms rather than with every token.
    var sum_w = 0.0;
    var sum_b = 0.0;
    var row = params.row_begin;
    while (row < params.row_end) {
        let block_end = min(row + SUM_BLOCK, params.row_end);
        var partial_w = 0.0;
        var partial_b = 0.0;
        while (row < block_end) {
            let at = row * params.width + col;
            let xhat = (x[at] - saved_stats[2u * row]) * saved_stats[2u * row + 1u];
            partial_w += dy[at] * xhat;
            partial_b += dy[at];
            row += 1u;
        }
        sum_w += partial_w;
        sum_b += partial_b;
    }
    if ((params.flags & ADD_INTO_OUTPUT) != 0u) {
        sum_w = d_weight[col] + sum_w;
        sum_b = d_bias[col] + sum_b;
    }
    d_weight[col] = sum_w;
    d_bias[col] = sum_b;
}

// forward for one row held in a private array: x loaded once, y stored as vec4s. The sums run
// per vec4 component, then across components, in a fixed order.
@compute @workgroup_size(WORKGROUP)
fn forward_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    let quads = params.width / 4u;
    let base = row * quads;
    let inv_width = 1.0 / f32(params.width);
    var xs: array<vec4<f32>, ROW_QUADS_MAX>;
    var sum = vec4<f32>(0.0);
    for (var q = 0u; q < quads; q += 1u) {
        let v = x4[base + q];
        xs[q] = v;
        sum += v;
    }
    let mean = sum4(sum) * inv_width;
    var sq = vec4<f32>(0.0);
    for (var q = 0u; q < quads; q += 1u) {
        let c = xs[q] - mean;
        sq += c * c;
    }
    let rstd = 1.0 / sqrt(sum4(sq) * inv_width + params.eps);
    for (var q = 0u; q < quads; q += 1u) {
        y4[base + q] = (xs[q] - mean) * rstd * weight4[q] + bias4[q];
    }
    stats[2u * row] = mean;
    stats[2u * row + 1u] = rstd;
}

// input_grad for one row: x and dy loaded once, g = dy w and xhat kept in private arrays.
@compute @workgroup_size(WORKGROUP)
fn input_grad_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    let quads = params.width / 4u;
    let base = row * quads;
    let mean = saved_stats[2u * row];
    let rstd = saved_stats[2u * row + 1u];
    var gs: array<vec4<f32>, ROW_QUADS_MAX>;
    var xhats: array<vec4<f32>, ROW_QUADS_MAX>;
    var sum_g = vec4<f32>(0.0);
    var sum_gx = vec4<f32>(0.0);
    for (var q = 0u; q < quads; q += 1u) {
        let g = dy4[base + q] * weight4[q];
        let xhat = (x4[base + q] - mean) * rstd;
        gs[q] = g;
        xhats[q] = xhat;
        sum_g += g;
        sum_gx += g * xhat;
    }
    let inv_width = 1.0 / f32(params.width);
    let mean_g = sum4(sum_g) * inv_width;
    let mean_gx = sum4(sum_gx) * inv_width;
    let add = (params.flags & ADD_INTO_OUTPUT) != 0u;
    for (var q = 0u; q < quads; q += 1u) {
        var v = rstd * (gs[q] - mean_g - xhats[q] * mean_gx);
        if (add) {
            v = dx4[base + q] + v;
        }
        dx4[base + q] = v;
    }
}

// param_grad's block b of the span (rows from row_begin + b * SUM_BLOCK) for 4 columns, in row
// order, as vec4s: partials4[2 b quads + quad] for the weight, [(2 b + 1) quads + quad] for the
// bias. One invocation per (block, quad); a row's statistics are loaded once per 4 columns.
@compute @workgroup_size(WORKGROUP)
fn param_grad_blocks(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let quads = params.width / 4u;
    let i = linear_id(wid, lid, nwg);
    let block = i / quads;
    let quad = i - block * quads;
    let begin = params.row_begin + block * SUM_BLOCK;
    if (begin >= params.row_end) {
        return;
    }
    let end = min(begin + SUM_BLOCK, params.row_end);
    var partial_w = vec4<f32>(0.0);
    var partial_b = vec4<f32>(0.0);
    for (var row = begin; row < end; row += 1u) {
        let at = row * quads + quad;
        let xhat = (x4[at] - saved_stats[2u * row]) * saved_stats[2u * row + 1u];
        let d = dy4[at];
        partial_w += d * xhat;
        partial_b += d;
    }
    partials4[2u * block * quads + quad] = partial_w;
    partials4[(2u * block + 1u) * quads + quad] = partial_b;
}
