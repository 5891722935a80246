
// ---- matmul_broadcast64: matmul_broadcast with 64-bit loads ------------------------------------
// Appended to matmul.wgsl and matmul_subgroup.wgsl where the adapter has subgroups of 8 lanes and
// 64-bit integers (wgpu's SHADER_INT64). llvmpipe loads a storage buffer lane by lane and
// component by component, so a vec4<u64> (8 floats) costs about what one vec4<f32> does
// (floats64.wgsl, prepended).
//
// The same block as matmul_broadcast (16 rows by 32 columns per subgroup, lane l owning columns
// 4l..4l+3) and the same sums in the same order, 8 k per step: 2 loads of op(A) and 4 of op(B)
// per 8 k, where matmul_broadcast makes 12. Only for k-contiguous operands (A as stored, B
// transposed: C = A B^T) whose rows, batch strides, k span and base are multiples of 8 floats
// (the host's `Layout::vec8`); lines past the last repeat it (nothing of theirs is stored).

@group(0) @binding(15) var<storage, read> a8: array<vec4<u64>>;
@group(0) @binding(16) var<storage, read> b8: array<vec4<u64>>;

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
    let blk = lane_block(wid, lid, nwg, lane);
    // Indexed by constants only (matmul_windows' accumulate), so they stay in registers.
    var acc: array<vec4<f32>, 16>;
    for (var k = blk.k.x; k < blk.k.y; k += 8u) {
        let lo = load_k8(blk.op_a, blk.row + lane, k);
        let hi = load_k8(blk.op_a, blk.row + 8u + lane, k);
        let c0 = load_k8(blk.op_b, blk.col, k);
        let c1 = load_k8(blk.op_b, blk.col + 1u, k);
        let c2 = load_k8(blk.op_b, blk.col + 2u, k);
        let c3 = load_k8(blk.op_b, blk.col + 3u, k);
        // k..k+3, then k+4..k+7: matmul_broadcast's two steps.
        accumulate(&acc, first4(lo), first4(hi),
                   array<vec4<f32>, 4>(first4(c0), first4(c1), first4(c2), first4(c3)));
        accumulate(&acc, second4(lo), second4(hi),
                   array<vec4<f32>, 4>(second4(c0), second4(c1), second4(c2), second4(c3)));
    }
    if (!blk.live) {
        return;
    }
    store_block16(blk.batch, blk.row, blk.col, acc);
}

// ---- matmul_broadcast64_km: matmul_broadcast64 with op(B) stored k-major --------------------
// C = op(A) B with B stored K x N (each k a row of columns): the model's weight gradients (TN,
// A stored K x M too) and input gradients (NN, A stored M x K). The block is broadcast64's (16
// rows by 32 columns per subgroup, lane l owning columns 4l..4l+3). Per 8 k a lane loads its 4
// columns at each k as one vec2<u64> (broadcast64 loads as many 64-bit elements, as 4 vec4s)
// and 2 vec4<u64> of op(A): with A k-contiguous (TRANS_A false) rows lane and 8 + lane at the
// 8 k, as broadcast64; with A k-major, the block's 16 rows at k + lane. Either way 16
// broadcasts of 8 floats give every row at every k, summed k by k into the lane's 16 rows.
// The host's `Layout::k_major8` says where it may run: B's rows and batch stride multiples of
// 4 floats, K and A's multiples of 8.
// With A k-major it also takes B k-contiguous (TRANS_B: C = A^T B^T, both operands stored
// transposed, every run a multiple of 8 floats): a lane loads its 4 columns at the 8 k as 4
// vec4<u64>, as broadcast64 does, and regroups them k by k in registers: 6 loads per 8 k
// instead of 10.

@group(0) @binding(17) var<storage, read> b4: array<vec2<u64>>;

// Lines line0..line0 + 7 (clamped into the last 8) of a k-major operand at k, as one load.
fn load_lines8(op: Operand, line0: u32, k: u32) -> vec4<u64> {
    let at = (op.base + k * op.ld + min(line0, (op.lines - 1u) & ~7u)) >> 3u;
    if (op.from_a) {
        return a8[at];
    }
    return b8[at];
}

// Columns col..col + 3 (clamped into the last 4) of k-major op(B) at k, as one load.
fn load_cols4(op: Operand, col: u32, k: u32) -> vec4<f32> {
    let w = b4[(op.base + k * op.ld + min(col, (op.lines - 1u) & ~3u)) >> 2u];
    return vec4<f32>(low_f32(w.x), high_f32(w.x), low_f32(w.y), high_f32(w.y));
}

// Four columns, each at 8 k (k-contiguous loads), as the 4 columns at each k.
fn columns_by_k(c0: vec4<u64>, c1: vec4<u64>, c2: vec4<u64>, c3: vec4<u64>) -> array<vec4<f32>, 8> {
    let h0 = halves(c0);
    let h1 = halves(c1);
    let h2 = halves(c2);
    let h3 = halves(c3);
    return array<vec4<f32>, 8>(
        vec4<f32>(h0[0], h1[0], h2[0], h3[0]), vec4<f32>(h0[1], h1[1], h2[1], h3[1]),
        vec4<f32>(h0[2], h1[2], h2[2], h3[2]), vec4<f32>(h0[3], h1[3], h2[3], h3[3]),
        vec4<f32>(h0[4], h1[4], h2[4], h3[4]), vec4<f32>(h0[5], h1[5], h2[5], h3[5]),
        vec4<f32>(h0[6], h1[6], h2[6], h3[6]), vec4<f32>(h0[7], h1[7], h2[7], h3[7]));
}

