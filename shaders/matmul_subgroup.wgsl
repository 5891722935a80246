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

// One row of op(A) against four columns of op(B), each at the same 4 k.
fn dots4(row: vec4<f32>, cols: array<vec4<f32>, 4>) -> vec4<f32> {
    return vec4<f32>(dot(row, cols[0]), dot(row, cols[1]), dot(row, cols[2]), dot(row, cols[3]));
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
    let span = block_k_range(origin.y, block_rows, origin.z, 16u);
    // Past the last block a subgroup still runs the shuffles with its lanes, and stores nothing;
    // nor does it store a block nobody reads (span empty).
    let live = origin.x < params.batch && span.x < span.y;
    let batch = min(origin.x, params.batch - 1u);
    let op_a = operand_a(batch);
    let op_b = operand_b(batch);
    let row0 = LANE_ROWS * (lane / 4u);
    let col0 = 4u * (lane % 4u);
    // Accumulators as separate variables, not an array indexed in loops: llvmpipe kept such
    // arrays in memory (BENCHMARKS.md: 1.3-1.4x). Rows 4..7 exist only at LANE_ROWS = 8.
    var acc0: vec4<f32>; var acc1: vec4<f32>; var acc2: vec4<f32>; var acc3: vec4<f32>;
    var acc4: vec4<f32>; var acc5: vec4<f32>; var acc6: vec4<f32>; var acc7: vec4<f32>;
    for (var k = span.x; k < span.y; k += 4u) {
        var a_mine: array<vec4<f32>, MAX_PER_LANE>;
        for (var slot = 0u; slot < a_per_lane; slot++) {
            a_mine[slot] = load_share(op_a, origin.y, block_rows, lane, slot, k);
        }
        var b_mine: array<vec4<f32>, MAX_PER_LANE>;
        for (var slot = 0u; slot < b_per_lane; slot++) {
            b_mine[slot] = load_share(op_b, origin.z, 16u, lane, slot, k);
        }
        let cols = gather_lines4(op_b, b_mine, b_per_lane, 16u, col0);
        let rows = gather_lines4(op_a, a_mine, a_per_lane, block_rows, row0);
        acc0 += dots4(rows[0], cols);
        acc1 += dots4(rows[1], cols);
        acc2 += dots4(rows[2], cols);
        acc3 += dots4(rows[3], cols);
        if (LANE_ROWS == 8u) {
            let more = gather_lines4(op_a, a_mine, a_per_lane, block_rows, row0 + 4u);
            acc4 += dots4(more[0], cols);
            acc5 += dots4(more[1], cols);
            acc6 += dots4(more[2], cols);
            acc7 += dots4(more[3], cols);
        }
    }
    if (live) {
        let acc = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
        let bias4 = bias_of4(origin.z + col0);
        for (var i = 0u; i < LANE_ROWS; i++) {
            store_row4_biased(batch, origin.y + row0 + i, origin.z + col0, acc[i], bias4);
        }
    }
}

// ---- matmul_broadcast: subgroups of exactly 8 lanes -------------------------------------------
// A subgroup computes 16 rows by 32 columns of C; lane l owns all 16 rows of columns 4l..4l+3.
// Per 4 k each lane loads 2 of the 16 vec4s of op(A) and its own 4 of op(B), and takes the other
// rows of A from their lanes with subgroupBroadcast: 6 loads and 16 broadcasts per 256
// multiply-adds, against 8 loads and 48 shuffles for subgroup-8x4. WGSL wants a broadcast's
// lane as a constant expression, so the 8 lanes are written out, and the variant runs only
// where subgroups have 8 lanes (lavapipe's size).

// The 16 row vec4s of op(A) from the 2 each lane loaded (element e in lane e % 8, slot e / 8).
fn broadcast16(lo: vec4<f32>, hi: vec4<f32>) -> array<vec4<f32>, 16> {
    return array<vec4<f32>, 16>(
        subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u),
        subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u), subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u),
        subgroupBroadcast(hi, 0u), subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u),
        subgroupBroadcast(hi, 4u), subgroupBroadcast(hi, 5u), subgroupBroadcast(hi, 6u), subgroupBroadcast(hi, 7u));
}

