// Polynomial-method attention, forward and backward, in time linear in the sequence length.
//
// Per head, with raw rows q_a, k_b, v_b and the feature map phi (shared/DESIGN.md §2):
//   phi(q_a) . phi(k_b) = P_g(s_ab),  s_ab = q_a . k_b / sqrt(d_qk)
// The host folds the 1/d_qk^(1/4) scaling of each side into the monomial coefficients, so the
// features here are computed from raw q and k rows and their J^T gives dq and dk directly.
//
// Forward (entry points in this order):
//   chunk_states     S_c = sum_{b in chunk c} phi(k_b) [v_b, 1]^T         (k x (d_v + 1))
//   scan_states      causal: exclusive prefix over chunks; full: the total into slot 0
//   attention_forward  o_a = (S^T phi(q_a) + intra) / Z_a, and Z_a saved in row_terms
// Backward:
//   row_delta        delta_a = dO_a . o_a
//   chunk_states     R_c = sum_{a in chunk c} phi(q_a) [dO_a / Z_a, delta_a / Z_a]^T  (mode 1)
//   scan_states      causal: exclusive suffix over chunks (mode 1); full: the total
//   query_grad       dq_a = J_phi(q_a)^T (S dO_a - z delta_a) / Z_a + intra
//   key_grad         dk_b = J_phi(k_b)^T (R v_b - r) + intra
//   value_grad       dv_b = R^T phi(k_b) + intra
// "intra" is the causal diagonal block: the keys of a row's own chunk, computed from the dot
// products with P_g (and P_{g-1} for gradients), never through phi.
// Plus the feature map on its own: phi_forward (phi of rows) and phi_backward (J_phi^T).
//
// Every reduction runs in a fixed order in one invocation: no atomics, so results are
// bit-identical from run to run.
//
// Loops: llvmpipe/lavapipe ends every loop of an invocation once the invocation has run 65535
// loop iterations in total (all loops together), silently. Loops with a constant trip count
// (DEGREE, TILE_V) are unrolled and do not count; the host refuses shapes whose remaining
// loops could reach that limit on such an adapter (PolyAttention::loop_iterations).

override WORKGROUP: u32 = 64u;
// Features per partial sum in attention_forward and value_grad.
const FEATURE_BLOCK: u32 = 64u;
// The degree g of P_g, constant so that every loop over a monomial's variables unrolls.
override DEGREE: u32 = 2u;

// Widest q/k row the private row arrays hold; the host refuses wider. Row arrays have one more
// slot, ONE_SLOT, that holds 1.0: a monomial of order below DEGREE pads its variables with it.
const MAX_D: u32 = 64u;
const ONE_SLOT: u32 = 64u;
// Value columns one invocation accumulates; constant so that the loops unroll into registers.
const TILE_V: u32 = 16u;

struct Params {
    heads: u32,       // B * H independent heads
    rows: u32,        // sequence length n (phi_*: total rows)
    d_qk: u32,
    d_v: u32,
    chunk: u32,       // rows per chunk C
    n_chunks: u32,    // ceil(n / C)
    features: u32,    // feature dimension k = C(d_qk + g, g)
    degree: u32,      // g (the kernels use the DEGREE override; kept for layout)
    causal: u32,      // 1: row a sees keys b <= a
    mode: u32,        // chunk_states, scan_states: 0 forward, 1 backward
    logit_scale: f32, // 1 / sqrt(d_qk)
    _pad: u32,
}