// One row of C's block plus that row of op(A) at 8 k times op(B)'s 4 columns at the same k,
// k by k.
fn add_row8(acc: vec4<f32>, row: array<f32, 8>, b: array<vec4<f32>, 8>) -> vec4<f32> {
    var s = acc + row[0] * b[0];
    s += row[1] * b[1];
    s += row[2] * b[2];
    s += row[3] * b[3];
    s += row[4] * b[4];
    s += row[5] * b[5];
    s += row[6] * b[6];
    return s + row[7] * b[7];
}

@compute @workgroup_size(WORKGROUP)
fn matmul_broadcast64_km(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let blk = lane_block(wid, lid, nwg, lane);
    // Indexed by constants only, so they stay in registers.
    var acc: array<vec4<f32>, 16>;
    for (var k = blk.k.x; k < blk.k.y; k += 8u) {
        var b: array<vec4<f32>, 8>;
        if (TRANS_B) {
            b = columns_by_k(load_k8(blk.op_b, blk.col, k), load_k8(blk.op_b, blk.col + 1u, k),
                             load_k8(blk.op_b, blk.col + 2u, k), load_k8(blk.op_b, blk.col + 3u, k));
        } else {
            b = array<vec4<f32>, 8>(
                load_cols4(blk.op_b, blk.col, k + 0u),
                load_cols4(blk.op_b, blk.col, k + 1u),
                load_cols4(blk.op_b, blk.col, k + 2u),
                load_cols4(blk.op_b, blk.col, k + 3u),
                load_cols4(blk.op_b, blk.col, k + 4u),
                load_cols4(blk.op_b, blk.col, k + 5u),
                load_cols4(blk.op_b, blk.col, k + 6u),
                load_cols4(blk.op_b, blk.col, k + 7u));
        }
        if (TRANS_A) {
            // s_j (t_j): rows 0..7 (8..15) at k + j, from lane j.
            let lo = load_lines8(blk.op_a, blk.row, k + lane);
            let hi = load_lines8(blk.op_a, blk.row + 8u, k + lane);
            let s0 = halves(subgroupBroadcast(lo, 0u));
            let t0 = halves(subgroupBroadcast(hi, 0u));
            let s1 = halves(subgroupBroadcast(lo, 1u));
            let t1 = halves(subgroupBroadcast(hi, 1u));
            let s2 = halves(subgroupBroadcast(lo, 2u));
            let t2 = halves(subgroupBroadcast(hi, 2u));
            let s3 = halves(subgroupBroadcast(lo, 3u));
            let t3 = halves(subgroupBroadcast(hi, 3u));
            let s4 = halves(subgroupBroadcast(lo, 4u));
            let t4 = halves(subgroupBroadcast(hi, 4u));
            let s5 = halves(subgroupBroadcast(lo, 5u));
            let t5 = halves(subgroupBroadcast(hi, 5u));
            let s6 = halves(subgroupBroadcast(lo, 6u));
            let t6 = halves(subgroupBroadcast(hi, 6u));
            let s7 = halves(subgroupBroadcast(lo, 7u));
            let t7 = halves(subgroupBroadcast(hi, 7u));
            acc[0] = add_row8(acc[0], array<f32, 8>(s0[0], s1[0], s2[0], s3[0], s4[0], s5[0], s6[0], s7[0]), b);
            acc[1] = add_row8(acc[1], array<f32, 8>(s0[1], s1[1], s2[1], s3[1], s4[1], s5[1], s6[1], s7[1]), b);
            acc[2] = add_row8(acc[2], array<f32, 8>(s0[2], s1[2], s2[2], s3[2], s4[2], s5[2], s6[2], s7[2]), b);
            acc[3] = add_row8(acc[3], array<f32, 8>(s0[3], s1[3], s2[3], s3[3], s4[3], s5[3], s6[3], s7[3]), b);
            acc[4] = add_row8(acc[4], array<f32, 8>(s0[4], s1[4], s2[4], s3[4], s4[4], s5[4], s6[4], s7[4]), b);
            acc[5] = add_row8(acc[5], array<f32, 8>(s0[5], s1[5], s2[5], s3[5], s4[5], s5[5], s6[5], s7[5]), b);
            acc[6] = add_row8(acc[6], array<f32, 8>(s0[6], s1[6], s2[6], s3[6], s4[6], s5[6], s6[6], s7[6]), b);
            acc[7] = add_row8(acc[7], array<f32, 8>(s0[7], s1[7], s2[7], s3[7], s4[7], s5[7], s6[7], s7[7]), b);
            acc[8] = add_row8(acc[8], array<f32, 8>(t0[0], t1[0], t2[0], t3[0], t4[0], t5[0], t6[0], t7[0]), b);
            acc[9] = add_row8(acc[9], array<f32, 8>(t0[1], t1[1], t2[1], t3[1], t4[1], t5[1], t6[1], t7[1]), b);
            acc[10] = add_row8(acc[10], array<f32, 8>(t0[2], t1[2], t2[2], t3[2], t4[2], t5[2], t6[2], t7[2]), b);
            acc[11] = add_row8(acc[11], array<f32, 8>(t0[3], t1[3], t2[3], t3[3], t4[3], t5[3], t6[3], t7[3]), b);
            acc[12] = add_row8(acc[12], array<f32, 8>(t0[4], t1[4], t2[4], t3[4], t4[4], t5[4], t6[4], t7[4]), b);
            acc[13] = add_row8(acc[13], array<f32, 8>(t0[5], t1[5], t2[5], t3[5], t4[5], t5[5], t6[5], t7[5]), b);
            acc[14] = add_row8(acc[14], array<f32, 8>(t0[6], t1[6], t2[6], t3[6], t4[6], t5[6], t6[6], t7[6]), b);
            acc[15] = add_row8(acc[15], array<f32, 8>(t0[7], t1[7], t2[7], t3[7], t4[7], t5[7], t6[7], t7[7]), b);
        } else {
            // Row i at the 8 k, from lane i % 8.
            let lo = load_k8(blk.op_a, blk.row + lane, k);
            let hi = load_k8(blk.op_a, blk.row + 8u + lane, k);
            acc[0] = add_row8(acc[0], halves(subgroupBroadcast(lo, 0u)), b);
            acc[1] = add_row8(acc[1], halves(subgroupBroadcast(lo, 1u)), b);
            acc[2] = add_row8(acc[2], halves(subgroupBroadcast(lo, 2u)), b);
            acc[3] = add_row8(acc[3], halves(subgroupBroadcast(lo, 3u)), b);
            acc[4] = add_row8(acc[4], halves(subgroupBroadcast(lo, 4u)), b);
            acc[5] = add_row8(acc[5], halves(subgroupBroadcast(lo, 5u)), b);
            acc[6] = add_row8(acc[6], halves(subgroupBroadcast(lo, 6u)), b);
            acc[7] = add_row8(acc[7], halves(subgroupBroadcast(lo, 7u)), b);
            acc[8] = add_row8(acc[8], halves(subgroupBroadcast(hi, 0u)), b);
            acc[9] = add_row8(acc[9], halves(subgroupBroadcast(hi, 1u)), b);
            acc[10] = add_row8(acc[10], halves(subgroupBroadcast(hi, 2u)), b);
            acc[11] = add_row8(acc[11], halves(subgroupBroadcast(hi, 3u)), b);
            acc[12] = add_row8(acc[12], halves(subgroupBroadcast(hi, 4u)), b);
            acc[13] = add_row8(acc[13], halves(subgroupBroadcast(hi, 5u)), b);
            acc[14] = add_row8(acc[14], halves(subgroupBroadcast(hi, 6u)), b);
            acc[15] = add_row8(acc[15], halves(subgroupBroadcast(hi, 7u)), b);
        }
    }
    if (!blk.live) {
        return;
    }
    store_block16(blk.batch, blk.row, blk.col, acc);
}

