// Exact softmax attention, forward and backward, in O(n d) memory: the baseline and fallback of
// the polynomial kernels (shaders/poly_attention.wgsl), with the same tensor layout.
//
// Per head: s_ab = q_a . k_b / sqrt(d_qk) (causal: b <= a), p_ab = softmax_b(s_ab),
// o_a = sum_b p_ab v_b. The n x n scores never exist in memory.
//
// The key axis is cut into spans; the host records one dispatch per span, in order, and every
// kernel carries its running state from one span to the next in its output buffers (O(n d)).
// That bounds the loop iterations of one invocation (llvmpipe silently ends every loop of an
// invocation after 65535 iterations in total) and keeps each dispatch short on any GPU.
//
// Everything is taken relative to each row's pivot b*_a, the key of its largest logit:
//   x_ab    = s_ab - s_ab* = (q_a . k_b - q_a . k_b*) / sqrt(d_qk)   (<= 0 up to rounding)
//   l_a     = sum_b e^x_ab,   p_ab = e^(x_ab - log l_a)
//   o_rel_a = sum_b p_ab (v_b - v_b*),   o_a = v_b* + o_rel_a
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
//   split_rows       q and k (forward), v and dO (backward) into exact high and low parts,
//                    per row, so that q . k and dO . v differences are exact (see below)
//   pivot_span       per row: running max of s_ab over the span's keys and its key (pivots)
//   forward_span     per (row, value column tile): l and the compensated sum of
//                    e^x_ab (v_b - v_b*) over the span's keys; the row's last span writes
//                    o = v_b* + acc / l
//   row_terms        per row: log l_a, b*_a, q_a . k_b* and dO_a . v_b* (as exact parts)
//   delta_span       per row: the compensated sum D_a over the span's keys
//   query_grad_span, key_grad_span (span over queries), value_grad_span: the gradients.
// dq and dk get the 1/sqrt(d_qk) factor on their last span.
//
// Causal: a span's dispatch covers only the rows (queries) or keys that have work in it, and a
// row's key loop stops at its own position, so the blocks above the diagonal are never computed.
// Each sum runs in a fixed order inside one invocation: no atomics, bit-identical reruns.

override WORKGROUP: u32 = 64u;
// Keys per block of the forward's and the gradients' sums: each block is summed plainly and
// added to the running sum with TwoSum. At most MAX_KEY_BLOCK; a constant trip count, so the
// block loops unroll.
override KEY_BLOCK: u32 = 8u;
// Output columns one invocation accumulates (value columns forward, q/k/v columns backward).
// At most MAX_COL_TILE.
override COL_TILE: u32 = 16u;

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
    span_start: u32,  // this dispatch's span of keys (forward, query_grad) or queries (key and
    span_end: u32,    // value grads)
    split_bits: u32,  // bits of a row's high part: see split_rows
    logit_scale: f32, // 1 / sqrt(d_qk)
    one: f32,         // 1.0, opaque to the compiler: see two_sum
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// q and k as exact [high, low] pairs, written by split_rows: q = high + low exactly.
@group(0) @binding(1) var<storage, read> q: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
// The output; between spans it holds the high half of the compensated accumulator.
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
// Running [l_hi, l_lo] per (row, value column tile), [heads, n, v_tiles, STATS]. Every tile
// computes the same l; each keeps its own copy so that no invocation reads what another writes.
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
const STATS: u32 = 2u;
// dL/do as exact [high, low] pairs, like q and k.
@group(0) @binding(6) var<storage, read> d_o: array<vec2<f32>>;
// Per row [log l_a, D_a, b*_a, q_a . k_b* (exact part, rest), D_a's low half between spans,
// dO_a . v_b* (exact part, rest)], by row_terms and delta_span.
@group(0) @binding(7) var<storage, read_write> row_terms_out: array<f32>;
const ROW_TERMS: u32 = 8u;
// The gradient a backward kernel accumulates across spans: dq, dk or dv.
@group(0) @binding(8) var<storage, read_write> grad: array<f32>;
// The low half of the forward's compensated accumulator between spans, like o.
@group(0) @binding(9) var<storage, read_write> o_lo: array<f32>;
// Per row [running max logit, its key b* (position in the head, exact as an f32: the host
// keeps n <= 2^24)], written by pivot_span.
@group(0) @binding(10) var<storage, read_write> pivots: array<f32>;
// split_rows: a [rows, width] tensor in, its [high, low] pairs out.
@group(0) @binding(11) var<storage, read> split_in: array<f32>;
@group(0) @binding(12) var<storage, read_write> split_out: array<vec2<f32>>;
// v as exact [high, low] pairs, for the backward's dO . v.
@group(0) @binding(13) var<storage, read> v_split: array<vec2<f32>>;

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