// One monomial of phi: DEGREE variable indices packed a byte each (sorted, with repetition,
// padded with ONE_SLOT), its coefficient 1/sqrt(alpha!) * scale^|alpha|, and |alpha|.
struct Monomial {
    vars_lo: u32,
    vars_hi: u32,
    coef: f32,
    order: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> monomials: array<Monomial>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
@group(0) @binding(6) var<storage, read> d_o: array<f32>;
// Per row: [Z_a, delta_a].
@group(0) @binding(7) var<storage, read_write> row_terms: array<f32>;
// Forward states after the scan, [heads, n_chunks, features, d_v + 1].
@group(0) @binding(8) var<storage, read> states: array<f32>;
// Backward states after the scan, same layout.
@group(0) @binding(9) var<storage, read> grad_states: array<f32>;
@group(0) @binding(10) var<storage, read_write> dq: array<f32>;
@group(0) @binding(11) var<storage, read_write> dk: array<f32>;
@group(0) @binding(12) var<storage, read_write> dv: array<f32>;
// chunk_states reads rows of state_x (k forward, q backward) and state_y (v or dO).
@group(0) @binding(13) var<storage, read> state_x: array<f32>;
@group(0) @binding(14) var<storage, read> state_y: array<f32>;
@group(0) @binding(15) var<storage, read_write> chunk_states_out: array<f32>;
@group(0) @binding(16) var<storage, read_write> scanned_states: array<f32>;
@group(0) @binding(17) var<storage, read_write> features_out: array<f32>;
@group(0) @binding(18) var<storage, read> feature_grads: array<f32>;
@group(0) @binding(19) var<storage, read_write> x_grad: array<f32>;

// ---- helpers -------------------------------------------------------------------------------

// The invocation's index in a 2-D grid of workgroups laid out row by row.
fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

fn monomial_var(m: Monomial, j: u32) -> u32 {
    let word = select(m.vars_lo, m.vars_hi, j >= 4u);
    return (word >> ((j & 3u) * 8u)) & 0xffu;
}

// phi_m(x) for a row held in a private array (x[ONE_SLOT] = 1).
fn feature(m: Monomial, x: ptr<function, array<f32, 65>>) -> f32 {
    var p = m.coef;
    for (var j = 0u; j < DEGREE; j++) {
        p *= (*x)[monomial_var(m, j)];
    }
    return p;
}

// dx += g * d phi_m / dx: one term per variable occurrence, the product of the others.
// Padding slots add into dx[ONE_SLOT], which nobody reads.
fn add_feature_grad(m: Monomial, x: ptr<function, array<f32, 65>>, g: f32,
                    dx: ptr<function, array<f32, 65>>) {
    for (var j = 0u; j < DEGREE; j++) {
        var p = m.coef * g;
        for (var i = 0u; i < DEGREE; i++) {
            if (i != j) {
                p *= (*x)[monomial_var(m, i)];
            }
        }
        let var_j = monomial_var(m, j);
        (*dx)[var_j] += p;
    }
}

// phi_m of row `row` of state_x, read straight from storage (only DEGREE loads).
fn state_row_feature(m: Monomial, row: u32) -> f32 {
    var p = m.coef;
    for (var j = 0u; j < DEGREE; j++) {
        let var_j = monomial_var(m, j);
        let value = state_x[row * params.d_qk + min(var_j, params.d_qk - 1u)];
        p *= select(value, 1.0, var_j == ONE_SLOT);
    }
    return p;
}

// P_g(s) = sum_{i<=g} s^i / i!, Horner form.
// Called with DEGREE or DEGREE - 1 only, so the loop has a constant trip count.
fn taylor_exp(s: f32, degree: u32) -> f32 {
    var acc = 1.0;
    for (var i = 0u; i < degree; i++) {
        acc = 1.0 + acc * s / f32(degree - i);
    }
    return acc;
}

fn load_q_row(row: u32) -> array<f32, 65> {
    var x: array<f32, 65>;
    x[ONE_SLOT] = 1.0;
    for (var i = 0u; i < params.d_qk; i++) {
        x[i] = q[row * params.d_qk + i];
    }
    return x;
}

fn load_k_row(row: u32) -> array<f32, 65> {
    var x: array<f32, 65>;
    x[ONE_SLOT] = 1.0;
    for (var i = 0u; i < params.d_qk; i++) {
        x[i] = k[row * params.d_qk + i];
    }
    return x;
}

fn dot_k(x: ptr<function, array<f32, 65>>, row: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < params.d_qk; i++) {
        s += (*x)[i] * k[row * params.d_qk + i];
    }
    return s;
}

fn dot_q(x: ptr<function, array<f32, 65>>, row: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < params.d_qk; i++) {
        s += (*x)[i] * q[row * params.d_qk + i];
    }
    return s;
}

fn dot_do_v(do_row: u32, v_row: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < params.d_v; j++) {
        s += d_o[do_row * params.d_v + j] * v[v_row * params.d_v + j];
    }
    return s;
}

// Column tile of the value columns: a clamped column index keeps loads in bounds, so the
// tile loops have a constant trip count; stores check `j < width`.
fn clamp_col(tile: u32, jj: u32, width: u32) -> u32 {
    return min(tile * TILE_V + jj, width - 1u);
}

