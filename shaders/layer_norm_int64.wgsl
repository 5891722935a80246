
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
