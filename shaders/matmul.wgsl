// Matrix products: every product polygrad runs goes through this file.
//
//   C[b] = alpha op(A[b]) op(B[b])  (+ C[b])  (+ bias)      op(A): M x K, op(B): K x N, f32
//
// for b in 0..batch, each operand at its own batch stride (0 broadcasts one matrix). A is
// stored M x K (row stride lda), or K x M when TRANS_A; B is stored K x N, or N x K when
// TRANS_B (a linear layer's weight [out, in] is op(B) = W^T with TRANS_B). The host sums long
// K span by span, adding into C in a fixed order (flag ADD_INTO_C), to stay inside llvmpipe's
// loop budget and to bound rounding with two-level sums; alpha and the bias apply per span.
//
// Variants (the host times them per adapter and keeps the fastest; they differ only by f32
// rounding):
//   matmul_reg       one TM x TN block of C per invocation, no workgroup memory: the software
//                    driver's winner at 32 x 32, where a storage load costs tens of cycles and a
//                    spilled accumulator one (BENCHMARKS.md has the measurements).
//   matmul_tiled     64 x 64 blocks of C per workgroup of 16 x 16, staged through workgroup
//                    memory in BK-deep steps: the usual GPU winner.
//   matmul_subgroup  (matmul_subgroup.wgsl, appended to this file where the adapter has
//                    subgroups) 4 x 4 per lane, the operands loaded once per subgroup and
//                    passed between lanes with subgroupShuffle.
//
// Operands are bound as vec4 arrays. With VEC4 (host: K, lda, ldb and the batch strides are
// multiples of 4) every load is a whole vec4 along the operand's stored rows; otherwise single
// elements are picked out of vec4s with bounds checks. Tensor buffers are padded to 16 bytes so
// that the last vec4 always exists.

override WORKGROUP: u32 = 64u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;
// C stored transposed, N x M: element (row, col) of matrix b at b stride_c + col ldc + row. A
// weight gradient runs as the product whose op(B) has the shorter rows and is stored as the
// weight lies (ops::linear); the host stores such a C an element at a time (no C_VEC4).
override TRANS_C: bool = false;
override VEC4: bool = false;
// pack_windows: pack op(B) rather than op(A).
override PACK_B: bool = false;
// Block of C per invocation of matmul_reg (multiples of 4). Constants, not overrides, because
// they size private arrays (WGSL sizes those by constants only): the host writes each variant's
// values into the source (Kernel::source_constants). Arrays sized for the largest block and
// used in part took llvmpipe 40 s to compile at 8 x 8, against 1 s sized exactly.
const TM: u32 = 4u;
const TN: u32 = 4u;

// The epilogue: add C's old value, add the bias. Override constants rather than params: llvmpipe
// runs both sides of every branch with lanes masked off, so a flag tested at run time costs its
// loads of C and of the bias even where it is off; a constant drops the branch when the
// pipeline is compiled (BENCHMARKS.md: up to 1.6x on products with small k).
override ADD_INTO_C: bool = false;
override ADD_BIAS: bool = false;
// The activation, applied last (after C's old value and the bias), on the last dispatch of a
// sum only: ACTIVATION_GELU stores C and gelu(C) into act4 (a linear layer before GELU keeps
// both), ACTIVATION_GELU_GRAD stores C * gelu'(gate4) (GELU's upstream gradient times its
// derivative at the pre-activation, at the same place). The host's `ops::matmul::Activation`.
override ACTIVATION: u32 = 0u;
const ACTIVATION_GELU: u32 = 1u;
const ACTIVATION_GELU_GRAD: u32 = 2u;

