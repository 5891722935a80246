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
// Forward, per span:
//   forward_span   online softmax over the span's keys in blocks of KEY_BLOCK: running max m,
//                  running sum l and the unnormalised output acc (in o and o_lo between
//                  spans); a row's last span writes o_a = acc / l. (m, l) stay in `stats`.
// Backward:
//   row_terms      lse_a = m_a + log l_a, delta_a = dO_a . o_a
//   query_grad_span  dq_a += sum_{b in span} p_ab (dO_a . v_b - delta_a) k_b
//   key_grad_span    dk_b += sum_{a in span} p_ab (dO_a . v_b - delta_a) q_a   (span over queries)
//   value_grad_span  dv_b += sum_{a in span} p_ab dO_a
// with p_ab = exp(s_ab - lse_a) recomputed from q, k and lse; dq and dk get the 1/sqrt(d_qk)
// factor on their last span.
//
// Causal: a span's dispatch covers only the rows (queries) or keys that have work in it, and a
// row's key loop stops at its own position, so the blocks above the diagonal are never computed.
// Each sum runs in a fixed order inside one invocation: no atomics, bit-identical reruns.

override WORKGROUP: u32 = 64u;
// Keys per step of the online softmax: one rescale of the accumulator per block. At most
// MAX_KEY_BLOCK; a constant trip count, so the block loops unroll.
override KEY_BLOCK: u32 = 8u;
// Output columns one invocation accumulates (value columns forward, q/k/v columns backward).
// At most MAX_COL_TILE.
override COL_TILE: u32 = 16u;

const MAX_KEY_BLOCK: u32 = 16u;
const MAX_COL_TILE: u32 = 64u;
// Start of the running max and score of a masked key: exp(NEG_BIG - s) is 0 for any real s,
// without the NaN that -inf - -inf would give.
const NEG_BIG: f32 = -1.0e30;

struct Params {
    heads: u32,       // B * H independent heads
    rows: u32,        // sequence length n
    d_qk: u32,
    d_v: u32,
    causal: u32,      // 1: row a sees keys b <= a
    span_start: u32,  // this dispatch's span of keys (forward, query_grad) or queries (key and
    span_end: u32,    // value grads)
    _pad0: u32,
    logit_scale: f32, // 1 / sqrt(d_qk)
    one: f32,         // 1.0, opaque to the compiler: see two_sum
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
// The output; between spans it holds the unnormalised accumulator.
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
// Running [m, l_hi, l_lo] per (row, value column tile), [heads, n, v_tiles, STATS]. Every tile
// computes the same m and l; each keeps its own copy so that no invocation reads what another
// writes.
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
const STATS: u32 = 3u;
@group(0) @binding(6) var<storage, read> d_o: array<f32>;
// Per row [lse_a, delta_a], written by row_terms.
@group(0) @binding(7) var<storage, read_write> lse_delta: array<f32>;
// The gradient a backward kernel accumulates across spans: dq, dk or dv.
@group(0) @binding(8) var<storage, read_write> grad: array<f32>;
// The low half of the forward's compensated accumulator between spans, like o.
@group(0) @binding(9) var<storage, read_write> o_lo: array<f32>;

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

// The logit s_ab = q_a . k_b / sqrt(d_qk) for global rows a, b (head offsets included).
//
// The forward and the backward should compute the same bits for it: dq is sensitive to any
// disagreement between the backward's p = exp(s - lse) and the forward's when rows are nearly
// one-hot (see RowState). A compiler may fuse `dot * scale - lse` into one FMA in one kernel
// and not in another, so the scale goes inside the sum, where the code is the same in every
// kernel, and callers only subtract.
fn logit(a: u32, b: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < params.d_qk; i++) {
        s += (q[a * params.d_qk + i] * params.logit_scale) * k[b * params.d_qk + i];
    }
    return s;
}

// dO_a . v_b for global rows a, b.
fn dot_do_v(a: u32, b: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < params.d_v; j++) {
        s += d_o[a * params.d_v + j] * v[b * params.d_v + j];
    }
    return s;
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

