// matmul_subgroup: appended to matmul.wgsl (its header has the contract) where the adapter has
// subgroups; wgpu refuses subgroup builtins on devices without them, so it is a module apart.
//
// A subgroup of SUBGROUP lanes computes a block of SUBGROUP / 4 * LANE_ROWS rows by 16 columns
// of C; lane l owns the LANE_ROWS x 4 block at rows LANE_ROWS (l / 4).., columns 4 (l % 4)...
// Per 4 k the block needs one vec4 of op(A) per row and 16 of op(B): each lane loads
// LANE_ROWS / 4 of A and 16 / SUBGROUP of B, and gets the ones its block needs from the other
// lanes with subgroupShuffle. Where a load costs far more than a register move (llvmpipe), that
// is 3 loads per 64 multiply-adds at LANE_ROWS = 4 (4 per 128 at 8) instead of 8 per 64 for a
// 4 x 4 block per invocation.
// The block of a subgroup is its first invocation's flat index / SUBGROUP, which assumes
// subgroups are runs of consecutive local_invocation_index (the tuner checks every variant's
// result against another's before it may win).

// The adapter's subgroup size: a power of two from 4 to 64 (the host requires the adapter's
// minimum and maximum to agree).
override SUBGROUP: u32 = 8u;
// Rows of C per lane, 4 or 8 (a source constant: it sizes private arrays).
const LANE_ROWS: u32 = 4u;

const MAX_PER_LANE: u32 = 4u;

// Element e of the loads spread over the subgroup: lane e % SUBGROUP holds it in slot
// e / SUBGROUP. Every lane runs every shuffle.
fn gather(mine: array<vec4<f32>, MAX_PER_LANE>, per_lane: u32, e: u32) -> vec4<f32> {
    var got = vec4<f32>(0.0);
    for (var slot = 0u; slot < per_lane; slot++) {
        let v = subgroupShuffle(mine[slot], e % SUBGROUP);
        got = select(got, v, slot == e / SUBGROUP);
    }
    return got;
}

// Slot `slot` of this lane's loads of an operand whose block spans `lines` lines (a multiple of
// 4), `lines` vec4s in all: element e = lane + SUBGROUP * slot; k-contiguous, line e at
// k..k+3; k-major, the four lines of group e % (lines / 4) at k + e / (lines / 4). Lanes past
// the last element load it again (nobody reads theirs).
fn load_share(op: Operand, line0: u32, lines: u32, lane: u32, slot: u32, k: u32) -> vec4<f32> {
    let e = min(lane + SUBGROUP * slot, lines - 1u);
    if (op.k_major) {
        let groups = lines / 4u;
        return load_lines4(op, line0 + 4u * (e % groups), k + e / groups);
    }
    return load_k4(op, line0 + e, k);
}

// Four lines first..first+3 of a block of `lines`, each at k..k+3, from the lanes that loaded
// them.
fn gather_lines4(op: Operand, mine: array<vec4<f32>, MAX_PER_LANE>, per_lane: u32, lines: u32,
                 first: u32) -> array<vec4<f32>, 4> {
    var got: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        // k-major: element of group first / 4 at k + i; k-contiguous: line first + i.
        got[i] = gather(mine, per_lane, select(first + i, first / 4u + (lines / 4u) * i, op.k_major));
    }
    if (op.k_major) {
        got = transpose4(got);
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
    let block_rows = SUBGROUP / 4u * LANE_ROWS;
    let a_per_lane = max(block_rows * 4u / SUBGROUP / 4u, 1u);
    let b_per_lane = max(16u / SUBGROUP, 1u);
    let origin = block_origin(linear_id(wid, lid, nwg) / SUBGROUP, block_rows, 16u);
    // Past the last block a subgroup still runs the shuffles with its lanes, and stores nothing.
    let live = origin.x < params.batch;
    let batch = min(origin.x, params.batch - 1u);
    let op_a = operand_a(batch);
    let op_b = operand_b(batch);
    let row0 = LANE_ROWS * (lane / 4u);
    let col0 = 4u * (lane % 4u);
    var acc: array<vec4<f32>, LANE_ROWS>;
    for (var k = params.k_begin; k < params.k_end; k += 4u) {
        var a_mine: array<vec4<f32>, MAX_PER_LANE>;
        for (var slot = 0u; slot < a_per_lane; slot++) {
            a_mine[slot] = load_share(op_a, origin.y, block_rows, lane, slot, k);
        }
        var b_mine: array<vec4<f32>, MAX_PER_LANE>;
        for (var slot = 0u; slot < b_per_lane; slot++) {
            b_mine[slot] = load_share(op_b, origin.z, 16u, lane, slot, k);
        }
        let cols = gather_lines4(op_b, b_mine, b_per_lane, 16u, col0);
        for (var g = 0u; g < LANE_ROWS; g += 4u) {
            let rows = gather_lines4(op_a, a_mine, a_per_lane, block_rows, row0 + g);
            for (var i = 0u; i < 4u; i++) {
                acc[g + i] += vec4<f32>(dot(rows[i], cols[0]), dot(rows[i], cols[1]),
                                        dot(rows[i], cols[2]), dot(rows[i], cols[3]));
            }
        }
    }
    if (live) {
        for (var i = 0u; i < LANE_ROWS; i++) {
            for (var j = 0u; j < 4u; j++) {
                store(batch, origin.y + row0 + i, origin.z + col0 + j, acc[i][j]);
            }
        }
    }
}
