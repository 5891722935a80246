// examples/probe_operand_paths.rs: one product kernel, op(B) (and op(A)) read seven ways.
// C [M, N] = A [M, K] B [K, N], A k-contiguous, B k-major (the model's input gradients), with the
// block of the library's broadcast64-km-16x8: a lane owns 16 rows x 8 columns, a subgroup of 8
// lanes 16 x 64; per 8 k a lane loads its 8 columns at each k (one vec4<u64>) and two vec4<u64> of
// op(A), whose rows every lane then takes by subgroupBroadcast. The variants differ only in where
// the operands come from:
//   B_FROM_TEXTURE: op(B) from an rgba32float texture (texel (col / 4, k)), 2 texels a k;
//   B_FROM_WINDOW: op(B) from a uniform buffer, as B is stored (a vec4<u64> a k);
//   B_WINDOW_SWITCH: the same from one of four uniform buffers picked by a switch on k (llvmpipe
//     runs every case, masked: all four are loaded);
//   A_FROM_TEXTURE: op(A) too (texel (k / 4, row)), broadcast as from the buffer;
//   B_SYNTHESISED / A_SYNTHESISED: no loads at all, values made from k and the column: the
//     product is wrong, and what is left is the cost of everything but those loads.
//   A_K_MAJOR: op(B) from the window, and A read as if stored k-major ([K, M], a weight
//     gradient's op(A) = A^T): lane l loads the block's 8 rows at k + l, 8 rows at a stride of M
//     floats, one page apart at M = 1024 (a wrong product: A's buffer is the row-major one);
//   A_AHEAD: the same, each step's op(A) loaded one step before its use (whether its misses then
//     hide behind the step's arithmetic).
// Needs subgroups of 8 and SHADER_INT64; M a multiple of 16, N of 64, K of 8. The host prepends
// shaders/floats64.wgsl (halves, first4, second4); add_row8 repeats shaders/matmul_int64.wgsl's,
// whose file holds kernels with other bindings.
struct Params { m: u32, n: u32, k: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a8: array<vec4<u64>>;
@group(0) @binding(2) var<storage, read> b8: array<vec4<u64>>;
@group(0) @binding(3) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(4) var b_texture: texture_2d<f32>;
@group(0) @binding(5) var a_texture: texture_2d<f32>;
// op(B) as a uniform buffer of 64 KiB: B itself where K x N fits, otherwise its first 64 KiB
// read as if repeated (a wrong product, timed).
@group(0) @binding(6) var<uniform> b_window: array<vec4<u64>, 2048>;
@group(0) @binding(7) var<uniform> b_window1: array<vec4<u64>, 2048>;
@group(0) @binding(8) var<uniform> b_window2: array<vec4<u64>, 2048>;
@group(0) @binding(9) var<uniform> b_window3: array<vec4<u64>, 2048>;
override B_WINDOW_SWITCH: bool = false;
fn window_load(w: u32, at: u32) -> vec4<u64> {
    switch w {
        case 0u: { return b_window[at]; }
        case 1u: { return b_window1[at]; }
        case 2u: { return b_window2[at]; }
        default: { return b_window3[at]; }
    }
}

override B_FROM_TEXTURE: bool = false;
override A_FROM_TEXTURE: bool = false;
override B_SYNTHESISED: bool = false;
override A_SYNTHESISED: bool = false;
override B_FROM_WINDOW: bool = false;
override A_K_MAJOR: bool = false;
override A_AHEAD: bool = false;

// acc + row[j] * b[j] for the 8 k, k by k.
fn add_row8(acc: vec4<f32>, row: array<f32, 8>, b: array<vec4<f32>, 8>) -> vec4<f32> {
    var s = acc + row[0] * b[0];
    s += row[1] * b[1];
    s += row[2] * b[2];
    s += row[3] * b[3];
    s += row[4] * b[4];
    s += row[5] * b[5];
    s += row[6] * b[6];
    return s + row[7] * b[7];
}

// The lane's 8 columns at k..k+7 as columns 0..3 and 4..7 at each k.
fn cols8(col: u32, k: u32) -> array<array<vec4<f32>, 8>, 2> {
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    if (B_SYNTHESISED) {
        let base = vec4<f32>(f32(col), f32(col + 1u), f32(col + 2u), f32(col + 3u)) * 1e-4;
        for (var j = 0u; j < 8u; j++) {
            let f = f32(k + j) * 1e-3;
            lo[j] = base + f;
            hi[j] = base + (f + 4e-4);
        }
    } else if (B_FROM_TEXTURE) {
        let x = i32(col / 4u);
        let y = i32(k);
        lo[0] = textureLoad(b_texture, vec2<i32>(x, y + 0), 0);
        hi[0] = textureLoad(b_texture, vec2<i32>(x + 1, y + 0), 0);
        lo[1] = textureLoad(b_texture, vec2<i32>(x, y + 1), 0);
        hi[1] = textureLoad(b_texture, vec2<i32>(x + 1, y + 1), 0);
        lo[2] = textureLoad(b_texture, vec2<i32>(x, y + 2), 0);
        hi[2] = textureLoad(b_texture, vec2<i32>(x + 1, y + 2), 0);
        lo[3] = textureLoad(b_texture, vec2<i32>(x, y + 3), 0);
        hi[3] = textureLoad(b_texture, vec2<i32>(x + 1, y + 3), 0);
        lo[4] = textureLoad(b_texture, vec2<i32>(x, y + 4), 0);
        hi[4] = textureLoad(b_texture, vec2<i32>(x + 1, y + 4), 0);
        lo[5] = textureLoad(b_texture, vec2<i32>(x, y + 5), 0);
        hi[5] = textureLoad(b_texture, vec2<i32>(x + 1, y + 5), 0);
        lo[6] = textureLoad(b_texture, vec2<i32>(x, y + 6), 0);
        hi[6] = textureLoad(b_texture, vec2<i32>(x + 1, y + 6), 0);
        lo[7] = textureLoad(b_texture, vec2<i32>(x, y + 7), 0);
        hi[7] = textureLoad(b_texture, vec2<i32>(x + 1, y + 7), 0);
    } else if (B_WINDOW_SWITCH) {
        let w = (k >> 8u) & 3u;
        for (var j = 0u; j < 8u; j++) {
            let v = window_load(w, (((k + j) * params.n + col) / 8u) & 2047u);
            lo[j] = first4(v);
            hi[j] = second4(v);
        }
    } else if (B_FROM_WINDOW) {
        for (var j = 0u; j < 8u; j++) {
            let w = b_window[(((k + j) * params.n + col) / 8u) & 2047u];
            lo[j] = first4(w);
            hi[j] = second4(w);
        }
    } else {
        let w0 = b8[((k + 0u) * params.n + col) / 8u];
        lo[0] = first4(w0);
        hi[0] = second4(w0);
        let w1 = b8[((k + 1u) * params.n + col) / 8u];
        lo[1] = first4(w1);
        hi[1] = second4(w1);
        let w2 = b8[((k + 2u) * params.n + col) / 8u];
        lo[2] = first4(w2);
        hi[2] = second4(w2);
        let w3 = b8[((k + 3u) * params.n + col) / 8u];
        lo[3] = first4(w3);
        hi[3] = second4(w3);
        let w4 = b8[((k + 4u) * params.n + col) / 8u];
        lo[4] = first4(w4);
        hi[4] = second4(w4);
        let w5 = b8[((k + 5u) * params.n + col) / 8u];
        lo[5] = first4(w5);
        hi[5] = second4(w5);
        let w6 = b8[((k + 6u) * params.n + col) / 8u];
        lo[6] = first4(w6);
        hi[6] = second4(w6);
        let w7 = b8[((k + 7u) * params.n + col) / 8u];
        lo[7] = first4(w7);
        hi[7] = second4(w7);
    }
    return array<array<vec4<f32>, 8>, 2>(lo, hi);
}

// Row `row` of op(A) at k..k+7.
fn row8(row: u32, k: u32) -> vec4<u64> {
    return a8[(row * params.k + k) / 8u];
}

// One subgroup per 16 x 64 block of C, blocks column-fastest.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let block = ((wid.y * nwg.x + wid.x) * 64u + lid) / 8u;
    let col_blocks = params.n / 64u;
    let row = (block / col_blocks) * 16u;
    let col = (block % col_blocks) * 64u + 8u * lane;
    if (row >= params.m) { return; }
    var acc: array<vec4<f32>, 32>;
    // A_AHEAD: op(A) for the next step, loaded a step before its use.
    var next_la = vec4<u64>();
    var next_ha = vec4<u64>();
    if (A_AHEAD) {
        next_la = a8[(lane * params.m + row) / 8u];
        next_ha = a8[(lane * params.m + row + 8u) / 8u];
    }
    for (var k = 0u; k < params.k; k += 8u) {
        let cols = cols8(col, k);
        let lo = cols[0];
        let hi = cols[1];
        var ra: array<array<f32, 8>, 16>;
        if (A_SYNTHESISED) {
            let la = vec4<u64>(u64(k + lane), u64(k + 2u * lane), u64(k + 3u * lane), u64(k + lane + 7u));
            let ha = la + vec4<u64>(1lu);
            ra[0] = halves(subgroupBroadcast(la, 0u));
            ra[8] = halves(subgroupBroadcast(ha, 0u));
            ra[1] = halves(subgroupBroadcast(la, 1u));
            ra[9] = halves(subgroupBroadcast(ha, 1u));
            ra[2] = halves(subgroupBroadcast(la, 2u));
            ra[10] = halves(subgroupBroadcast(ha, 2u));
            ra[3] = halves(subgroupBroadcast(la, 3u));
            ra[11] = halves(subgroupBroadcast(ha, 3u));
            ra[4] = halves(subgroupBroadcast(la, 4u));
            ra[12] = halves(subgroupBroadcast(ha, 4u));
            ra[5] = halves(subgroupBroadcast(la, 5u));
            ra[13] = halves(subgroupBroadcast(ha, 5u));
            ra[6] = halves(subgroupBroadcast(la, 6u));
            ra[14] = halves(subgroupBroadcast(ha, 6u));
            ra[7] = halves(subgroupBroadcast(la, 7u));
            ra[15] = halves(subgroupBroadcast(ha, 7u));
        } else if (A_FROM_TEXTURE) {
            let x = i32(k / 4u);
            let p0 = textureLoad(a_texture, vec2<i32>(x, i32(row + lane)), 0);
            let p1 = textureLoad(a_texture, vec2<i32>(x + 1, i32(row + lane)), 0);
            let q0 = textureLoad(a_texture, vec2<i32>(x, i32(row + 8u + lane)), 0);
            let q1 = textureLoad(a_texture, vec2<i32>(x + 1, i32(row + 8u + lane)), 0);
            { let u = subgroupBroadcast(p0, 0u); let v = subgroupBroadcast(p1, 0u); ra[0] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 0u); let v = subgroupBroadcast(q1, 0u); ra[8] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(p0, 1u); let v = subgroupBroadcast(p1, 1u); ra[1] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 1u); let v = subgroupBroadcast(q1, 1u); ra[9] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(p0, 2u); let v = subgroupBroadcast(p1, 2u); ra[2] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 2u); let v = subgroupBroadcast(q1, 2u); ra[10] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(p0, 3u); let v = subgroupBroadcast(p1, 3u); ra[3] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 3u); let v = subgroupBroadcast(q1, 3u); ra[11] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(p0, 4u); let v = subgroupBroadcast(p1, 4u); ra[4] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 4u); let v = subgroupBroadcast(q1, 4u); ra[12] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(p0, 5u); let v = subgroupBroadcast(p1, 5u); ra[5] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 5u); let v = subgroupBroadcast(q1, 5u); ra[13] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(p0, 6u); let v = subgroupBroadcast(p1, 6u); ra[6] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 6u); let v = subgroupBroadcast(q1, 6u); ra[14] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(p0, 7u); let v = subgroupBroadcast(p1, 7u); ra[7] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
            { let u = subgroupBroadcast(q0, 7u); let v = subgroupBroadcast(q1, 7u); ra[15] = array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w); }
        } else {
            // Row i's 8 k from lane i % 8: A as stored (row-major), or read as if k-major.
            var la: vec4<u64>;
            var ha: vec4<u64>;
            if (A_AHEAD) {
                la = next_la;
                ha = next_ha;
                let kn = min(k + 8u, params.k - 8u);
                next_la = a8[((kn + lane) * params.m + row) / 8u];
                next_ha = a8[((kn + lane) * params.m + row + 8u) / 8u];
            } else if (A_K_MAJOR) {
                la = a8[((k + lane) * params.m + row) / 8u];
                ha = a8[((k + lane) * params.m + row + 8u) / 8u];
            } else {
                la = row8(row + lane, k);
                ha = row8(row + 8u + lane, k);
            }
            ra[0] = halves(subgroupBroadcast(la, 0u));
            ra[8] = halves(subgroupBroadcast(ha, 0u));
            ra[1] = halves(subgroupBroadcast(la, 1u));
            ra[9] = halves(subgroupBroadcast(ha, 1u));
            ra[2] = halves(subgroupBroadcast(la, 2u));
            ra[10] = halves(subgroupBroadcast(ha, 2u));
            ra[3] = halves(subgroupBroadcast(la, 3u));
            ra[11] = halves(subgroupBroadcast(ha, 3u));
            ra[4] = halves(subgroupBroadcast(la, 4u));
            ra[12] = halves(subgroupBroadcast(ha, 4u));
            ra[5] = halves(subgroupBroadcast(la, 5u));
            ra[13] = halves(subgroupBroadcast(ha, 5u));
            ra[6] = halves(subgroupBroadcast(la, 6u));
            ra[14] = halves(subgroupBroadcast(ha, 6u));
            ra[7] = halves(subgroupBroadcast(la, 7u));
            ra[15] = halves(subgroupBroadcast(ha, 7u));
        }
        acc[0] = add_row8(acc[0], ra[0], lo);
        acc[1] = add_row8(acc[1], ra[0], hi);
        acc[2] = add_row8(acc[2], ra[1], lo);
        acc[3] = add_row8(acc[3], ra[1], hi);
        acc[4] = add_row8(acc[4], ra[2], lo);
        acc[5] = add_row8(acc[5], ra[2], hi);
        acc[6] = add_row8(acc[6], ra[3], lo);
        acc[7] = add_row8(acc[7], ra[3], hi);
        acc[8] = add_row8(acc[8], ra[4], lo);
        acc[9] = add_row8(acc[9], ra[4], hi);
        acc[10] = add_row8(acc[10], ra[5], lo);
        acc[11] = add_row8(acc[11], ra[5], hi);
        acc[12] = add_row8(acc[12], ra[6], lo);
        acc[13] = add_row8(acc[13], ra[6], hi);
        acc[14] = add_row8(acc[14], ra[7], lo);
        acc[15] = add_row8(acc[15], ra[7], hi);
        acc[16] = add_row8(acc[16], ra[8], lo);
        acc[17] = add_row8(acc[17], ra[8], hi);
        acc[18] = add_row8(acc[18], ra[9], lo);
        acc[19] = add_row8(acc[19], ra[9], hi);
        acc[20] = add_row8(acc[20], ra[10], lo);
        acc[21] = add_row8(acc[21], ra[10], hi);
        acc[22] = add_row8(acc[22], ra[11], lo);
        acc[23] = add_row8(acc[23], ra[11], hi);
        acc[24] = add_row8(acc[24], ra[12], lo);
        acc[25] = add_row8(acc[25], ra[12], hi);
        acc[26] = add_row8(acc[26], ra[13], lo);
        acc[27] = add_row8(acc[27], ra[13], hi);
        acc[28] = add_row8(acc[28], ra[14], lo);
        acc[29] = add_row8(acc[29], ra[14], hi);
        acc[30] = add_row8(acc[30], ra[15], lo);
        acc[31] = add_row8(acc[31], ra[15], hi);
    }
    c4[((row + 0u) * params.n + col) / 4u] = acc[0];
    c4[((row + 0u) * params.n + col) / 4u + 1u] = acc[1];
    c4[((row + 1u) * params.n + col) / 4u] = acc[2];
    c4[((row + 1u) * params.n + col) / 4u + 1u] = acc[3];
    c4[((row + 2u) * params.n + col) / 4u] = acc[4];
    c4[((row + 2u) * params.n + col) / 4u + 1u] = acc[5];
    c4[((row + 3u) * params.n + col) / 4u] = acc[6];
    c4[((row + 3u) * params.n + col) / 4u + 1u] = acc[7];
    c4[((row + 4u) * params.n + col) / 4u] = acc[8];
    c4[((row + 4u) * params.n + col) / 4u + 1u] = acc[9];
    c4[((row + 5u) * params.n + col) / 4u] = acc[10];
    c4[((row + 5u) * params.n + col) / 4u + 1u] = acc[11];
    c4[((row + 6u) * params.n + col) / 4u] = acc[12];
    c4[((row + 6u) * params.n + col) / 4u + 1u] = acc[13];
    c4[((row + 7u) * params.n + col) / 4u] = acc[14];
    c4[((row + 7u) * params.n + col) / 4u + 1u] = acc[15];
    c4[((row + 8u) * params.n + col) / 4u] = acc[16];
    c4[((row + 8u) * params.n + col) / 4u + 1u] = acc[17];
    c4[((row + 9u) * params.n + col) / 4u] = acc[18];
    c4[((row + 9u) * params.n + col) / 4u + 1u] = acc[19];
    c4[((row + 10u) * params.n + col) / 4u] = acc[20];
    c4[((row + 10u) * params.n + col) / 4u + 1u] = acc[21];
    c4[((row + 11u) * params.n + col) / 4u] = acc[22];
    c4[((row + 11u) * params.n + col) / 4u + 1u] = acc[23];
    c4[((row + 12u) * params.n + col) / 4u] = acc[24];
    c4[((row + 12u) * params.n + col) / 4u + 1u] = acc[25];
    c4[((row + 13u) * params.n + col) / 4u] = acc[26];
    c4[((row + 13u) * params.n + col) / 4u + 1u] = acc[27];
    c4[((row + 14u) * params.n + col) / 4u] = acc[28];
    c4[((row + 14u) * params.n + col) / 4u + 1u] = acc[29];
    c4[((row + 15u) * params.n + col) / 4u] = acc[30];
    c4[((row + 15u) * params.n + col) / 4u + 1u] = acc[31];
}