// State slot a row reads: its chunk's (causal) or the total in slot 0.
fn state_base(h: u32, row: u32) -> u32 {
    let slot = select(0u, row / params.chunk, params.causal == 1u);
    return (h * params.n_chunks + slot) * params.features * (params.d_v + 1u);
}

// ---- forward -------------------------------------------------------------------------------

// One invocation per (head, chunk, column tile, feature): the chunk's sum of phi_f(x_b) y_b.
@compute @workgroup_size(WORKGROUP)
fn chunk_states(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let cols = params.d_v + 1u;
    let col_tiles = (cols + TILE_V - 1u) / TILE_V;
    let id = linear_id(wid, lid, nwg);
    let f = id % params.features;
    var rest = id / params.features;
    let tile = rest % col_tiles;
    rest = rest / col_tiles;
    let c = rest % params.n_chunks;
    let h = rest / params.n_chunks;
    if (h >= params.heads) {
        return;
    }
    let m = monomials[f];
    var acc: array<f32, TILE_V>;
    let first = c * params.chunk;
    let end = min(first + params.chunk, params.rows);
    for (var b = first; b < end; b++) {
        let row = h * params.rows + b;
        let p = state_row_feature(m, row);
        // Forward: [v_b, 1]. Backward: [dO_b, delta_b] / Z_b.
        var y_scale = 1.0;
        var last = 1.0;
        if (params.mode == 1u) {
            y_scale = 1.0 / row_terms[2u * row];
            last = row_terms[2u * row + 1u] * y_scale;
        }
        for (var jj = 0u; jj < TILE_V; jj++) {
            let j = clamp_col(tile, jj, cols);
            let y = select(state_y[row * params.d_v + min(j, params.d_v - 1u)] * y_scale,
                           last, j == params.d_v);
            acc[jj] += p * y;
        }
    }
    let base = ((h * params.n_chunks + c) * params.features + f) * cols;
    for (var jj = 0u; jj < TILE_V; jj++) {
        let j = tile * TILE_V + jj;
        if (j < cols) {
            chunk_states_out[base + j] = acc[jj];
        }
    }
}

// One invocation per (head, state element): causal forward turns chunk sums into exclusive
// prefix sums, causal backward into exclusive suffix sums; full attention sums every chunk
// into slot 0. Chunks are visited in a fixed order.
@compute @workgroup_size(WORKGROUP)
fn scan_states(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_slot = params.features * (params.d_v + 1u);
    let id = linear_id(wid, lid, nwg);
    let h = id / per_slot;
    if (h >= params.heads) {
        return;
    }
    let base = h * params.n_chunks * per_slot + id % per_slot;
    var run = 0.0;
    if (params.causal == 0u) {
        for (var c = 0u; c < params.n_chunks; c++) {
            run += scanned_states[base + c * per_slot];
        }
        scanned_states[base] = run;
    } else if (params.mode == 0u) {
        for (var c = 0u; c < params.n_chunks; c++) {
            let here = scanned_states[base + c * per_slot];
            scanned_states[base + c * per_slot] = run;
            run += here;
        }
    } else {
        for (var c = params.n_chunks; c > 0u; c--) {
            let here = scanned_states[base + (c - 1u) * per_slot];
            scanned_states[base + (c - 1u) * per_slot] = run;
            run += here;
        }
    }
}

