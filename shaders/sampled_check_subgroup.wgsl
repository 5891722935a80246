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
    // Uniform per subgroup: h is the same for all of its lanes.
    let h = id / (padded * params.spans * params.groups);
    if (h >= params.heads) {
        return;
    }
    let sample = id % padded;
    let mapped = subgroupAll(lane == sample % SUBGROUP);
    let real = sample < params.samples;
    let span = (id / padded) % params.spans;
    let group = (id / (padded * params.spans)) % params.groups;
    var t = task(h, min(sample, params.samples - 1u), span, group);
    if (!real) {
        t.end = t.begin;
    }
    let last = subgroupMax(t.end);
    let d_qk = params.d_qk;
    let d_v = params.d_v;
    var qr: array<f32, WIDTH>;
    var dor: array<f32, WIDTH>;
    load_row(t, &qr, &dor);

    var sums: Sums;
    sums.m = -3.4028235e38;
    var kr: array<f32, WIDTH>;
    for (var j = t.begin; j < last; j++) {
        let sees = j < t.end;
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
        if (sees) {
            raise_maximum(t, &sums, s);
        }
        let p = select(0.0, exp(s - sums.m), sees);
        sums.l += p;
        if (t.with_grad) {
            var dp = 0.0;
            for (var first = 0u; first < d_v; first += SUBGROUP) {
                let mine = v[v_row + min(first + lane, d_v - 1u)];
                for (var i = first; i < min(first + SUBGROUP, d_v); i++) {
                    let vi = from_lane(mine, i);
                    if (i < WIDTH) {
                        sums.a[i] += p * vi;
                        dp += dor[i] * vi;
                    } else {
                        dp += d_o[t.o_row + i] * vi;
                    }
                }
            }
            add_gradient_terms(&sums, p, dp, &kr);
        } else {
            for (var first = 0u; first < t.cols; first += SUBGROUP) {
                let mine = v[v_row + t.col0 + min(first + lane, t.cols - 1u)];
                for (var i = first; i < min(first + SUBGROUP, t.cols); i++) {
                    sums.a[i] += p * from_lane(mine, i);
                }
            }
        }
    }
    if (real) {
        if (!mapped) {
            sums.m = bitcast<f32>(0x7fc00000u);
        }
        store_record(t, &sums);
    }
}
