// Exact softmax attention, forward and backward, in O(n d) memory: the baseline and fallback of
// the polynomial kernels (shaders/poly_attention.wgsl), with the same tensor layout.
//
// Per head: s_ab = q_a . k_b / sqrt(d_qk) (causal: b <= a), p_ab = softmax_b(s_ab),
// o_a = sum_b p_ab v_b. The n x n scores never exist in memory.
//
// Tiles (FlashAttention-2's form). Each dispatch pairs a window of query rows with a window of
// key rows, every operand of the inner loops read from 64 KiB uniform windows placed by dynamic
// offsets: on llvmpipe a storage load costs 13x a uniform one per element (248 against 19
// core-ns per 8-lane vec4, BENCHMARKS.md), and these loops load the q, k, v and dO of every
// (query, key) pair. Windows run over global rows ([B*H*n]): a window may hold the end of one
// head and the start of the next, and each row loops over the part of the other window that
// lies in its own head (and, causal, on or below its diagonal). The host records, per query
// window, the key windows it meets in increasing order (per key window the query windows, for
// the key-side gradients); each kernel carries its running state from one dispatch to the next
// in its output buffers, so a tile pair above the diagonal is never dispatched, and one
// invocation loops over one window at most (llvmpipe silently ends every loop of an
// invocation after 65535 iterations in total).
//
// Everything is taken relative to each row's pivot b*_a, the key of its largest logit:
//   x_ab    = s_ab - s_ab* = (q_a . k_b - q_a . k_b*) / sqrt(d_qk)   (<= 0 up to rounding)
//   l_a     = sum_b e^x_ab,   p_ab = e^(x_ab - log l_a)
//   o_a     = sum_b e^x_ab v_b / l_a
//   ds_ab   = dL/ds_ab = p_ab (dO_a . (v_b - v_b*) - D_a),   D_a = sum_b p_ab dO_a . (v_b - v_b*)
//   dq_a    = sum_b ds_ab (k_b - k_b*) / sqrt(d_qk)     (the ds of a row sum to zero)
//   dk_b    = sum_a ds_ab q_a / sqrt(d_qk),   dv_b = sum_a p_ab dO_a
//
// Why: with large logits a row's softmax is nearly one-hot, and the textbook
// ds_ab = p_ab (dO_a . v_b - dO_a . o_a) subtracts two nearly equal numbers at the pivot, whose
// true difference is of the order of the other keys' weights. The f32 rounding of o and of the
// dot products (a few 1e-7 of |dO||v|) swamped dq and dk: relative errors up to 7e-4 at n = 7,
// |s| = 50. Against the pivot, ds_ab* = -p_ab* D_a comes from the small differences
// themselves, and dq's largest term drops out exactly (k_b* - k_b* = 0). D_a = dO_a . o_rel_a
// in exact arithmetic, but that f32 dot product of d_v terms is off by a few 1e-7 of the sum of
// its terms' sizes, which is as large as dq's own error budget where a row's weights are spread
// (measured: 1.7e-5 relative at n = 7, d_v = 64); summed over keys from the same
// dO_a . (v_b - v_b*) the ds use, D_a's errors are those of the ds themselves.
//
// The logit differences x_ab, and dO_a . (v_b - v_b*) likewise, are exact up to one rounding
// (see split_rows): where two keys compete at |s| = 35, an f32 dot product of 64 terms gets x
// wrong by a few 1e-6, and that is the relative error it leaves in p and hence in dq (measured
// up to 1.7e-5 in an f32 model of these kernels; 4e-7 with the exact x).
//
// Kernels, in order:
//   split_rows       q, k and v (forward), dO (backward) into exact high and low parts, per
//                    row, so that q . k and dO . v differences are exact (see below)
//   pivot_span       per query row: running max of s_ab over the key window and its key
//   pivot_rows       per row: the pivot's position and q_a . k_b* (exact parts) into the row
//                    terms, k_b* into the row's pivot keys (a query-side window)
//   forward_span     per (query row, value column tile): l and the compensated sum of
//                    e^x_ab v_b over the key window; the row's last window writes
//                    o = acc / l
//   row_terms        per row: log l_a and dO_a . v_b* (exact parts) into the row terms
//   delta_span       per query row: the compensated sum D_a over the key window
//   finish_delta     per row: D_a into the row terms
//   query_grad_span (over key windows), key_grad_span and value_grad_span (over query
//                    windows): the gradients. dq and dk get the 1/sqrt(d_qk) factor at the end.
// Each sum runs in a fixed order inside one invocation: no atomics, bit-identical reruns.

override WORKGROUP: u32 = 64u;
// Keys per block of the forward's and the gradients' sums: each block is summed plainly and
// added to the running sum with TwoSum. At most MAX_KEY_BLOCK; a constant trip count, so the
// block loops unroll.
override KEY_BLOCK: u32 = 8u;
// Output columns one invocation accumulates (value columns forward, q/k/v columns backward).
// At most MAX_COL_TILE.
override COL_TILE: u32 = 16u;