// ---- forward -------------------------------------------------------------------------------

// a + b as an unevaluated sum [hi, lo] (Knuth's TwoSum: exact in round-to-nearest).
// llvmpipe's compiler reassociates floating point and folded the textbook form to lo = 0;
// multiplying by params.one, a 1.0 it cannot see, keeps every step.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let hi = a + b;
    let b_part = (hi - a) * params.one;
    let a_part = (hi - b_part) * params.one;
    let lo = (a - a_part) + (b - b_part);
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

// The forward's running state for one row and column tile: max m, sum l and accumulator acc,
// the last two as compensated sums (hi + lo).
//
// Why compensated: with large logits a row's softmax is nearly one-hot, and the backward's
// dL/ds = p (dO.v_b - dO.o_a) then subtracts two nearly equal numbers. Rounding error that a
// plain f32 sum over n keys leaves in o and l (a few 1e-7 of |o|) would become a relative
// error above 1e-5 in dq. Each block of KEY_BLOCK keys is summed plainly and the block sums
// are added with TwoSum, which costs little next to the block itself.
struct RowState {
    m: f32,
    l: vec2<f32>,
    acc: array<f32, 64>,
    acc_lo: array<f32, 64>,
}

fn load_row_state(state: u32, row: u32, tile: u32) -> RowState {
    var r: RowState;
    r.m = stats[state];
    r.l = vec2<f32>(stats[state + 1u], stats[state + 2u]);
    for (var c = 0u; c < COL_TILE; c++) {
        let at = row * params.d_v + tile_col(tile, c, params.d_v);
        r.acc[c] = o[at];
        r.acc_lo[c] = o_lo[at];
    }
    return r;
}

// Folds keys b0 .. b0 + KEY_BLOCK (those below hi) of head `head_start` into the state.
fn add_key_block(r: ptr<function, RowState>, row: u32, tile: u32, head_start: u32, b0: u32,
                 hi: u32) {
    var s: array<f32, 16>;
    var block_max = NEG_BIG;
    for (var j = 0u; j < KEY_BLOCK; j++) {
        let b = head_start + min(b0 + j, hi - 1u);
        s[j] = select(NEG_BIG, logit(row, b), b0 + j < hi);
        block_max = max(block_max, s[j]);
    }
    let m_new = max((*r).m, block_max);
    let correction = exp((*r).m - m_new);
    var block_l = 0.0;
    var block_acc: array<f32, 64>;
    for (var j = 0u; j < KEY_BLOCK; j++) {
        let p = exp(s[j] - m_new);
        block_l += p;
        let b = head_start + min(b0 + j, hi - 1u);
        for (var c = 0u; c < COL_TILE; c++) {
            block_acc[c] += p * v[b * params.d_v + tile_col(tile, c, params.d_v)];
        }
    }
    // `* params.one`: a product fed straight into two_sum may be fused into its first add as an
    // FMA, which skips the product's rounding that the compensation term must see.
    let l = two_sum((*r).l.x * correction * params.one, block_l);
    (*r).l = vec2<f32>(l.x, l.y + (*r).l.y * correction);
    for (var c = 0u; c < COL_TILE; c++) {
        let sum = two_sum((*r).acc[c] * correction * params.one, block_acc[c]);
        (*r).acc[c] = sum.x;
        (*r).acc_lo[c] = sum.y + (*r).acc_lo[c] * correction;
    }
    (*r).m = m_new;
}

