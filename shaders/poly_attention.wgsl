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
//   * O'_c^T = S_<c^T Phi(Q_c)^T
//   * scores_c = Q_c K_c^T;  taylor_weights: P_g(s) on and below the diagonal, else 0
//   * O'_c^T += V'_c^T P_c^T;  normalise: o = O'[:, :d_v] / O'[:, d_v], Z = O'[:, d_v]
// Backward:
//   grad_rows       G
//   * R_c^T = G_c^T Phi(Q_c);  scan_states: exclusive suffix over chunks (causal)
//   * dW_c = G_c V'_c^T (scores kept from the forward);  taylor_grads: P_c^T and
//     dS = dW P_{g-1}(s) masked
//   * dQ' = dS K_c / sqrt(d), dK' = dS^T Q_c / sqrt(d), dV'^T = G_c^T P_c
//   * dPhi(Q_c)^T = S_<c G_c^T;  phi_grad_rows: dq = J_phi(q)^T dPhi(Q) + dQ'
//   * dPhi(K_c)^T = R_>c V'_c^T; phi_grad_rows: dk = J_phi(k)^T dPhi(K) + dK'
//   * dV'^T += R_>c^T Phi(K_c)^T;  copy_rows: dv = dV'[:, :d_v]
// O' and dV' are made chunk-transposed: their d_v + 1 columns are then rows of C, cut by the
// products into blocks of 16 rather than 32 (5 blocks of 16 for 65 against 3 of 32).
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

// flags: the phi_grad kernels add `addend`, and normalise adds the diagonal blocks' row sums to
// Z; scan_states runs a suffix instead of a prefix; copy_rows and the phi_grad kernels read a
// chunk-transposed source (the phi_grad kernels' addend lies the same way).
const ADD_ADDEND: u32 = 1u;
const SUFFIX: u32 = 2u;
const FROM_CHUNKS_TRANSPOSED: u32 = 4u;