// The row widths, as the params give them (pipelines are built per shape), so that the loops
// over a row's elements have constant trip counts and the row kept in `RowPairs` stays in
// registers.
override D_QK: u32 = 16u;
override D_V: u32 = 64u;
// A row of [high, low] pairs, two per vec4: up to 64 elements.
const MAX_ROW_VEC4S: u32 = 32u;
alias RowPairs = array<vec4<f32>, MAX_ROW_VEC4S>;

const MAX_KEY_BLOCK: u32 = 16u;
const MAX_COL_TILE: u32 = 64u;
// Start of a running max: below any real logit.
const NEG_BIG: f32 = -1.0e30;

struct Params {
    heads: u32,       // B * H independent heads
    rows: u32,        // sequence length n
    d_qk: u32,
    d_v: u32,
    causal: u32,      // 1: row a sees keys b <= a
    q_first: u32,     // global row of the query window's first row
    q_count: u32,     // rows of the query window
    k_first: u32,     // global row of the key window's first row
    k_count: u32,     // rows of the key window
    split_bits: u32,  // bits of a row's high part: see split_rows
    logit_scale: f32, // 1 / sqrt(d_qk)
    one: f32,         // 1.0, opaque to the compiler: see two_sum
}

@group(0) @binding(0) var<uniform> params: Params;

// A window: the largest uniform binding WebGPU guarantees (the host's WINDOW_BYTES), placed at
// the window's first row by a dynamic offset.
const WINDOW_VEC4S: u32 = 4096u;
struct Window {
    v: array<vec4<f32>, WINDOW_VEC4S>,
}
// Query-side windows, from row q_first: q as exact [high, low] pairs (split_rows), dO likewise,
// the row terms (ROW_TERMS floats per row) and the pivot keys (k_b*, d_qk floats per row).
@group(0) @binding(1) var<uniform> q_win: Window;
@group(0) @binding(4) var<uniform> d_o_win: Window;
@group(0) @binding(5) var<uniform> terms_win: Window;
@group(0) @binding(6) var<uniform> pivot_win: Window;
// Key-side windows, from row k_first: k and v as exact [high, low] pairs.
@group(0) @binding(2) var<uniform> k_win: Window;
@group(0) @binding(3) var<uniform> v_win: Window;

// The output; between windows it holds the high half of the compensated accumulator.
@group(0) @binding(7) var<storage, read_write> o: array<f32>;
// The low half of the forward's compensated accumulator between windows, like o.
@group(0) @binding(8) var<storage, read_write> o_lo: array<f32>;
// Running [l_hi, l_lo] per (row, value column tile), [heads, n, v_tiles, STATS]. Every tile
// computes the same l; each keeps its own copy so that no invocation reads what another writes.
@group(0) @binding(9) var<storage, read_write> stats: array<f32>;
const STATS: u32 = 2u;
// Per row [running max logit, its key's position in the head (exact as an f32: the host
// keeps n <= 2^24)], written by pivot_span.
@group(0) @binding(10) var<storage, read_write> pivots: array<f32>;
// Per row [log l_a, D_a, position of b*_a, q_a . k_b* (exact part, rest), 0,
// dO_a . v_b* (exact part, rest)]: written by pivot_rows, row_terms and finish_delta, read
// through terms_win.
@group(0) @binding(11) var<storage, read_write> terms_out: array<f32>;
const ROW_TERMS: u32 = 8u;
// The gradient a backward kernel accumulates across windows: dq, dk or dv.
@group(0) @binding(12) var<storage, read_write> grad: array<f32>;
// split_rows: a [rows, width] tensor in, its [high, low] pairs out.
@group(0) @binding(13) var<storage, read> split_in: array<f32>;
@group(0) @binding(14) var<storage, read_write> split_out: array<vec2<f32>>;
// Running [D_hi, D_lo] per row between delta_span's windows.
@group(0) @binding(15) var<storage, read_write> delta_acc: array<f32>;
// The split tensors as storage, for the per-row kernels that reach a row's pivot.
@group(0) @binding(16) var<storage, read> q_split: array<vec2<f32>>;
@group(0) @binding(17) var<storage, read> k_split: array<vec2<f32>>;
@group(0) @binding(18) var<storage, read> v_split: array<vec2<f32>>;
@group(0) @binding(19) var<storage, read> d_o_split: array<vec2<f32>>;
// pivot_rows' output: k_b* per row, read through pivot_win.
@group(0) @binding(20) var<storage, read_write> pivot_out: array<f32>;

// ---- helpers -------------------------------------------------------------------------------

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