// ---- matmul_broadcast64_km8: matmul_broadcast64_km with 8 columns per lane --------------------
// C = op(A) B with B stored k-major (NN, or TN: the weight gradients, K the tokens, both operands
// k-major). A lane owns 8 columns, so a subgroup's block is 16 rows by 64 columns, and loads its
// 8 columns at one k as one vec4<u64>: per 8 k, 8 loads of op(B) and 2 of op(A) for 1024
// multiply-adds a lane, where broadcast64_km makes 10 loads (8 of them vec2<u64>) for 512 and
// broadcast64 on packed copies 6 for 512 (besides the copies). op(A) as broadcast64_km reads
// it. With B stored k-contiguous (TRANS_B: C = A B^T, a linear layer's forward, or A^T B^T) a
// lane loads each of its 8 columns at the 8 k as one vec4<u64> and regroups them k by k in
// registers: the same 8 loads, and on llvmpipe 1.05-1.1x broadcast64's rate on the model's
// forward products (BENCHMARKS.md). The host's `Layout::aligned8` says where it may run:
// K, and A's and B's row and batch strides, multiples of 8 floats.

// Columns col..col + 7 (clamped into the last 8) of k-major op(B) at k, as one load.
fn load_cols8(op: Operand, col: u32, k: u32) -> vec4<u64> {
    return b8[(op.base + k * op.ld + min(col, (op.lines - 1u) & ~7u)) >> 3u];
}