struct Params {
    m: u32,
    n: u32,
    k_begin: u32,
    k_end: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    batch: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    // Uniform windows (pack_windows, matmul_windows): k per window, lines of op(A) and of
    // op(B) per matrix in a window, the windows' stride in the packed buffer (vec4s), matrices
    // per window, and for one dispatch of matmul_windows: how many k windows it sums and where
    // its block of C starts.
    window_k: u32,
    window_lines_a: u32,
    window_lines_b: u32,
    window_stride: u32,
    windows: u32,
    row0: u32,
    col0: u32,
    batch0: u32,
    window_batch: u32,
    // Zeros the host declares (the TRIANGLE_* flags below); kernels that read them skip work.
    triangles: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> packed: array<vec4<f32>>;
// The activation's operands, shaped as C (bound as vec4s in every kernel: two bindings, not
// four, so that every product stays inside WebGPU's 8 storage bindings per stage).
@group(0) @binding(18) var<storage, read> gate4: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read_write> act4: array<vec4<f32>>;


fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

fn fetch4(from_a: bool, at4: u32) -> vec4<f32> {
    if (from_a) {
        return a[at4];
    }
    return b[at4];
}

// Element `at` (in floats), or 0 when `inside` is false.
fn fetch1(from_a: bool, at: u32, inside: bool) -> f32 {
    let v = fetch4(from_a, at >> 2u);
    return select(0.0, v[at & 3u], inside);
}

// One operand as the loaders see it: `lines` rows of op(A) or columns of op(B) of length K.
struct Operand {
    from_a: bool,
    // true: element (line, k) at base + k * ld + line (lines contiguous);
    // false: at base + line * ld + k (k contiguous).
    k_major: bool,
    base: u32,
    ld: u32,
    lines: u32,
}

fn operand_a(batch: u32) -> Operand {
    return Operand(true, TRANS_A, batch * params.stride_a, params.lda, params.m);
}

fn operand_b(batch: u32) -> Operand {
    return Operand(false, !TRANS_B, batch * params.stride_b, params.ldb, params.n);
}

// The operand's line `line` (clamped to the last), at k..k+3: for k-contiguous operands.
fn load_k4(op: Operand, line: u32, k: u32) -> vec4<f32> {
    let at = op.base + min(line, op.lines - 1u) * op.ld + k;
    if (VEC4) {
        return fetch4(op.from_a, at >> 2u);
    }
    let end = params.k_end;
    return vec4<f32>(fetch1(op.from_a, at, k < end), fetch1(op.from_a, at + 1u, k + 1u < end),
                     fetch1(op.from_a, at + 2u, k + 2u < end), fetch1(op.from_a, at + 3u, k + 3u < end));
}

// The operand's lines line0..line0+3 at one k: for k-major operands. Lines past the end
// repeat earlier ones (their results are never stored). With VEC4, line0 is a multiple of 4
// and k is inside the span (spans are whole multiples of 4); otherwise k past k_end reads 0.
fn load_lines4(op: Operand, line0: u32, k: u32) -> vec4<f32> {
    let last = op.lines - 1u;
    let row = op.base + k * op.ld;
    if (VEC4) {
        return fetch4(op.from_a, (row + min(line0, last & ~3u)) >> 2u);
    }
    let inside = k < params.k_end;
    return vec4<f32>(fetch1(op.from_a, row + min(line0, last), inside), fetch1(op.from_a, row + min(line0 + 1u, last), inside),
                     fetch1(op.from_a, row + min(line0 + 2u, last), inside), fetch1(op.from_a, row + min(line0 + 3u, last), inside));
}

// The transpose of a 4 x 4 block held as four vec4s.
fn transpose4(x: array<vec4<f32>, 4>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(vec4<f32>(x[0].x, x[1].x, x[2].x, x[3].x), vec4<f32>(x[0].y, x[1].y, x[2].y, x[3].y),
                               vec4<f32>(x[0].z, x[1].z, x[2].z, x[3].z), vec4<f32>(x[0].w, x[1].w, x[2].w, x[3].w));
}

// Lines line0..line0+3 of the operand, each at k..k+3, whatever its layout.
fn load_block4(op: Operand, line0: u32, k: u32) -> array<vec4<f32>, 4> {
    if (op.k_major) {
        return transpose4(array<vec4<f32>, 4>(load_lines4(op, line0, k), load_lines4(op, line0, k + 1u),
                                              load_lines4(op, line0, k + 2u), load_lines4(op, line0, k + 3u)));
    }
    return array<vec4<f32>, 4>(load_k4(op, line0, k), load_k4(op, line0 + 1u, k),
                               load_k4(op, line0 + 2u, k), load_k4(op, line0 + 3u, k));
}

// C[row, col] of batch `batch` from one accumulated sum, with the epilogue; nothing outside C.
fn store(batch: u32, row: u32, col: u32, sum: f32) {
    if (row >= params.m || col >= params.n) {
        return;
    }
    let at = batch * params.stride_c + select(row * params.ldc + col, col * params.ldc + row, TRANS_C);
    var v = params.alpha * sum;
    if (ADD_INTO_C) {
        v = c[at] + v;
    }
    if (ADD_BIAS) {
        v = v + bias[col];
    }
    if (ACTIVATION == ACTIVATION_GELU) {
        act4[at >> 2u][at & 3u] = gelu(v);
    }
    if (ACTIVATION == ACTIVATION_GELU_GRAD) {
        v = gelu_grad(gate4[at >> 2u][at & 3u], v);
    }
    c[at] = v;
}

// Known zeros of square products, each matrix's (the diagonal blocks of causal attention), as
// `params.triangles` declares them: a hint that the broadcast and subgroup kernels read to skip
// terms that are zero, and blocks of C nobody reads. Other kernels compute everything, which
// gives the same C where it is read.
// op(A)[i][k] = 0 for k > i; for k < i.
const TRIANGLE_A_LOWER: u32 = 1u;
const TRIANGLE_A_UPPER: u32 = 2u;
// op(B)[k][j] = 0 for k > j; for k < j.
const TRIANGLE_B_UPPER: u32 = 4u;
const TRIANGLE_B_LOWER: u32 = 8u;
// Only C[i][j] with j <= i is read: what is above the diagonal may be left as it was.
const TRIANGLE_C_LOWER: u32 = 16u;

// The k a block of C (rows row0..row0+rows-1, columns col0..col0+cols-1) sums over: the span,
// less the terms the declared zeros make zero, widened to multiples of 8 inside the span (the
// loads of 8 floats stay aligned; the terms it adds back are zeros); empty (x == y) where the
// block is not read at all.
fn block_k_range(row0: u32, rows: u32, col0: u32, cols: u32) -> vec2<u32> {
    let t = params.triangles;
    var lo = params.k_begin;
    var hi = params.k_end;
    if ((t & TRIANGLE_A_UPPER) != 0u) {
        lo = max(lo, row0);
    }
    if ((t & TRIANGLE_B_LOWER) != 0u) {
        lo = max(lo, col0);
    }
    if ((t & TRIANGLE_A_LOWER) != 0u) {
        hi = min(hi, row0 + rows);
    }
    if ((t & TRIANGLE_B_UPPER) != 0u) {
        hi = min(hi, col0 + cols);
    }
    lo = max(params.k_begin, lo & ~7u);
    hi = min(params.k_end, (hi + 7u) & ~7u);
    if ((t & TRIANGLE_C_LOWER) != 0u && col0 >= row0 + rows) {
        hi = lo;
    }
    return vec2<u32>(lo, max(lo, hi));
}

// (batch, first row, first column) of block `block` of tm x tn blocks, or batch == params.batch
// past the last block.
fn block_origin(block: u32, tm: u32, tn: u32) -> vec3<u32> {
    let col_blocks = (params.n + tn - 1u) / tn;
    let per_batch = ((params.m + tm - 1u) / tm) * col_blocks;
    let batch = block / per_batch;
    let r = block % per_batch;
    return vec3<u32>(batch, (r / col_blocks) * tm, (r % col_blocks) * tn);
}

@compute @workgroup_size(WORKGROUP)
fn matmul_reg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let origin = block_origin(linear_id(wid, lid, nwg), TM, TN);
    if (origin.x >= params.batch) {
        return;
    }
    let op_a = operand_a(origin.x);
    let op_b = operand_b(origin.x);
    var acc: array<f32, TM * TN>;
    // 4 values along k (k..k+3) for each row of op(A) and column of op(B) of the block.
    var tile_a: array<vec4<f32>, TM>;
    var tile_b: array<vec4<f32>, TN>;
    for (var k = params.k_begin; k < params.k_end; k += 4u) {
        for (var t4 = 0u; t4 < TM; t4 += 4u) {
            let lines = load_block4(op_a, origin.y + t4, k);
            for (var e = 0u; e < 4u; e++) {
                tile_a[t4 + e] = lines[e];
            }
        }
        for (var t4 = 0u; t4 < TN; t4 += 4u) {
            let lines = load_block4(op_b, origin.z + t4, k);
            for (var e = 0u; e < 4u; e++) {
                tile_b[t4 + e] = lines[e];
            }
        }
        for (var i = 0u; i < TM; i++) {
            for (var j = 0u; j < TN; j++) {
                acc[i * TN + j] += dot(tile_a[i], tile_b[j]);
            }
        }
    }
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            store(origin.x, origin.y + i, origin.z + j, acc[i * TN + j]);
        }
    }
}