fn tiles_of(width: u32) -> u32 {
    return (width + COL_TILE - 1u) / COL_TILE;
}

fn is_causal() -> bool {
    return params.causal == 1u;
}

fn head_start_of(row: u32) -> u32 {
    return (row / params.rows) * params.rows;
}

// Element `at` of a window of [high, low] pairs, or of plain floats.
fn pair_in(x: vec4<f32>, at: u32) -> vec2<f32> {
    return select(x.xy, x.zw, (at & 1u) == 1u);
}

// Window accessors by local row (the row's index in its window) and column. WGSL passes no
// pointers to uniform buffers, so each window has accessors of its own.
fn q_pair(r: u32, i: u32) -> vec2<f32> {
    let at = r * params.d_qk + i;
    return pair_in(q_win.v[at >> 1u], at);
}

fn k_pair(r: u32, i: u32) -> vec2<f32> {
    let at = r * params.d_qk + i;
    return pair_in(k_win.v[at >> 1u], at);
}

fn v_pair(r: u32, j: u32) -> vec2<f32> {
    let at = r * params.d_v + j;
    return pair_in(v_win.v[at >> 1u], at);
}

fn d_o_pair(r: u32, j: u32) -> vec2<f32> {
    let at = r * params.d_v + j;
    return pair_in(d_o_win.v[at >> 1u], at);
}

fn term(r: u32, t: u32) -> f32 {
    let at = r * ROW_TERMS + t;
    return terms_win.v[at >> 2u][at & 3u];
}

fn pivot_k(r: u32, i: u32) -> f32 {
    let at = r * params.d_qk + i;
    return pivot_win.v[at >> 2u][at & 3u];
}

// k_b*[i] and k_b*[i + 1] of query row r with one load: an even d_qk and an even i keep
// them in one vec4.
fn pivot_k_pair(r: u32, i: u32) -> vec2<f32> {
    let at = r * params.d_qk + i;
    let x = pivot_win.v[at >> 2u];
    return select(x.xy, x.zw, (at & 2u) == 2u);
}

// x . y for two split elements, added to [exact part, rest]: the sum of high x high products
// is exact (split_rows sizes the high parts for that), the rest is about 2^-split_bits of the
// whole and rounds harmlessly.
fn add_split_product(parts: vec2<f32>, x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(parts.x + x.x * y.x, parts.y + (x.x * y.y + x.y * (y.x + y.y)));
}

// q_a . k_b for query row a and key row b (local to their windows) as [exact part, rest].
// An even width takes two pairs per load (the same terms in the same order).
fn logit_parts(a: u32, b: u32) -> vec2<f32> {
    var parts = vec2<f32>(0.0, 0.0);
    if ((params.d_qk & 1u) == 0u) {
        let half = params.d_qk >> 1u;
        for (var m = 0u; m < half; m++) {
            let x = q_win.v[a * half + m];
            let y = k_win.v[b * half + m];
            parts = add_split_product(add_split_product(parts, x.xy, y.xy), x.zw, y.zw);
        }
        return parts;
    }
    for (var i = 0u; i < params.d_qk; i++) {
        parts = add_split_product(parts, q_pair(a, i), k_pair(b, i));
    }
    return parts;
}

// dO_a . v_b for query row a and key row b (local) as [exact part, rest], likewise.
fn dot_do_v_parts(a: u32, b: u32) -> vec2<f32> {
    var parts = vec2<f32>(0.0, 0.0);
    if ((params.d_v & 1u) == 0u) {
        let half = params.d_v >> 1u;
        for (var m = 0u; m < half; m++) {
            let x = d_o_win.v[a * half + m];
            let y = v_win.v[b * half + m];
            parts = add_split_product(add_split_product(parts, x.xy, y.xy), x.zw, y.zw);
        }
        return parts;
    }
    for (var j = 0u; j < params.d_v; j++) {
        parts = add_split_product(parts, d_o_pair(a, j), v_pair(b, j));
    }
    return parts;
}

// A row's q or k pairs held in registers for the logits of one row against a window: loads
// from uniform windows are what these loops cost on llvmpipe (gathers, about 19 core-ns per
// 8-lane vec4), and the held row's are the same for every key. Only for even d_qk of at most
// 2 MAX_ROW_VEC4S, which `holds_rows` says; the others load as they go.
fn holds_rows() -> bool {
    return (D_QK & 1u) == 0u && D_QK <= 2u * MAX_ROW_VEC4S;
}

fn held_q(a: u32) -> RowPairs {
    var row: RowPairs;
    // Nothing to hold where the row does not fit (the loop budget counts these loops).
    let half = select(0u, D_QK / 2u, holds_rows());
    for (var m = 0u; m < half; m++) {
        row[m] = q_win.v[a * half + m];
    }
    return row;
}