@compute @workgroup_size(WORKGROUP)
fn forward_span(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = tiles_of(params.d_v);
    // Causal: rows before the span saw all their keys in earlier spans.
    let first_row = select(0u, params.span_start, is_causal());
    let w = work_item(linear_id(wid, lid, nwg), first_row, params.rows, tiles);
    if (!w.valid) {
        return;
    }
    let row = w.head * params.rows + w.pos;
    let head_start = w.head * params.rows;
    let row_end = select(params.rows, w.pos + 1u, is_causal());
    let lo = params.span_start;
    let hi = min(params.span_end, row_end);
    let state = (row * tiles + w.tile) * STATS;

    var r: RowState;
    r.m = NEG_BIG;
    if (lo > 0u) {
        r = load_row_state(state, row, w.tile);
    }
    for (var b0 = lo; b0 < hi; b0 += KEY_BLOCK) {
        add_key_block(&r, row, w.tile, head_start, b0, hi);
    }

    stats[state] = r.m;
    stats[state + 1u] = r.l.x;
    stats[state + 2u] = r.l.y;
    let last = hi == row_end;
    let l = r.l.x + r.l.y;
    for (var c = 0u; c < COL_TILE; c++) {
        let col = w.tile * COL_TILE + c;
        if (col < params.d_v) {
            let at = row * params.d_v + col;
            if (last) {
                o[at] = (r.acc[c] + r.acc_lo[c]) / l;
            } else {
                // Earlier spans leave the accumulator for the next.
                o[at] = r.acc[c];
                o_lo[at] = r.acc_lo[c];
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
    var delta = 0.0;
    for (var j = 0u; j < params.d_v; j++) {
        delta += d_o[row * params.d_v + j] * o[row * params.d_v + j];
    }
    lse_delta[row * 2u] = stats[state] + log(stats[state + 1u] + stats[state + 2u]);
    lse_delta[row * 2u + 1u] = delta;
}

// dL/ds_ab = p_ab (dO_a . v_b - delta_a), for global rows a (query) and b (key).
fn score_grad(a: u32, b: u32, p: f32) -> f32 {
    return p * (dot_do_v(a, b) - lse_delta[a * 2u + 1u]);
}

fn prob(a: u32, b: u32) -> f32 {
    return exp(logit(a, b) - lse_delta[a * 2u]);
}

@compute @workgroup_size(WORKGROUP)
fn query_grad_span(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles = tiles_of(params.d_qk);
    let first_row = select(0u, params.span_start, is_causal());
    let w = work_item(linear_id(wid, lid, nwg), first_row, params.rows, tiles);
    if (!w.valid) {
        return;
    }
    let row = w.head * params.rows + w.pos;
    let head_start = w.head * params.rows;
    let row_end = select(params.rows, w.pos + 1u, is_causal());
    let lo = params.span_start;
    let hi = min(params.span_end, row_end);

    var acc: array<f32, 64>;
    var acc_lo: array<f32, 64>;
    if (lo > 0u) {
        acc = load_tile(row, w.tile, params.d_qk);
    }
    for (var b0 = lo; b0 < hi; b0 += KEY_BLOCK) {
        var block: array<f32, 64>;
        for (var j = 0u; j < KEY_BLOCK; j++) {
            let b = head_start + min(b0 + j, hi - 1u);
            let ds = select(0.0, score_grad(row, b, prob(row, b)), b0 + j < hi);
            for (var c = 0u; c < COL_TILE; c++) {
                block[c] += ds * k[b * params.d_qk + tile_col(w.tile, c, params.d_qk)];
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(row, w.tile, params.d_qk, &acc,
               select(1.0, params.logit_scale, hi == row_end));
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
            let ds = select(0.0, score_grad(a, key, prob(a, key)), a0 + j < span.hi);
            for (var c = 0u; c < COL_TILE; c++) {
                block[c] += ds * q[a * params.d_qk + tile_col(w.tile, c, params.d_qk)];
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
            let p = select(0.0, prob(a, key), a0 + j < span.hi);
            for (var c = 0u; c < COL_TILE; c++) {
                block[c] += p * d_o[a * params.d_v + tile_col(w.tile, c, params.d_v)];
            }
        }
        fold_block(&acc, &acc_lo, &block);
    }
    resolve(&acc, &acc_lo);
    store_tile(key, w.tile, params.d_v, &acc, 1.0);
}