// ---- workgroup-memory tiles ----------------------------------------------------------------

// A 64 x 64 block of C per workgroup of 16 x 16 invocations, 4 x 4 per invocation; each step
// stages op(A)[64 rows, BK] and op(B)[BK, 64 columns] in workgroup memory, as vec4s over four
// consecutive rows (columns) at one k.
const TILE: u32 = 64u;
const TILE4: u32 = 16u;
const BK: u32 = 16u;
var<workgroup> stage_a: array<vec4<f32>, 256>; // [BK][TILE4]
var<workgroup> stage_b: array<vec4<f32>, 256>;

// Invocation t of 256 stages the 4 elements it owns of one operand's BK x TILE step, zero past
// k_end. k-major operands: one vec4 of four lines at one k; k-contiguous operands: one line
// at four k.
fn stage_operand(op: Operand, into_a: bool, t: u32, line0: u32, k0: u32) {
    let last = op.lines - 1u;
    if (op.k_major) {
        let kk = t / TILE4;
        let l4 = t % TILE4;
        let k = k0 + kk;
        var v: vec4<f32>;
        if (VEC4) {
            let at = op.base + k * op.ld + min(line0 + 4u * l4, last & ~3u);
            v = select(vec4<f32>(0.0), fetch4(op.from_a, at >> 2u), k < params.k_end);
        } else {
            for (var e = 0u; e < 4u; e++) {
                v[e] = fetch1(op.from_a, op.base + k * op.ld + min(line0 + 4u * l4 + e, last), k < params.k_end);
            }
        }
        stage_put(into_a, kk * TILE4 + l4, v);
    } else {
        let line = t / 4u;
        let k4 = t % 4u;
        let k = k0 + 4u * k4;
        let at = op.base + min(line0 + line, last) * op.ld + k;
        var v: vec4<f32>;
        if (VEC4) {
            v = select(vec4<f32>(0.0), fetch4(op.from_a, at >> 2u), k < params.k_end);
        } else {
            for (var e = 0u; e < 4u; e++) {
                v[e] = fetch1(op.from_a, at + e, k + e < params.k_end);
            }
        }
        for (var e = 0u; e < 4u; e++) {
            stage_put_one(into_a, (4u * k4 + e) * TILE4 + line / 4u, line % 4u, v[e]);
        }
    }
}