fn held_k(b: u32) -> RowPairs {
    var row: RowPairs;
    let half = select(0u, D_QK / 2u, holds_rows());
    for (var m = 0u; m < half; m++) {
        row[m] = k_win.v[b * half + m];
    }
    return row;
}

fn held_d_o(a: u32) -> RowPairs {
    var row: RowPairs;
    let half = select(0u, D_V / 2u, holds_value_rows());
    for (var m = 0u; m < half; m++) {
        row[m] = d_o_win.v[a * half + m];
    }
    return row;
}

fn holds_value_rows() -> bool {
    return (D_V & 1u) == 0u && D_V <= 2u * MAX_ROW_VEC4S;
}

// dot_do_v_parts(a, b) with query row a's dO held.
fn dot_do_v_parts_d_o_held(d_o_row: ptr<function, RowPairs>, a: u32, b: u32) -> vec2<f32> {
    if (!holds_value_rows()) {
        return dot_do_v_parts(a, b);
    }
    var parts = vec2<f32>(0.0, 0.0);
    let half = D_V / 2u;
    for (var m = 0u; m < half; m++) {
        let x = (*d_o_row)[m];
        let y = v_win.v[b * half + m];
        parts = add_split_product(add_split_product(parts, x.xy, y.xy), x.zw, y.zw);
    }
    return parts;
}

// logit_parts(a, b) with query row a held (the same terms in the same order).
fn logit_parts_q_held(q_row: ptr<function, RowPairs>, a: u32, b: u32) -> vec2<f32> {
    if (!holds_rows()) {
        return logit_parts(a, b);
    }
    var parts = vec2<f32>(0.0, 0.0);
    let half = D_QK / 2u;
    for (var m = 0u; m < half; m++) {
        let x = (*q_row)[m];
        let y = k_win.v[b * half + m];
        parts = add_split_product(add_split_product(parts, x.xy, y.xy), x.zw, y.zw);
    }
    return parts;
}

// logit_parts(a, b) with key row b held.
fn logit_parts_k_held(k_row: ptr<function, RowPairs>, a: u32, b: u32) -> vec2<f32> {
    if (!holds_rows()) {
        return logit_parts(a, b);
    }
    var parts = vec2<f32>(0.0, 0.0);
    let half = D_QK / 2u;
    for (var m = 0u; m < half; m++) {
        let x = q_win.v[a * half + m];
        let y = (*k_row)[m];
        parts = add_split_product(add_split_product(parts, x.xy, y.xy), x.zw, y.zw);
    }
    return parts;
}

// The difference of two dot products held as parts: right to about one rounding of itself.
fn parts_difference(x: vec2<f32>, y: vec2<f32>) -> f32 {
    return (x.x - y.x) + (x.y - y.y);
}

fn sum_of(x: vec2<f32>) -> f32 {
    return x.x + x.y;
}

// The element of column tile `tile`, slot c, clamped into the row so that loads stay in bounds
// and the tile loops keep a constant trip count; stores check `col < width` themselves.
fn tile_col(tile: u32, c: u32, width: u32) -> u32 {
    return min(tile * COL_TILE + c, width - 1u);
}

// Whether the column loops read two columns per load: even widths and an even COL_TILE keep
// every tile's column pairs (col, col + 1) inside one vec4, in the windows of [high, low]
// pairs and in the pivot keys alike.
fn pairs_per_load() -> bool {
    return (D_QK & 1u) == 0u && (D_V & 1u) == 0u && (COL_TILE & 1u) == 0u;
}

// The first column of the pair at slot c (even) of column tile `tile`, clamped like tile_col.
fn tile_pair_col(tile: u32, c: u32, width: u32) -> u32 {
    return min(tile * COL_TILE + c, width - 2u);
}

// The running gradient of a row of `width` columns, one column tile of it.
fn load_tile(row: u32, tile: u32, width: u32) -> array<f32, 64> {
    var acc: array<f32, 64>;
    for (var c = 0u; c < COL_TILE; c++) {
        acc[c] = grad[row * width + tile_col(tile, c, width)];
    }
    return acc;
}

// acc = acc + acc_lo, ending a compensated sum (gradients keep only the rounded sum between
// windows: one rounding per window).
fn resolve(acc: ptr<function, array<f32, 64>>, acc_lo: ptr<function, array<f32, 64>>) {
    for (var c = 0u; c < COL_TILE; c++) {
        (*acc)[c] += (*acc_lo)[c];
    }
}

fn store_tile(row: u32, tile: u32, width: u32, acc: ptr<function, array<f32, 64>>, factor: f32) {
    for (var c = 0u; c < COL_TILE; c++) {
        let col = tile * COL_TILE + c;
        if (col < width) {
            grad[row * width + col] = (*acc)[c] * factor;
        }
    }
}