// One invocation per (head, column tile, query row).
@compute @workgroup_size(WORKGROUP)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let col_tiles = (params.d_v + TILE_V - 1u) / TILE_V;
    let id = linear_id(wid, lid, nwg);
    let a = id % params.rows;
    let tile = (id / params.rows) % col_tiles;
    let h = id / (params.rows * col_tiles);
    if (h >= params.heads) {
        return;
    }
    let row = h * params.rows + a;
    var x = load_q_row(row);
    var acc: array<f32, TILE_V>;
    var norm = 0.0;
    let cols = params.d_v + 1u;
    let sb = state_base(h, a);
    // Two-level sums over the features (blocks of FEATURE_BLOCK, then the block sums): with
    // thousands of features (g = 4) a plain f32 sum lost up to 1e-5 relative at d_v = 1.
    var f = 0u;
    while (f < params.features) {
        let block_end = min(f + FEATURE_BLOCK, params.features);
        var part: array<f32, TILE_V>;
        var part_norm = 0.0;
        while (f < block_end) {
            let p = feature(monomials[f], &x);
            let s_row = sb + f * cols;
            part_norm += p * states[s_row + params.d_v];
            for (var jj = 0u; jj < TILE_V; jj++) {
                part[jj] += p * states[s_row + clamp_col(tile, jj, params.d_v)];
            }
            f++;
        }
        norm += part_norm;
        for (var jj = 0u; jj < TILE_V; jj++) {
            acc[jj] += part[jj];
        }
    }
    if (params.causal == 1u) {
        let first = (a / params.chunk) * params.chunk;
        for (var b = first; b <= a; b++) {
            let key = h * params.rows + b;
            let w = taylor_exp(dot_k(&x, key) * params.logit_scale, DEGREE);
            norm += w;
            for (var jj = 0u; jj < TILE_V; jj++) {
                acc[jj] += w * v[key * params.d_v + clamp_col(tile, jj, params.d_v)];
            }
        }
    }
    for (var jj = 0u; jj < TILE_V; jj++) {
        let j = tile * TILE_V + jj;
        if (j < params.d_v) {
            o[row * params.d_v + j] = acc[jj] / norm;
        }
    }
    if (tile == 0u) {
        row_terms[2u * row] = norm;
    }
}

// ---- backward ------------------------------------------------------------------------------

// One invocation per row: delta_a = dO_a . o_a.
@compute @workgroup_size(WORKGROUP)
fn row_delta(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    var delta = 0.0;
    for (var j = 0u; j < params.d_v; j++) {
        delta += d_o[row * params.d_v + j] * o[row * params.d_v + j];
    }
    row_terms[2u * row + 1u] = delta;
}

// One invocation per query row:
// dq_a = J_phi(q_a)^T (S dO_a - z delta_a) / Z_a + sum_{b in chunk, b <= a} ds_ab k_b / sqrt(d).
@compute @workgroup_size(WORKGROUP)
fn query_grad(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let h = row / params.rows;
    let a = row % params.rows;
    var x = load_q_row(row);
    var dx: array<f32, 65>;
    let inv_z = 1.0 / row_terms[2u * row];
    let delta = row_terms[2u * row + 1u];
    let cols = params.d_v + 1u;
    let col_tiles = (params.d_v + TILE_V - 1u) / TILE_V;
    let sb = state_base(h, a);
    for (var f = 0u; f < params.features; f++) {
        let s_row = sb + f * cols;
        var s_do = 0.0;
        for (var tile = 0u; tile < col_tiles; tile++) {
            for (var jj = 0u; jj < TILE_V; jj++) {
                let j = clamp_col(tile, jj, params.d_v);
                let term = states[s_row + j] * d_o[row * params.d_v + j];
                s_do += select(0.0, term, tile * TILE_V + jj < params.d_v);
            }
        }
        let g = (s_do - states[s_row + params.d_v] * delta) * inv_z;
        add_feature_grad(monomials[f], &x, g, &dx);
    }
    if (params.causal == 1u) {
        let first = (a / params.chunk) * params.chunk;
        for (var b = first; b <= a; b++) {
            let key = h * params.rows + b;
            let s = dot_k(&x, key) * params.logit_scale;
            let ds = (dot_do_v(row, key) - delta) * inv_z * taylor_exp(s, DEGREE - 1u);
            for (var i = 0u; i < params.d_qk; i++) {
                dx[i] += ds * params.logit_scale * k[key * params.d_qk + i];
            }
        }
    }
    for (var i = 0u; i < params.d_qk; i++) {
        dq[row * params.d_qk + i] = dx[i];
    }
}