// What a lane of matmul_broadcast, _broadcast64 or _broadcast64_km works on: its subgroup's
// 16 x 32 block of C (rows row..row+15, the lane's columns col..col+3) and the operands of its
// matrix. Past the last block a subgroup still runs the broadcasts with its lanes (on the last
// matrix) and stores nothing: `live` is false.
struct LaneBlock {
    // Whether the block is stored: it exists, and it is read (block_k_range).
    live: bool,
    batch: u32,
    row: u32,
    col: u32,
    op_a: Operand,
    op_b: Operand,
    // The k it sums over, [x, y) (block_k_range).
    k: vec2<u32>,
}

fn lane_block(wid: vec3<u32>, lid: u32, nwg: vec3<u32>, lane: u32) -> LaneBlock {
    return lane_block_of(wid, lid, nwg, lane, 4u);
}

// lane_block for lanes of `lane_cols` columns each: blocks of 16 x 8 lane_cols.
fn lane_block_of(wid: vec3<u32>, lid: u32, nwg: vec3<u32>, lane: u32, lane_cols: u32) -> LaneBlock {
    let origin = block_origin(linear_id(wid, lid, nwg) / 8u, 16u, 8u * lane_cols);
    let batch = min(origin.x, params.batch - 1u);
    let k = block_k_range(origin.y, 16u, origin.z, 8u * lane_cols);
    return LaneBlock(origin.x < params.batch && k.x < k.y, batch, origin.y,
                     origin.z + lane_cols * lane, operand_a(batch), operand_b(batch), k);
}

@compute @workgroup_size(WORKGROUP)
fn matmul_broadcast(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let blk = lane_block(wid, lid, nwg, lane);
    // Accumulators as separate variables (see matmul_subgroup).
    var acc0: vec4<f32>; var acc1: vec4<f32>; var acc2: vec4<f32>; var acc3: vec4<f32>;
    var acc4: vec4<f32>; var acc5: vec4<f32>; var acc6: vec4<f32>; var acc7: vec4<f32>;
    var acc8: vec4<f32>; var acc9: vec4<f32>; var acc10: vec4<f32>; var acc11: vec4<f32>;
    var acc12: vec4<f32>; var acc13: vec4<f32>; var acc14: vec4<f32>; var acc15: vec4<f32>;
    for (var k = blk.k.x; k < blk.k.y; k += 4u) {
        var rows = broadcast16(load_share(blk.op_a, blk.row, 16u, lane, 0u, k),
                               load_share(blk.op_a, blk.row, 16u, lane, 1u, k));
        if (blk.op_a.k_major) {
            // Element e holds lines 4 (e % 4).. at k + e / 4: regroup to lines at k..k+3.
            let by_k = rows;
            for (var g = 0u; g < 4u; g++) {
                let lines = transpose4(array<vec4<f32>, 4>(by_k[g], by_k[g + 4u], by_k[g + 8u], by_k[g + 12u]));
                for (var i = 0u; i < 4u; i++) {
                    rows[4u * g + i] = lines[i];
                }
            }
        }
        let cols = load_block4(blk.op_b, blk.col, k);
        acc0 += dots4(rows[0], cols);
        acc1 += dots4(rows[1], cols);
        acc2 += dots4(rows[2], cols);
        acc3 += dots4(rows[3], cols);
        acc4 += dots4(rows[4], cols);
        acc5 += dots4(rows[5], cols);
        acc6 += dots4(rows[6], cols);
        acc7 += dots4(rows[7], cols);
        acc8 += dots4(rows[8], cols);
        acc9 += dots4(rows[9], cols);
        acc10 += dots4(rows[10], cols);
        acc11 += dots4(rows[11], cols);
        acc12 += dots4(rows[12], cols);
        acc13 += dots4(rows[13], cols);
        acc14 += dots4(rows[14], cols);
        acc15 += dots4(rows[15], cols);
    }
    if (blk.live) {
        let acc = array<vec4<f32>, 16>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, acc8, acc9, acc10, acc11, acc12, acc13, acc14, acc15);
        let bias4 = bias_of4(blk.col);
        for (var i = 0u; i < 16u; i++) {
            store_row4_biased(blk.batch, blk.row + i, blk.col, acc[i], bias4);
        }
    }
}

