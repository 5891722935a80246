
// ---- scan_states64: scan_states by 8 floats a load -------------------------------------------
// Appended to poly_attention.wgsl (floats64.wgsl between them) where the adapter has 64-bit
// integers (wgpu's SHADER_INT64). A chunk's state is a multiple of 8 floats (v_width and
// features_pad are multiples of 8). Each invocation runs 8 of them through the chunks, with
// the same sums in the same order as scan_states: the same bits.

// The chunk states, 8 floats an element: a third binding of scan_states's buffer.
@group(0) @binding(12) var<storage, read_write> states8: array<vec4<u64>>;

@compute @workgroup_size(WORKGROUP)
fn scan_states64(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_slot = params.width_in / 8u;
    let id = linear_id(wid, lid, nwg);
    let h = id / per_slot;
    if (h >= params.heads) {
        return;
    }
    let base = h * params.n_chunks * per_slot + id % per_slot;
    var first = vec4<f32>(0.0);
    var second = vec4<f32>(0.0);
    let suffix = (params.flags & SUFFIX) != 0u;
    for (var i = 0u; i < params.n_chunks; i++) {
        let c = select(i, params.n_chunks - 1u - i, suffix);
        let at = base + c * per_slot;
        let here = states8[at];
        states8[at] = eight64(first, second);
        first += first4(here);
        second += second4(here);
    }
}

// ---- 8 rows of a chunk per invocation: the chunk-transposed side by vec4<u64> ----------------
// normalise8, copy_rows_from_chunks8, copy_rows_to_chunks8 and grad_rows8 are the kernels of 4
// rows (normalise4, ...) on two quads of rows at once, r0..r0 + 3 (quad a) and r0 + 4..r0 + 7
// (quad b), r0 a multiple of 8: in a chunk-transposed tensor a column's 8 rows are one aligned
// vec4<u64> (the chunk is a multiple of 8), so its loads or stores there are halved. Each row
// gets its quad kernel's operations in their order: the same bits.

// A chunk-transposed tensor, 8 floats an element: x8 read, aux8 written.
@group(0) @binding(16) var<storage, read> x8: array<vec4<u64>>;
@group(0) @binding(17) var<storage, read_write> aux8: array<vec4<u64>>;

// Column j's 8 rows of the octet in a chunk-transposed tensor: element index of column 0, and
// the step from one column to the next, in vec4<u64>s.
struct Octet {
    a: RowQuad,
    b: RowQuad,
    at8: u32,
    step8: u32,
}

fn row_octet(octet: u32) -> Octet {
    let a = row_quad(2u * octet);
    return Octet(a, row_quad(2u * octet + 1u), a.transposed4 / 2u, a.step4 / 2u);
}

// Columns 4q..4q + 3 of the octet's 8 rows from x8, as each quad's 4 rows (rows_from_chunks4's
// result for quad a, then b).
fn octet_rows_from_chunks(o: Octet, q: u32) -> array<mat4x4<f32>, 2> {
    let at = o.at8 + 4u * q * o.step8;
    let c0 = x8[at];
    let c1 = x8[at + o.step8];
    let c2 = x8[at + 2u * o.step8];
    let c3 = x8[at + 3u * o.step8];
    return array<mat4x4<f32>, 2>(
        transpose(mat4x4<f32>(first4(c0), first4(c1), first4(c2), first4(c3))),
        transpose(mat4x4<f32>(second4(c0), second4(c1), second4(c2), second4(c3))));
}

// Columns 4q..4q + 3 of the octet's 8 rows (each quad's 4 rows) into aux8.
fn store_octet_columns(o: Octet, q: u32, a: mat4x4<f32>, b: mat4x4<f32>) {
    let at = o.at8 + 4u * q * o.step8;
    let ca = transpose(a);
    let cb = transpose(b);
    aux8[at] = eight64(ca[0], cb[0]);
    aux8[at + o.step8] = eight64(ca[1], cb[1]);
    aux8[at + 2u * o.step8] = eight64(ca[2], cb[2]);
    aux8[at + 3u * o.step8] = eight64(ca[3], cb[3]);
}