// One invocation per key row:
// dk_b = J_phi(k_b)^T (R v_b - r) + sum_{a in chunk, a >= b} ds_ab q_a / sqrt(d).
@compute @workgroup_size(WORKGROUP)
fn key_grad(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let h = row / params.rows;
    let b = row % params.rows;
    var x = load_k_row(row);
    var dx: array<f32, 65>;
    let cols = params.d_v + 1u;
    let col_tiles = (params.d_v + TILE_V - 1u) / TILE_V;
    let sb = state_base(h, b);
    for (var f = 0u; f < params.features; f++) {
        let s_row = sb + f * cols;
        var r_v = 0.0;
        for (var tile = 0u; tile < col_tiles; tile++) {
            for (var jj = 0u; jj < TILE_V; jj++) {
                let j = clamp_col(tile, jj, params.d_v);
                let term = grad_states[s_row + j] * v[row * params.d_v + j];
                r_v += select(0.0, term, tile * TILE_V + jj < params.d_v);
            }
        }
        add_feature_grad(monomials[f], &x, r_v - grad_states[s_row + params.d_v], &dx);
    }
    if (params.causal == 1u) {
        let end = min((b / params.chunk + 1u) * params.chunk, params.rows);
        for (var a = b; a < end; a++) {
            let query = h * params.rows + a;
            let s = dot_q(&x, query) * params.logit_scale;
            let inv_z = 1.0 / row_terms[2u * query];
            let delta = row_terms[2u * query + 1u];
            let ds = (dot_do_v(query, row) - delta) * inv_z * taylor_exp(s, DEGREE - 1u);
            for (var i = 0u; i < params.d_qk; i++) {
                dx[i] += ds * params.logit_scale * q[query * params.d_qk + i];
            }
        }
    }
    for (var i = 0u; i < params.d_qk; i++) {
        dk[row * params.d_qk + i] = dx[i];
    }
}

// One invocation per (head, column tile, key row):
// dv_b = R^T phi(k_b) + sum_{a in chunk, a >= b} P_g(s_ab) / Z_a dO_a.
@compute @workgroup_size(WORKGROUP)
fn value_grad(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let col_tiles = (params.d_v + TILE_V - 1u) / TILE_V;
    let id = linear_id(wid, lid, nwg);
    let b = id % params.rows;
    let tile = (id / params.rows) % col_tiles;
    let h = id / (params.rows * col_tiles);
    if (h >= params.heads) {
        return;
    }
    let row = h * params.rows + b;
    var x = load_k_row(row);
    var acc: array<f32, TILE_V>;
    let cols = params.d_v + 1u;
    let sb = state_base(h, b);
    // Two-level sums over the features, as in attention_forward.
    var f = 0u;
    while (f < params.features) {
        let block_end = min(f + FEATURE_BLOCK, params.features);
        var part: array<f32, TILE_V>;
        while (f < block_end) {
            let p = feature(monomials[f], &x);
            let s_row = sb + f * cols;
            for (var jj = 0u; jj < TILE_V; jj++) {
                part[jj] += p * grad_states[s_row + clamp_col(tile, jj, params.d_v)];
            }
            f++;
        }
        for (var jj = 0u; jj < TILE_V; jj++) {
            acc[jj] += part[jj];
        }
    }
    if (params.causal == 1u) {
        let end = min((b / params.chunk + 1u) * params.chunk, params.rows);
        for (var a = b; a < end; a++) {
            let query = h * params.rows + a;
            let p = taylor_exp(dot_q(&x, query) * params.logit_scale, DEGREE)
                / row_terms[2u * query];
            for (var jj = 0u; jj < TILE_V; jj++) {
                acc[jj] += p * d_o[query * params.d_v + clamp_col(tile, jj, params.d_v)];
            }
        }
    }
    for (var jj = 0u; jj < TILE_V; jj++) {
        let j = tile * TILE_V + jj;
        if (j < params.d_v) {
            dv[row * params.d_v + j] = acc[jj];
        }
    }
}

// ---- the feature map on its own ------------------------------------------------------------

// One invocation per (row, feature): features_out[row, f] = phi_f(state_x[row]).
@compute @workgroup_size(WORKGROUP)
fn phi_forward(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(wid, lid, nwg);
    if (id >= params.rows * params.features) {
        return;
    }
    let f = id % params.features;
    features_out[id] = state_row_feature(monomials[f], id / params.features);
}

// One invocation per row: x_grad[row] = J_phi(state_x[row])^T feature_grads[row].
@compute @workgroup_size(WORKGROUP)
fn phi_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.rows) {
        return;
    }
    var x: array<f32, 65>;
    x[ONE_SLOT] = 1.0;
    for (var i = 0u; i < params.d_qk; i++) {
        x[i] = state_x[row * params.d_qk + i];
    }
    var dx: array<f32, 65>;
    for (var f = 0u; f < params.features; f++) {
        add_feature_grad(monomials[f], &x, feature_grads[row * params.features + f], &dx);
    }
    for (var i = 0u; i < params.d_qk; i++) {
        x_grad[row * params.d_qk + i] = dx[i];
    }
}
