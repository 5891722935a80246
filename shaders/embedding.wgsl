// A language model's input (src/ops/embedding.rs): token embedding and learned positions,
// forward and backward, one invocation per element, no atomics:
//   embed          x[r, c] = table[ids[r], c] (+ positions[r % seq_len, c])
//   table_grad     d_table[v, c] = sum of dx[r, c] over the rows r whose token is v, in row
//                  order: the host lists the rows token by token (order, offsets: a counting
//                  sort), so each sum is a loop over its own rows, the same bits every run;
//                  added to d_table's values where ADD_INTO_TABLE
//   position_grad  d_positions[p, c] = sum over the batch of dx[b seq_len + p, c]; 0 for p at
//                  or past seq_len

override WORKGROUP: u32 = 64u;

// embed: add the positions.
const POSITIONS: u32 = 1u;
// table_grad: add to what d_table holds (a tied head's weight gradient).
const ADD_INTO_TABLE: u32 = 2u;

struct Params {
    rows: u32,
    width: u32,
    seq_len: u32,
    // table_grad: the table's rows (vocab); position_grad: the positions' rows (max_seq).
    table_rows: u32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> positions: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@group(0) @binding(5) var<storage, read> dx: array<f32>;
// The rows in token order, and where each token's rows start in it (vocab + 1 entries).
@group(0) @binding(6) var<storage, read> order: array<u32>;
@group(0) @binding(7) var<storage, read> offsets: array<u32>;
@group(0) @binding(8) var<storage, read_write> d_table: array<f32>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

@compute @workgroup_size(WORKGROUP)
fn embed(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.rows * params.width) {
        return;
    }
    let r = i / params.width;
    let c = i % params.width;
    var v = table[ids[r] * params.width + c];
    if ((params.flags & POSITIONS) != 0u) {
        v += positions[(r % params.seq_len) * params.width + c];
    }
    x[i] = v;
}

@compute @workgroup_size(WORKGROUP)
fn table_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.table_rows * params.width) {
        return;
    }
    let v = i / params.width;
    let c = i % params.width;
    var sum = 0.0;
    for (var k = offsets[v]; k < offsets[v + 1u]; k++) {
        sum += dx[order[k] * params.width + c];
    }
    if ((params.flags & ADD_INTO_TABLE) != 0u) {
        sum += d_table[i];
    }
    d_table[i] = sum;
}

@compute @workgroup_size(WORKGROUP)
fn position_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = linear_id(wid, lid, nwg);
    if (i >= params.table_rows * params.width) {
        return;
    }
    let p = i / params.width;
    let c = i % params.width;
    var sum = 0.0;
    if (p < params.seq_len) {
        for (var r = p; r < params.rows; r += params.seq_len) {
            sum += dx[r * params.width + c];
        }
    }
    d_table[i] = sum;
}
