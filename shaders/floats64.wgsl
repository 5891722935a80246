// Floats read and written 8 at a time as a vec4<u64>, one definition for the kernels that do:
// prepended to matmul_int64.wgsl and poly_attention_int64.wgsl (needs wgpu's SHADER_INT64).
// llvmpipe loads and stores a storage buffer lane by lane and component by component, so a
// vec4<u64> costs about what one vec4<f32> does, for twice the floats (BENCHMARKS.md,
// probe_loads: 54 against 73 core-ns for two vec4<f32>). Each float is the low or high half of
// a little-endian u64, bitcast: the same bits.

// The float at the lower address of a u64, and the one above it.
fn low_f32(w: u64) -> f32 {
    return bitcast<f32>(u32(w & 0xfffffffflu));
}

fn high_f32(w: u64) -> f32 {
    return bitcast<f32>(u32(w >> 32u));
}

// Floats 0..3 and 4..7 of 8 loaded as a vec4<u64>.
fn first4(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(low_f32(w.x), high_f32(w.x), low_f32(w.y), high_f32(w.y));
}

fn second4(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(low_f32(w.z), high_f32(w.z), low_f32(w.w), high_f32(w.w));
}

// The 8 floats of a vec4<u64>, in memory order.
fn halves(w: vec4<u64>) -> array<f32, 8> {
    return array<f32, 8>(low_f32(w.x), high_f32(w.x), low_f32(w.y), high_f32(w.y),
                         low_f32(w.z), high_f32(w.z), low_f32(w.w), high_f32(w.w));
}

// Two floats as the u64 that holds them, `low` at the lower address.
fn pair64(low: f32, high: f32) -> u64 {
    return u64(bitcast<u32>(low)) | (u64(bitcast<u32>(high)) << 32u);
}

// Floats 0..3 and 4..7 as one vec4<u64>: first4 and second4 undone.
fn eight64(first: vec4<f32>, second: vec4<f32>) -> vec4<u64> {
    return vec4<u64>(pair64(first.x, first.y), pair64(first.z, first.w),
                     pair64(second.x, second.y), pair64(second.z, second.w));
}