// ---- matmul_windows: operands read from uniform windows, subgroups of exactly 8 lanes --------
// llvmpipe loads a storage buffer lane by lane with a branch per lane and component (about 225
// core-ns per 8-lane vec4 on the machine of BENCHMARKS.md), a uniform buffer by a plain gather
// (about 10): so the operands are first packed (pack_windows) into windows of at most
// WINDOW_VEC4S vec4s, and each dispatch binds up to four k windows of op(A) and of op(B)
// (dynamic offsets) and sums over them into one window-sized block of C, or into the whole C of
// each of the window's matrices where several fit in a window. The block of a
// subgroup, its loads and its broadcasts are matmul_broadcast's: 16 rows by 32 columns, lane l
// owning columns 4l..4l+3.

// A window's size: the largest uniform binding WebGPU guarantees (the host's WINDOW_BYTES).
const WINDOW_VEC4S: u32 = 4096u;
struct Window {
    v: array<vec4<f32>, WINDOW_VEC4S>,
}

// windows-direct-16x4 with op(B) stored k-major (K x N, row stride ldb, C = A B): a window of
// B holds the whole matrix, and a lane's 4 columns at 4 k are 4 vec4s along its rows,
// transposed into the k-contiguous form `accumulate` takes.
override B_K_MAJOR: bool = false;
// windows-direct-16x4 with matrices side by side: window w (of params.windows) of each operand
// holds matrix batch0 + w, and the workgroups of window w compute that matrix, so that one
// dispatch covers up to four (a dispatch costs llvmpipe tens of microseconds besides its work).
// Otherwise the windows are k windows of the same blocks, summed.
override BATCH_WINDOWS: bool = false;

// C as vec4s: the same buffer as `c`, bound a second time. Where C's row stride, matrix stride
// and width (so every lane's first column) are multiples of 4 (C_VEC4), a row's 4 columns are
// stored at once: llvmpipe stores lane by lane, a vec4 at 1.1-2x the cost of an f32 (BENCHMARKS.md), and
// a block's 64 stores a lane cost more than its multiply-adds at small k.
@group(0) @binding(14) var<storage, read_write> c4: array<vec4<f32>>;
override C_VEC4: bool = false;

// The bias of columns col..col+3 (zeros without ADD_BIAS, or past n): a block of rows loads
// it once, where each row's store would load it again (4 loads, lane by lane on llvmpipe).
fn bias_of4(col: u32) -> vec4<f32> {
    if (!ADD_BIAS || !C_VEC4 || col >= params.n) {
        return vec4<f32>(0.0);
    }
    return vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u]);
}

// C[row, col..col + 3] of batch `batch` from four sums: `store` four times, or where C_VEC4
// allows, one vec4 store (the same operations, so the same result). C_VEC4 also means n is a
// multiple of 4, so a lane's 4 columns are all in C or all past it. Which path runs is decided
// when the pipeline is compiled: llvmpipe would run both, with lanes masked off, on every row.
// `bias4` is bias_of4(col), loaded once for a block's rows.
fn store_row4_biased(batch: u32, row: u32, col: u32, sums: vec4<f32>, bias4: vec4<f32>) {
    if (!C_VEC4) {
        for (var j = 0u; j < 4u; j++) {
            store(batch, row, col + j, sums[j]);
        }
        return;
    }
    if (row >= params.m || col >= params.n) {
        return;
    }
    let at = (batch * params.stride_c + row * params.ldc + col) / 4u;
    var v = params.alpha * sums;
    if (ADD_INTO_C) {
        v += c4[at];
    }
    if (ADD_BIAS) {
        v += bias4;
    }
    if (ACTIVATION == ACTIVATION_GELU) {
        act4[at] = gelu4(v);
    }
    if (ACTIVATION == ACTIVATION_GELU_GRAD) {
        v = gelu_grad4(gate4[at], v);
    }
    c4[at] = v;
}