fn stage_put(into_a: bool, at: u32, v: vec4<f32>) {
    if (into_a) {
        stage_a[at] = v;
    } else {
        stage_b[at] = v;
    }
}

fn stage_put_one(into_a: bool, at: u32, lane: u32, v: f32) {
    if (into_a) {
        stage_a[at][lane] = v;
    } else {
        stage_b[at][lane] = v;
    }
}

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // One block per workgroup; the whole workgroup leaves together past the last one.
    let origin = block_origin(wid.y * nwg.x + wid.x, TILE, TILE);
    if (origin.x >= params.batch) {
        return;
    }
    let op_a = operand_a(origin.x);
    let op_b = operand_b(origin.x);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = params.k_begin; k0 < params.k_end; k0 += BK) {
        stage_operand(op_a, true, lid, origin.y, k0);
        stage_operand(op_b, false, lid, origin.z, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let rows = stage_a[kk * TILE4 + local.y];
            let cols = stage_b[kk * TILE4 + local.x];
            acc[0] += rows.x * cols;
            acc[1] += rows.y * cols;
            acc[2] += rows.z * cols;
            acc[3] += rows.w * cols;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store(origin.x, origin.y + 4u * local.y + i, origin.z + 4u * local.x + j, acc[i][j]);
        }
    }
}