// A lane's 8 columns of op(B) at k..k + 7, as columns 0..3 and 4..7 at each k: k-major, one
// load per k; k-contiguous (TRANS_B), one load per column, regrouped k by k in registers (8
// loads either way).
fn lane_cols8_by_k(op: Operand, col: u32, k: u32) -> array<array<vec4<f32>, 8>, 2> {
    if (TRANS_B) {
        return array<array<vec4<f32>, 8>, 2>(
            columns_by_k(load_k8(op, col, k), load_k8(op, col + 1u, k),
                         load_k8(op, col + 2u, k), load_k8(op, col + 3u, k)),
            columns_by_k(load_k8(op, col + 4u, k), load_k8(op, col + 5u, k),
                         load_k8(op, col + 6u, k), load_k8(op, col + 7u, k)));
    }
    let w0 = load_cols8(op, col, k + 0u);
    let w1 = load_cols8(op, col, k + 1u);
    let w2 = load_cols8(op, col, k + 2u);
    let w3 = load_cols8(op, col, k + 3u);
    let w4 = load_cols8(op, col, k + 4u);
    let w5 = load_cols8(op, col, k + 5u);
    let w6 = load_cols8(op, col, k + 6u);
    let w7 = load_cols8(op, col, k + 7u);
    return array<array<vec4<f32>, 8>, 2>(
        array<vec4<f32>, 8>(first4(w0), first4(w1), first4(w2), first4(w3),
                            first4(w4), first4(w5), first4(w6), first4(w7)),
        array<vec4<f32>, 8>(second4(w0), second4(w1), second4(w2), second4(w3),
                            second4(w4), second4(w5), second4(w6), second4(w7)));
}