// A lane's 16 rows of 4 columns from row r, column cc. Constant indices: a loop over the
// accumulators would keep them in memory.
fn store_block16(batch: u32, r: u32, cc: u32, acc: array<vec4<f32>, 16>) {
    let bias4 = bias_of4(cc);
    store_row4_biased(batch, r + 0u, cc, acc[0], bias4);
    store_row4_biased(batch, r + 1u, cc, acc[1], bias4);
    store_row4_biased(batch, r + 2u, cc, acc[2], bias4);
    store_row4_biased(batch, r + 3u, cc, acc[3], bias4);
    store_row4_biased(batch, r + 4u, cc, acc[4], bias4);
    store_row4_biased(batch, r + 5u, cc, acc[5], bias4);
    store_row4_biased(batch, r + 6u, cc, acc[6], bias4);
    store_row4_biased(batch, r + 7u, cc, acc[7], bias4);
    store_row4_biased(batch, r + 8u, cc, acc[8], bias4);
    store_row4_biased(batch, r + 9u, cc, acc[9], bias4);
    store_row4_biased(batch, r + 10u, cc, acc[10], bias4);
    store_row4_biased(batch, r + 11u, cc, acc[11], bias4);
    store_row4_biased(batch, r + 12u, cc, acc[12], bias4);
    store_row4_biased(batch, r + 13u, cc, acc[13], bias4);
    store_row4_biased(batch, r + 14u, cc, acc[14], bias4);
    store_row4_biased(batch, r + 15u, cc, acc[15], bias4);
}

// Where a lane's 4 columns of op(B) start in a window: k-contiguous, the first column's vec4
// index and the columns' stride (quads); k-major, the columns' vec4 index in a row and the rows'
// stride (ldb / 4).
struct BLines {
    at: u32,
    quads: u32,
    col4: u32,
    ldb4: u32,
}

// vec4 index of load j (0..3) of quad q of op(B): column j at k 4q..4q+3, or (k-major) row
// 4q + j at the 4 columns.
fn b_at(b: BLines, j: u32, q: u32) -> u32 {
    if (B_K_MAJOR) {
        return (4u * q + j) * b.ldb4 + b.col4;
    }
    return b.at + j * b.quads + q;
}

// The 4 loads of a quad as `accumulate` takes them: one vec4 of 4 k per column.
fn b_cols(loaded: array<vec4<f32>, 4>) -> array<vec4<f32>, 4> {
    if (B_K_MAJOR) {
        return transpose4(loaded);
    }
    return loaded;
}

@group(0) @binding(6) var<uniform> a0: Window;
@group(0) @binding(7) var<uniform> a1: Window;
@group(0) @binding(8) var<uniform> a2: Window;
@group(0) @binding(9) var<uniform> a3: Window;
@group(0) @binding(10) var<uniform> b0: Window;
@group(0) @binding(11) var<uniform> b1: Window;
@group(0) @binding(12) var<uniform> b2: Window;
@group(0) @binding(13) var<uniform> b3: Window;

// The block's 16 rows of op(A) at 4 k (lo: rows 0..7, hi: 8..15, one per lane) against the
// lane's 4 columns of op(B), added into acc (constant indices only, so the accumulators stay in
// registers).
fn accumulate(acc: ptr<function, array<vec4<f32>, 16>>, lo: vec4<f32>, hi: vec4<f32>,
              cols: array<vec4<f32>, 4>) {
    let rows = broadcast16(lo, hi);
    (*acc)[0] += dots4(rows[0], cols);
    (*acc)[1] += dots4(rows[1], cols);
    (*acc)[2] += dots4(rows[2], cols);
    (*acc)[3] += dots4(rows[3], cols);
    (*acc)[4] += dots4(rows[4], cols);
    (*acc)[5] += dots4(rows[5], cols);
    (*acc)[6] += dots4(rows[6], cols);
    (*acc)[7] += dots4(rows[7], cols);
    (*acc)[8] += dots4(rows[8], cols);
    (*acc)[9] += dots4(rows[9], cols);
    (*acc)[10] += dots4(rows[10], cols);
    (*acc)[11] += dots4(rows[11], cols);
    (*acc)[12] += dots4(rows[12], cols);
    (*acc)[13] += dots4(rows[13], cols);
    (*acc)[14] += dots4(rows[14], cols);
    (*acc)[15] += dots4(rows[15], cols);
}