struct Params {
    heads: u32,        // independent heads (B * H)
    rows: u32,         // rows of the unpadded tensors (n)
    rows_pad: u32,     // rows of the padded tensors (a whole number of chunks)
    d_qk: u32,
    width_in: u32,     // copy_rows: source width; normalise: O' width; scan: state size
    width_out: u32,    // copy_rows: destination width; grad_rows: G width; addend width
    features: u32,     // feature dimension k = C(d_qk + g, g)
    features_pad: u32, // k rounded up to a multiple of 8 (the Phi row stride)
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
// Rows the kernel reads: q or k (phi_*), a tensor to copy, O'^T (normalise), o (grad_rows).
@group(0) @binding(2) var<storage, read> x: array<f32>;
// Second input: dL/dphi (phi_grad_rows), dO (grad_rows).
@group(0) @binding(3) var<storage, read> y: array<f32>;
// phi_grad_rows: dQ' or dK' added to J^T; grad_rows and normalise: Z.
@group(0) @binding(4) var<storage, read> addend: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// normalise: Z per row; copy_rows_transposed_too and grad_rows: the chunk-transposed copy.
@group(0) @binding(6) var<storage, read_write> aux: array<f32>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

fn monomial_var(m: Monomial, j: u32) -> u32 {
    let word = select(m.vars_lo, m.vars_hi, j >= 4u);
    return (word >> ((j & 3u) * 8u)) & 0xffu;
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
// dL/dphi [heads, rows_pad, features_pad] and addend [heads, rows_pad, width_out], both rows or
// both chunk-transposed.
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
    let step = source_step();
    var at = feature_grads_row(row);
    for (var f = 0u; f < params.features; f++) {
        let m = monomials[f];
        let g = m.coef * y[at];
        at += step;
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
    var added = addend_row(padded_row);
    for (var i = 0u; i < params.d_qk; i++) {
        var value = dx[i];
        if (add) {
            value += addend[added];
        }
        added += step;
        out[row * params.d_qk + i] = value;
    }
}

// Where element 0 of row r of head h of a source with `width` columns lies: in rows, `rows`
// a head, or chunk-transposed (chunk_transposed's layout: dPhi^T, dV'^T) with
// FROM_CHUNKS_TRANSPOSED. Found once a row (llvmpipe divides lane by lane, and
// chunk_transposed divides); element j lies j source_step()s on.
fn source_start(h: u32, r: u32, rows: u32, width: u32) -> u32 {
    if ((params.flags & FROM_CHUNKS_TRANSPOSED) != 0u) {
        return chunk_transposed(h, r, 0u, width);
    }
    return (h * rows + r) * width;
}

fn source_step() -> u32 {
    return select(1u, params.chunk, (params.flags & FROM_CHUNKS_TRANSPOSED) != 0u);
}

// dL/dphi's row for x's row `row` (of heads * rows): rows of features_pad, or chunk-transposed.
// The phi_grad kernels walk it by adding source_step(): written as row + f * step inside
// phi_grad_pairs' pair loops, Mesa 22.3.6's llvmpipe under wgpu's GL backend read wrong
// gradients (a different error each run of tests/feature_map_gpu.rs, even with a step of 1),
// not under Vulkan.
fn feature_grads_row(row: u32) -> u32 {
    return source_start(row / params.rows, row % params.rows, params.rows_pad,
                        params.features_pad);
}

// Where the addend's row for padded row `padded_row` begins: it lies as dL/dphi does (rows of
// width_out, or chunk-transposed: the diagonal blocks' products make it so), its elements
// source_step() apart. Walked by adding the step, as feature_grads_row's row is.
fn addend_row(padded_row: u32) -> u32 {
    return source_start(padded_row / params.rows_pad, padded_row % params.rows_pad,
                        params.rows_pad, params.width_out);
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
    let step = source_step();
    let coef = pair_coefficients();
    var dx: array<f32, ONE_SLOT + 1u>;
    // Where the next feature's gradient lies in y (feature 0, the constant, has none).
    var at = feature_grads_row(row) + step;
    for (var i = 0u; i < d; i++) {
        dx[i] += coef.x * y[at] * 1.0;
        at += step;
    }
    for (var i = 0u; i < d; i++) {
        let x_i = xs[i];
        for (var j = i; j < d; j++) {
            let g = select(coef.z, coef.y, j == i) * y[at];
            dx[i] += g * xs[j];
            dx[j] += g * x_i;
            at += step;
        }
    }
    let add = (params.flags & ADD_ADDEND) != 0u;
    var added = addend_row(padded_row);
    for (var i = 0u; i < d; i++) {
        var value = dx[i];
        if (add) {
            value += addend[added];
        }
        added += step;
        out[row * d + i] = value;
    }
}

// dL/dphi chunk-transposed as vec4s: feature f of 4 consecutive rows of a chunk (phi_grad_pairs4).
@group(0) @binding(11) var<storage, read> y4: array<vec4<f32>>;

// phi_grad_pairs for 4 rows of a chunk at once, where dL/dphi is chunk-transposed (the chunk a
// multiple of 4): there a feature's gradients for rows r..r+3 are one vec4, so a feature costs
// a quarter of a load per row where phi_grad_pairs pays one (llvmpipe loads lane by lane, each
// load about what a vec4 costs). Each component makes its row's sums with phi_grad_pairs'
// operations in its order. One invocation per (head, 4 padded rows).
@compute @workgroup_size(WORKGROUP)
fn phi_grad_pairs4(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let quad = linear_id(wid, lid, nwg);
    let quads = params.rows_pad / 4u;
    let h = quad / quads;
    let r0 = 4u * (quad - h * quads);
    if (h >= params.heads || r0 >= params.rows) {
        return;
    }
    let d = params.d_qk;
    // Row r0 + e of x in component e; rows past the last (padding) read as the last, unstored.
    let last = h * params.rows + params.rows - 1u;
    let row0 = h * params.rows + r0;
    var xs: array<vec4<f32>, ONE_SLOT>;
    for (var i = 0u; i < d; i++) {
        xs[i] = vec4<f32>(x[row0 * d + i], x[min(row0 + 1u, last) * d + i],
                          x[min(row0 + 2u, last) * d + i], x[min(row0 + 3u, last) * d + i]);
    }
    let coef = pair_coefficients();
    var dx: array<vec4<f32>, ONE_SLOT>;
    let step = params.chunk / 4u;
    // Feature 1's gradients (feature 0, the constant, has none), in vec4s.
    var at = chunk_transposed(h, r0, 1u, params.features_pad) / 4u;
    for (var i = 0u; i < d; i++) {
        dx[i] += coef.x * y4[at] * 1.0;
        at += step;
    }
    for (var i = 0u; i < d; i++) {
        let x_i = xs[i];
        for (var j = i; j < d; j++) {
            let g = select(coef.z, coef.y, j == i) * y4[at];
            dx[i] += g * xs[j];
            dx[j] += g * x_i;
            at += step;
        }
    }
    let add = (params.flags & ADD_ADDEND) != 0u;
    for (var e = 0u; e < min(4u, params.rows - r0); e++) {
        var added = addend_row(h * params.rows_pad + r0 + e);
        for (var i = 0u; i < d; i++) {
            var value = dx[i][e];
            if (add) {
                value += addend[added];
            }
            added += source_step();
            out[(row0 + e) * d + i] = value;
        }
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
    let start = source_start(h, r, params.rows, params.width_in);
    let step = source_step();
    for (var j = 0u; j < params.width_out; j++) {
        out[base + j] = copied_at(start + j * step, r, j);
    }
}

// Element (r, j) of copy_rows's destination, where `at` is the source's element j of row r
// (source_start and source_step).
fn copied_at(at: u32, r: u32, j: u32) -> f32 {
    var value = 0.0;
    if (r < params.rows) {
        if (j < params.width_in) {
            value = x[at];
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
    let start = source_start(h, r, params.rows, params.width_in);
    let step = source_step();
    for (var j = 0u; j < params.width_out; j++) {
        let value = copied_at(start + j * step, r, j);
        out[base + j] = value;
        aux[transposed + j * params.chunk] = value;
    }
}

// copy_rows_transposed_too for 4 rows of a chunk per invocation, from rows of x (not
// chunk-transposed) whose width is a multiple of 4, writing only the chunk-transposed copy: V'
// for the products, which read it only so. Each vec4 of the 4 rows is loaded (x4) as one, and
// each column of them stored (aux4) as one, where copy_rows_transposed_too loads and stores every
// float alone. The same values.
@compute @workgroup_size(WORKGROUP)
fn copy_rows_to_chunks4(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let rq = row_quad(linear_id(wid, lid, nwg));
    if (rq.h >= params.heads) {
        return;
    }
    for (var q = 0u; q < params.width_out / 4u; q++) {
        store_column_quads(rq.transposed4 + q * 4u * rq.step4, rq.step4, copied_quad(rq, q));
    }
}

// Columns 4q..4q + 3 of a quad's 4 rows as copied (x4's rows, width_in wide, then the ones
// column and zeros; zeros in padding rows).
fn copied_quad(rq: RowQuad, q: u32) -> mat4x4<f32> {
    let real = rq.real;
    let source = rq.source;
    let source_quads = params.width_in / 4u;
    if (q < source_quads) {
        return mat4x4<f32>(
            select(vec4<f32>(0.0), x4[source.x * source_quads + q], real.x),
            select(vec4<f32>(0.0), x4[source.y * source_quads + q], real.y),
            select(vec4<f32>(0.0), x4[source.z * source_quads + q], real.z),
            select(vec4<f32>(0.0), x4[source.w * source_quads + q], real.w));
    }
    // Past the source: 1 in the ones column of the source's rows, else 0.
    let col = 4u * q;
    let ones = vec4<f32>(vec4<bool>(col == params.ones_col, col + 1u == params.ones_col,
                                    col + 2u == params.ones_col, col + 3u == params.ones_col));
    let zero = vec4<f32>(0.0);
    return mat4x4<f32>(select(zero, ones, real.x), select(zero, ones, real.y),
                       select(zero, ones, real.z), select(zero, ones, real.w));
}

// copy_rows from a chunk-transposed source (copy_dv: dV^T's chunks into dv's rows) for 4 rows
// of a chunk per invocation, where the width is a multiple of 4: the 4 rows of each source
// column are one vec4 (x4), and each destination row's 4 columns one vec4 (out4), where
// copy_rows loads and stores every float alone. The destination has params.rows rows per head,
// unpadded: rows past the last are not stored. The same values.
@compute @workgroup_size(WORKGROUP)
fn copy_rows_from_chunks4(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let rq = row_quad(linear_id(wid, lid, nwg));
    if (rq.h >= params.heads) {
        return;
    }
    let width_quads = params.width_out / 4u;
    for (var q = 0u; q < width_quads; q++) {
        store_real_rows(rq, q, width_quads, rows_from_chunks4(rq, q));
    }
}

// Columns 4q..4q + 3 of a quad's 4 rows from x4 chunk-transposed (each column's 4 rows one
// vec4, columns step4 apart), transposed: the 4 rows, each over the 4 columns.
fn rows_from_chunks4(rq: RowQuad, q: u32) -> mat4x4<f32> {
    let at = rq.transposed4 + 4u * q * rq.step4;
    return transpose(mat4x4<f32>(x4[at], x4[at + rq.step4], x4[at + 2u * rq.step4],
                                 x4[at + 3u * rq.step4]));
}

// A quad's rows into out4 [heads * rows, 4 width_quads] at vec4 q, the source's rows only (the
// destination is unpadded).
fn store_real_rows(rq: RowQuad, q: u32, width_quads: u32, rows: mat4x4<f32>) {
    if (rq.real.x) {
        out4[rq.source.x * width_quads + q] = rows[0];
    }
    if (rq.real.y) {
        out4[rq.source.y * width_quads + q] = rows[1];
    }
    if (rq.real.z) {
        out4[rq.source.z * width_quads + q] = rows[2];
    }
    if (rq.real.w) {
        out4[rq.source.w * width_quads + q] = rows[3];
    }
}

// 4 rows of a chunk as the kernels that take them per invocation see them (a chunk is a
// multiple of 4 rows). h is params.heads or more past the last quad.
struct RowQuad {
    h: u32,
    // Column 0 of rows r0..r0 + 3 in its chunk-transposed copy (one vec4), and the vec4s from
    // one column to the next there.
    transposed4: u32,
    step4: u32,
    // Which of the 4 rows are the source's (the others are padding, zero), and where in the
    // source [heads * rows, ..] each is (padding rows point at the head's last row).
    real: vec4<bool>,
    source: vec4<u32>,
}

fn row_quad(quad: u32) -> RowQuad {
    let row_quads = params.rows_pad / 4u;
    let h = quad / row_quads;
    let r0 = 4u * (quad - h * row_quads);
    let first = h * params.rows;
    let last = first + params.rows - 1u;
    return RowQuad(
        h,
        chunk_transposed(h, r0, 0u, params.width_out) / 4u,
        params.chunk / 4u,
        vec4<bool>(r0 < params.rows, r0 + 1u < params.rows, r0 + 2u < params.rows,
                   r0 + 3u < params.rows),
        min(vec4<u32>(first + r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)),
    );
}

// ---- the diagonal blocks ---------------------------------------------------------------------

// The taylor kernels load and store whole vec4s of the blocks (C is a multiple of 4): they do
// little but load and store, and with an f32 a step they ran 1.3-1.6x slower (BENCHMARKS.md).
// An invocation per block row (taylor_weights) or per 4 block rows (taylor_grads) loops over
// the row's vec4s.

// The scores and P or P^T as vec4s: second bindings of x and aux; dL/dP as out4.
@group(0) @binding(8) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> aux4: array<vec4<f32>>;

// P_g(s) = sum_{i<=g} s^i / i! of each component, Horner form. Called with DEGREE or
// DEGREE - 1 only, so the loop has a constant trip count.
fn taylor_exp4(s: vec4<f32>, degree: u32) -> vec4<f32> {
    var acc = vec4<f32>(1.0);
    for (var i = 0u; i < degree; i++) {
        acc = 1.0 + acc * s / f32(degree - i);
    }
    return acc;
}

// Whether columns b..b+3 of block row a lie on or below the diagonal.
fn kept(b: u32, a: u32) -> vec4<bool> {
    return vec4<u32>(b, b + 1u, b + 2u, b + 3u) <= vec4<u32>(a);
}

// One invocation per block row a of the scores x [heads * n_chunks, C, C]: P_g(s / sqrt(d))
// on and below the diagonal (b <= a), 0 above, into aux (the scores are kept for the backward),
// and the row's sum into out [heads, rows_pad] (its share of Z, which normalise adds).
// Past the vec4 that holds the diagonal nothing is loaded or computed, only zeros stored: the
// loads are what costs on llvmpipe, and the scores product leaves those scores unwritten.
@compute @workgroup_size(WORKGROUP)
fn taylor_weights(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let block_row = linear_id(wid, lid, nwg);
    if (block_row >= params.heads * params.n_chunks * params.chunk) {
        return;
    }
    let a = block_row % params.chunk;
    let row4 = block_row * (params.chunk / 4u);
    let diagonal4 = a / 4u;
    var sums = vec4<f32>(0.0);
    for (var b4 = 0u; b4 <= diagonal4; b4++) {
        let w = select(vec4<f32>(0.0), taylor_exp4(x4[row4 + b4] * params.logit_scale, DEGREE),
                       kept(4u * b4, a));
        aux4[row4 + b4] = w;
        sums += w;
    }
    out[block_row] = (sums.x + sums.y) + (sums.z + sums.w);
    for (var b4 = diagonal4 + 1u; b4 < params.chunk / 4u; b4++) {
        aux4[row4 + b4] = vec4<f32>(0.0);
    }
}

// One invocation per 4 block rows a..a+3: with dW = dL/dP in out and the scores in x, writes
// dL/ds = dW P_{g-1}(s) into out, masked (the forward's P_g(s) is kept for dV'^T = G^T P). A 4 x
// 4 tile at a time. Tiles wholly above the diagonal get zeros with nothing loaded, as in
// taylor_weights.
@compute @workgroup_size(WORKGROUP)
fn taylor_grads(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let quad = linear_id(wid, lid, nwg);
    let per_row = params.chunk / 4u;
    if (quad >= params.heads * params.n_chunks * per_row) {
        return;
    }
    // Rows a..a+3 of their block (a block has per_row quads of rows as it has vec4s a row).
    let a = 4u * (quad % per_row);
    let row4 = 4u * quad * per_row;
    let diagonal4 = a / 4u;
    for (var b4 = 0u; b4 <= diagonal4; b4++) {
        for (var i = 0u; i < 4u; i++) {
            let at = row4 + i * per_row + b4;
            let s = x4[at] * params.logit_scale;
            let keep = kept(4u * b4, a + i);
            out4[at] = select(vec4<f32>(0.0), out4[at] * taylor_exp4(s, DEGREE - 1u), keep);
        }
    }
    for (var b4 = diagonal4 + 1u; b4 < per_row; b4++) {
        for (var i = 0u; i < 4u; i++) {
            out4[row4 + i * per_row + b4] = vec4<f32>(0.0);
        }
    }
}

// ---- per row ---------------------------------------------------------------------------------

// One invocation per (head, row): o = O'[:, :d_v] / Z from x = O' chunk-transposed
// (chunk_transposed's layout, width_in columns), Z = O'[:, d_v] plus, with ADD_ADDEND, the
// diagonal blocks' row sums of P (addend [heads, rows_pad]); Z into aux [heads, rows].
@compute @workgroup_size(WORKGROUP)
fn normalise(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(wid, lid, nwg);
    if (row >= params.heads * params.rows) {
        return;
    }
    let first = chunk_transposed(row / params.rows, row % params.rows, 0u, params.width_in);
    var z = x[first + params.d_v * params.chunk];
    if ((params.flags & ADD_ADDEND) != 0u) {
        z += addend[(row / params.rows) * params.rows_pad + row % params.rows];
    }
    for (var j = 0u; j < params.d_v; j++) {
        out[row * params.d_v + j] = x[first + j * params.chunk] / z;
    }
    aux[row] = z;
}

// normalise for 4 rows of a chunk per invocation, where d_v is a multiple of 4: O'^T's columns
// loaded 4 rows at a time (x4, width_out columns), o's rows stored as vec4s (out4), each
// divided by its own Z as normalise divides it. The same values.
@compute @workgroup_size(WORKGROUP)
fn normalise4(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let quad = linear_id(wid, lid, nwg);
    let rq = row_quad(quad);
    if (rq.h >= params.heads) {
        return;
    }
    let value_quads = params.d_v / 4u;
    let z = quad_z(x4[rq.transposed4 + params.d_v * rq.step4], quad);
    for (var q = 0u; q < value_quads; q++) {
        let rows = rows_from_chunks4(rq, q);
        let o = mat4x4<f32>(rows[0] / z.x, rows[1] / z.y, rows[2] / z.z, rows[3] / z.w);
        store_real_rows(rq, q, value_quads, o);
    }
    store_quad_z(rq, z);
}

// The 4 rows' Z of quad `quad`: their value in O''s ones column, plus the diagonal blocks' row
// sums where normalise adds them.
fn quad_z(ones: vec4<f32>, quad: u32) -> vec4<f32> {
    if ((params.flags & ADD_ADDEND) == 0u) {
        return ones;
    }
    let p = 4u * quad;
    return ones + vec4<f32>(addend[p], addend[p + 1u], addend[p + 2u], addend[p + 3u]);
}

// The quad's Z into aux, its real rows only.
fn store_quad_z(rq: RowQuad, z: vec4<f32>) {
    if (rq.real.x) {
        aux[rq.source.x] = z.x;
    }
    if (rq.real.y) {
        aux[rq.source.y] = z.y;
    }
    if (rq.real.z) {
        aux[rq.source.z] = z.z;
    }
    if (rq.real.w) {
        aux[rq.source.w] = z.w;
    }
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
    // Column 0 of the row in G^T_c, column j j chunks on (found once: chunk_transposed
    // divides, and llvmpipe divides lane by lane).
    let transposed = chunk_transposed(h, r, 0u, width);
    if (r >= params.rows) {
        for (var j = 0u; j < width; j++) {
            out[base + j] = 0.0;
            aux[transposed + j * params.chunk] = 0.0;
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
        aux[transposed + j * params.chunk] = d_o * inv_z;
    }
    out[base + params.d_v] = -delta * inv_z;
    aux[transposed + params.d_v * params.chunk] = -delta * inv_z;
    for (var j = params.d_v + 1u; j < width; j++) {
        out[base + j] = 0.0;
        aux[transposed + j * params.chunk] = 0.0;
    }
}

// grad_rows for 4 rows of a chunk per invocation, for d_v and the padded width multiples of 4:
// o and dO loaded (x4, y4) as vec4s, and only G's chunk-transposed copy stored, a vec4 of 4 rows
// at a time (aux4), where grad_rows stores each float alone (and G's rows, which the products
// do not read). Each row's delta adds its products in grad_rows' order, so G is grad_rows' G.
// One invocation per (head, 4 padded rows); rows past the last are zero.
@compute @workgroup_size(WORKGROUP)
fn grad_rows4(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let rq = row_quad(linear_id(wid, lid, nwg));
    if (rq.h >= params.heads) {
        return;
    }
    let real = rq.real;
    let rows = rq.source;
    let width_quads = params.width_out / 4u;
    let value_quads = params.d_v / 4u;
    // 1/Z of each row, 0 for padding rows (their G is 0).
    let inv_z = select(vec4<f32>(0.0), 1.0 / vec4<f32>(addend[rows.x], addend[rows.y],
                                                         addend[rows.z], addend[rows.w]), real);
    var delta0 = 0.0;
    var delta1 = 0.0;
    var delta2 = 0.0;
    var delta3 = 0.0;
    for (var q = 0u; q < value_quads; q++) {
        let g0 = grad_quad(rows.x, q, inv_z.x, &delta0);
        let g1 = grad_quad(rows.y, q, inv_z.y, &delta1);
        let g2 = grad_quad(rows.z, q, inv_z.z, &delta2);
        let g3 = grad_quad(rows.w, q, inv_z.w, &delta3);
        store_column_quads(rq.transposed4 + 4u * q * rq.step4, rq.step4,
                           mat4x4<f32>(g0, g1, g2, g3));
    }
    // The ones column's gradient, then zeros to the padded width.
    let ones = select(vec4<f32>(0.0), -vec4<f32>(delta0, delta1, delta2, delta3) * inv_z,
                      real);
    let ones_rows = mat4x4<f32>(vec4<f32>(ones.x, 0.0, 0.0, 0.0), vec4<f32>(ones.y, 0.0, 0.0, 0.0),
                                vec4<f32>(ones.z, 0.0, 0.0, 0.0), vec4<f32>(ones.w, 0.0, 0.0, 0.0));
    store_column_quads(rq.transposed4 + 4u * value_quads * rq.step4, rq.step4, ones_rows);
    let zeros = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var q = value_quads + 1u; q < width_quads; q++) {
        store_column_quads(rq.transposed4 + 4u * q * rq.step4, rq.step4, zeros);
    }
}

// dO / Z for 4 value columns of `row`, adding dO . o over them into `delta` in column order.
fn grad_quad(row: u32, q: u32, inv_z: f32, delta: ptr<function, f32>) -> vec4<f32> {
    let at = row * (params.d_v / 4u) + q;
    let d_o = y4[at];
    let o = x4[at];
    *delta += d_o.x * o.x;
    *delta += d_o.y * o.y;
    *delta += d_o.z * o.z;
    *delta += d_o.w * o.w;
    return d_o * inv_z;
}

// The same 4 columns of the 4 rows into the chunk-transposed aux4: column j's 4 rows one vec4,
// columns `step4` apart from `at`.
fn store_column_quads(at: u32, step4: u32, rows: mat4x4<f32>) {
    let columns = transpose(rows);
    aux4[at] = columns[0];
    aux4[at + step4] = columns[1];
    aux4[at + 2u * step4] = columns[2];
    aux4[at + 3u * step4] = columns[3];
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