// One 8-k step of a 16 x 64 block (a lane's 16 rows by 8 columns): op(A)'s 16 rows at k..k+7,
// loaded as broadcast64_km reads them (two loads a lane, then broadcasts), times the lane's
// columns 0..3 (lo) and 4..7 (hi) at each of the 8 k, added into acc (row r's columns 0..3 in
// acc[2r], 4..7 in acc[2r + 1]; constant indices only, so the accumulators stay in registers).
// matmul_broadcast64_km8 and matmul_windows64_km8 differ only in where the columns come from.
fn add_block16x8(acc: ptr<function, array<vec4<f32>, 32>>, op_a: Operand, row: u32, k: u32,
                 lane: u32, lo: array<vec4<f32>, 8>, hi: array<vec4<f32>, 8>) {
    if (TRANS_A) {
        // s_j (t_j): rows 0..7 (8..15) at k + j, from lane j.
        let a_lo = load_lines8(op_a, row, k + lane);
        let a_hi = load_lines8(op_a, row + 8u, k + lane);
        let s0 = halves(subgroupBroadcast(a_lo, 0u));
        let t0 = halves(subgroupBroadcast(a_hi, 0u));
        let s1 = halves(subgroupBroadcast(a_lo, 1u));
        let t1 = halves(subgroupBroadcast(a_hi, 1u));
        let s2 = halves(subgroupBroadcast(a_lo, 2u));
        let t2 = halves(subgroupBroadcast(a_hi, 2u));
        let s3 = halves(subgroupBroadcast(a_lo, 3u));
        let t3 = halves(subgroupBroadcast(a_hi, 3u));
        let s4 = halves(subgroupBroadcast(a_lo, 4u));
        let t4 = halves(subgroupBroadcast(a_hi, 4u));
        let s5 = halves(subgroupBroadcast(a_lo, 5u));
        let t5 = halves(subgroupBroadcast(a_hi, 5u));
        let s6 = halves(subgroupBroadcast(a_lo, 6u));
        let t6 = halves(subgroupBroadcast(a_hi, 6u));
        let s7 = halves(subgroupBroadcast(a_lo, 7u));
        let t7 = halves(subgroupBroadcast(a_hi, 7u));
        let r0 = array<f32, 8>(s0[0], s1[0], s2[0], s3[0], s4[0], s5[0], s6[0], s7[0]);
        (*acc)[0] = add_row8((*acc)[0], r0, lo);
        (*acc)[1] = add_row8((*acc)[1], r0, hi);
        let r1 = array<f32, 8>(s0[1], s1[1], s2[1], s3[1], s4[1], s5[1], s6[1], s7[1]);
        (*acc)[2] = add_row8((*acc)[2], r1, lo);
        (*acc)[3] = add_row8((*acc)[3], r1, hi);
        let r2 = array<f32, 8>(s0[2], s1[2], s2[2], s3[2], s4[2], s5[2], s6[2], s7[2]);
        (*acc)[4] = add_row8((*acc)[4], r2, lo);
        (*acc)[5] = add_row8((*acc)[5], r2, hi);
        let r3 = array<f32, 8>(s0[3], s1[3], s2[3], s3[3], s4[3], s5[3], s6[3], s7[3]);
        (*acc)[6] = add_row8((*acc)[6], r3, lo);
        (*acc)[7] = add_row8((*acc)[7], r3, hi);
        let r4 = array<f32, 8>(s0[4], s1[4], s2[4], s3[4], s4[4], s5[4], s6[4], s7[4]);
        (*acc)[8] = add_row8((*acc)[8], r4, lo);
        (*acc)[9] = add_row8((*acc)[9], r4, hi);
        let r5 = array<f32, 8>(s0[5], s1[5], s2[5], s3[5], s4[5], s5[5], s6[5], s7[5]);
        (*acc)[10] = add_row8((*acc)[10], r5, lo);
        (*acc)[11] = add_row8((*acc)[11], r5, hi);
        let r6 = array<f32, 8>(s0[6], s1[6], s2[6], s3[6], s4[6], s5[6], s6[6], s7[6]);
        (*acc)[12] = add_row8((*acc)[12], r6, lo);
        (*acc)[13] = add_row8((*acc)[13], r6, hi);
        let r7 = array<f32, 8>(s0[7], s1[7], s2[7], s3[7], s4[7], s5[7], s6[7], s7[7]);
        (*acc)[14] = add_row8((*acc)[14], r7, lo);
        (*acc)[15] = add_row8((*acc)[15], r7, hi);
        let r8 = array<f32, 8>(t0[0], t1[0], t2[0], t3[0], t4[0], t5[0], t6[0], t7[0]);
        (*acc)[16] = add_row8((*acc)[16], r8, lo);
        (*acc)[17] = add_row8((*acc)[17], r8, hi);
        let r9 = array<f32, 8>(t0[1], t1[1], t2[1], t3[1], t4[1], t5[1], t6[1], t7[1]);
        (*acc)[18] = add_row8((*acc)[18], r9, lo);
        (*acc)[19] = add_row8((*acc)[19], r9, hi);
        let r10 = array<f32, 8>(t0[2], t1[2], t2[2], t3[2], t4[2], t5[2], t6[2], t7[2]);
        (*acc)[20] = add_row8((*acc)[20], r10, lo);
        (*acc)[21] = add_row8((*acc)[21], r10, hi);
        let r11 = array<f32, 8>(t0[3], t1[3], t2[3], t3[3], t4[3], t5[3], t6[3], t7[3]);
        (*acc)[22] = add_row8((*acc)[22], r11, lo);
        (*acc)[23] = add_row8((*acc)[23], r11, hi);
        let r12 = array<f32, 8>(t0[4], t1[4], t2[4], t3[4], t4[4], t5[4], t6[4], t7[4]);
        (*acc)[24] = add_row8((*acc)[24], r12, lo);
        (*acc)[25] = add_row8((*acc)[25], r12, hi);
        let r13 = array<f32, 8>(t0[5], t1[5], t2[5], t3[5], t4[5], t5[5], t6[5], t7[5]);
        (*acc)[26] = add_row8((*acc)[26], r13, lo);
        (*acc)[27] = add_row8((*acc)[27], r13, hi);
        let r14 = array<f32, 8>(t0[6], t1[6], t2[6], t3[6], t4[6], t5[6], t6[6], t7[6]);
        (*acc)[28] = add_row8((*acc)[28], r14, lo);
        (*acc)[29] = add_row8((*acc)[29], r14, hi);
        let r15 = array<f32, 8>(t0[7], t1[7], t2[7], t3[7], t4[7], t5[7], t6[7], t7[7]);
        (*acc)[30] = add_row8((*acc)[30], r15, lo);
        (*acc)[31] = add_row8((*acc)[31], r15, hi);
    } else {
        // Row i at the 8 k, from lane i % 8.
        let a_lo = load_k8(op_a, row + lane, k);
        let a_hi = load_k8(op_a, row + 8u + lane, k);
        let r0 = halves(subgroupBroadcast(a_lo, 0u));
        (*acc)[0] = add_row8((*acc)[0], r0, lo);
        (*acc)[1] = add_row8((*acc)[1], r0, hi);
        let r1 = halves(subgroupBroadcast(a_lo, 1u));
        (*acc)[2] = add_row8((*acc)[2], r1, lo);
        (*acc)[3] = add_row8((*acc)[3], r1, hi);
        let r2 = halves(subgroupBroadcast(a_lo, 2u));
        (*acc)[4] = add_row8((*acc)[4], r2, lo);
        (*acc)[5] = add_row8((*acc)[5], r2, hi);
        let r3 = halves(subgroupBroadcast(a_lo, 3u));
        (*acc)[6] = add_row8((*acc)[6], r3, lo);
        (*acc)[7] = add_row8((*acc)[7], r3, hi);
        let r4 = halves(subgroupBroadcast(a_lo, 4u));
        (*acc)[8] = add_row8((*acc)[8], r4, lo);
        (*acc)[9] = add_row8((*acc)[9], r4, hi);
        let r5 = halves(subgroupBroadcast(a_lo, 5u));
        (*acc)[10] = add_row8((*acc)[10], r5, lo);
        (*acc)[11] = add_row8((*acc)[11], r5, hi);
        let r6 = halves(subgroupBroadcast(a_lo, 6u));
        (*acc)[12] = add_row8((*acc)[12], r6, lo);
        (*acc)[13] = add_row8((*acc)[13], r6, hi);
        let r7 = halves(subgroupBroadcast(a_lo, 7u));
        (*acc)[14] = add_row8((*acc)[14], r7, lo);
        (*acc)[15] = add_row8((*acc)[15], r7, hi);
        let r8 = halves(subgroupBroadcast(a_hi, 0u));
        (*acc)[16] = add_row8((*acc)[16], r8, lo);
        (*acc)[17] = add_row8((*acc)[17], r8, hi);
        let r9 = halves(subgroupBroadcast(a_hi, 1u));
        (*acc)[18] = add_row8((*acc)[18], r9, lo);
        (*acc)[19] = add_row8((*acc)[19], r9, hi);
        let r10 = halves(subgroupBroadcast(a_hi, 2u));
        (*acc)[20] = add_row8((*acc)[20], r10, lo);
        (*acc)[21] = add_row8((*acc)[21], r10, hi);
        let r11 = halves(subgroupBroadcast(a_hi, 3u));
        (*acc)[22] = add_row8((*acc)[22], r11, lo);
        (*acc)[23] = add_row8((*acc)[23], r11, hi);
        let r12 = halves(subgroupBroadcast(a_hi, 4u));
        (*acc)[24] = add_row8((*acc)[24], r12, lo);
        (*acc)[25] = add_row8((*acc)[25], r12, hi);
        let r13 = halves(subgroupBroadcast(a_hi, 5u));
        (*acc)[26] = add_row8((*acc)[26], r13, lo);
        (*acc)[27] = add_row8((*acc)[27], r13, hi);
        let r14 = halves(subgroupBroadcast(a_hi, 6u));
        (*acc)[28] = add_row8((*acc)[28], r14, lo);
        (*acc)[29] = add_row8((*acc)[29], r14, hi);
        let r15 = halves(subgroupBroadcast(a_hi, 7u));
        (*acc)[30] = add_row8((*acc)[30], r15, lo);
        (*acc)[31] = add_row8((*acc)[31], r15, hi);
    }
}