// Lines line0..line0+3 of op(A) (op(B) with PACK_B) of matrix `batch` at k..k+3 (0 past
// k_end), stored as 4 vec4s of `packed` from vec4 `at`, a line every `stride` vec4s.
fn pack_block(batch: u32, line0: u32, k: u32, at: u32, stride: u32) {
    var block = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (k < params.k_end) {
        if (PACK_B) {
            block = load_block4(operand_b(batch), line0, k);
        } else {
            block = load_block4(operand_a(batch), line0, k);
        }
    }
    for (var r = 0u; r < 4u; r++) {
        packed[at + r * stride] = block[r];
    }
}

// ---- pack_windows: op(A) or op(B) copied into uniform windows for matmul_windows -------------
// A window holds window_batch matrices (consecutive batches), each as L lines (L =
// window_lines_a or _b) at K k (K = window_k); window (batch group g, line window lw, k window
// kw) is at ((g * line_windows + lw) * k_windows + kw) * window_stride vec4s, and in it line r
// of matrix e at (e * L + r) * K / 4 vec4s, k contiguous. k past the operand's end is 0 (so
// padded sums add nothing); lines past its end repeat the last line and batches past the last
// repeat the last batch (their results are never stored). One invocation packs 4 lines by 4 k.
@compute @workgroup_size(WORKGROUP)
fn pack_windows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let lines = select(params.m, params.n, PACK_B);
    let per_window = select(params.window_lines_a, params.window_lines_b, PACK_B);
    let line_windows = (lines + per_window - 1u) / per_window;
    let k_windows = (params.k_end + params.window_k - 1u) / params.window_k;
    let groups = (params.batch + params.window_batch - 1u) / params.window_batch;
    let quads_k = params.window_k / 4u;
    let quads_matrix = quads_k * (per_window / 4u);
    let quads = quads_matrix * params.window_batch;
    let i = linear_id(wid, lid, nwg);
    let window = i / quads;
    if (window >= groups * line_windows * k_windows) {
        return;
    }
    let in_window = i % quads;
    let e = in_window / quads_matrix;
    let line_quad = (in_window % quads_matrix) / quads_k;
    let k_quad = i % quads_k;
    let k = (window % k_windows) * params.window_k + 4u * k_quad;
    let line0 = ((window / k_windows) % line_windows) * per_window + 4u * line_quad;
    let batch = min((window / (k_windows * line_windows)) * params.window_batch + e, params.batch - 1u);
    let at = window * params.window_stride + (e * per_window + 4u * line_quad) * quads_k + k_quad;
    pack_block(batch, line0, k, at, quads_k);
}

// ---- pack_k_contiguous: one K span of op(A) or op(B) copied dense, k contiguous -------------
// For broadcast64-packed-16x4. Matrix e's line r of the span is at
// (e * L + r) * window_k + (k - k_begin) floats, L = window_lines_a or _b (the lines rounded
// up to 4; lines past the operand's last repeat it, their results are never stored), k past
// k_end is 0. One invocation copies 4 lines by 4 k, the k quads fastest. Two divisions where
// pack_windows makes ten (llvmpipe divides lane by lane): 14.4 ms against 16.2 for the same
// copy (BENCHMARKS.md).
@compute @workgroup_size(WORKGROUP)
fn pack_k_contiguous(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let line_quads = select(params.window_lines_a, params.window_lines_b, PACK_B) / 4u;
    let quads_k = params.window_k / 4u;
    let i = linear_id(wid, lid, nwg);
    // (matrix, line quad) flattened, and the k quad.
    let line_quad_all = i / quads_k;
    let k_quad = i - line_quad_all * quads_k;
    let e = line_quad_all / line_quads;
    if (e >= params.batch) {
        return;
    }
    let line0 = 4u * (line_quad_all - e * line_quads);
    let k = params.k_begin + 4u * k_quad;
    pack_block(e, line0, k, 4u * line_quad_all * quads_k + k_quad, quads_k);
}