// a + b as an unevaluated sum [hi, lo] (Knuth's TwoSum: exact in round-to-nearest).
// llvmpipe's compiler reassociates floating point and folds the textbook form to lo = 0;
// multiplying every step by params.one, a 1.0 it cannot see, keeps them all. Hiding only the
// middle steps was not enough: lo still came out 0 (two_sum(1, 1e-8) measured), and every
// compensated sum here was a plain one.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let hi = (a + b) * params.one;
    let b_part = (hi - a) * params.one;
    let a_part = (hi - b_part) * params.one;
    let lo = (a - a_part) * params.one + (b - b_part) * params.one;
    return vec2<f32>(hi, lo);
}

// acc += block, column by column, as compensated sums acc + acc_lo. Gradient sums over many
// keys cancel (dL/ds has both signs), so their rounding error matters as much as the forward's.
fn fold_block(acc: ptr<function, array<f32, 64>>, acc_lo: ptr<function, array<f32, 64>>,
              block: ptr<function, array<f32, 64>>) {
    for (var c = 0u; c < COL_TILE; c++) {
        let sum = two_sum((*acc)[c], (*block)[c]);
        (*acc)[c] = sum.x;
        (*acc_lo)[c] += sum.y;
    }
}

// e^x for x <= 0 to about one rounding: llvmpipe's exp, exp2(x log2 e), carries exp2's own
// error (2.6e-7 relative, measured) plus the rounding of x log2 e times |x| (1.8e-6 at
// |x| = 30). Cody and Waite's reduction: x = n ln 2 + r with n an integer and |r| <= ln 2 / 2,
// n ln 2 exact (LN2_HI has 16 significant bits, |n| at most 8 bits), a Taylor polynomial for
// e^r (the first term left out is below 2^-27 for |r| <= 0.347) and an exact scaling by 2^n.
const LOG2_E: f32 = 1.4426950408889634;
const LN2_HI: f32 = 0.693145751953125;
const LN2_LO: f32 = 1.4286068203094172e-6;
// Below -104, e^x is under half the smallest f32 subnormal: 0. The argument is clamped before
// the reduction: with n clamped alone, r grew with |x| and the polynomial overflowed to
// infinity past |x| of about 4e5 (NaN attention at logits near 4e5, issue 11).
const EXP_ZERO_BELOW: f32 = -104.0;
fn exp_accurate(x: f32) -> f32 {
    let clamped = max(x, EXP_ZERO_BELOW);
    let n = round(clamped * LOG2_E);
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    var p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return select(ldexp(p, i32(n)), 0.0, x < EXP_ZERO_BELOW);
}

// ---- split ---------------------------------------------------------------------------------

// Row r of a [rows, width] tensor as high + low parts, exactly: high is the row rounded to the
// grid 2^(e - split_bits), where 2^e bounds the row's largest |element|, so every high element
// is an integer of at most split_bits bits times that grid. A product of two such rows' high
// elements is then an integer of at most 2 split_bits bits times the product of the grids, and
// the host picks split_bits so that width such products sum within f32's 24 bits: the sum of
// high x high products is exact in any order. (Ozaki et al.'s error-free splitting of dot
// products; nothing here relies on fused multiply-add, which WGSL does not guarantee.)
@compute @workgroup_size(WORKGROUP)
fn split_rows(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    // Reuses the fields: rows = rows of the tensor, d_qk = its width (also for v and dO).
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    let width = params.d_qk;
    var largest = 0.0;
    for (var i = 0u; i < width; i++) {
        largest = max(largest, abs(split_in[row * width + i]));
    }
    let e = frexp(largest).exp;
    let to_grid = i32(params.split_bits) - e;
    for (var i = 0u; i < width; i++) {
        let x = split_in[row * width + i];
        let high = ldexp(round(ldexp(x, to_grid)), -to_grid);
        split_out[row * width + i] = vec2<f32>(high, x - high);
    }
}

// ---- query rows over a key window, key rows over a query window ----------------------------

// What a query row meets in this dispatch: invocation `id` owns (column tile, local row); the
// row sees the keys of its head ([head start, head start + n), causal: up to itself), of which
// [lo, hi) (local to the key window) lie in this key window; `first` and `last` say whether the
// window holds the row's first and last key.
struct RowWork {
    tile: u32,
    local: u32, // the row's index in its own window
    row: u32,   // global
    lo: u32,    // the other window's rows this row meets, local to that window
    hi: u32,
    first: bool,
    last: bool,
    valid: bool,
}

// The rows of the other window, [other_first, other_first + other_count), that the global
// row meets, given the global range [begin, end) it meets in all.
fn meet(w: RowWork, begin: u32, end: u32, other_first: u32, other_count: u32) -> RowWork {
    var r = w;
    let lo = max(begin, other_first);
    let hi = min(end, other_first + other_count);
    r.valid = r.valid && lo < hi;
    r.first = lo == begin;
    r.last = hi == end;
    r.lo = lo - other_first;
    r.hi = max(hi, lo) - other_first;
    return r;
}