// C, GELU's pre-activation and its output again as 8 floats per element, for the 16 x 8
// blocks' epilogue where C_VEC8 holds: C stored as it is read, its row stride, matrix stride
// and width multiples of 8 (the host's `c_vec8`), so that a lane's 8 columns of a row are one
// aligned vec4<u64>, all in C or all past it. llvmpipe loads and stores lane by lane and
// component by component: one vec4<u64> costs what one of the two vec4<f32> did.
@group(0) @binding(24) var<storage, read_write> c8: array<vec4<u64>>;
@group(0) @binding(25) var<storage, read> gate8: array<vec4<u64>>;
@group(0) @binding(26) var<storage, read_write> act8: array<vec4<u64>>;
override C_VEC8: bool = false;

// store_row4_biased on a row's 8 columns (sums lo: columns 0..3, hi: 4..7) with one 64-bit
// access per operand: the same operations per element, so the same result.
fn store_row8_biased(batch: u32, row: u32, col: u32, lo: vec4<f32>, hi: vec4<f32>,
                     bias_lo: vec4<f32>, bias_hi: vec4<f32>) {
    if (row >= params.m || col >= params.n) {
        return;
    }
    let at = (batch * params.stride_c + row * params.ldc + col) / 8u;
    var v0 = params.alpha * lo;
    var v1 = params.alpha * hi;
    if (ADD_INTO_C) {
        let old = c8[at];
        v0 += first4(old);
        v1 += second4(old);
    }
    if (ADD_BIAS) {
        v0 += bias_lo;
        v1 += bias_hi;
    }
    if (ACTIVATION == ACTIVATION_GELU) {
        act8[at] = eight64(gelu4(v0), gelu4(v1));
    }
    if (ACTIVATION == ACTIVATION_GELU_GRAD) {
        let pre = gate8[at];
        v0 = gelu_grad4(first4(pre), v0);
        v1 = gelu_grad4(second4(pre), v1);
    }
    c8[at] = eight64(v0, v1);
}

// A lane's 16 x 8 block of C from row r, column cc (acc as add_block16x8 holds it: row i's
// columns 0..3 in acc[2i], 4..7 in acc[2i + 1]). Constant indices only.
fn store_block16x8(batch: u32, r: u32, cc: u32, acc: array<vec4<f32>, 32>) {
    if (C_VEC8) {
        let b0 = bias_of4(cc);
        let b1 = bias_of4(cc + 4u);
        store_row8_biased(batch, r + 0u, cc, acc[0], acc[1], b0, b1);
        store_row8_biased(batch, r + 1u, cc, acc[2], acc[3], b0, b1);
        store_row8_biased(batch, r + 2u, cc, acc[4], acc[5], b0, b1);
        store_row8_biased(batch, r + 3u, cc, acc[6], acc[7], b0, b1);
        store_row8_biased(batch, r + 4u, cc, acc[8], acc[9], b0, b1);
        store_row8_biased(batch, r + 5u, cc, acc[10], acc[11], b0, b1);
        store_row8_biased(batch, r + 6u, cc, acc[12], acc[13], b0, b1);
        store_row8_biased(batch, r + 7u, cc, acc[14], acc[15], b0, b1);
        store_row8_biased(batch, r + 8u, cc, acc[16], acc[17], b0, b1);
        store_row8_biased(batch, r + 9u, cc, acc[18], acc[19], b0, b1);
        store_row8_biased(batch, r + 10u, cc, acc[20], acc[21], b0, b1);
        store_row8_biased(batch, r + 11u, cc, acc[22], acc[23], b0, b1);
        store_row8_biased(batch, r + 12u, cc, acc[24], acc[25], b0, b1);
        store_row8_biased(batch, r + 13u, cc, acc[26], acc[27], b0, b1);
        store_row8_biased(batch, r + 14u, cc, acc[28], acc[29], b0, b1);
        store_row8_biased(batch, r + 15u, cc, acc[30], acc[31], b0, b1);
        return;
    }
    store_block16(batch, r, cc, array<vec4<f32>, 16>(acc[0], acc[2], acc[4], acc[6], acc[8], acc[10],
        acc[12], acc[14], acc[16], acc[18], acc[20], acc[22], acc[24], acc[26], acc[28], acc[30]));
    store_block16(batch, r, cc + 4u, array<vec4<f32>, 16>(acc[1], acc[3], acc[5], acc[7], acc[9], acc[11],
        acc[13], acc[15], acc[17], acc[19], acc[21], acc[23], acc[25], acc[27], acc[29], acc[31]));
}