@compute @workgroup_size(WORKGROUP)
fn normalise8(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let octet = linear_id(wid, lid, nwg);
    let o = row_octet(octet);
    if (o.a.h >= params.heads) {
        return;
    }
    let value_quads = params.d_v / 4u;
    let ones = x8[o.at8 + params.d_v * o.step8];
    let za = quad_z(first4(ones), 2u * octet);
    let zb = quad_z(second4(ones), 2u * octet + 1u);
    for (var q = 0u; q < value_quads; q++) {
        let rows = octet_rows_from_chunks(o, q);
        let ra = rows[0];
        let rb = rows[1];
        store_real_rows(o.a, q, value_quads,
                        mat4x4<f32>(ra[0] / za.x, ra[1] / za.y, ra[2] / za.z, ra[3] / za.w));
        store_real_rows(o.b, q, value_quads,
                        mat4x4<f32>(rb[0] / zb.x, rb[1] / zb.y, rb[2] / zb.z, rb[3] / zb.w));
    }
    store_quad_z(o.a, za);
    store_quad_z(o.b, zb);
}

@compute @workgroup_size(WORKGROUP)
fn copy_rows_from_chunks8(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = row_octet(linear_id(wid, lid, nwg));
    if (o.a.h >= params.heads) {
        return;
    }
    let width_quads = params.width_out / 4u;
    for (var q = 0u; q < width_quads; q++) {
        let rows = octet_rows_from_chunks(o, q);
        store_real_rows(o.a, q, width_quads, rows[0]);
        store_real_rows(o.b, q, width_quads, rows[1]);
    }
}

@compute @workgroup_size(WORKGROUP)
fn copy_rows_to_chunks8(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = row_octet(linear_id(wid, lid, nwg));
    if (o.a.h >= params.heads) {
        return;
    }
    for (var q = 0u; q < params.width_out / 4u; q++) {
        store_octet_columns(o, q, copied_quad(o.a, q), copied_quad(o.b, q));
    }
}

@compute @workgroup_size(WORKGROUP)
fn grad_rows8(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = row_octet(linear_id(wid, lid, nwg));
    if (o.a.h >= params.heads) {
        return;
    }
    let width_quads = params.width_out / 4u;
    let value_quads = params.d_v / 4u;
    let ra = o.a.source;
    let rb = o.b.source;
    let inv_za = select(vec4<f32>(0.0), 1.0 / vec4<f32>(addend[ra.x], addend[ra.y], addend[ra.z],
                                                          addend[ra.w]), o.a.real);
    let inv_zb = select(vec4<f32>(0.0), 1.0 / vec4<f32>(addend[rb.x], addend[rb.y], addend[rb.z],
                                                          addend[rb.w]), o.b.real);
    // Each row's delta (grad_rows4's).
    var da0 = 0.0;
    var da1 = 0.0;
    var da2 = 0.0;
    var da3 = 0.0;
    var db0 = 0.0;
    var db1 = 0.0;
    var db2 = 0.0;
    var db3 = 0.0;
    for (var q = 0u; q < value_quads; q++) {
        let a = mat4x4<f32>(grad_quad(ra.x, q, inv_za.x, &da0), grad_quad(ra.y, q, inv_za.y, &da1),
                            grad_quad(ra.z, q, inv_za.z, &da2), grad_quad(ra.w, q, inv_za.w, &da3));
        let b = mat4x4<f32>(grad_quad(rb.x, q, inv_zb.x, &db0), grad_quad(rb.y, q, inv_zb.y, &db1),
                            grad_quad(rb.z, q, inv_zb.z, &db2), grad_quad(rb.w, q, inv_zb.w, &db3));
        store_octet_columns(o, q, a, b);
    }
    // The ones column's gradient, then zeros to the padded width (grad_rows4's).
    let ones_a = select(vec4<f32>(0.0), -vec4<f32>(da0, da1, da2, da3) * inv_za, o.a.real);
    let ones_b = select(vec4<f32>(0.0), -vec4<f32>(db0, db1, db2, db3) * inv_zb, o.b.real);
    store_octet_columns(o, value_quads, ones_column(ones_a), ones_column(ones_b));
    let zeros = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var q = value_quads + 1u; q < width_quads; q++) {
        store_octet_columns(o, q, zeros, zeros);
    }
}

// 4 rows whose first column is `ones` and the rest 0.
fn ones_column(ones: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(vec4<f32>(ones.x, 0.0, 0.0, 0.0), vec4<f32>(ones.y, 0.0, 0.0, 0.0),
                       vec4<f32>(ones.z, 0.0, 0.0, 0.0), vec4<f32>(ones.w, 0.0, 0.0, 0.0));
}