fn owned(id: u32, count: u32, tiles: u32, first: u32) -> RowWork {
    var r: RowWork;
    let c = max(count, 1u);
    r.valid = count > 0u && id < count * tiles;
    r.local = id % c;
    r.tile = (id / c) % tiles;
    r.row = first + r.local;
    return r;
}

fn query_work(id: u32, tiles: u32) -> RowWork {
    let w = owned(id, params.q_count, tiles, params.q_first);
    let start = head_start_of(w.row);
    let end = select(start + params.rows, w.row + 1u, is_causal());
    return meet(w, start, end, params.k_first, params.k_count);
}

// Key rows: the queries of their head that see them (causal: from the key's own position on).
fn key_work(id: u32, tiles: u32) -> RowWork {
    let w = owned(id, params.k_count, tiles, params.k_first);
    let start = head_start_of(w.row);
    let begin = select(start, w.row, is_causal());
    return meet(w, begin, start + params.rows, params.q_first, params.q_count);
}

// ---- forward -------------------------------------------------------------------------------

@compute @workgroup_size(WORKGROUP)
fn pivot_span(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = query_work(linear_id(wid, lid, nwg), 1u);
    if (!r.valid) {
        return;
    }
    var best = NEG_BIG;
    var best_key = 0u;
    if (!r.first) {
        best = pivots[r.row * 2u];
        best_key = u32(pivots[r.row * 2u + 1u]);
    }
    let key_position = params.k_first - head_start_of(r.row);
    for (var b = r.lo; b < r.hi; b++) {
        let s = sum_of(logit_parts(r.local, b));
        // Strictly greater: of equal logits the earliest key is the pivot.
        if (s > best) {
            best = s;
            best_key = key_position + b;
        }
    }
    pivots[r.row * 2u] = best;
    pivots[r.row * 2u + 1u] = f32(best_key);
}

// Per global row, once the pivots are known: the pivot's position and q_a . k_b* into the row
// terms, k_b* into the pivot keys, so that the tiled kernels find them in windows.
@compute @workgroup_size(WORKGROUP)
fn pivot_rows(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let position = pivots[row * 2u + 1u];
    let pivot = head_start_of(row) + u32(position);
    var parts = vec2<f32>(0.0, 0.0);
    for (var i = 0u; i < params.d_qk; i++) {
        parts = add_split_product(parts, q_split[row * params.d_qk + i],
                                  k_split[pivot * params.d_qk + i]);
    }
    let out = row * ROW_TERMS;
    terms_out[out] = 0.0;
    terms_out[out + 1u] = 0.0;
    terms_out[out + 2u] = position;
    terms_out[out + 3u] = parts.x;
    terms_out[out + 4u] = parts.y;
    terms_out[out + 5u] = 0.0;
    terms_out[out + 6u] = 0.0;
    terms_out[out + 7u] = 0.0;
    for (var i = 0u; i < params.d_qk; i++) {
        pivot_out[row * params.d_qk + i] = sum_of(k_split[pivot * params.d_qk + i]);
    }
}

@compute @workgroup_size(WORKGROUP)
fn forward_span(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = tiles_of(params.d_v);
    let r = query_work(linear_id(wid, lid, nwg), tiles);
    if (!r.valid) {
        return;
    }
    let a = r.local;
    let state = (r.row * tiles + r.tile) * STATS;
    let pivot_parts = vec2<f32>(term(a, 3u), term(a, 4u));
    var q_row = held_q(a);

    // sum_b e^x_ab and sum_b e^x_ab v_b, compensated across key blocks. (Not v_b - v_b*: o's
    // rounding is a few ulp of max |v| either way, and the pivot's values would cost a load
    // per column and key.)
    var l = vec2<f32>(0.0, 0.0);
    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (!r.first) {
        l = vec2<f32>(stats[state], stats[state + 1u]);
        for (var c = 0u; c < COL_TILE; c++) {
            let at = r.row * params.d_v + tile_col(r.tile, c, params.d_v);
            acc[c] = o[at];
            acc_lo[c] = o_lo[at];
        }
    }
    for (var b0 = r.lo; b0 < r.hi; b0 += KEY_BLOCK) {
        var block_l = 0.0;
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let b = min(b0 + j, r.hi - 1u);
            let x = parts_difference(logit_parts_q_held(&q_row, a, b), pivot_parts);
            let weight = select(0.0, exp_accurate(x * params.logit_scale), b0 + j < r.hi);
            block_l += weight;
            if (pairs_per_load()) {
                for (var c = 0u; c < COL_TILE; c += 2u) {
                    let x = v_win.v[(b * D_V + tile_pair_col(r.tile, c, D_V)) >> 1u];
                    block[c] += weight * sum_of(x.xy);
                    block[c + 1u] += weight * sum_of(x.zw);
                }
            } else {
                for (var c = 0u; c < COL_TILE; c++) {
                    block[c] += weight * sum_of(v_pair(b, tile_col(r.tile, c, params.d_v)));
                }
            }
        }
        let sum = two_sum(l.x, block_l);
        l = vec2<f32>(sum.x, l.y + sum.y);
        fold_block(&acc, &acc_lo, &block);
    }

    stats[state] = l.x;
    stats[state + 1u] = l.y;
    let l_total = l.x + l.y;
    for (var c = 0u; c < COL_TILE; c++) {
        let col = r.tile * COL_TILE + c;
        if (col < params.d_v) {
            let at = r.row * params.d_v + col;
            if (r.last) {
                o[at] = (acc[c] + acc_lo[c]) / l_total;
            } else {
                // Earlier windows leave the accumulator for the next.
                o[at] = acc[c];
                o_lo[at] = acc_lo[c];
            }
        }
    }
}