@compute @workgroup_size(WORKGROUP)
fn matmul_broadcast64_km8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let blk = lane_block_of(wid, lid, nwg, lane, 8u);
    // Row r's columns 0..3 in acc[2r], 4..7 in acc[2r + 1]; indexed by constants only.
    var acc: array<vec4<f32>, 32>;
    for (var k = blk.k.x; k < blk.k.y; k += 8u) {
        // The lane's columns 0..3 and 4..7 at each of the 8 k.
        let cols = lane_cols8_by_k(blk.op_b, blk.col, k);
        let lo = cols[0];
        let hi = cols[1];
        add_block16x8(&acc, blk.op_a, blk.row, k, lane, lo, hi);
    }
    if (!blk.live) {
        return;
    }
    store_block16x8(blk.batch, blk.row, blk.col, acc);
}

// ---- matmul_windows64_km8: broadcast64_km8 with op(B) read from uniform windows --------------
// llvmpipe loads a storage buffer lane by lane in a loop (a branch on each lane's execution
// bit, a bounds check, a merge: about half of broadcast64_km8's time goes to op(B)'s loads),
// but gathers a uniform buffer's elements in straight-line code: a vec4<u64> from a uniform
// buffer costs it 2.4x less per float than from storage (probe_loads, BENCHMARKS.md). So op(B)
// is first copied (pack_windows64) into windows of WINDOW_BYTES, one per 64 columns by
// WINDOW64_K k, row-major: the lane's 8 columns at k are element (k % WINDOW64_K) * 8 + lane.
// A dispatch computes one 64-column block of matrix batch0's C (from col0) for every row block
// of op(A) (a subgroup per 16 rows), summing over up to 4 consecutive windows bound at
// bw0..bw3 (k_begin..k_end, k_begin on a window's first k); later groups of windows add into C. WINDOWS (override) says how many
// are bound: llvmpipe runs both sides of a branch, so an unused window's loop would still cost
// a step of loads. With WINDOW_COLUMNS (k within one window) the windows are instead 4
// consecutive column blocks (col0, col0 + 64, ...) over all of k_begin..k_end, and every
// subgroup computes each in turn, storing it before the next: its 16 rows of op(A) are read
// again from cache, where one dispatch per column block would stream all of op(A) once per
// block. op(A) is read as broadcast64_km8 reads it (the host's Layout::a_aligned8).

// k per window. A window is WINDOW64_K rows of 64 floats (8 vec4<u64>); the declaration check
// holds Window64 to the host's WINDOW_BYTES, from which the host derives its WINDOW64_K.
const WINDOW64_K: u32 = 256u;
struct Window64 {
    v: array<vec4<u64>, WINDOW64_K * 8u>,
}
@group(0) @binding(20) var<uniform> bw0: Window64;
@group(0) @binding(21) var<uniform> bw1: Window64;
@group(0) @binding(22) var<uniform> bw2: Window64;
@group(0) @binding(23) var<uniform> bw3: Window64;
override WINDOWS: u32 = 1u;
override WINDOW_COLUMNS: bool = false;

// The lane's columns 0..3 and 4..7 at 8 consecutive k, from their 8 rows of a window.
fn window_cols8(w: array<vec4<u64>, 8>) -> array<array<vec4<f32>, 8>, 2> {
    return array<array<vec4<f32>, 8>, 2>(
        array<vec4<f32>, 8>(first4(w[0]), first4(w[1]), first4(w[2]), first4(w[3]),
                            first4(w[4]), first4(w[5]), first4(w[6]), first4(w[7])),
        array<vec4<f32>, 8>(second4(w[0]), second4(w[1]), second4(w[2]), second4(w[3]),
                            second4(w[4]), second4(w[5]), second4(w[6]), second4(w[7])));
}

// The k of window `w` of this dispatch: [x, y).
fn window_span(w: u32) -> vec2<u32> {
    if (WINDOW_COLUMNS) {
        return vec2<u32>(params.k_begin, params.k_end);
    }
    let begin = params.k_begin + w * WINDOW64_K;
    return vec2<u32>(begin, min(begin + WINDOW64_K, params.k_end));
}

// With WINDOW_COLUMNS, after window w's loop: its column block stored (live rows only) and the
// sums cleared for the next.
fn finish_column_window(acc: ptr<function, array<vec4<f32>, 32>>, row: u32, lane: u32, w: u32) {
    if (!WINDOW_COLUMNS) {
        return;
    }
    if (row < params.m) {
        store_block16x8(params.batch0, row, params.col0 + w * 64u + 8u * lane, *acc);
    }
    *acc = array<vec4<f32>, 32>();
}

