// matmul_subgroup: appended to matmul.wgsl (its header has the contract) where the adapter has
// subgroups; wgpu refuses subgroup builtins on devices without them, so it is a module apart.
//
// A subgroup of SUBGROUP lanes computes a block of SUBGROUP rows by 16 columns of C; lane l owns
// the 4 x 4 block at rows 4 (l / 4).., columns 4 (l % 4).. (16 accumulators: registers, no
// spills). Per 4 k, the block needs SUBGROUP vec4s of op(A) and 16 of op(B): each lane loads
// one of A and 16 / SUBGROUP of B, and gets the ones its block needs from the other lanes with
// subgroupShuffle. Where a load costs far more than a register move (llvmpipe), that is
// 3 loads per 64 multiply-adds instead of 8 for a 4 x 4 block per invocation.
// The block of a subgroup is its first invocation's flat index / SUBGROUP, which assumes
// subgroups are runs of consecutive local_invocation_index (the tuner checks every variant's
// result against another's before it may win).

// The adapter's subgroup size: a power of two from 4 to 64 (the host requires the adapter's
// minimum and maximum to agree).
override SUBGROUP: u32 = 8u;

const MAX_B_PER_LANE: u32 = 4u;

// Element e of the loads spread over the subgroup: lane e % SUBGROUP holds it in slot
// e / SUBGROUP. Every lane runs every shuffle.
fn gather(mine: array<vec4<f32>, MAX_B_PER_LANE>, per_lane: u32, e: u32) -> vec4<f32> {
    var got = vec4<f32>(0.0);
    for (var slot = 0u; slot < per_lane; slot++) {
        let v = subgroupShuffle(mine[slot], e % SUBGROUP);
        got = select(got, v, slot == e / SUBGROUP);
    }
    return got;
}

@compute @workgroup_size(WORKGROUP)
fn matmul_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let groups = SUBGROUP / 4u;
    let b_per_lane = max(16u / SUBGROUP, 1u);
    let origin = block_origin(linear_id(wid, lid, nwg) / SUBGROUP, SUBGROUP, 16u);
    // Past the last block a subgroup still runs the shuffles with its lanes, and stores nothing.
    let live = origin.x < params.batch;
    let batch = min(origin.x, params.batch - 1u);
    let op_a = operand_a(batch);
    let op_b = operand_b(batch);
    let my_rows = lane / 4u;
    let my_cols = lane % 4u;
    var acc: array<vec4<f32>, 4>;
    for (var k = params.k_begin; k < params.k_end; k += 4u) {
        // A: k-contiguous, lane e loads row e; k-major, lane e loads rows of group e % groups at
        // k + e / groups.
        var a_mine: array<vec4<f32>, MAX_B_PER_LANE>;
        if (op_a.k_major) {
            a_mine[0] = load_lines4(op_a, origin.y + 4u * (lane % groups), k + lane / groups);
        } else {
            a_mine[0] = load_k4(op_a, origin.y + lane, k);
        }
        // B: element e < 16; k-contiguous, column e; k-major, columns of group e % 4 at k + e / 4.
        var b_mine: array<vec4<f32>, MAX_B_PER_LANE>;
        for (var slot = 0u; slot < b_per_lane; slot++) {
            let e = min(lane + SUBGROUP * slot, 15u);
            if (op_b.k_major) {
                b_mine[slot] = load_lines4(op_b, origin.z + 4u * (e % 4u), k + e / 4u);
            } else {
                b_mine[slot] = load_k4(op_b, origin.z + e, k);
            }
        }
        var rows: array<vec4<f32>, 4>;
        var cols: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) {
            rows[i] = gather(a_mine, 1u, select(4u * my_rows + i, my_rows + groups * i, op_a.k_major));
            cols[i] = gather(b_mine, b_per_lane, select(4u * my_cols + i, my_cols + 4u * i, op_b.k_major));
        }
        // k-major loads hold four lines at one k: turn them into lines over four k.
        if (op_a.k_major) {
            rows = transpose4(rows);
        }
        if (op_b.k_major) {
            cols = transpose4(cols);
        }
        for (var i = 0u; i < 4u; i++) {
            acc[i] += vec4<f32>(dot(rows[i], cols[0]), dot(rows[i], cols[1]), dot(rows[i], cols[2]), dot(rows[i], cols[3]));
        }
    }
    if (live) {
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                store(batch, origin.y + 4u * my_rows + i, origin.z + 4u * my_cols + j, acc[i][j]);
            }
        }
    }
}
