// Polynomial-method attention as chunk-level matrix products: the elementwise and per-row
// kernels around the products, which run on the matrix-product core (matmul.wgsl).
//
// Per head, with raw rows q_a, k_b, v_b and the feature map phi (shared/DESIGN.md §2):
//   phi(q_a) . phi(k_b) = P_g(s_ab),  s_ab = q_a . k_b / sqrt(d_qk)
// The host folds the 1/d_qk^(1/4) scaling of each side into the monomial coefficients, so the
// features here are computed from raw q and k rows and their J^T gives dq and dk directly.
//
// The sequence is cut into chunks of C rows and padded with zero rows to a whole number of
// chunks; widths are padded with zero columns to multiples of 4 so that the products load vec4s.
// Phi = phi(K), V' = [V, 1] (the ones column carries the normaliser), G = [dO / Z, -delta / Z].
// Chunk states are kept transposed (S_c^T, [v_width, k_pad] per chunk), so that every product
// runs on rows as they lie or on V' and G chunk-transposed.
// Forward (products marked *):
//   phi_rows        Phi(Q), Phi(K)                                  [heads, n_pad, k_pad]
//   copy_rows       V' (and Q, K padded for the diagonal blocks)
//   * S_c^T = V'_c^T Phi(K_c);  scan_states: exclusive prefix over chunks (causal)
//   * O'_c = Phi(Q_c) S_<c
//   * scores_c = Q_c K_c^T;  taylor_weights: P_g(s) on and below the diagonal, else 0
//   * O'_c += P_c V'_c;  normalise: o = O'[:, :d_v] / O'[:, d_v], Z = O'[:, d_v]
// Backward:
//   grad_rows       G
//   * R_c^T = G_c^T Phi(Q_c);  scan_states: exclusive suffix over chunks (causal)
//   * dW_c = G_c V'_c^T (scores kept from the forward);  taylor_grads: P_c^T and
//     dS = dW P_{g-1}(s) masked
//   * dQ' = dS K_c / sqrt(d), dK' = dS^T Q_c / sqrt(d), dV' = (P_c^T) G_c
//   * dPhi(Q_c) = G_c S_<c^T;  phi_grad_rows: dq = J_phi(q)^T dPhi(Q) + dQ'
//   * dPhi(K_c) = V'_c R_>c^T; phi_grad_rows: dk = J_phi(k)^T dPhi(K) + dK'
//   * dV' += Phi(K_c) R_>c;    copy_rows: dv = dV'[:, :d_v]
// Full (non-causal) attention is one chunk of every row, its own state, no diagonal blocks.
// The feature map on its own (FeatureMap) uses phi_rows and phi_grad_rows without padding.
//
// Every sum runs in a fixed order in one invocation: no atomics, so results are bit-identical
// from run to run.
//
// Loops: llvmpipe/lavapipe ends every loop of an invocation once the invocation has run 65535
// loop iterations in total (all loops together), silently. Loops with a constant trip count
// (DEGREE) are unrolled and do not count; the host refuses shapes whose remaining loops could
// reach that limit on such an adapter (PolyAttention::loop_iterations).

override WORKGROUP: u32 = 64u;
// The degree g of P_g, constant so that every loop over a monomial's variables unrolls.
override DEGREE: u32 = 2u;

// Widest q/k row the private row arrays hold (the host's MAX_D_QK, which it writes here as a
// source constant and refuses wider rows against). Row arrays have one more slot, ONE_SLOT,
// that holds 1.0: a monomial of order below DEGREE pads its variables with it.
const ONE_SLOT: u32 = 64u;

// flags: phi_grad_rows adds `addend`; scan_states runs a suffix instead of a prefix.
const ADD_ADDEND: u32 = 1u;
const SUFFIX: u32 = 2u;