// ---- backward ------------------------------------------------------------------------------

// Per global row: log l_a and dO_a . v_b* into the row terms (pivot_rows wrote the rest).
@compute @workgroup_size(WORKGROUP)
fn row_terms(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let state = row * tiles_of(params.d_v) * STATS;
    let out = row * ROW_TERMS;
    let pivot = head_start_of(row) + u32(terms_out[out + 2u]);
    var dov = vec2<f32>(0.0, 0.0);
    for (var j = 0u; j < params.d_v; j++) {
        dov = add_split_product(dov, d_o_split[row * params.d_v + j],
                                v_split[pivot * params.d_v + j]);
    }
    terms_out[out] = log(stats[state] + stats[state + 1u]);
    terms_out[out + 1u] = 0.0;
    terms_out[out + 6u] = dov.x;
    terms_out[out + 7u] = dov.y;
}

// What the backward needs of query row a (local to the query window): see row_terms.
struct RowTerms {
    log_l: f32,
    delta: f32,             // D_a, once finish_delta has run
    pivot_parts: vec2<f32>, // q_a . k_b*, see logit_parts
    dov_pivot: vec2<f32>,   // dO_a . v_b*, likewise
}

fn row_terms_of(a: u32) -> RowTerms {
    var t: RowTerms;
    t.log_l = term(a, 0u);
    t.delta = term(a, 1u);
    t.pivot_parts = vec2<f32>(term(a, 3u), term(a, 4u));
    t.dov_pivot = vec2<f32>(term(a, 6u), term(a, 7u));
    return t;
}

// p_ab from q_a . k_b (logit_parts): the forward's weight over the forward's sum.
fn prob(logit: vec2<f32>, t: RowTerms) -> f32 {
    return exp_accurate(parts_difference(logit, t.pivot_parts) * params.logit_scale - t.log_l);
}

// dL/ds_ab = p_ab (dO_a . (v_b - v_b*) - D_a), given q_a . k_b and dO_a . v_b as parts.
// dO_a . (v_b - v_b*) is right to about one rounding of itself (exactly 0 at b = b*): an f32
// dot product of d_v terms is off by a few 1e-7 of the sum of its terms' sizes, which left
// errors up to 1e-4 in dq at n = 7, d_v = 64 where dO_a is nearly orthogonal to v_b - v_b*.
fn score_grad(logit: vec2<f32>, dov: vec2<f32>, t: RowTerms) -> f32 {
    return prob(logit, t) * (parts_difference(dov, t.dov_pivot) - t.delta);
}

// D_a += sum over the key window of p_ab dO_a . (v_b - v_b*), compensated; the row's last
// window leaves the rounded total for finish_delta.
@compute @workgroup_size(WORKGROUP)
fn delta_span(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = query_work(linear_id(wid, lid, nwg), 1u);
    if (!r.valid) {
        return;
    }
    let terms = row_terms_of(r.local);
    var q_row = held_q(r.local);
    var d_o_row = held_d_o(r.local);
    var delta = vec2<f32>(0.0, 0.0);
    if (!r.first) {
        delta = vec2<f32>(delta_acc[r.row * 2u], delta_acc[r.row * 2u + 1u]);
    }
    for (var b0 = r.lo; b0 < r.hi; b0 += KEY_BLOCK) {
        var block = 0.0;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let b = min(b0 + j, r.hi - 1u);
            let logit = logit_parts_q_held(&q_row, r.local, b);
            let dov = parts_difference(dot_do_v_parts_d_o_held(&d_o_row, r.local, b), terms.dov_pivot);
            let term = prob(logit, terms) * dov;
            block += select(0.0, term, b0 + j < r.hi);
        }
        let sum = two_sum(delta.x, block);
        delta = vec2<f32>(sum.x, delta.y + sum.y);
    }
    if (r.last) {
        delta = vec2<f32>(delta.x + delta.y, 0.0);
    }
    delta_acc[r.row * 2u] = delta.x;
    delta_acc[r.row * 2u + 1u] = delta.y;
}

