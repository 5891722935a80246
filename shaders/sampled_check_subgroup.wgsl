// sampled_check_subgroup: appended to sampled_check.wgsl (its header has the contract) where
// the adapter has subgroups of a fixed size; wgpu refuses subgroup builtins on devices without
// them, so it is a module apart.
//
// span_sums_shared computes what span_sums does, with the loads of each key's k and v shared
// by the SUBGROUP lanes of a subgroup: the lanes take consecutive samples of one head, span
// and column group, so they walk the same keys; lane l loads every SUBGROUP-th value of the
// key's rows and subgroupShuffle hands each value to every lane. Where a storage load costs far
// more than a register move (llvmpipe: the v loads were half of span_sums), that is 10 loads a
// key instead of 80 at d_qk = 16, d_v = 64 and 8 lanes. Samples are padded to a multiple of
// SUBGROUP; padding lanes see no keys and write nothing. The lanes of a subgroup are assumed to
// be runs of consecutive local_invocation_index (as matmul_subgroup assumes); where they are
// not, the records are NaN, so the check reports an infinite error rather than a wrong one.

// The adapter's subgroup size (the host requires its minimum and maximum to agree).
override SUBGROUP: u32 = 8u;

// The value at `i` of a row that lane i % SUBGROUP loaded as `mine`; every lane runs it.
fn from_lane(mine: f32, i: u32) -> f32 {
    return subgroupShuffle(mine, i % SUBGROUP);
}

@compute @workgroup_size(WORKGROUP)
fn span_sums_shared(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32) {
    let padded = (params.samples + SUBGROUP - 1u) / SUBGROUP * SUBGROUP;
    let id = linear_id(wid, lid, nwg);
    let sample = id % padded;
    let span = (id / padded) % params.spans;
    let group = (id / (padded * params.spans)) % params.groups;
    let h = id / (padded * params.spans * params.groups);
    // Uniform per subgroup: h is the same for all of its lanes.
    if (h >= params.heads) {
        return;
    }
    let mapped = subgroupAll(lane == sample % SUBGROUP);
    let real = sample < params.samples;
    let row = sample_rows[min(sample, params.samples - 1u)];
    let begin = span * params.span;
    var end = min(begin + params.span, params.rows);
    if (params.causal != 0u) {
        end = min(end, row + 1u);
    }
    if (!real) {
        end = begin;
    }
    let last = subgroupMax(end);
    let d_qk = params.d_qk;
    let d_v = params.d_v;
    let col0 = group * WIDTH;
    let cols = min(WIDTH, d_v - col0);
    let with_grad = group == 0u && params.with_grad != 0u;
    let o_row = (h * params.rows + row) * d_v;
    var qr: array<f32, WIDTH>;
    var dor: array<f32, WIDTH>;
    for (var i = 0u; i < d_qk; i++) {
        qr[i] = q[(h * params.rows + row) * d_qk + i];
    }
    if (with_grad) {
        for (var i = 0u; i < cols; i++) {
            dor[i] = d_o[o_row + i];
        }
    }

    var m = -3.4028235e38;
    var l = 0.0;
    var e = 0.0;
    var a: array<f32, WIDTH>;
    var b: array<f32, WIDTH>;
    var c: array<f32, WIDTH>;
    var kr: array<f32, WIDTH>;
    for (var j = begin; j < last; j++) {
        let sees = j < end;
        let k_row = (h * params.rows + j) * d_qk;
        let v_row = (h * params.rows + j) * d_v;
        var s = 0.0;
        for (var first = 0u; first < d_qk; first += SUBGROUP) {
            let mine = k[k_row + min(first + lane, d_qk - 1u)];
            for (var i = first; i < min(first + SUBGROUP, d_qk); i++) {
                kr[i] = from_lane(mine, i);
                s += qr[i] * kr[i];
            }
        }
        s *= params.scale;
        if (sees && s > m) {
            let r = exp(m - s);
            l *= r;
            e *= r;
            for (var i = 0u; i < cols; i++) {
                a[i] *= r;
            }
            if (with_grad) {
                for (var i = 0u; i < d_qk; i++) {
                    b[i] *= r;
                    c[i] *= r;
                }
            }
            m = s;
        }
        let p = select(0.0, exp(s - m), sees);
        l += p;
        if (with_grad) {
            var dp = 0.0;
            for (var first = 0u; first < d_v; first += SUBGROUP) {
                let mine = v[v_row + min(first + lane, d_v - 1u)];
                for (var i = first; i < min(first + SUBGROUP, d_v); i++) {
                    let vi = from_lane(mine, i);
                    if (i < WIDTH) {
                        a[i] += p * vi;
                        dp += dor[i] * vi;
                    } else {
                        dp += d_o[o_row + i] * vi;
                    }
                }
            }
            e += p * dp;
            for (var i = 0u; i < d_qk; i++) {
                b[i] += p * dp * kr[i];
                c[i] += p * kr[i];
            }
        } else {
            for (var first = 0u; first < cols; first += SUBGROUP) {
                let mine = v[v_row + col0 + min(first + lane, cols - 1u)];
                for (var i = first; i < min(first + SUBGROUP, cols); i++) {
                    a[i] += p * from_lane(mine, i);
                }
            }
        }
    }

    if (!real) {
        return;
    }
    let out = (((h * params.samples + sample) * params.groups + group) * params.spans + span)
        * RECORD;
    partials[out] = select(bitcast<f32>(0x7fc00000u), m, mapped);
    partials[out + 1u] = l;
    partials[out + 2u] = e;
    for (var i = 0u; i < WIDTH; i++) {
        partials[out + A_AT + i] = a[i];
        partials[out + B_AT + i] = b[i];
        partials[out + C_AT + i] = c[i];
    }
}
