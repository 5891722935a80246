
// ---- bias_grad_blocks64: bias_grad_blocks by 8 columns a load --------------------------------
// Appended to linear.wgsl (floats64.wgsl between them) where the adapter has 64-bit integers
// and the width is a multiple of 8: dy read as vec4<u64>, 8 columns a load, each invocation
// summing a block of rows for 8 columns into the same two partials (the same rows in the same
// order) that bias_grad_blocks makes for them: the same bits.

@group(0) @binding(6) var<storage, read> dy8: array<vec4<u64>>;

@compute @workgroup_size(WORKGROUP)
fn bias_grad_blocks64(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let octs = params.cols / 8u;
    let i = linear_id(wid, lid, nwg);
    let block = i / octs;
    let oct = i - block * octs;
    let begin = params.row_begin + block * SUM_BLOCK;
    if (begin >= params.row_end) {
        return;
    }
    let end = min(begin + SUM_BLOCK, params.row_end);
    var first = vec4<f32>(0.0);
    var second = vec4<f32>(0.0);
    for (var r = begin; r < end; r += 1u) {
        let d = dy8[r * octs + oct];
        first += first4(d);
        second += second4(d);
    }
    let at = block * (params.cols / 4u) + 2u * oct;
    partials4[at] = first;
    partials4[at + 1u] = second;
}