// Per global row: D_a into the row terms, for the gradient kernels' windows.
@compute @workgroup_size(WORKGROUP)
fn finish_delta(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    terms_out[row * ROW_TERMS + 1u] = delta_acc[row * 2u];
}

@compute @workgroup_size(WORKGROUP)
fn query_grad_span(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = query_work(linear_id(wid, lid, nwg), tiles_of(params.d_qk));
    if (!r.valid) {
        return;
    }
    let a = r.local;
    let terms = row_terms_of(a);
    var q_row = held_q(a);
    var d_o_row = held_d_o(a);
    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (!r.first) {
        acc = load_tile(r.row, r.tile, params.d_qk);
    }
    for (var b0 = r.lo; b0 < r.hi; b0 += KEY_BLOCK) {
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let b = min(b0 + j, r.hi - 1u);
            let logit = logit_parts_q_held(&q_row, a, b);
            let dov = dot_do_v_parts_d_o_held(&d_o_row, a, b);
            let ds = select(0.0, score_grad(logit, dov, terms), b0 + j < r.hi);
            if (pairs_per_load()) {
                for (var c = 0u; c < COL_TILE; c += 2u) {
                    let col = tile_pair_col(r.tile, c, D_QK);
                    let x = k_win.v[(b * D_QK + col) >> 1u];
                    let pivot = pivot_k_pair(a, col);
                    block[c] += ds * (sum_of(x.xy) - pivot.x);
                    block[c + 1u] += ds * (sum_of(x.zw) - pivot.y);
                }
            } else {
                for (var c = 0u; c < COL_TILE; c++) {
                    let col = tile_col(r.tile, c, params.d_qk);
                    block[c] += ds * (sum_of(k_pair(b, col)) - pivot_k(a, col));
                }
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(r.row, r.tile, params.d_qk, &acc, select(1.0, params.logit_scale, r.last));
}

@compute @workgroup_size(WORKGROUP)
fn key_grad_span(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = key_work(linear_id(wid, lid, nwg), tiles_of(params.d_qk));
    if (!r.valid) {
        return;
    }
    var k_row = held_k(r.local);
    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (!r.first) {
        acc = load_tile(r.row, r.tile, params.d_qk);
    }
    for (var a0 = r.lo; a0 < r.hi; a0 += KEY_BLOCK) {
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let a = min(a0 + j, r.hi - 1u);
            let logit = logit_parts_k_held(&k_row, a, r.local);
            let dov = dot_do_v_parts(a, r.local);
            let ds = select(0.0, score_grad(logit, dov, row_terms_of(a)), a0 + j < r.hi);
            if (pairs_per_load()) {
                for (var c = 0u; c < COL_TILE; c += 2u) {
                    let x = q_win.v[(a * D_QK + tile_pair_col(r.tile, c, D_QK)) >> 1u];
                    block[c] += ds * sum_of(x.xy);
                    block[c + 1u] += ds * sum_of(x.zw);
                }
            } else {
                for (var c = 0u; c < COL_TILE; c++) {
                    block[c] += ds * sum_of(q_pair(a, tile_col(r.tile, c, params.d_qk)));
                }
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(r.row, r.tile, params.d_qk, &acc, select(1.0, params.logit_scale, r.last));
}

@compute @workgroup_size(WORKGROUP)
fn value_grad_span(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = key_work(linear_id(wid, lid, nwg), tiles_of(params.d_v));
    if (!r.valid) {
        return;
    }
    var k_row = held_k(r.local);
    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (!r.first) {
        acc = load_tile(r.row, r.tile, params.d_v);
    }
    for (var a0 = r.lo; a0 < r.hi; a0 += KEY_BLOCK) {
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let a = min(a0 + j, r.hi - 1u);
            let p = select(0.0, prob(logit_parts_k_held(&k_row, a, r.local), row_terms_of(a)),
                           a0 + j < r.hi);
            if (pairs_per_load()) {
                for (var c = 0u; c < COL_TILE; c += 2u) {
                    let x = d_o_win.v[(a * D_V + tile_pair_col(r.tile, c, D_V)) >> 1u];
                    block[c] += p * sum_of(x.xy);
                    block[c + 1u] += p * sum_of(x.zw);
                }
            } else {
                for (var c = 0u; c < COL_TILE; c++) {
                    block[c] += p * sum_of(d_o_pair(a, tile_col(r.tile, c, params.d_v)));
                }
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(r.row, r.tile, params.d_v, &acc, 1.0);
}