// Which (head, column tile, position) an invocation owns, over positions first..n.
struct Work {
    head: u32,
    tile: u32,
    pos: u32,
    valid: bool,
}

fn work_item(id: u32, first: u32, last: u32, tiles: u32) -> Work {
    let count = last - first;
    var w: Work;
    w.valid = count > 0u && id < params.heads * tiles * count;
    let c = max(count, 1u);
    w.pos = first + id % c;
    w.tile = (id / c) % tiles;
    w.head = id / (c * tiles);
    return w;
}

// A row's pivot as a global row.
fn pivot_of(row: u32, position: f32) -> u32 {
    return (row / params.rows) * params.rows + u32(position);
}

// x . y for two split elements, added to [exact part, rest]: the sum of high x high products
// is exact (split_rows sizes the high parts for that), the rest is about 2^-split_bits of the
// whole and rounds harmlessly.
fn add_split_product(parts: vec2<f32>, x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(parts.x + x.x * y.x, parts.y + (x.x * y.y + x.y * (y.x + y.y)));
}

// q_a . k_b for global rows a, b as [exact part, rest].
fn logit_parts(a: u32, b: u32) -> vec2<f32> {
    var parts = vec2<f32>(0.0, 0.0);
    for (var i = 0u; i < params.d_qk; i++) {
        parts = add_split_product(parts, q[a * params.d_qk + i], k[b * params.d_qk + i]);
    }
    return parts;
}

// dO_a . v_b for global rows a, b as [exact part, rest].
fn dot_do_v_parts(a: u32, b: u32) -> vec2<f32> {
    var parts = vec2<f32>(0.0, 0.0);
    for (var j = 0u; j < params.d_v; j++) {
        parts = add_split_product(parts, d_o[a * params.d_v + j], v_split[b * params.d_v + j]);
    }
    return parts;
}

// The difference of two dot products held as parts: right to about one rounding of itself.
fn parts_difference(x: vec2<f32>, y: vec2<f32>) -> f32 {
    return (x.x - y.x) + (x.y - y.y);
}

// x_ab = s_ab - s_ab*, given the parts of q_a . k_b*: the exact parts subtract with one
// rounding, so x is right to about one rounding of itself, whatever the size of the logits.
fn logit_rel(a: u32, b: u32, pivot_parts: vec2<f32>) -> f32 {
    return parts_difference(logit_parts(a, b), pivot_parts) * params.logit_scale;
}

fn q_at(a: u32, i: u32) -> f32 {
    let x = q[a * params.d_qk + i];
    return x.x + x.y;
}

fn k_at(b: u32, i: u32) -> f32 {
    let x = k[b * params.d_qk + i];
    return x.x + x.y;
}

fn d_o_at(a: u32, j: u32) -> f32 {
    let x = d_o[a * params.d_v + j];
    return x.x + x.y;
}

