
// ---- param_grad_blocks64: param_grad_blocks by 8 columns a load ------------------------------
// Appended to layer_norm.wgsl (floats64.wgsl between them) where the adapter has 64-bit
// integers and the width is a multiple of 8: x and dy read as vec4<u64>, 8 columns a load, each
// invocation summing a block of rows for 8 columns into the same four partials (the same rows
// in the same order, each row's statistics loaded once) that param_grad_blocks makes for them:
// the same bits.

@group(0) @binding(18) var<storage, read> x8: array<vec4<u64>>;
@group(0) @binding(19) var<storage, read> dy8: array<vec4<u64>>;

@compute @workgroup_size(WORKGROUP)
fn param_grad_blocks64(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let quads = params.width / 4u;
    let octs = params.width / 8u;
    let i = linear_id(wid, lid, nwg);
    let block = i / octs;
    let oct = i - block * octs;
    let begin = params.row_begin + block * SUM_BLOCK;
    if (begin >= params.row_end) {
        return;
    }
    let end = min(begin + SUM_BLOCK, params.row_end);
    var w_first = vec4<f32>(0.0);
    var w_second = vec4<f32>(0.0);
    var b_first = vec4<f32>(0.0);
    var b_second = vec4<f32>(0.0);
    for (var row = begin; row < end; row += 1u) {
        let at = row * octs + oct;
        let mean = saved_stats[2u * row];
        let rstd = saved_stats[2u * row + 1u];
        let xs = x8[at];
        let ds = dy8[at];
        let d_first = first4(ds);
        let d_second = second4(ds);
        w_first += d_first * ((first4(xs) - mean) * rstd);
        w_second += d_second * ((second4(xs) - mean) * rstd);
        b_first += d_first;
        b_second += d_second;
    }
    let w_at = 2u * block * quads + 2u * oct;
    partials4[w_at] = w_first;
    partials4[w_at + 1u] = w_second;
    partials4[w_at + quads] = b_first;
    partials4[w_at + quads + 1u] = b_second;
}

// ---- forward_rows64, input_grad_rows64: the row kernels by 8 floats a load and store --------
// Where the width is a multiple of 8: x, dy, the parameters and the outputs read and written as
// vec4<u64>, the two quads of each summed in the row kernels' order (quad 2o, then 2o + 1) and
// kept in the same private arrays: the same operations in the same order, so the same bits, with
// half the per-lane load and store loops (llvmpipe loads and stores lane by lane and component
// by component).

@group(0) @binding(20) var<storage, read> weight8: array<vec4<u64>>;
@group(0) @binding(21) var<storage, read> bias8: array<vec4<u64>>;
@group(0) @binding(22) var<storage, read_write> y8: array<vec4<u64>>;
@group(0) @binding(23) var<storage, read_write> dx8: array<vec4<u64>>;

@compute @workgroup_size(WORKGROUP)
fn forward_rows64(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    let octs = params.width / 8u;
    let base = row * octs;
    let inv_width = 1.0 / f32(params.width);
    var xs: array<vec4<f32>, ROW_QUADS_MAX>;
    var sum = vec4<f32>(0.0);
    for (var o = 0u; o < octs; o += 1u) {
        let v = x8[base + o];
        let lo = first4(v);
        let hi = second4(v);
        xs[2u * o] = lo;
        xs[2u * o + 1u] = hi;
        sum += lo;
        sum += hi;
    }
    let mean = sum4(sum) * inv_width;
    var sq = vec4<f32>(0.0);
    for (var q = 0u; q < 2u * octs; q += 1u) {
        let c = xs[q] - mean;
        sq += c * c;
    }
    let rstd = 1.0 / sqrt(sum4(sq) * inv_width + params.eps);
    for (var o = 0u; o < octs; o += 1u) {
        let w = weight8[o];
        let b = bias8[o];
        let lo = (xs[2u * o] - mean) * rstd * first4(w) + first4(b);
        let hi = (xs[2u * o + 1u] - mean) * rstd * second4(w) + second4(b);
        y8[base + o] = eight64(lo, hi);
    }
    stats[2u * row] = mean;
    stats[2u * row + 1u] = rstd;
}

@compute @workgroup_size(WORKGROUP)
fn input_grad_rows64(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    let octs = params.width / 8u;
    let base = row * octs;
    let mean = saved_stats[2u * row];
    let rstd = saved_stats[2u * row + 1u];
    var gs: array<vec4<f32>, ROW_QUADS_MAX>;
    var xhats: array<vec4<f32>, ROW_QUADS_MAX>;
    var sum_g = vec4<f32>(0.0);
    var sum_gx = vec4<f32>(0.0);
    for (var o = 0u; o < octs; o += 1u) {
        let d = dy8[base + o];
        let xv = x8[base + o];
        let w = weight8[o];
        let g_lo = first4(d) * first4(w);
        let xhat_lo = (first4(xv) - mean) * rstd;
        gs[2u * o] = g_lo;
        xhats[2u * o] = xhat_lo;
        sum_g += g_lo;
        sum_gx += g_lo * xhat_lo;
        let g_hi = second4(d) * second4(w);
        let xhat_hi = (second4(xv) - mean) * rstd;
        gs[2u * o + 1u] = g_hi;
        xhats[2u * o + 1u] = xhat_hi;
        sum_g += g_hi;
        sum_gx += g_hi * xhat_hi;
    }
    let inv_width = 1.0 / f32(params.width);
    let mean_g = sum4(sum_g) * inv_width;
    let mean_gx = sum4(sum_gx) * inv_width;
    let add = (params.flags & ADD_INTO_OUTPUT) != 0u;
    for (var o = 0u; o < octs; o += 1u) {
        var lo = rstd * (gs[2u * o] - mean_g - xhats[2u * o] * mean_gx);
        var hi = rstd * (gs[2u * o + 1u] - mean_g - xhats[2u * o + 1u] * mean_gx);
        if (add) {
            let old = dx8[base + o];
            lo = first4(old) + lo;
            hi = second4(old) + hi;
        }
        dx8[base + o] = eight64(lo, hi);
    }
}