@compute @workgroup_size(WORKGROUP)
fn matmul_windows64_km8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row = linear_id(wid, lid, nwg) / 8u * 16u;
    let op_a = operand_a(params.batch0);
    var acc: array<vec4<f32>, 32>;
    // One loop per window: WGSL cannot index bindings. The lane's element at a window's k row r
    // is r * 8 + lane, its next k 8 elements on.
    if (WINDOWS > 0u) {
        let span = window_span(0u);
        for (var k = span.x; k < span.y; k += 8u) {
            let at = (k - span.x) * 8u + lane;
            let cols = window_cols8(array<vec4<u64>, 8>(bw0.v[at], bw0.v[at + 8u], bw0.v[at + 16u],
                bw0.v[at + 24u], bw0.v[at + 32u], bw0.v[at + 40u], bw0.v[at + 48u], bw0.v[at + 56u]));
            add_block16x8(&acc, op_a, row, k, lane, cols[0], cols[1]);
        }
        finish_column_window(&acc, row, lane, 0u);
    }
    if (WINDOWS > 1u) {
        let span = window_span(1u);
        for (var k = span.x; k < span.y; k += 8u) {
            let at = (k - span.x) * 8u + lane;
            let cols = window_cols8(array<vec4<u64>, 8>(bw1.v[at], bw1.v[at + 8u], bw1.v[at + 16u],
                bw1.v[at + 24u], bw1.v[at + 32u], bw1.v[at + 40u], bw1.v[at + 48u], bw1.v[at + 56u]));
            add_block16x8(&acc, op_a, row, k, lane, cols[0], cols[1]);
        }
        finish_column_window(&acc, row, lane, 1u);
    }
    if (WINDOWS > 2u) {
        let span = window_span(2u);
        for (var k = span.x; k < span.y; k += 8u) {
            let at = (k - span.x) * 8u + lane;
            let cols = window_cols8(array<vec4<u64>, 8>(bw2.v[at], bw2.v[at + 8u], bw2.v[at + 16u],
                bw2.v[at + 24u], bw2.v[at + 32u], bw2.v[at + 40u], bw2.v[at + 48u], bw2.v[at + 56u]));
            add_block16x8(&acc, op_a, row, k, lane, cols[0], cols[1]);
        }
        finish_column_window(&acc, row, lane, 2u);
    }
    if (WINDOWS > 3u) {
        let span = window_span(3u);
        for (var k = span.x; k < span.y; k += 8u) {
            let at = (k - span.x) * 8u + lane;
            let cols = window_cols8(array<vec4<u64>, 8>(bw3.v[at], bw3.v[at + 8u], bw3.v[at + 16u],
                bw3.v[at + 24u], bw3.v[at + 32u], bw3.v[at + 40u], bw3.v[at + 48u], bw3.v[at + 56u]));
            add_block16x8(&acc, op_a, row, k, lane, cols[0], cols[1]);
        }
        finish_column_window(&acc, row, lane, 3u);
    }
    if (WINDOW_COLUMNS || row >= params.m) {
        return;
    }
    store_block16x8(params.batch0, row, params.col0 + 8u * lane, acc);
}

// ---- pack_windows64: op(B) copied into matmul_windows64_km8's windows ------------------------
// Window (matrix e, column block cb, k window kw) is window (e * column blocks + cb) * k_windows
// + kw of `packed`, k_windows = ceil(k_end / WINDOW64_K); in it, k row r holds columns 64 cb..64 cb + 63 at k = kw * WINDOW64_K
// + r as 16 vec4s. k past k_end is 0; columns past n repeat earlier ones (their sums are never
// stored). One invocation copies 4 columns at 4 k: 1024 per window.
@compute @workgroup_size(WORKGROUP)
fn pack_windows64(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let k_windows = (params.k_end + WINDOW64_K - 1u) / WINDOW64_K;
    let per_matrix = k_windows * ((params.n + 63u) / 64u);
    let i = linear_id(wid, lid, nwg);
    let window = i / 1024u;
    let e = window / per_matrix;
    if (e >= params.batch) {
        return;
    }
    let k_quad = (i % 1024u) / 16u;
    let col_quad = i % 16u;
    let k = (window % k_windows) * WINDOW64_K + 4u * k_quad;
    let col0 = ((window % per_matrix) / k_windows) * 64u + 4u * col_quad;
    // Row j: the 4 columns at k + j.
    var rows = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (k < params.k_end) {
        let op = operand_b(e);
        if (op.k_major) {
            rows = array<vec4<f32>, 4>(load_lines4(op, col0, k), load_lines4(op, col0, k + 1u),
                                       load_lines4(op, col0, k + 2u), load_lines4(op, col0, k + 3u));
        } else {
            rows = transpose4(array<vec4<f32>, 4>(load_k4(op, col0, k), load_k4(op, col0 + 1u, k),
                                                  load_k4(op, col0 + 2u, k), load_k4(op, col0 + 3u, k)));
        }
    }
    let at = window * 4096u + 4u * k_quad * 16u + col_quad;
    for (var j = 0u; j < 4u; j++) {
        packed[at + j * 16u] = rows[j];
    }
}