struct Params {
    heads: u32,        // independent heads (B * H)
    rows: u32,         // rows of the unpadded tensors (n)
    rows_pad: u32,     // rows of the padded tensors (a whole number of chunks)
    d_qk: u32,
    width_in: u32,     // copy_rows: source width; normalise: O' width; scan: state size
    width_out: u32,    // copy_rows: destination width; grad_rows: G width; addend width
    features: u32,     // feature dimension k = C(d_qk + g, g)
    features_pad: u32, // k rounded up to a multiple of 4 (the Phi row stride)
    d_v: u32,
    chunk: u32,        // rows per chunk C
    n_chunks: u32,
    flags: u32,
    ones_col: u32,     // copy_rows: the destination column set to 1 on real rows, or none
    logit_scale: f32,  // 1 / sqrt(d_qk)
    _pad0: u32,
    _pad1: u32,
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
// Rows the kernel reads: q or k (phi_*), a tensor to copy, O' (normalise), o (grad_rows),
// the scores (taylor_grads).
@group(0) @binding(2) var<storage, read> x: array<f32>;
// Second input: dL/dphi (phi_grad_rows), dO (grad_rows).
@group(0) @binding(3) var<storage, read> y: array<f32>;
// phi_grad_rows: dQ' or dK' added to J^T; grad_rows and normalise: Z.
@group(0) @binding(4) var<storage, read> addend: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// normalise: Z per row. taylor_weights: P; taylor_grads: P^T per block.
@group(0) @binding(6) var<storage, read_write> aux: array<f32>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

fn monomial_var(m: Monomial, j: u32) -> u32 {
    let word = select(m.vars_lo, m.vars_hi, j >= 4u);
    return (word >> ((j & 3u) * 8u)) & 0xffu;
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

// Where element (head h, padded row r, column j) of a [heads, rows_pad, width] tensor lies in
// its chunk-transposed copy [heads * n_chunks, width, chunk]: each chunk's block transposed, so
// that the chunk products that sum over a chunk's rows (V'_c^T Phi(K_c), G_c^T Phi(Q_c),
// P_c V'_c) read V' and G with dense rows (windows-direct-16x4).
fn chunk_transposed(h: u32, r: u32, j: u32, width: u32) -> u32 {
    let c = r / params.chunk;
    return ((h * params.n_chunks + c) * width + j) * params.chunk + r % params.chunk;
}

// (head, padded row, column) of element `id` of a [heads, rows_pad, width] tensor; the head is
// at least params.heads past its end.
fn row_element(id: u32, width: u32) -> vec3<u32> {
    let row = id / width;
    return vec3<u32>(row / params.rows_pad, row % params.rows_pad, id % width);
}

// ---- the feature map -----------------------------------------------------------------------

// phi_f of padded row r of head h of x [heads, rows, d_qk]; zero on padding rows and columns.
fn phi_at(h: u32, r: u32, f: u32) -> f32 {
    var p = 0.0;
    if (r < params.rows && f < params.features) {
        let m = monomials[f];
        let base = (h * params.rows + r) * params.d_qk;
        p = m.coef;
        for (var j = 0u; j < DEGREE; j++) {
            let var_j = monomial_var(m, j);
            let value = x[base + min(var_j, params.d_qk - 1u)];
            p *= select(value, 1.0, var_j == ONE_SLOT);
        }
    }
    return p;
}

// One invocation per (head, padded row, padded feature): phi into out [heads, rows_pad,
// features_pad].
@compute @workgroup_size(WORKGROUP)
fn phi_rows(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(wid, lid, nwg);
    let e = row_element(id, params.features_pad);
    if (e.x >= params.heads) {
        return;
    }
    out[id] = phi_at(e.x, e.y, e.z);
}

// One invocation per (head, row): out[row] = J_phi(x_row)^T y[row] (+ addend[row]), where y is
// dL/dphi [heads, rows_pad, features_pad] and addend [heads, rows_pad, width_out].
@compute @workgroup_size(WORKGROUP)
fn phi_grad_rows(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let padded_row = (row / params.rows) * params.rows_pad + row % params.rows;
    var xs: array<f32, ONE_SLOT + 1u>;
    xs[ONE_SLOT] = 1.0;
    for (var i = 0u; i < params.d_qk; i++) {
        xs[i] = x[row * params.d_qk + i];
    }
    // Padding slots add into dx[ONE_SLOT], which nobody reads.
    var dx: array<f32, ONE_SLOT + 1u>;
    let grads = padded_row * params.features_pad;
    for (var f = 0u; f < params.features; f++) {
        let m = monomials[f];
        let g = m.coef * y[grads + f];
        // One term per variable occurrence: the product of the others.
        for (var j = 0u; j < DEGREE; j++) {
            var p = g;
            for (var i = 0u; i < DEGREE; i++) {
                if (i != j) {
                    p *= xs[monomial_var(m, i)];
                }
            }
            let var_j = monomial_var(m, j);
            dx[var_j] += p;
        }
    }
    let add = (params.flags & ADD_ADDEND) != 0u;
    for (var i = 0u; i < params.d_qk; i++) {
        var value = dx[i];
        if (add) {
            value += addend[padded_row * params.width_out + i];
        }
        out[row * params.d_qk + i] = value;
    }
}

// ---- the feature map at degree 2, by pairs --------------------------------------------------
// At DEGREE 2 the features are 1, x_k, then x_i x_j for i <= j in lexicographic order
// (poly::monomials), so they can be walked as pairs without the table: phi_at's table entry
// and two loads of x per feature (llvmpipe loads storage lane by lane, at about 56 core-ns per
// 8-lane f32, a store costs 72) become a row of x loaded once. Every product is formed in
// phi_at's order, so the results are phi_rows' bit for bit.

// The coefficients at DEGREE 2, from the table (each is shared by its whole kind of feature):
// of x_k (feature 1), of x_i^2 (the first pair, x_0^2) and of x_i x_j, i < j (the second pair,
// x_0 x_1; with d = 1 there is none, and the first pair's stands in unused).
fn pair_coefficients() -> vec3<f32> {
    let first_pair = 1u + params.d_qk;
    return vec3<f32>(monomials[1u].coef, monomials[first_pair].coef,
                     monomials[min(first_pair + 1u, params.features - 1u)].coef);
}

// phi_rows at DEGREE 2: one invocation per (head, padded row); zero on padding rows and columns.
@compute @workgroup_size(WORKGROUP)
fn phi_pairs(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let padded_row = linear_id(wid, lid, nwg);
    let h = padded_row / params.rows_pad;
    if (h >= params.heads) {
        return;
    }
    let r = padded_row % params.rows_pad;
    let real = r < params.rows;
    let d = params.d_qk;
    var xs: array<f32, ONE_SLOT + 1u>;
    if (real) {
        for (var i = 0u; i < d; i++) {
            xs[i] = x[(h * params.rows + r) * d + i];
        }
    }
    let coef = pair_coefficients();
    let base = padded_row * params.features_pad;
    out[base] = select(0.0, 1.0, real);
    for (var i = 0u; i < d; i++) {
        out[base + 1u + i] = coef.x * xs[i] * 1.0;
    }
    var f = base + 1u + d;
    for (var i = 0u; i < d; i++) {
        let x_i = xs[i];
        for (var j = i; j < d; j++) {
            out[f] = select(coef.z, coef.y, j == i) * x_i * xs[j];
            f++;
        }
    }
    for (var p = params.features; p < params.features_pad; p++) {
        out[base + p] = 0.0;
    }
}

// phi_grad_rows at DEGREE 2: the same sums in the same order (every x_k's feature, then the
// pairs x_i x_j in order), with the features walked as pairs, so that a feature costs one load
// of dL/dphi instead of a table entry as well (the coefficients of x_k, x_i^2 and x_i x_j, i < j,
// are one each). (An invocation per (variable, row) instead, loading x as it goes, measured 1.6x
// slower than phi_grad_rows: it loads dL/dphi d times over.)
@compute @workgroup_size(WORKGROUP)
fn phi_grad_pairs(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let d = params.d_qk;
    let padded_row = (row / params.rows) * params.rows_pad + row % params.rows;
    var xs: array<f32, ONE_SLOT + 1u>;
    for (var i = 0u; i < d; i++) {
        xs[i] = x[row * d + i];
    }
    let grads = padded_row * params.features_pad;
    let coef = pair_coefficients();
    var dx: array<f32, ONE_SLOT + 1u>;
    for (var i = 0u; i < d; i++) {
        dx[i] += coef.x * y[grads + 1u + i] * 1.0;
    }
    var f = 1u + d;
    for (var i = 0u; i < d; i++) {
        let x_i = xs[i];
        for (var j = i; j < d; j++) {
            let g = select(coef.z, coef.y, j == i) * y[grads + f];
            dx[i] += g * xs[j];
            dx[j] += g * x_i;
            f++;
        }
    }
    let add = (params.flags & ADD_ADDEND) != 0u;
    for (var i = 0u; i < d; i++) {
        var value = dx[i];
        if (add) {
            value += addend[padded_row * params.width_out + i];
        }
        out[row * d + i] = value;
    }
}

// ---- layout ----------------------------------------------------------------------------------
// The per-row kernels below run one invocation per row and loop over its columns: an
// invocation per element spent most of its time on the integer divisions that find its row
// (llvmpipe divides lane by lane).

// One invocation per (head, padded row) of out [heads, rows_pad, width_out]: x [heads, rows,
// width_in] copied in, zero beyond the source, and 1 in column ones_col of every source row.
@compute @workgroup_size(WORKGROUP)
fn copy_rows(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let padded_row = linear_id(wid, lid, nwg);
    let h = padded_row / params.rows_pad;
    if (h >= params.heads) {
        return;
    }
    let r = padded_row % params.rows_pad;
    let base = padded_row * params.width_out;
    for (var j = 0u; j < params.width_out; j++) {
        out[base + j] = copied_at(h, r, j);
    }
}

// Element (h, r, j) of copy_rows's destination.
fn copied_at(h: u32, r: u32, j: u32) -> f32 {
    var value = 0.0;
    if (r < params.rows) {
        if (j < params.width_in) {
            value = x[(h * params.rows + r) * params.width_in + j];
        } else if (j == params.ones_col) {
            value = 1.0;
        }
    }
    return value;
}

// copy_rows that also writes the chunk-transposed copy into aux (column j of the row at
// chunk_transposed(h, r, 0, width) + j * chunk).
@compute @workgroup_size(WORKGROUP)
fn copy_rows_transposed_too(@builtin(workgroup_id) wid: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let padded_row = linear_id(wid, lid, nwg);
    let h = padded_row / params.rows_pad;
    if (h >= params.heads) {
        return;
    }
    let r = padded_row % params.rows_pad;
    let base = padded_row * params.width_out;
    let transposed = chunk_transposed(h, r, 0u, params.width_out);
    for (var j = 0u; j < params.width_out; j++) {
        let value = copied_at(h, r, j);
        out[base + j] = value;
        aux[transposed + j * params.chunk] = value;
    }
}

// ---- the diagonal blocks ---------------------------------------------------------------------

// One invocation per row of a block (the blocks' rows one after the other), looping over its
// columns: an invocation per element spent most of its time on the divisions that place it.

// One invocation per block row a of the scores x [heads * n_chunks, C, C]: P_g(s / sqrt(d))
// on and below the diagonal (b <= a), 0 above, into aux (the scores are kept for the backward).
@compute @workgroup_size(WORKGROUP)
fn taylor_weights(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let block_row = linear_id(wid, lid, nwg);
    if (block_row >= params.heads * params.n_chunks * params.chunk) {
        return;
    }
    let a = block_row % params.chunk;
    let row = block_row * params.chunk;
    for (var b = 0u; b < params.chunk; b++) {
        let w = taylor_exp(x[row + b] * params.logit_scale, DEGREE);
        aux[row + b] = select(0.0, w, b <= a);
    }
}

// One invocation per block row a: with dW = dL/dP in out and the scores in x, writes
// dL/ds = dW P_{g-1}(s) into out and P_g(s) into aux with each block transposed (P_c^T, so that
// dV'_c = P_c^T G_c is a product with dense rows, C = A B), both masked.
@compute @workgroup_size(WORKGROUP)
fn taylor_grads(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let block_row = linear_id(wid, lid, nwg);
    if (block_row >= params.heads * params.n_chunks * params.chunk) {
        return;
    }
    let a = block_row % params.chunk;
    let row = block_row * params.chunk;
    // Element (b, a) of the block, where P_c^T's row b holds P_c's column.
    let column = row - a * params.chunk + a;
    for (var b = 0u; b < params.chunk; b++) {
        let s = x[row + b] * params.logit_scale;
        let keep = b <= a;
        out[row + b] = select(0.0, out[row + b] * taylor_exp(s, DEGREE - 1u), keep);
        aux[column + b * params.chunk] = select(0.0, taylor_exp(s, DEGREE), keep);
    }
}

// ---- per row ---------------------------------------------------------------------------------

// One invocation per (head, row): o = O'[:, :d_v] / O'[:, d_v] from x = O' [heads, rows_pad,
// width_in]; Z = O'[:, d_v] into aux [heads, rows].
@compute @workgroup_size(WORKGROUP)
fn normalise(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let padded = ((row / params.rows) * params.rows_pad + row % params.rows) * params.width_in;
    let z = x[padded + params.d_v];
    for (var j = 0u; j < params.d_v; j++) {
        out[row * params.d_v + j] = x[padded + j] / z;
    }
    aux[row] = z;
}

// One invocation per (head, padded row): G = [dO / Z, -delta / Z] with delta = dO . o, from
// x = o, y = dO [heads, rows, d_v] and addend = Z; zero on padding rows and columns.
// Also writes the chunk-transposed copy of G into aux (G^T_c, read by R_c = Phi(Q_c)^T G_c).
@compute @workgroup_size(WORKGROUP)
fn grad_rows(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let padded_row = linear_id(wid, lid, nwg);
    let h = padded_row / params.rows_pad;
    if (h >= params.heads) {
        return;
    }
    let r = padded_row % params.rows_pad;
    let base = padded_row * params.width_out;
    let width = params.width_out;
    if (r >= params.rows) {
        for (var j = 0u; j < width; j++) {
            out[base + j] = 0.0;
            aux[chunk_transposed(h, r, j, width)] = 0.0;
        }
        return;
    }
    let row = h * params.rows + r;
    let inv_z = 1.0 / addend[row];
    var delta = 0.0;
    for (var j = 0u; j < params.d_v; j++) {
        let d_o = y[row * params.d_v + j];
        delta += d_o * x[row * params.d_v + j];
        out[base + j] = d_o * inv_z;
        aux[chunk_transposed(h, r, j, width)] = d_o * inv_z;
    }
    out[base + params.d_v] = -delta * inv_z;
    aux[chunk_transposed(h, r, params.d_v, width)] = -delta * inv_z;
    for (var j = params.d_v + 1u; j < width; j++) {
        out[base + j] = 0.0;
        aux[chunk_transposed(h, r, j, width)] = 0.0;
    }
}

// ---- states ----------------------------------------------------------------------------------

// The chunk states as vec4s: a second binding of scan_states's buffer. llvmpipe stores a vec4
// at 1.1-2x the cost of an f32, for four floats (and loads one as fast as four f32s;
// BENCHMARKS.md), so the scan runs on vec4s.
@group(0) @binding(7) var<storage, read_write> states4: array<vec4<f32>>;

// One invocation per (head, vec4 of a chunk's state) of states4 [heads, n_chunks, width_in / 4]
// (width_in a multiple of 4): chunk sums into exclusive prefix sums (forward) or exclusive
// suffix sums (SUFFIX, backward), in chunk order.
@compute @workgroup_size(WORKGROUP)
fn scan_states(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_slot = params.width_in / 4u;
    let id = linear_id(wid, lid, nwg);
    let h = id / per_slot;
    if (h >= params.heads) {
        return;
    }
    let base = h * params.n_chunks * per_slot + id % per_slot;
    var run = vec4<f32>(0.0);
    if ((params.flags & SUFFIX) == 0u) {
        for (var c = 0u; c < params.n_chunks; c++) {
            let here = states4[base + c * per_slot];
            states4[base + c * per_slot] = run;
            run += here;
        }
    } else {
        for (var c = params.n_chunks; c > 0u; c--) {
            let here = states4[base + (c - 1u) * per_slot];
            states4[base + (c - 1u) * per_slot] = run;
            run += here;
        }
    }
}

@group(0) @binding(8) var<storage, read> x4: array<vec4<f32>>;

// SPIKE: phi_product specialised for d_qk = 16, degree 2, 8 rows, every feature unrolled.
@compute @workgroup_size(WORKGROUP)
fn phi_product16(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let col_quads = params.width_in / 4u;
    let blocks_per_chunk = (params.chunk + 8u - 1u) / 8u;
    let id = linear_id(wid, lid, nwg);
    let jq = id % col_quads;
    let block = id / col_quads;
    let h = block / (params.n_chunks * blocks_per_chunk);
    if (h >= params.heads) {
        return;
    }
    let c = block / blocks_per_chunk % params.n_chunks;
    let first = c * params.chunk + block % blocks_per_chunk * 8u;
    let end = min(first + 8u, (c + 1u) * params.chunk);
    let coef = pair_coefficients();
    let cx = coef.x; let cy = coef.y; let cz = coef.z;
    let f_quads = params.features_pad / 4u;
    let states = (h * params.n_chunks + c) * params.width_in + 4u * jq;

    let real0 = first + 0u < min(end, params.rows);
    let row0 = select(0u, (h * params.rows + first + 0u) * 4u, real0);
    let x0_0 = select(vec4<f32>(0.0), x4[row0 + 0u], real0);
    let x0_1 = select(vec4<f32>(0.0), x4[row0 + 1u], real0);
    let x0_2 = select(vec4<f32>(0.0), x4[row0 + 2u], real0);
    let x0_3 = select(vec4<f32>(0.0), x4[row0 + 3u], real0);
    let one0 = select(0.0, 1.0, real0);
    var acc0 = vec4<f32>(0.0);
    let real1 = first + 1u < min(end, params.rows);
    let row1 = select(0u, (h * params.rows + first + 1u) * 4u, real1);
    let x1_0 = select(vec4<f32>(0.0), x4[row1 + 0u], real1);
    let x1_1 = select(vec4<f32>(0.0), x4[row1 + 1u], real1);
    let x1_2 = select(vec4<f32>(0.0), x4[row1 + 2u], real1);
    let x1_3 = select(vec4<f32>(0.0), x4[row1 + 3u], real1);
    let one1 = select(0.0, 1.0, real1);
    var acc1 = vec4<f32>(0.0);
    let real2 = first + 2u < min(end, params.rows);
    let row2 = select(0u, (h * params.rows + first + 2u) * 4u, real2);
    let x2_0 = select(vec4<f32>(0.0), x4[row2 + 0u], real2);
    let x2_1 = select(vec4<f32>(0.0), x4[row2 + 1u], real2);
    let x2_2 = select(vec4<f32>(0.0), x4[row2 + 2u], real2);
    let x2_3 = select(vec4<f32>(0.0), x4[row2 + 3u], real2);
    let one2 = select(0.0, 1.0, real2);
    var acc2 = vec4<f32>(0.0);
    let real3 = first + 3u < min(end, params.rows);
    let row3 = select(0u, (h * params.rows + first + 3u) * 4u, real3);
    let x3_0 = select(vec4<f32>(0.0), x4[row3 + 0u], real3);
    let x3_1 = select(vec4<f32>(0.0), x4[row3 + 1u], real3);
    let x3_2 = select(vec4<f32>(0.0), x4[row3 + 2u], real3);
    let x3_3 = select(vec4<f32>(0.0), x4[row3 + 3u], real3);
    let one3 = select(0.0, 1.0, real3);
    var acc3 = vec4<f32>(0.0);
    let real4 = first + 4u < min(end, params.rows);
    let row4 = select(0u, (h * params.rows + first + 4u) * 4u, real4);
    let x4_0 = select(vec4<f32>(0.0), x4[row4 + 0u], real4);
    let x4_1 = select(vec4<f32>(0.0), x4[row4 + 1u], real4);
    let x4_2 = select(vec4<f32>(0.0), x4[row4 + 2u], real4);
    let x4_3 = select(vec4<f32>(0.0), x4[row4 + 3u], real4);
    let one4 = select(0.0, 1.0, real4);
    var acc4 = vec4<f32>(0.0);
    let real5 = first + 5u < min(end, params.rows);
    let row5 = select(0u, (h * params.rows + first + 5u) * 4u, real5);
    let x5_0 = select(vec4<f32>(0.0), x4[row5 + 0u], real5);
    let x5_1 = select(vec4<f32>(0.0), x4[row5 + 1u], real5);
    let x5_2 = select(vec4<f32>(0.0), x4[row5 + 2u], real5);
    let x5_3 = select(vec4<f32>(0.0), x4[row5 + 3u], real5);
    let one5 = select(0.0, 1.0, real5);
    var acc5 = vec4<f32>(0.0);
    let real6 = first + 6u < min(end, params.rows);
    let row6 = select(0u, (h * params.rows + first + 6u) * 4u, real6);
    let x6_0 = select(vec4<f32>(0.0), x4[row6 + 0u], real6);
    let x6_1 = select(vec4<f32>(0.0), x4[row6 + 1u], real6);
    let x6_2 = select(vec4<f32>(0.0), x4[row6 + 2u], real6);
    let x6_3 = select(vec4<f32>(0.0), x4[row6 + 3u], real6);
    let one6 = select(0.0, 1.0, real6);
    var acc6 = vec4<f32>(0.0);
    let real7 = first + 7u < min(end, params.rows);
    let row7 = select(0u, (h * params.rows + first + 7u) * 4u, real7);
    let x7_0 = select(vec4<f32>(0.0), x4[row7 + 0u], real7);
    let x7_1 = select(vec4<f32>(0.0), x4[row7 + 1u], real7);
    let x7_2 = select(vec4<f32>(0.0), x4[row7 + 2u], real7);
    let x7_3 = select(vec4<f32>(0.0), x4[row7 + 3u], real7);
    let one7 = select(0.0, 1.0, real7);
    var acc7 = vec4<f32>(0.0);
    { let s0 = states4[states * f_quads + 0u]; let s1 = states4[(states + 1u) * f_quads + 0u]; let s2 = states4[(states + 2u) * f_quads + 0u]; let s3 = states4[(states + 3u) * f_quads + 0u];
      let p0 = vec4<f32>(one0, cx * x0_0.x, cx * x0_0.y, cx * x0_0.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(one1, cx * x1_0.x, cx * x1_0.y, cx * x1_0.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(one2, cx * x2_0.x, cx * x2_0.y, cx * x2_0.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(one3, cx * x3_0.x, cx * x3_0.y, cx * x3_0.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(one4, cx * x4_0.x, cx * x4_0.y, cx * x4_0.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(one5, cx * x5_0.x, cx * x5_0.y, cx * x5_0.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(one6, cx * x6_0.x, cx * x6_0.y, cx * x6_0.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(one7, cx * x7_0.x, cx * x7_0.y, cx * x7_0.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 1u]; let s1 = states4[(states + 1u) * f_quads + 1u]; let s2 = states4[(states + 2u) * f_quads + 1u]; let s3 = states4[(states + 3u) * f_quads + 1u];
      let p0 = vec4<f32>(cx * x0_0.w, cx * x0_1.x, cx * x0_1.y, cx * x0_1.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cx * x1_0.w, cx * x1_1.x, cx * x1_1.y, cx * x1_1.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cx * x2_0.w, cx * x2_1.x, cx * x2_1.y, cx * x2_1.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cx * x3_0.w, cx * x3_1.x, cx * x3_1.y, cx * x3_1.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cx * x4_0.w, cx * x4_1.x, cx * x4_1.y, cx * x4_1.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cx * x5_0.w, cx * x5_1.x, cx * x5_1.y, cx * x5_1.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cx * x6_0.w, cx * x6_1.x, cx * x6_1.y, cx * x6_1.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cx * x7_0.w, cx * x7_1.x, cx * x7_1.y, cx * x7_1.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 2u]; let s1 = states4[(states + 1u) * f_quads + 2u]; let s2 = states4[(states + 2u) * f_quads + 2u]; let s3 = states4[(states + 3u) * f_quads + 2u];
      let p0 = vec4<f32>(cx * x0_1.w, cx * x0_2.x, cx * x0_2.y, cx * x0_2.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cx * x1_1.w, cx * x1_2.x, cx * x1_2.y, cx * x1_2.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cx * x2_1.w, cx * x2_2.x, cx * x2_2.y, cx * x2_2.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cx * x3_1.w, cx * x3_2.x, cx * x3_2.y, cx * x3_2.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cx * x4_1.w, cx * x4_2.x, cx * x4_2.y, cx * x4_2.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cx * x5_1.w, cx * x5_2.x, cx * x5_2.y, cx * x5_2.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cx * x6_1.w, cx * x6_2.x, cx * x6_2.y, cx * x6_2.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cx * x7_1.w, cx * x7_2.x, cx * x7_2.y, cx * x7_2.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 3u]; let s1 = states4[(states + 1u) * f_quads + 3u]; let s2 = states4[(states + 2u) * f_quads + 3u]; let s3 = states4[(states + 3u) * f_quads + 3u];
      let p0 = vec4<f32>(cx * x0_2.w, cx * x0_3.x, cx * x0_3.y, cx * x0_3.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cx * x1_2.w, cx * x1_3.x, cx * x1_3.y, cx * x1_3.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cx * x2_2.w, cx * x2_3.x, cx * x2_3.y, cx * x2_3.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cx * x3_2.w, cx * x3_3.x, cx * x3_3.y, cx * x3_3.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cx * x4_2.w, cx * x4_3.x, cx * x4_3.y, cx * x4_3.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cx * x5_2.w, cx * x5_3.x, cx * x5_3.y, cx * x5_3.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cx * x6_2.w, cx * x6_3.x, cx * x6_3.y, cx * x6_3.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cx * x7_2.w, cx * x7_3.x, cx * x7_3.y, cx * x7_3.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 4u]; let s1 = states4[(states + 1u) * f_quads + 4u]; let s2 = states4[(states + 2u) * f_quads + 4u]; let s3 = states4[(states + 3u) * f_quads + 4u];
      let p0 = vec4<f32>(cx * x0_3.w, cy * x0_0.x * x0_0.x, cz * x0_0.x * x0_0.y, cz * x0_0.x * x0_0.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cx * x1_3.w, cy * x1_0.x * x1_0.x, cz * x1_0.x * x1_0.y, cz * x1_0.x * x1_0.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cx * x2_3.w, cy * x2_0.x * x2_0.x, cz * x2_0.x * x2_0.y, cz * x2_0.x * x2_0.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cx * x3_3.w, cy * x3_0.x * x3_0.x, cz * x3_0.x * x3_0.y, cz * x3_0.x * x3_0.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cx * x4_3.w, cy * x4_0.x * x4_0.x, cz * x4_0.x * x4_0.y, cz * x4_0.x * x4_0.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cx * x5_3.w, cy * x5_0.x * x5_0.x, cz * x5_0.x * x5_0.y, cz * x5_0.x * x5_0.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cx * x6_3.w, cy * x6_0.x * x6_0.x, cz * x6_0.x * x6_0.y, cz * x6_0.x * x6_0.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cx * x7_3.w, cy * x7_0.x * x7_0.x, cz * x7_0.x * x7_0.y, cz * x7_0.x * x7_0.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 5u]; let s1 = states4[(states + 1u) * f_quads + 5u]; let s2 = states4[(states + 2u) * f_quads + 5u]; let s3 = states4[(states + 3u) * f_quads + 5u];
      let p0 = vec4<f32>(cz * x0_0.x * x0_0.w, cz * x0_0.x * x0_1.x, cz * x0_0.x * x0_1.y, cz * x0_0.x * x0_1.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.x * x1_0.w, cz * x1_0.x * x1_1.x, cz * x1_0.x * x1_1.y, cz * x1_0.x * x1_1.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.x * x2_0.w, cz * x2_0.x * x2_1.x, cz * x2_0.x * x2_1.y, cz * x2_0.x * x2_1.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.x * x3_0.w, cz * x3_0.x * x3_1.x, cz * x3_0.x * x3_1.y, cz * x3_0.x * x3_1.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.x * x4_0.w, cz * x4_0.x * x4_1.x, cz * x4_0.x * x4_1.y, cz * x4_0.x * x4_1.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.x * x5_0.w, cz * x5_0.x * x5_1.x, cz * x5_0.x * x5_1.y, cz * x5_0.x * x5_1.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.x * x6_0.w, cz * x6_0.x * x6_1.x, cz * x6_0.x * x6_1.y, cz * x6_0.x * x6_1.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.x * x7_0.w, cz * x7_0.x * x7_1.x, cz * x7_0.x * x7_1.y, cz * x7_0.x * x7_1.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 6u]; let s1 = states4[(states + 1u) * f_quads + 6u]; let s2 = states4[(states + 2u) * f_quads + 6u]; let s3 = states4[(states + 3u) * f_quads + 6u];
      let p0 = vec4<f32>(cz * x0_0.x * x0_1.w, cz * x0_0.x * x0_2.x, cz * x0_0.x * x0_2.y, cz * x0_0.x * x0_2.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.x * x1_1.w, cz * x1_0.x * x1_2.x, cz * x1_0.x * x1_2.y, cz * x1_0.x * x1_2.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.x * x2_1.w, cz * x2_0.x * x2_2.x, cz * x2_0.x * x2_2.y, cz * x2_0.x * x2_2.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.x * x3_1.w, cz * x3_0.x * x3_2.x, cz * x3_0.x * x3_2.y, cz * x3_0.x * x3_2.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.x * x4_1.w, cz * x4_0.x * x4_2.x, cz * x4_0.x * x4_2.y, cz * x4_0.x * x4_2.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.x * x5_1.w, cz * x5_0.x * x5_2.x, cz * x5_0.x * x5_2.y, cz * x5_0.x * x5_2.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.x * x6_1.w, cz * x6_0.x * x6_2.x, cz * x6_0.x * x6_2.y, cz * x6_0.x * x6_2.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.x * x7_1.w, cz * x7_0.x * x7_2.x, cz * x7_0.x * x7_2.y, cz * x7_0.x * x7_2.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 7u]; let s1 = states4[(states + 1u) * f_quads + 7u]; let s2 = states4[(states + 2u) * f_quads + 7u]; let s3 = states4[(states + 3u) * f_quads + 7u];
      let p0 = vec4<f32>(cz * x0_0.x * x0_2.w, cz * x0_0.x * x0_3.x, cz * x0_0.x * x0_3.y, cz * x0_0.x * x0_3.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.x * x1_2.w, cz * x1_0.x * x1_3.x, cz * x1_0.x * x1_3.y, cz * x1_0.x * x1_3.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.x * x2_2.w, cz * x2_0.x * x2_3.x, cz * x2_0.x * x2_3.y, cz * x2_0.x * x2_3.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.x * x3_2.w, cz * x3_0.x * x3_3.x, cz * x3_0.x * x3_3.y, cz * x3_0.x * x3_3.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.x * x4_2.w, cz * x4_0.x * x4_3.x, cz * x4_0.x * x4_3.y, cz * x4_0.x * x4_3.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.x * x5_2.w, cz * x5_0.x * x5_3.x, cz * x5_0.x * x5_3.y, cz * x5_0.x * x5_3.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.x * x6_2.w, cz * x6_0.x * x6_3.x, cz * x6_0.x * x6_3.y, cz * x6_0.x * x6_3.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.x * x7_2.w, cz * x7_0.x * x7_3.x, cz * x7_0.x * x7_3.y, cz * x7_0.x * x7_3.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 8u]; let s1 = states4[(states + 1u) * f_quads + 8u]; let s2 = states4[(states + 2u) * f_quads + 8u]; let s3 = states4[(states + 3u) * f_quads + 8u];
      let p0 = vec4<f32>(cz * x0_0.x * x0_3.w, cy * x0_0.y * x0_0.y, cz * x0_0.y * x0_0.z, cz * x0_0.y * x0_0.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.x * x1_3.w, cy * x1_0.y * x1_0.y, cz * x1_0.y * x1_0.z, cz * x1_0.y * x1_0.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.x * x2_3.w, cy * x2_0.y * x2_0.y, cz * x2_0.y * x2_0.z, cz * x2_0.y * x2_0.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.x * x3_3.w, cy * x3_0.y * x3_0.y, cz * x3_0.y * x3_0.z, cz * x3_0.y * x3_0.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.x * x4_3.w, cy * x4_0.y * x4_0.y, cz * x4_0.y * x4_0.z, cz * x4_0.y * x4_0.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.x * x5_3.w, cy * x5_0.y * x5_0.y, cz * x5_0.y * x5_0.z, cz * x5_0.y * x5_0.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.x * x6_3.w, cy * x6_0.y * x6_0.y, cz * x6_0.y * x6_0.z, cz * x6_0.y * x6_0.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.x * x7_3.w, cy * x7_0.y * x7_0.y, cz * x7_0.y * x7_0.z, cz * x7_0.y * x7_0.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 9u]; let s1 = states4[(states + 1u) * f_quads + 9u]; let s2 = states4[(states + 2u) * f_quads + 9u]; let s3 = states4[(states + 3u) * f_quads + 9u];
      let p0 = vec4<f32>(cz * x0_0.y * x0_1.x, cz * x0_0.y * x0_1.y, cz * x0_0.y * x0_1.z, cz * x0_0.y * x0_1.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.y * x1_1.x, cz * x1_0.y * x1_1.y, cz * x1_0.y * x1_1.z, cz * x1_0.y * x1_1.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.y * x2_1.x, cz * x2_0.y * x2_1.y, cz * x2_0.y * x2_1.z, cz * x2_0.y * x2_1.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.y * x3_1.x, cz * x3_0.y * x3_1.y, cz * x3_0.y * x3_1.z, cz * x3_0.y * x3_1.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.y * x4_1.x, cz * x4_0.y * x4_1.y, cz * x4_0.y * x4_1.z, cz * x4_0.y * x4_1.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.y * x5_1.x, cz * x5_0.y * x5_1.y, cz * x5_0.y * x5_1.z, cz * x5_0.y * x5_1.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.y * x6_1.x, cz * x6_0.y * x6_1.y, cz * x6_0.y * x6_1.z, cz * x6_0.y * x6_1.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.y * x7_1.x, cz * x7_0.y * x7_1.y, cz * x7_0.y * x7_1.z, cz * x7_0.y * x7_1.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 10u]; let s1 = states4[(states + 1u) * f_quads + 10u]; let s2 = states4[(states + 2u) * f_quads + 10u]; let s3 = states4[(states + 3u) * f_quads + 10u];
      let p0 = vec4<f32>(cz * x0_0.y * x0_2.x, cz * x0_0.y * x0_2.y, cz * x0_0.y * x0_2.z, cz * x0_0.y * x0_2.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.y * x1_2.x, cz * x1_0.y * x1_2.y, cz * x1_0.y * x1_2.z, cz * x1_0.y * x1_2.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.y * x2_2.x, cz * x2_0.y * x2_2.y, cz * x2_0.y * x2_2.z, cz * x2_0.y * x2_2.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.y * x3_2.x, cz * x3_0.y * x3_2.y, cz * x3_0.y * x3_2.z, cz * x3_0.y * x3_2.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.y * x4_2.x, cz * x4_0.y * x4_2.y, cz * x4_0.y * x4_2.z, cz * x4_0.y * x4_2.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.y * x5_2.x, cz * x5_0.y * x5_2.y, cz * x5_0.y * x5_2.z, cz * x5_0.y * x5_2.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.y * x6_2.x, cz * x6_0.y * x6_2.y, cz * x6_0.y * x6_2.z, cz * x6_0.y * x6_2.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.y * x7_2.x, cz * x7_0.y * x7_2.y, cz * x7_0.y * x7_2.z, cz * x7_0.y * x7_2.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 11u]; let s1 = states4[(states + 1u) * f_quads + 11u]; let s2 = states4[(states + 2u) * f_quads + 11u]; let s3 = states4[(states + 3u) * f_quads + 11u];
      let p0 = vec4<f32>(cz * x0_0.y * x0_3.x, cz * x0_0.y * x0_3.y, cz * x0_0.y * x0_3.z, cz * x0_0.y * x0_3.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.y * x1_3.x, cz * x1_0.y * x1_3.y, cz * x1_0.y * x1_3.z, cz * x1_0.y * x1_3.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.y * x2_3.x, cz * x2_0.y * x2_3.y, cz * x2_0.y * x2_3.z, cz * x2_0.y * x2_3.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.y * x3_3.x, cz * x3_0.y * x3_3.y, cz * x3_0.y * x3_3.z, cz * x3_0.y * x3_3.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.y * x4_3.x, cz * x4_0.y * x4_3.y, cz * x4_0.y * x4_3.z, cz * x4_0.y * x4_3.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.y * x5_3.x, cz * x5_0.y * x5_3.y, cz * x5_0.y * x5_3.z, cz * x5_0.y * x5_3.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.y * x6_3.x, cz * x6_0.y * x6_3.y, cz * x6_0.y * x6_3.z, cz * x6_0.y * x6_3.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.y * x7_3.x, cz * x7_0.y * x7_3.y, cz * x7_0.y * x7_3.z, cz * x7_0.y * x7_3.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 12u]; let s1 = states4[(states + 1u) * f_quads + 12u]; let s2 = states4[(states + 2u) * f_quads + 12u]; let s3 = states4[(states + 3u) * f_quads + 12u];
      let p0 = vec4<f32>(cy * x0_0.z * x0_0.z, cz * x0_0.z * x0_0.w, cz * x0_0.z * x0_1.x, cz * x0_0.z * x0_1.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cy * x1_0.z * x1_0.z, cz * x1_0.z * x1_0.w, cz * x1_0.z * x1_1.x, cz * x1_0.z * x1_1.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cy * x2_0.z * x2_0.z, cz * x2_0.z * x2_0.w, cz * x2_0.z * x2_1.x, cz * x2_0.z * x2_1.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cy * x3_0.z * x3_0.z, cz * x3_0.z * x3_0.w, cz * x3_0.z * x3_1.x, cz * x3_0.z * x3_1.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cy * x4_0.z * x4_0.z, cz * x4_0.z * x4_0.w, cz * x4_0.z * x4_1.x, cz * x4_0.z * x4_1.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cy * x5_0.z * x5_0.z, cz * x5_0.z * x5_0.w, cz * x5_0.z * x5_1.x, cz * x5_0.z * x5_1.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cy * x6_0.z * x6_0.z, cz * x6_0.z * x6_0.w, cz * x6_0.z * x6_1.x, cz * x6_0.z * x6_1.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cy * x7_0.z * x7_0.z, cz * x7_0.z * x7_0.w, cz * x7_0.z * x7_1.x, cz * x7_0.z * x7_1.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 13u]; let s1 = states4[(states + 1u) * f_quads + 13u]; let s2 = states4[(states + 2u) * f_quads + 13u]; let s3 = states4[(states + 3u) * f_quads + 13u];
      let p0 = vec4<f32>(cz * x0_0.z * x0_1.z, cz * x0_0.z * x0_1.w, cz * x0_0.z * x0_2.x, cz * x0_0.z * x0_2.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.z * x1_1.z, cz * x1_0.z * x1_1.w, cz * x1_0.z * x1_2.x, cz * x1_0.z * x1_2.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.z * x2_1.z, cz * x2_0.z * x2_1.w, cz * x2_0.z * x2_2.x, cz * x2_0.z * x2_2.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.z * x3_1.z, cz * x3_0.z * x3_1.w, cz * x3_0.z * x3_2.x, cz * x3_0.z * x3_2.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.z * x4_1.z, cz * x4_0.z * x4_1.w, cz * x4_0.z * x4_2.x, cz * x4_0.z * x4_2.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.z * x5_1.z, cz * x5_0.z * x5_1.w, cz * x5_0.z * x5_2.x, cz * x5_0.z * x5_2.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.z * x6_1.z, cz * x6_0.z * x6_1.w, cz * x6_0.z * x6_2.x, cz * x6_0.z * x6_2.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.z * x7_1.z, cz * x7_0.z * x7_1.w, cz * x7_0.z * x7_2.x, cz * x7_0.z * x7_2.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 14u]; let s1 = states4[(states + 1u) * f_quads + 14u]; let s2 = states4[(states + 2u) * f_quads + 14u]; let s3 = states4[(states + 3u) * f_quads + 14u];
      let p0 = vec4<f32>(cz * x0_0.z * x0_2.z, cz * x0_0.z * x0_2.w, cz * x0_0.z * x0_3.x, cz * x0_0.z * x0_3.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.z * x1_2.z, cz * x1_0.z * x1_2.w, cz * x1_0.z * x1_3.x, cz * x1_0.z * x1_3.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.z * x2_2.z, cz * x2_0.z * x2_2.w, cz * x2_0.z * x2_3.x, cz * x2_0.z * x2_3.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.z * x3_2.z, cz * x3_0.z * x3_2.w, cz * x3_0.z * x3_3.x, cz * x3_0.z * x3_3.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.z * x4_2.z, cz * x4_0.z * x4_2.w, cz * x4_0.z * x4_3.x, cz * x4_0.z * x4_3.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.z * x5_2.z, cz * x5_0.z * x5_2.w, cz * x5_0.z * x5_3.x, cz * x5_0.z * x5_3.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.z * x6_2.z, cz * x6_0.z * x6_2.w, cz * x6_0.z * x6_3.x, cz * x6_0.z * x6_3.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.z * x7_2.z, cz * x7_0.z * x7_2.w, cz * x7_0.z * x7_3.x, cz * x7_0.z * x7_3.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 15u]; let s1 = states4[(states + 1u) * f_quads + 15u]; let s2 = states4[(states + 2u) * f_quads + 15u]; let s3 = states4[(states + 3u) * f_quads + 15u];
      let p0 = vec4<f32>(cz * x0_0.z * x0_3.z, cz * x0_0.z * x0_3.w, cy * x0_0.w * x0_0.w, cz * x0_0.w * x0_1.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.z * x1_3.z, cz * x1_0.z * x1_3.w, cy * x1_0.w * x1_0.w, cz * x1_0.w * x1_1.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.z * x2_3.z, cz * x2_0.z * x2_3.w, cy * x2_0.w * x2_0.w, cz * x2_0.w * x2_1.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.z * x3_3.z, cz * x3_0.z * x3_3.w, cy * x3_0.w * x3_0.w, cz * x3_0.w * x3_1.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.z * x4_3.z, cz * x4_0.z * x4_3.w, cy * x4_0.w * x4_0.w, cz * x4_0.w * x4_1.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.z * x5_3.z, cz * x5_0.z * x5_3.w, cy * x5_0.w * x5_0.w, cz * x5_0.w * x5_1.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.z * x6_3.z, cz * x6_0.z * x6_3.w, cy * x6_0.w * x6_0.w, cz * x6_0.w * x6_1.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.z * x7_3.z, cz * x7_0.z * x7_3.w, cy * x7_0.w * x7_0.w, cz * x7_0.w * x7_1.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 16u]; let s1 = states4[(states + 1u) * f_quads + 16u]; let s2 = states4[(states + 2u) * f_quads + 16u]; let s3 = states4[(states + 3u) * f_quads + 16u];
      let p0 = vec4<f32>(cz * x0_0.w * x0_1.y, cz * x0_0.w * x0_1.z, cz * x0_0.w * x0_1.w, cz * x0_0.w * x0_2.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.w * x1_1.y, cz * x1_0.w * x1_1.z, cz * x1_0.w * x1_1.w, cz * x1_0.w * x1_2.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.w * x2_1.y, cz * x2_0.w * x2_1.z, cz * x2_0.w * x2_1.w, cz * x2_0.w * x2_2.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.w * x3_1.y, cz * x3_0.w * x3_1.z, cz * x3_0.w * x3_1.w, cz * x3_0.w * x3_2.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.w * x4_1.y, cz * x4_0.w * x4_1.z, cz * x4_0.w * x4_1.w, cz * x4_0.w * x4_2.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.w * x5_1.y, cz * x5_0.w * x5_1.z, cz * x5_0.w * x5_1.w, cz * x5_0.w * x5_2.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.w * x6_1.y, cz * x6_0.w * x6_1.z, cz * x6_0.w * x6_1.w, cz * x6_0.w * x6_2.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.w * x7_1.y, cz * x7_0.w * x7_1.z, cz * x7_0.w * x7_1.w, cz * x7_0.w * x7_2.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 17u]; let s1 = states4[(states + 1u) * f_quads + 17u]; let s2 = states4[(states + 2u) * f_quads + 17u]; let s3 = states4[(states + 3u) * f_quads + 17u];
      let p0 = vec4<f32>(cz * x0_0.w * x0_2.y, cz * x0_0.w * x0_2.z, cz * x0_0.w * x0_2.w, cz * x0_0.w * x0_3.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.w * x1_2.y, cz * x1_0.w * x1_2.z, cz * x1_0.w * x1_2.w, cz * x1_0.w * x1_3.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.w * x2_2.y, cz * x2_0.w * x2_2.z, cz * x2_0.w * x2_2.w, cz * x2_0.w * x2_3.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.w * x3_2.y, cz * x3_0.w * x3_2.z, cz * x3_0.w * x3_2.w, cz * x3_0.w * x3_3.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.w * x4_2.y, cz * x4_0.w * x4_2.z, cz * x4_0.w * x4_2.w, cz * x4_0.w * x4_3.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.w * x5_2.y, cz * x5_0.w * x5_2.z, cz * x5_0.w * x5_2.w, cz * x5_0.w * x5_3.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.w * x6_2.y, cz * x6_0.w * x6_2.z, cz * x6_0.w * x6_2.w, cz * x6_0.w * x6_3.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.w * x7_2.y, cz * x7_0.w * x7_2.z, cz * x7_0.w * x7_2.w, cz * x7_0.w * x7_3.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 18u]; let s1 = states4[(states + 1u) * f_quads + 18u]; let s2 = states4[(states + 2u) * f_quads + 18u]; let s3 = states4[(states + 3u) * f_quads + 18u];
      let p0 = vec4<f32>(cz * x0_0.w * x0_3.y, cz * x0_0.w * x0_3.z, cz * x0_0.w * x0_3.w, cy * x0_1.x * x0_1.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_0.w * x1_3.y, cz * x1_0.w * x1_3.z, cz * x1_0.w * x1_3.w, cy * x1_1.x * x1_1.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_0.w * x2_3.y, cz * x2_0.w * x2_3.z, cz * x2_0.w * x2_3.w, cy * x2_1.x * x2_1.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_0.w * x3_3.y, cz * x3_0.w * x3_3.z, cz * x3_0.w * x3_3.w, cy * x3_1.x * x3_1.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_0.w * x4_3.y, cz * x4_0.w * x4_3.z, cz * x4_0.w * x4_3.w, cy * x4_1.x * x4_1.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_0.w * x5_3.y, cz * x5_0.w * x5_3.z, cz * x5_0.w * x5_3.w, cy * x5_1.x * x5_1.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_0.w * x6_3.y, cz * x6_0.w * x6_3.z, cz * x6_0.w * x6_3.w, cy * x6_1.x * x6_1.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_0.w * x7_3.y, cz * x7_0.w * x7_3.z, cz * x7_0.w * x7_3.w, cy * x7_1.x * x7_1.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 19u]; let s1 = states4[(states + 1u) * f_quads + 19u]; let s2 = states4[(states + 2u) * f_quads + 19u]; let s3 = states4[(states + 3u) * f_quads + 19u];
      let p0 = vec4<f32>(cz * x0_1.x * x0_1.y, cz * x0_1.x * x0_1.z, cz * x0_1.x * x0_1.w, cz * x0_1.x * x0_2.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.x * x1_1.y, cz * x1_1.x * x1_1.z, cz * x1_1.x * x1_1.w, cz * x1_1.x * x1_2.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.x * x2_1.y, cz * x2_1.x * x2_1.z, cz * x2_1.x * x2_1.w, cz * x2_1.x * x2_2.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.x * x3_1.y, cz * x3_1.x * x3_1.z, cz * x3_1.x * x3_1.w, cz * x3_1.x * x3_2.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.x * x4_1.y, cz * x4_1.x * x4_1.z, cz * x4_1.x * x4_1.w, cz * x4_1.x * x4_2.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.x * x5_1.y, cz * x5_1.x * x5_1.z, cz * x5_1.x * x5_1.w, cz * x5_1.x * x5_2.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.x * x6_1.y, cz * x6_1.x * x6_1.z, cz * x6_1.x * x6_1.w, cz * x6_1.x * x6_2.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.x * x7_1.y, cz * x7_1.x * x7_1.z, cz * x7_1.x * x7_1.w, cz * x7_1.x * x7_2.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 20u]; let s1 = states4[(states + 1u) * f_quads + 20u]; let s2 = states4[(states + 2u) * f_quads + 20u]; let s3 = states4[(states + 3u) * f_quads + 20u];
      let p0 = vec4<f32>(cz * x0_1.x * x0_2.y, cz * x0_1.x * x0_2.z, cz * x0_1.x * x0_2.w, cz * x0_1.x * x0_3.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.x * x1_2.y, cz * x1_1.x * x1_2.z, cz * x1_1.x * x1_2.w, cz * x1_1.x * x1_3.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.x * x2_2.y, cz * x2_1.x * x2_2.z, cz * x2_1.x * x2_2.w, cz * x2_1.x * x2_3.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.x * x3_2.y, cz * x3_1.x * x3_2.z, cz * x3_1.x * x3_2.w, cz * x3_1.x * x3_3.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.x * x4_2.y, cz * x4_1.x * x4_2.z, cz * x4_1.x * x4_2.w, cz * x4_1.x * x4_3.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.x * x5_2.y, cz * x5_1.x * x5_2.z, cz * x5_1.x * x5_2.w, cz * x5_1.x * x5_3.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.x * x6_2.y, cz * x6_1.x * x6_2.z, cz * x6_1.x * x6_2.w, cz * x6_1.x * x6_3.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.x * x7_2.y, cz * x7_1.x * x7_2.z, cz * x7_1.x * x7_2.w, cz * x7_1.x * x7_3.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 21u]; let s1 = states4[(states + 1u) * f_quads + 21u]; let s2 = states4[(states + 2u) * f_quads + 21u]; let s3 = states4[(states + 3u) * f_quads + 21u];
      let p0 = vec4<f32>(cz * x0_1.x * x0_3.y, cz * x0_1.x * x0_3.z, cz * x0_1.x * x0_3.w, cy * x0_1.y * x0_1.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.x * x1_3.y, cz * x1_1.x * x1_3.z, cz * x1_1.x * x1_3.w, cy * x1_1.y * x1_1.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.x * x2_3.y, cz * x2_1.x * x2_3.z, cz * x2_1.x * x2_3.w, cy * x2_1.y * x2_1.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.x * x3_3.y, cz * x3_1.x * x3_3.z, cz * x3_1.x * x3_3.w, cy * x3_1.y * x3_1.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.x * x4_3.y, cz * x4_1.x * x4_3.z, cz * x4_1.x * x4_3.w, cy * x4_1.y * x4_1.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.x * x5_3.y, cz * x5_1.x * x5_3.z, cz * x5_1.x * x5_3.w, cy * x5_1.y * x5_1.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.x * x6_3.y, cz * x6_1.x * x6_3.z, cz * x6_1.x * x6_3.w, cy * x6_1.y * x6_1.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.x * x7_3.y, cz * x7_1.x * x7_3.z, cz * x7_1.x * x7_3.w, cy * x7_1.y * x7_1.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 22u]; let s1 = states4[(states + 1u) * f_quads + 22u]; let s2 = states4[(states + 2u) * f_quads + 22u]; let s3 = states4[(states + 3u) * f_quads + 22u];
      let p0 = vec4<f32>(cz * x0_1.y * x0_1.z, cz * x0_1.y * x0_1.w, cz * x0_1.y * x0_2.x, cz * x0_1.y * x0_2.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.y * x1_1.z, cz * x1_1.y * x1_1.w, cz * x1_1.y * x1_2.x, cz * x1_1.y * x1_2.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.y * x2_1.z, cz * x2_1.y * x2_1.w, cz * x2_1.y * x2_2.x, cz * x2_1.y * x2_2.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.y * x3_1.z, cz * x3_1.y * x3_1.w, cz * x3_1.y * x3_2.x, cz * x3_1.y * x3_2.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.y * x4_1.z, cz * x4_1.y * x4_1.w, cz * x4_1.y * x4_2.x, cz * x4_1.y * x4_2.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.y * x5_1.z, cz * x5_1.y * x5_1.w, cz * x5_1.y * x5_2.x, cz * x5_1.y * x5_2.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.y * x6_1.z, cz * x6_1.y * x6_1.w, cz * x6_1.y * x6_2.x, cz * x6_1.y * x6_2.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.y * x7_1.z, cz * x7_1.y * x7_1.w, cz * x7_1.y * x7_2.x, cz * x7_1.y * x7_2.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 23u]; let s1 = states4[(states + 1u) * f_quads + 23u]; let s2 = states4[(states + 2u) * f_quads + 23u]; let s3 = states4[(states + 3u) * f_quads + 23u];
      let p0 = vec4<f32>(cz * x0_1.y * x0_2.z, cz * x0_1.y * x0_2.w, cz * x0_1.y * x0_3.x, cz * x0_1.y * x0_3.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.y * x1_2.z, cz * x1_1.y * x1_2.w, cz * x1_1.y * x1_3.x, cz * x1_1.y * x1_3.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.y * x2_2.z, cz * x2_1.y * x2_2.w, cz * x2_1.y * x2_3.x, cz * x2_1.y * x2_3.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.y * x3_2.z, cz * x3_1.y * x3_2.w, cz * x3_1.y * x3_3.x, cz * x3_1.y * x3_3.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.y * x4_2.z, cz * x4_1.y * x4_2.w, cz * x4_1.y * x4_3.x, cz * x4_1.y * x4_3.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.y * x5_2.z, cz * x5_1.y * x5_2.w, cz * x5_1.y * x5_3.x, cz * x5_1.y * x5_3.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.y * x6_2.z, cz * x6_1.y * x6_2.w, cz * x6_1.y * x6_3.x, cz * x6_1.y * x6_3.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.y * x7_2.z, cz * x7_1.y * x7_2.w, cz * x7_1.y * x7_3.x, cz * x7_1.y * x7_3.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 24u]; let s1 = states4[(states + 1u) * f_quads + 24u]; let s2 = states4[(states + 2u) * f_quads + 24u]; let s3 = states4[(states + 3u) * f_quads + 24u];
      let p0 = vec4<f32>(cz * x0_1.y * x0_3.z, cz * x0_1.y * x0_3.w, cy * x0_1.z * x0_1.z, cz * x0_1.z * x0_1.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.y * x1_3.z, cz * x1_1.y * x1_3.w, cy * x1_1.z * x1_1.z, cz * x1_1.z * x1_1.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.y * x2_3.z, cz * x2_1.y * x2_3.w, cy * x2_1.z * x2_1.z, cz * x2_1.z * x2_1.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.y * x3_3.z, cz * x3_1.y * x3_3.w, cy * x3_1.z * x3_1.z, cz * x3_1.z * x3_1.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.y * x4_3.z, cz * x4_1.y * x4_3.w, cy * x4_1.z * x4_1.z, cz * x4_1.z * x4_1.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.y * x5_3.z, cz * x5_1.y * x5_3.w, cy * x5_1.z * x5_1.z, cz * x5_1.z * x5_1.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.y * x6_3.z, cz * x6_1.y * x6_3.w, cy * x6_1.z * x6_1.z, cz * x6_1.z * x6_1.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.y * x7_3.z, cz * x7_1.y * x7_3.w, cy * x7_1.z * x7_1.z, cz * x7_1.z * x7_1.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 25u]; let s1 = states4[(states + 1u) * f_quads + 25u]; let s2 = states4[(states + 2u) * f_quads + 25u]; let s3 = states4[(states + 3u) * f_quads + 25u];
      let p0 = vec4<f32>(cz * x0_1.z * x0_2.x, cz * x0_1.z * x0_2.y, cz * x0_1.z * x0_2.z, cz * x0_1.z * x0_2.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.z * x1_2.x, cz * x1_1.z * x1_2.y, cz * x1_1.z * x1_2.z, cz * x1_1.z * x1_2.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.z * x2_2.x, cz * x2_1.z * x2_2.y, cz * x2_1.z * x2_2.z, cz * x2_1.z * x2_2.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.z * x3_2.x, cz * x3_1.z * x3_2.y, cz * x3_1.z * x3_2.z, cz * x3_1.z * x3_2.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.z * x4_2.x, cz * x4_1.z * x4_2.y, cz * x4_1.z * x4_2.z, cz * x4_1.z * x4_2.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.z * x5_2.x, cz * x5_1.z * x5_2.y, cz * x5_1.z * x5_2.z, cz * x5_1.z * x5_2.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.z * x6_2.x, cz * x6_1.z * x6_2.y, cz * x6_1.z * x6_2.z, cz * x6_1.z * x6_2.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.z * x7_2.x, cz * x7_1.z * x7_2.y, cz * x7_1.z * x7_2.z, cz * x7_1.z * x7_2.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 26u]; let s1 = states4[(states + 1u) * f_quads + 26u]; let s2 = states4[(states + 2u) * f_quads + 26u]; let s3 = states4[(states + 3u) * f_quads + 26u];
      let p0 = vec4<f32>(cz * x0_1.z * x0_3.x, cz * x0_1.z * x0_3.y, cz * x0_1.z * x0_3.z, cz * x0_1.z * x0_3.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.z * x1_3.x, cz * x1_1.z * x1_3.y, cz * x1_1.z * x1_3.z, cz * x1_1.z * x1_3.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.z * x2_3.x, cz * x2_1.z * x2_3.y, cz * x2_1.z * x2_3.z, cz * x2_1.z * x2_3.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.z * x3_3.x, cz * x3_1.z * x3_3.y, cz * x3_1.z * x3_3.z, cz * x3_1.z * x3_3.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.z * x4_3.x, cz * x4_1.z * x4_3.y, cz * x4_1.z * x4_3.z, cz * x4_1.z * x4_3.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.z * x5_3.x, cz * x5_1.z * x5_3.y, cz * x5_1.z * x5_3.z, cz * x5_1.z * x5_3.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.z * x6_3.x, cz * x6_1.z * x6_3.y, cz * x6_1.z * x6_3.z, cz * x6_1.z * x6_3.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.z * x7_3.x, cz * x7_1.z * x7_3.y, cz * x7_1.z * x7_3.z, cz * x7_1.z * x7_3.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 27u]; let s1 = states4[(states + 1u) * f_quads + 27u]; let s2 = states4[(states + 2u) * f_quads + 27u]; let s3 = states4[(states + 3u) * f_quads + 27u];
      let p0 = vec4<f32>(cy * x0_1.w * x0_1.w, cz * x0_1.w * x0_2.x, cz * x0_1.w * x0_2.y, cz * x0_1.w * x0_2.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cy * x1_1.w * x1_1.w, cz * x1_1.w * x1_2.x, cz * x1_1.w * x1_2.y, cz * x1_1.w * x1_2.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cy * x2_1.w * x2_1.w, cz * x2_1.w * x2_2.x, cz * x2_1.w * x2_2.y, cz * x2_1.w * x2_2.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cy * x3_1.w * x3_1.w, cz * x3_1.w * x3_2.x, cz * x3_1.w * x3_2.y, cz * x3_1.w * x3_2.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cy * x4_1.w * x4_1.w, cz * x4_1.w * x4_2.x, cz * x4_1.w * x4_2.y, cz * x4_1.w * x4_2.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cy * x5_1.w * x5_1.w, cz * x5_1.w * x5_2.x, cz * x5_1.w * x5_2.y, cz * x5_1.w * x5_2.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cy * x6_1.w * x6_1.w, cz * x6_1.w * x6_2.x, cz * x6_1.w * x6_2.y, cz * x6_1.w * x6_2.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cy * x7_1.w * x7_1.w, cz * x7_1.w * x7_2.x, cz * x7_1.w * x7_2.y, cz * x7_1.w * x7_2.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 28u]; let s1 = states4[(states + 1u) * f_quads + 28u]; let s2 = states4[(states + 2u) * f_quads + 28u]; let s3 = states4[(states + 3u) * f_quads + 28u];
      let p0 = vec4<f32>(cz * x0_1.w * x0_2.w, cz * x0_1.w * x0_3.x, cz * x0_1.w * x0_3.y, cz * x0_1.w * x0_3.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.w * x1_2.w, cz * x1_1.w * x1_3.x, cz * x1_1.w * x1_3.y, cz * x1_1.w * x1_3.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.w * x2_2.w, cz * x2_1.w * x2_3.x, cz * x2_1.w * x2_3.y, cz * x2_1.w * x2_3.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.w * x3_2.w, cz * x3_1.w * x3_3.x, cz * x3_1.w * x3_3.y, cz * x3_1.w * x3_3.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.w * x4_2.w, cz * x4_1.w * x4_3.x, cz * x4_1.w * x4_3.y, cz * x4_1.w * x4_3.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.w * x5_2.w, cz * x5_1.w * x5_3.x, cz * x5_1.w * x5_3.y, cz * x5_1.w * x5_3.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.w * x6_2.w, cz * x6_1.w * x6_3.x, cz * x6_1.w * x6_3.y, cz * x6_1.w * x6_3.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.w * x7_2.w, cz * x7_1.w * x7_3.x, cz * x7_1.w * x7_3.y, cz * x7_1.w * x7_3.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 29u]; let s1 = states4[(states + 1u) * f_quads + 29u]; let s2 = states4[(states + 2u) * f_quads + 29u]; let s3 = states4[(states + 3u) * f_quads + 29u];
      let p0 = vec4<f32>(cz * x0_1.w * x0_3.w, cy * x0_2.x * x0_2.x, cz * x0_2.x * x0_2.y, cz * x0_2.x * x0_2.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_1.w * x1_3.w, cy * x1_2.x * x1_2.x, cz * x1_2.x * x1_2.y, cz * x1_2.x * x1_2.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_1.w * x2_3.w, cy * x2_2.x * x2_2.x, cz * x2_2.x * x2_2.y, cz * x2_2.x * x2_2.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_1.w * x3_3.w, cy * x3_2.x * x3_2.x, cz * x3_2.x * x3_2.y, cz * x3_2.x * x3_2.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_1.w * x4_3.w, cy * x4_2.x * x4_2.x, cz * x4_2.x * x4_2.y, cz * x4_2.x * x4_2.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_1.w * x5_3.w, cy * x5_2.x * x5_2.x, cz * x5_2.x * x5_2.y, cz * x5_2.x * x5_2.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_1.w * x6_3.w, cy * x6_2.x * x6_2.x, cz * x6_2.x * x6_2.y, cz * x6_2.x * x6_2.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_1.w * x7_3.w, cy * x7_2.x * x7_2.x, cz * x7_2.x * x7_2.y, cz * x7_2.x * x7_2.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 30u]; let s1 = states4[(states + 1u) * f_quads + 30u]; let s2 = states4[(states + 2u) * f_quads + 30u]; let s3 = states4[(states + 3u) * f_quads + 30u];
      let p0 = vec4<f32>(cz * x0_2.x * x0_2.w, cz * x0_2.x * x0_3.x, cz * x0_2.x * x0_3.y, cz * x0_2.x * x0_3.z);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_2.x * x1_2.w, cz * x1_2.x * x1_3.x, cz * x1_2.x * x1_3.y, cz * x1_2.x * x1_3.z);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_2.x * x2_2.w, cz * x2_2.x * x2_3.x, cz * x2_2.x * x2_3.y, cz * x2_2.x * x2_3.z);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_2.x * x3_2.w, cz * x3_2.x * x3_3.x, cz * x3_2.x * x3_3.y, cz * x3_2.x * x3_3.z);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_2.x * x4_2.w, cz * x4_2.x * x4_3.x, cz * x4_2.x * x4_3.y, cz * x4_2.x * x4_3.z);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_2.x * x5_2.w, cz * x5_2.x * x5_3.x, cz * x5_2.x * x5_3.y, cz * x5_2.x * x5_3.z);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_2.x * x6_2.w, cz * x6_2.x * x6_3.x, cz * x6_2.x * x6_3.y, cz * x6_2.x * x6_3.z);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_2.x * x7_2.w, cz * x7_2.x * x7_3.x, cz * x7_2.x * x7_3.y, cz * x7_2.x * x7_3.z);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 31u]; let s1 = states4[(states + 1u) * f_quads + 31u]; let s2 = states4[(states + 2u) * f_quads + 31u]; let s3 = states4[(states + 3u) * f_quads + 31u];
      let p0 = vec4<f32>(cz * x0_2.x * x0_3.w, cy * x0_2.y * x0_2.y, cz * x0_2.y * x0_2.z, cz * x0_2.y * x0_2.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_2.x * x1_3.w, cy * x1_2.y * x1_2.y, cz * x1_2.y * x1_2.z, cz * x1_2.y * x1_2.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_2.x * x2_3.w, cy * x2_2.y * x2_2.y, cz * x2_2.y * x2_2.z, cz * x2_2.y * x2_2.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_2.x * x3_3.w, cy * x3_2.y * x3_2.y, cz * x3_2.y * x3_2.z, cz * x3_2.y * x3_2.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_2.x * x4_3.w, cy * x4_2.y * x4_2.y, cz * x4_2.y * x4_2.z, cz * x4_2.y * x4_2.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_2.x * x5_3.w, cy * x5_2.y * x5_2.y, cz * x5_2.y * x5_2.z, cz * x5_2.y * x5_2.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_2.x * x6_3.w, cy * x6_2.y * x6_2.y, cz * x6_2.y * x6_2.z, cz * x6_2.y * x6_2.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_2.x * x7_3.w, cy * x7_2.y * x7_2.y, cz * x7_2.y * x7_2.z, cz * x7_2.y * x7_2.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 32u]; let s1 = states4[(states + 1u) * f_quads + 32u]; let s2 = states4[(states + 2u) * f_quads + 32u]; let s3 = states4[(states + 3u) * f_quads + 32u];
      let p0 = vec4<f32>(cz * x0_2.y * x0_3.x, cz * x0_2.y * x0_3.y, cz * x0_2.y * x0_3.z, cz * x0_2.y * x0_3.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_2.y * x1_3.x, cz * x1_2.y * x1_3.y, cz * x1_2.y * x1_3.z, cz * x1_2.y * x1_3.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_2.y * x2_3.x, cz * x2_2.y * x2_3.y, cz * x2_2.y * x2_3.z, cz * x2_2.y * x2_3.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_2.y * x3_3.x, cz * x3_2.y * x3_3.y, cz * x3_2.y * x3_3.z, cz * x3_2.y * x3_3.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_2.y * x4_3.x, cz * x4_2.y * x4_3.y, cz * x4_2.y * x4_3.z, cz * x4_2.y * x4_3.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_2.y * x5_3.x, cz * x5_2.y * x5_3.y, cz * x5_2.y * x5_3.z, cz * x5_2.y * x5_3.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_2.y * x6_3.x, cz * x6_2.y * x6_3.y, cz * x6_2.y * x6_3.z, cz * x6_2.y * x6_3.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_2.y * x7_3.x, cz * x7_2.y * x7_3.y, cz * x7_2.y * x7_3.z, cz * x7_2.y * x7_3.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 33u]; let s1 = states4[(states + 1u) * f_quads + 33u]; let s2 = states4[(states + 2u) * f_quads + 33u]; let s3 = states4[(states + 3u) * f_quads + 33u];
      let p0 = vec4<f32>(cy * x0_2.z * x0_2.z, cz * x0_2.z * x0_2.w, cz * x0_2.z * x0_3.x, cz * x0_2.z * x0_3.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cy * x1_2.z * x1_2.z, cz * x1_2.z * x1_2.w, cz * x1_2.z * x1_3.x, cz * x1_2.z * x1_3.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cy * x2_2.z * x2_2.z, cz * x2_2.z * x2_2.w, cz * x2_2.z * x2_3.x, cz * x2_2.z * x2_3.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cy * x3_2.z * x3_2.z, cz * x3_2.z * x3_2.w, cz * x3_2.z * x3_3.x, cz * x3_2.z * x3_3.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cy * x4_2.z * x4_2.z, cz * x4_2.z * x4_2.w, cz * x4_2.z * x4_3.x, cz * x4_2.z * x4_3.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cy * x5_2.z * x5_2.z, cz * x5_2.z * x5_2.w, cz * x5_2.z * x5_3.x, cz * x5_2.z * x5_3.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cy * x6_2.z * x6_2.z, cz * x6_2.z * x6_2.w, cz * x6_2.z * x6_3.x, cz * x6_2.z * x6_3.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cy * x7_2.z * x7_2.z, cz * x7_2.z * x7_2.w, cz * x7_2.z * x7_3.x, cz * x7_2.z * x7_3.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 34u]; let s1 = states4[(states + 1u) * f_quads + 34u]; let s2 = states4[(states + 2u) * f_quads + 34u]; let s3 = states4[(states + 3u) * f_quads + 34u];
      let p0 = vec4<f32>(cz * x0_2.z * x0_3.z, cz * x0_2.z * x0_3.w, cy * x0_2.w * x0_2.w, cz * x0_2.w * x0_3.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_2.z * x1_3.z, cz * x1_2.z * x1_3.w, cy * x1_2.w * x1_2.w, cz * x1_2.w * x1_3.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_2.z * x2_3.z, cz * x2_2.z * x2_3.w, cy * x2_2.w * x2_2.w, cz * x2_2.w * x2_3.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_2.z * x3_3.z, cz * x3_2.z * x3_3.w, cy * x3_2.w * x3_2.w, cz * x3_2.w * x3_3.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_2.z * x4_3.z, cz * x4_2.z * x4_3.w, cy * x4_2.w * x4_2.w, cz * x4_2.w * x4_3.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_2.z * x5_3.z, cz * x5_2.z * x5_3.w, cy * x5_2.w * x5_2.w, cz * x5_2.w * x5_3.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_2.z * x6_3.z, cz * x6_2.z * x6_3.w, cy * x6_2.w * x6_2.w, cz * x6_2.w * x6_3.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_2.z * x7_3.z, cz * x7_2.z * x7_3.w, cy * x7_2.w * x7_2.w, cz * x7_2.w * x7_3.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 35u]; let s1 = states4[(states + 1u) * f_quads + 35u]; let s2 = states4[(states + 2u) * f_quads + 35u]; let s3 = states4[(states + 3u) * f_quads + 35u];
      let p0 = vec4<f32>(cz * x0_2.w * x0_3.y, cz * x0_2.w * x0_3.z, cz * x0_2.w * x0_3.w, cy * x0_3.x * x0_3.x);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_2.w * x1_3.y, cz * x1_2.w * x1_3.z, cz * x1_2.w * x1_3.w, cy * x1_3.x * x1_3.x);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_2.w * x2_3.y, cz * x2_2.w * x2_3.z, cz * x2_2.w * x2_3.w, cy * x2_3.x * x2_3.x);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_2.w * x3_3.y, cz * x3_2.w * x3_3.z, cz * x3_2.w * x3_3.w, cy * x3_3.x * x3_3.x);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_2.w * x4_3.y, cz * x4_2.w * x4_3.z, cz * x4_2.w * x4_3.w, cy * x4_3.x * x4_3.x);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_2.w * x5_3.y, cz * x5_2.w * x5_3.z, cz * x5_2.w * x5_3.w, cy * x5_3.x * x5_3.x);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_2.w * x6_3.y, cz * x6_2.w * x6_3.z, cz * x6_2.w * x6_3.w, cy * x6_3.x * x6_3.x);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_2.w * x7_3.y, cz * x7_2.w * x7_3.z, cz * x7_2.w * x7_3.w, cy * x7_3.x * x7_3.x);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 36u]; let s1 = states4[(states + 1u) * f_quads + 36u]; let s2 = states4[(states + 2u) * f_quads + 36u]; let s3 = states4[(states + 3u) * f_quads + 36u];
      let p0 = vec4<f32>(cz * x0_3.x * x0_3.y, cz * x0_3.x * x0_3.z, cz * x0_3.x * x0_3.w, cy * x0_3.y * x0_3.y);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_3.x * x1_3.y, cz * x1_3.x * x1_3.z, cz * x1_3.x * x1_3.w, cy * x1_3.y * x1_3.y);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_3.x * x2_3.y, cz * x2_3.x * x2_3.z, cz * x2_3.x * x2_3.w, cy * x2_3.y * x2_3.y);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_3.x * x3_3.y, cz * x3_3.x * x3_3.z, cz * x3_3.x * x3_3.w, cy * x3_3.y * x3_3.y);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_3.x * x4_3.y, cz * x4_3.x * x4_3.z, cz * x4_3.x * x4_3.w, cy * x4_3.y * x4_3.y);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_3.x * x5_3.y, cz * x5_3.x * x5_3.z, cz * x5_3.x * x5_3.w, cy * x5_3.y * x5_3.y);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_3.x * x6_3.y, cz * x6_3.x * x6_3.z, cz * x6_3.x * x6_3.w, cy * x6_3.y * x6_3.y);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_3.x * x7_3.y, cz * x7_3.x * x7_3.z, cz * x7_3.x * x7_3.w, cy * x7_3.y * x7_3.y);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 37u]; let s1 = states4[(states + 1u) * f_quads + 37u]; let s2 = states4[(states + 2u) * f_quads + 37u]; let s3 = states4[(states + 3u) * f_quads + 37u];
      let p0 = vec4<f32>(cz * x0_3.y * x0_3.z, cz * x0_3.y * x0_3.w, cy * x0_3.z * x0_3.z, cz * x0_3.z * x0_3.w);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cz * x1_3.y * x1_3.z, cz * x1_3.y * x1_3.w, cy * x1_3.z * x1_3.z, cz * x1_3.z * x1_3.w);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cz * x2_3.y * x2_3.z, cz * x2_3.y * x2_3.w, cy * x2_3.z * x2_3.z, cz * x2_3.z * x2_3.w);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cz * x3_3.y * x3_3.z, cz * x3_3.y * x3_3.w, cy * x3_3.z * x3_3.z, cz * x3_3.z * x3_3.w);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cz * x4_3.y * x4_3.z, cz * x4_3.y * x4_3.w, cy * x4_3.z * x4_3.z, cz * x4_3.z * x4_3.w);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cz * x5_3.y * x5_3.z, cz * x5_3.y * x5_3.w, cy * x5_3.z * x5_3.z, cz * x5_3.z * x5_3.w);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cz * x6_3.y * x6_3.z, cz * x6_3.y * x6_3.w, cy * x6_3.z * x6_3.z, cz * x6_3.z * x6_3.w);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cz * x7_3.y * x7_3.z, cz * x7_3.y * x7_3.w, cy * x7_3.z * x7_3.z, cz * x7_3.z * x7_3.w);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    { let s0 = states4[states * f_quads + 38u]; let s1 = states4[(states + 1u) * f_quads + 38u]; let s2 = states4[(states + 2u) * f_quads + 38u]; let s3 = states4[(states + 3u) * f_quads + 38u];
      let p0 = vec4<f32>(cy * x0_3.w * x0_3.w, 0.0, 0.0, 0.0);
      acc0 += vec4<f32>(dot(p0, s0), dot(p0, s1), dot(p0, s2), dot(p0, s3));
      let p1 = vec4<f32>(cy * x1_3.w * x1_3.w, 0.0, 0.0, 0.0);
      acc1 += vec4<f32>(dot(p1, s0), dot(p1, s1), dot(p1, s2), dot(p1, s3));
      let p2 = vec4<f32>(cy * x2_3.w * x2_3.w, 0.0, 0.0, 0.0);
      acc2 += vec4<f32>(dot(p2, s0), dot(p2, s1), dot(p2, s2), dot(p2, s3));
      let p3 = vec4<f32>(cy * x3_3.w * x3_3.w, 0.0, 0.0, 0.0);
      acc3 += vec4<f32>(dot(p3, s0), dot(p3, s1), dot(p3, s2), dot(p3, s3));
      let p4 = vec4<f32>(cy * x4_3.w * x4_3.w, 0.0, 0.0, 0.0);
      acc4 += vec4<f32>(dot(p4, s0), dot(p4, s1), dot(p4, s2), dot(p4, s3));
      let p5 = vec4<f32>(cy * x5_3.w * x5_3.w, 0.0, 0.0, 0.0);
      acc5 += vec4<f32>(dot(p5, s0), dot(p5, s1), dot(p5, s2), dot(p5, s3));
      let p6 = vec4<f32>(cy * x6_3.w * x6_3.w, 0.0, 0.0, 0.0);
      acc6 += vec4<f32>(dot(p6, s0), dot(p6, s1), dot(p6, s2), dot(p6, s3));
      let p7 = vec4<f32>(cy * x7_3.w * x7_3.w, 0.0, 0.0, 0.0);
      acc7 += vec4<f32>(dot(p7, s0), dot(p7, s1), dot(p7, s2), dot(p7, s3));
    }
    let add = (params.flags & ADD_ADDEND) != 0u;
    if (first + 0u < end) { let at = (h * params.rows_pad + first + 0u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc0[j]; } }
    if (first + 1u < end) { let at = (h * params.rows_pad + first + 1u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc1[j]; } }
    if (first + 2u < end) { let at = (h * params.rows_pad + first + 2u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc2[j]; } }
    if (first + 3u < end) { let at = (h * params.rows_pad + first + 3u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc3[j]; } }
    if (first + 4u < end) { let at = (h * params.rows_pad + first + 4u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc4[j]; } }
    if (first + 5u < end) { let at = (h * params.rows_pad + first + 5u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc5[j]; } }
    if (first + 6u < end) { let at = (h * params.rows_pad + first + 6u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc6[j]; } }
    if (first + 7u < end) { let at = (h * params.rows_pad + first + 7u) * params.width_in + 4u * jq;
      for (var j = 0u; j < 4u; j++) { out[at + j] = select(0.0, out[at + j], add) + acc7[j]; } }
}