@compute @workgroup_size(8)
fn matmul_windows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let quads = params.window_k / 4u;
    let col_blocks = params.window_lines_b / 32u;
    let blocks = (params.window_lines_a / 16u) * col_blocks;
    let flat = wid.y * nwg.x + wid.x;
    // Matrix e of the window's batch group (or, BATCH_WINDOWS, window w's one matrix), and this
    // block of it.
    let e = select(flat / blocks, 0u, BATCH_WINDOWS);
    let w = select(0u, flat / blocks, BATCH_WINDOWS);
    let block = flat % blocks;
    let row = (block / col_blocks) * 16u;
    let col = (block % col_blocks) * 32u + 4u * lane;
    // vec4 index of k 0 of this lane's rows of op(A) (row + lane, row + 8 + lane) and columns
    // of op(B) in every window.
    let lo = (e * params.window_lines_a + row + lane) * quads;
    let hi = lo + 8u * quads;
    let at_b = BLines((e * params.window_lines_b + col) * quads, quads, col / 4u, params.ldb / 4u);
    var acc: array<vec4<f32>, 16>;
    // One loop per bound window: WGSL cannot index bindings.
    if (!BATCH_WINDOWS || w == 0u) {
        for (var q = 0u; q < quads; q++) {
            accumulate(&acc, a0.v[lo + q], a0.v[hi + q], b_cols(array<vec4<f32>, 4>(b0.v[b_at(at_b, 0u, q)],
                       b0.v[b_at(at_b, 1u, q)], b0.v[b_at(at_b, 2u, q)], b0.v[b_at(at_b, 3u, q)])));
        }
    }
    if (select(params.windows > 1u, w == 1u, BATCH_WINDOWS)) {
        for (var q = 0u; q < quads; q++) {
            accumulate(&acc, a1.v[lo + q], a1.v[hi + q], b_cols(array<vec4<f32>, 4>(b1.v[b_at(at_b, 0u, q)],
                       b1.v[b_at(at_b, 1u, q)], b1.v[b_at(at_b, 2u, q)], b1.v[b_at(at_b, 3u, q)])));
        }
    }
    if (select(params.windows > 2u, w == 2u, BATCH_WINDOWS)) {
        for (var q = 0u; q < quads; q++) {
            accumulate(&acc, a2.v[lo + q], a2.v[hi + q], b_cols(array<vec4<f32>, 4>(b2.v[b_at(at_b, 0u, q)],
                       b2.v[b_at(at_b, 1u, q)], b2.v[b_at(at_b, 2u, q)], b2.v[b_at(at_b, 3u, q)])));
        }
    }
    if (select(params.windows > 3u, w == 3u, BATCH_WINDOWS)) {
        for (var q = 0u; q < quads; q++) {
            accumulate(&acc, a3.v[lo + q], a3.v[hi + q], b_cols(array<vec4<f32>, 4>(b3.v[b_at(at_b, 0u, q)],
                       b3.v[b_at(at_b, 1u, q)], b3.v[b_at(at_b, 2u, q)], b3.v[b_at(at_b, 3u, q)])));
        }
    }
    // Constant indices: a loop over acc would keep it in memory for the whole kernel.
    let r = params.row0 + row;
    let cc = params.col0 + col;
    let b = params.batch0 + e + w;
    if (b >= params.batch) {
        return;
    }
    store_block16(b, r, cc, acc);
}
