
// ---- scan_states64: scan_states by 8 floats a load -------------------------------------------
// Appended to poly_attention.wgsl (floats64.wgsl between them) where the adapter has 64-bit
// integers (wgpu's SHADER_INT64). A chunk's state is a multiple of 8 floats (v_width and
// features_pad are multiples of 8). Each invocation runs 8 of them through the chunks, with
// the same sums in the same order as scan_states: the same bits.

// The chunk states, 8 floats an element: a third binding of scan_states's buffer.
@group(0) @binding(12) var<storage, read_write> states8: array<vec4<u64>>;

@compute @workgroup_size(WORKGROUP)
fn scan_states64(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_slot = params.width_in / 8u;
    let id = linear_id(wid, lid, nwg);
    let h = id / per_slot;
    if (h >= params.heads) {
        return;
    }
    let base = h * params.n_chunks * per_slot + id % per_slot;
    var first = vec4<f32>(0.0);
    var second = vec4<f32>(0.0);
    let suffix = (params.flags & SUFFIX) != 0u;
    for (var i = 0u; i < params.n_chunks; i++) {
        let c = select(i, params.n_chunks - 1u - i, suffix);
        let at = base + c * per_slot;
        let here = states8[at];
        states8[at] = eight64(first, second);
        first += first4(here);
        second += second4(here);
    }
}
