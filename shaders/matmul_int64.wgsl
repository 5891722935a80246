
// ---- matmul_broadcast64: matmul_broadcast with 64-bit loads ------------------------------------
// Appended to matmul.wgsl and matmul_subgroup.wgsl where the adapter has subgroups of 8 lanes and
// 64-bit integers (wgpu's SHADER_INT64). llvmpipe loads a storage buffer lane by lane and
// component by component, so a vec4<u64> (8 floats) costs about what one vec4<f32> does
// (BENCHMARKS.md, probe_loads: 54 against 73 core-ns for two vec4<f32>); each float is the low or
// high half of a u64, bitcast.
//
// The same block as matmul_broadcast (16 rows by 32 columns per subgroup, lane l owning columns
// 4l..4l+3) and the same sums in the same order, 8 k per step: 2 loads of op(A) and 4 of op(B)
// per 8 k, where matmul_broadcast makes 12. Only for k-contiguous operands (A as stored, B
// transposed: C = A B^T) whose rows, batch strides, k span and base are multiples of 8 floats
// (the host's `Layout::vec8`); lines past the last repeat it (nothing of theirs is stored).

@group(0) @binding(15) var<storage, read> a8: array<vec4<u64>>;
@group(0) @binding(16) var<storage, read> b8: array<vec4<u64>>;

// The float at the lower address of a little-endian u64, and the one above it.
fn low_f32(w: u64) -> f32 {
    return bitcast<f32>(u32(w & 0xfffffffflu));
}

fn high_f32(w: u64) -> f32 {
    return bitcast<f32>(u32(w >> 32u));
}

// Floats 0..3 and 4..7 of 8 loaded as a vec4<u64>.
fn first4(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(low_f32(w.x), high_f32(w.x), low_f32(w.y), high_f32(w.y));
}

fn second4(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(low_f32(w.z), high_f32(w.z), low_f32(w.w), high_f32(w.w));
}

// Line `line` (clamped to the last) of a k-contiguous operand at k..k+7, as one load.
fn load_k8(op: Operand, line: u32, k: u32) -> vec4<u64> {
    let at = (op.base + min(line, op.lines - 1u) * op.ld + k) >> 3u;
    if (op.from_a) {
        return a8[at];
    }
    return b8[at];
}

@compute @workgroup_size(WORKGROUP)
fn matmul_broadcast64(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let origin = block_origin(linear_id(wid, lid, nwg) / 8u, 16u, 32u);
    // Past the last block a subgroup still runs the broadcasts with its lanes, and stores nothing.
    let live = origin.x < params.batch;
    let batch = min(origin.x, params.batch - 1u);
    let op_a = operand_a(batch);
    let op_b = operand_b(batch);
    let col0 = 4u * lane;
    // Indexed by constants only (matmul_windows' accumulate), so they stay in registers.
    var acc: array<vec4<f32>, 16>;
    for (var k = params.k_begin; k < params.k_end; k += 8u) {
        let lo = load_k8(op_a, origin.y + lane, k);
        let hi = load_k8(op_a, origin.y + 8u + lane, k);
        let c0 = load_k8(op_b, origin.z + col0, k);
        let c1 = load_k8(op_b, origin.z + col0 + 1u, k);
        let c2 = load_k8(op_b, origin.z + col0 + 2u, k);
        let c3 = load_k8(op_b, origin.z + col0 + 3u, k);
        // k..k+3, then k+4..k+7: matmul_broadcast's two steps.
        accumulate(&acc, first4(lo), first4(hi),
                   array<vec4<f32>, 4>(first4(c0), first4(c1), first4(c2), first4(c3)));
        accumulate(&acc, second4(lo), second4(hi),
                   array<vec4<f32>, 4>(second4(c0), second4(c1), second4(c2), second4(c3)));
    }
    if (!live) {
        return;
    }
    // Constant indices: a loop over the accumulators would keep them in memory.
    let r = origin.y;
    let cc = origin.z + col0;
    store_row4(batch, r + 0u, cc, acc[0]);
    store_row4(batch, r + 1u, cc, acc[1]);
    store_row4(batch, r + 2u, cc, acc[2]);
    store_row4(batch, r + 3u, cc, acc[3]);
    store_row4(batch, r + 4u, cc, acc[4]);
    store_row4(batch, r + 5u, cc, acc[5]);
    store_row4(batch, r + 6u, cc, acc[6]);
    store_row4(batch, r + 7u, cc, acc[7]);
    store_row4(batch, r + 8u, cc, acc[8]);
    store_row4(batch, r + 9u, cc, acc[9]);
    store_row4(batch, r + 10u, cc, acc[10]);
    store_row4(batch, r + 11u, cc, acc[11]);
    store_row4(batch, r + 12u, cc, acc[12]);
    store_row4(batch, r + 13u, cc, acc[13]);
    store_row4(batch, r + 14u, cc, acc[14]);
    store_row4(batch, r + 15u, cc, acc[15]);
}