// The element of column tile `tile`, slot c, clamped into the row so that loads stay in bounds
// and the tile loops keep a constant trip count; stores check `col < width` themselves.
fn tile_col(tile: u32, c: u32, width: u32) -> u32 {
    return min(tile * COL_TILE + c, width - 1u);
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
// spans: one rounding per span).
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

// ---- query rows over a span of keys ----------------------------------------------------------

// The first query row a span's dispatch covers: causal rows before the span saw all their keys
// in earlier spans.
fn first_query_row() -> u32 {
    return select(0u, params.span_start, is_causal());
}

// What query row `w` meets in this dispatch: keys [lo, hi) of its head (causal rows stop at
// their own position), and whether this span is the row's last.
struct RowSpan {
    row: u32,        // global
    head_start: u32, // global row of the head's first position
    lo: u32,
    hi: u32,
    last: bool,
}

fn row_span(w: Work) -> RowSpan {
    var r: RowSpan;
    r.head_start = w.head * params.rows;
    r.row = r.head_start + w.pos;
    let end = select(params.rows, w.pos + 1u, is_causal());
    r.lo = params.span_start;
    r.hi = min(params.span_end, end);
    r.last = r.hi == end;
    return r;
}

// ---- forward -------------------------------------------------------------------------------

@compute @workgroup_size(WORKGROUP)
fn pivot_span(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = work_item(linear_id(wid, lid, nwg), first_query_row(), params.rows, 1u);
    if (!w.valid) {
        return;
    }
    let r = row_span(w);
    let row = r.row;
    var best = NEG_BIG;
    var best_key = r.lo;
    if (r.lo > 0u) {
        best = pivots[row * 2u];
        best_key = u32(pivots[row * 2u + 1u]);
    }
    for (var b = r.lo; b < r.hi; b++) {
        let parts = logit_parts(row, r.head_start + b);
        let s = parts.x + parts.y;
        // Strictly greater: of equal logits the earliest key is the pivot.
        if (s > best) {
            best = s;
            best_key = b;
        }
    }
    pivots[row * 2u] = best;
    pivots[row * 2u + 1u] = f32(best_key);
}

@compute @workgroup_size(WORKGROUP)
fn forward_span(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = tiles_of(params.d_v);
    let w = work_item(linear_id(wid, lid, nwg), first_query_row(), params.rows, tiles);
    if (!w.valid) {
        return;
    }
    let r = row_span(w);
    let row = r.row;
    let state = (row * tiles + w.tile) * STATS;
    let pivot = pivot_of(row, pivots[row * 2u + 1u]);
    let pivot_parts = logit_parts(row, pivot);

    // sum_b e^x_ab and sum_b e^x_ab (v_b - v_b*), compensated across key blocks.
    var l = vec2<f32>(0.0, 0.0);
    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (r.lo > 0u) {
        l = vec2<f32>(stats[state], stats[state + 1u]);
        for (var c = 0u; c < COL_TILE; c++) {
            let at = row * params.d_v + tile_col(w.tile, c, params.d_v);
            acc[c] = o[at];
            acc_lo[c] = o_lo[at];
        }
    }
    for (var b0 = r.lo; b0 < r.hi; b0 += KEY_BLOCK) {
        var block_l = 0.0;
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let b = r.head_start + min(b0 + j, r.hi - 1u);
            let weight = select(0.0, exp_accurate(logit_rel(row, b, pivot_parts)), b0 + j < r.hi);
            block_l += weight;
            for (var c = 0u; c < COL_TILE; c++) {
                // v_b* is loaded here rather than kept in a local array: the array made this
                // kernel 6x slower on llvmpipe (2.2 s against 0.36 s at n = 1024, measured).
                let col = tile_col(w.tile, c, params.d_v);
                block[c] += weight * (v[b * params.d_v + col] - v[pivot * params.d_v + col]);
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
        let col = w.tile * COL_TILE + c;
        if (col < params.d_v) {
            let at = row * params.d_v + col;
            if (r.last) {
                o[at] = v[pivot * params.d_v + col] + (acc[c] + acc_lo[c]) / l_total;
            } else {
                // Earlier spans leave the accumulator for the next.
                o[at] = acc[c];
                o_lo[at] = acc_lo[c];
            }
        }
    }
}

// ---- backward ------------------------------------------------------------------------------

@compute @workgroup_size(WORKGROUP)
fn row_terms(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let state = row * tiles_of(params.d_v) * STATS;
    let pivot = pivot_of(row, pivots[row * 2u + 1u]);
    let pivot_parts = logit_parts(row, pivot);
    let dov_pivot = dot_do_v_parts(row, pivot);
    let out = row * ROW_TERMS;
    row_terms_out[out] = log(stats[state] + stats[state + 1u]);
    row_terms_out[out + 1u] = 0.0;
    row_terms_out[out + 2u] = pivots[row * 2u + 1u];
    row_terms_out[out + 3u] = pivot_parts.x;
    row_terms_out[out + 4u] = pivot_parts.y;
    row_terms_out[out + 5u] = 0.0;
    row_terms_out[out + 6u] = dov_pivot.x;
    row_terms_out[out + 7u] = dov_pivot.y;
}

// What the backward needs of query row a (global): see row_terms.
struct RowTerms {
    log_l: f32,
    delta: f32,             // D_a, once delta_span has run
    pivot: u32,             // global row
    pivot_parts: vec2<f32>, // q_a . k_b*, see logit_parts
    dov_pivot: vec2<f32>,   // dO_a . v_b*, likewise
}

fn row_terms_of(a: u32) -> RowTerms {
    let at = a * ROW_TERMS;
    var t: RowTerms;
    t.log_l = row_terms_out[at];
    t.delta = row_terms_out[at + 1u];
    t.pivot = pivot_of(a, row_terms_out[at + 2u]);
    t.pivot_parts = vec2<f32>(row_terms_out[at + 3u], row_terms_out[at + 4u]);
    t.dov_pivot = vec2<f32>(row_terms_out[at + 6u], row_terms_out[at + 7u]);
    return t;
}

// p_ab for global rows a (query) and b (key): the forward's weight over the forward's sum.
fn prob(a: u32, b: u32, t: RowTerms) -> f32 {
    return exp_accurate(logit_rel(a, b, t.pivot_parts) - t.log_l);
}

// dO_a . (v_b - v_b*), right to about one rounding of itself (exactly 0 at b = b*): an f32 dot
// product of d_v terms is off by a few 1e-7 of the sum of its terms' sizes, which left errors
// up to 1e-4 in dq at n = 7, d_v = 64 where dO_a is nearly orthogonal to v_b - v_b*.
fn dot_do_v_rel(a: u32, b: u32, t: RowTerms) -> f32 {
    return parts_difference(dot_do_v_parts(a, b), t.dov_pivot);
}

// dL/ds_ab = p_ab (dO_a . (v_b - v_b*) - D_a).
fn score_grad(a: u32, b: u32, t: RowTerms) -> f32 {
    return prob(a, b, t) * (dot_do_v_rel(a, b, t) - t.delta);
}

// D_a += sum over the span's keys b of p_ab dO_a . (v_b - v_b*), compensated; the row's last
// span leaves the rounded total for the gradient kernels.
@compute @workgroup_size(WORKGROUP)
fn delta_span(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = work_item(linear_id(wid, lid, nwg), first_query_row(), params.rows, 1u);
    if (!w.valid) {
        return;
    }
    let r = row_span(w);
    let row = r.row;
    let terms = row_terms_of(row);
    let at = row * ROW_TERMS;
    var delta = vec2<f32>(row_terms_out[at + 1u], row_terms_out[at + 5u]);
    for (var b0 = r.lo; b0 < r.hi; b0 += KEY_BLOCK) {
        var block = 0.0;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let b = r.head_start + min(b0 + j, r.hi - 1u);
            let term = prob(row, b, terms) * dot_do_v_rel(row, b, terms);
            block += select(0.0, term, b0 + j < r.hi);
        }
        let sum = two_sum(delta.x, block);
        delta = vec2<f32>(sum.x, delta.y + sum.y);
    }
    if (r.last) {
        row_terms_out[at + 1u] = delta.x + delta.y;
        row_terms_out[at + 5u] = 0.0;
    } else {
        row_terms_out[at + 1u] = delta.x;
        row_terms_out[at + 5u] = delta.y;
    }
}

@compute @workgroup_size(WORKGROUP)
fn query_grad_span(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = tiles_of(params.d_qk);
    let w = work_item(linear_id(wid, lid, nwg), first_query_row(), params.rows, tiles);
    if (!w.valid) {
        return;
    }
    let r = row_span(w);
    let row = r.row;
    let terms = row_terms_of(row);
    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (r.lo > 0u) {
        acc = load_tile(row, w.tile, params.d_qk);
    }
    for (var b0 = r.lo; b0 < r.hi; b0 += KEY_BLOCK) {
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let b = r.head_start + min(b0 + j, r.hi - 1u);
            let ds = select(0.0, score_grad(row, b, terms), b0 + j < r.hi);
            for (var c = 0u; c < COL_TILE; c++) {
                // Loaded here rather than kept in a local array: llvmpipe ran this loop several
                // times slower with the array (measured in forward_span's twin).
                let col = tile_col(w.tile, c, params.d_qk);
                block[c] += ds * (k_at(b, col) - k_at(terms.pivot, col));
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(row, w.tile, params.d_qk, &acc, select(1.0, params.logit_scale, r.last));
}

// The span of queries key `pos` meets in this dispatch, and whether it is the key's first and
// last span (causal keys only meet queries a >= b, from the span that holds b on).
struct KeySpan {
    lo: u32,
    hi: u32,
    first: bool,
    last: bool,
}

fn key_span(pos: u32) -> KeySpan {
    var span: KeySpan;
    let first_query = select(0u, pos, is_causal());
    span.lo = max(params.span_start, first_query);
    span.hi = params.span_end;
    span.first = params.span_start <= first_query;
    span.last = params.span_end == params.rows;
    return span;
}

@compute @workgroup_size(WORKGROUP)
fn key_grad_span(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = tiles_of(params.d_qk);
    // Causal: keys past the span meet none of its queries.
    let last_key = select(params.rows, params.span_end, is_causal());
    let w = work_item(linear_id(wid, lid, nwg), 0u, last_key, tiles);
    if (!w.valid) {
        return;
    }
    let key = w.head * params.rows + w.pos;
    let head_start = w.head * params.rows;
    let span = key_span(w.pos);

    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (!span.first) {
        acc = load_tile(key, w.tile, params.d_qk);
    }
    for (var a0 = span.lo; a0 < span.hi; a0 += KEY_BLOCK) {
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let a = head_start + min(a0 + j, span.hi - 1u);
            let ds = select(0.0, score_grad(a, key, row_terms_of(a)), a0 + j < span.hi);
            for (var c = 0u; c < COL_TILE; c++) {
                block[c] += ds * q_at(a, tile_col(w.tile, c, params.d_qk));
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(key, w.tile, params.d_qk, &acc, select(1.0, params.logit_scale, span.last));
}

@compute @workgroup_size(WORKGROUP)
fn value_grad_span(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = tiles_of(params.d_v);
    let last_key = select(params.rows, params.span_end, is_causal());
    let w = work_item(linear_id(wid, lid, nwg), 0u, last_key, tiles);
    if (!w.valid) {
        return;
    }
    let key = w.head * params.rows + w.pos;
    let head_start = w.head * params.rows;
    let span = key_span(w.pos);

    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (!span.first) {
        acc = load_tile(key, w.tile, params.d_v);
    }
    for (var a0 = span.lo; a0 < span.hi; a0 += KEY_BLOCK) {
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let a = head_start + min(a0 + j, span.hi - 1u);
            let p = select(0.0, prob(a, key, row_terms_of(a)), a0 + j < span.hi);
            for (var c = 0u; c < COL_TILE; c++) {
                block[c] += p * d_o_at(a, tile_col(w.tile, c, params.d_v));
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(key, w.tile, params.d_v, &acc, 1.0);
}
