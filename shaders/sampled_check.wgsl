// The sampled check of polynomial attention (issue 12): for a few query rows per head, exact
// softmax attention and its dq, in O(m n d), to measure the approximation's error on those
// rows. q, k, d_o are [heads, rows, d_qk or d_v] and v [heads, rows, d_v] (attention's layout);
// `samples` holds the m sampled row indices, the same for every head.
//
// For sampled row i and keys j (j <= i when causal), with s_j = q_i.k_j * scale and
// p_j = exp(s_j - m) for the largest s_j of the span, m:
//   l = sum p_j, a = sum p_j v_j, e = sum p_j dp_j, b = sum p_j dp_j k_j, c = sum p_j k_j,
// where dp_j = d_o_i . v_j. Then o_i = a / l and dq_i = scale (b - (e / l) c) / l; the host forms
// these in f64 from the sums.
//
// span_sums: one invocation per (head, sample, column group, span of keys) writes a record of
// those sums for its span (its own m). Spans keep each invocation's loops under llvmpipe's
// limit; column groups of WIDTH columns of v keep the private arrays a fixed size whatever d_v
// is (b and c, d_qk wide, go with group 0). combine_spans merges the spans of one record entry
// in a fixed order (bit-identical reruns). gather_rows copies the polynomial o and dq of the
// sampled rows, so nothing n-sized is read back.

override WORKGROUP: u32 = 64u;

// Widest q/k row and widest v column group the private arrays hold: the host's
// SAMPLED_WIDTH, written here as a source constant.
const WIDTH: u32 = 64u;

// A record: [m, l, e, a (WIDTH), b (WIDTH), c (WIDTH)].
const A_AT: u32 = 3u;
const B_AT: u32 = 3u + WIDTH;
const C_AT: u32 = 3u + 2u * WIDTH;
const RECORD: u32 = 3u + 3u * WIDTH;

struct Params {
    heads: u32,
    rows: u32,
    d_qk: u32,
    d_v: u32,
    samples: u32,
    span: u32,     // keys per span
    spans: u32,
    groups: u32,   // column groups of v: ceil(d_v / WIDTH)
    causal: u32,
    with_grad: u32,
    scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> d_o: array<f32>;
@group(0) @binding(5) var<storage, read> sample_rows: array<u32>;
// [heads, samples, groups, spans, RECORD]
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
// [heads, samples, groups, RECORD]
@group(0) @binding(7) var<storage, read_write> combined: array<f32>;
// The polynomial attention's o and dq: [heads, rows, d_v] and [heads, rows, d_qk].
@group(0) @binding(8) var<storage, read> o: array<f32>;
@group(0) @binding(9) var<storage, read> dq: array<f32>;
// [heads, samples, d_v + d_qk]: o then dq of each sampled row.
@group(0) @binding(10) var<storage, read_write> picked: array<f32>;

fn linear_id(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP + lid;
}

@compute @workgroup_size(WORKGROUP)
fn span_sums(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    // Neighbouring invocations take neighbouring samples of one span: under a causal mask
    // their key counts are alike, so few lanes idle.
    let id = linear_id(wid, lid, nwg);
    let sample = id % params.samples;
    let span = (id / params.samples) % params.spans;
    let group = (id / (params.samples * params.spans)) % params.groups;
    let h = id / (params.samples * params.spans * params.groups);
    if (h >= params.heads) {
        return;
    }
    let row = sample_rows[sample];
    let begin = span * params.span;
    var end = min(begin + params.span, params.rows);
    if (params.causal != 0u) {
        end = min(end, row + 1u);
    }
    let d_qk = params.d_qk;
    let d_v = params.d_v;
    let col0 = group * WIDTH;
    let cols = min(WIDTH, d_v - col0);
    let with_grad = group == 0u && params.with_grad != 0u;
    let o_row = (h * params.rows + row) * d_v;
    // q and (for the gradient sums) the first WIDTH entries of d_o, loaded once.
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

    // One pass, the running maximum m kept as in online softmax: when a logit exceeds it, the
    // sums so far are rescaled by exp(m_old - m_new). Function-scope arrays start zeroed.
    var m = -3.4028235e38;
    var l = 0.0;
    var e = 0.0;
    var a: array<f32, WIDTH>;
    var b: array<f32, WIDTH>;
    var c: array<f32, WIDTH>;
    var kr: array<f32, WIDTH>;
    for (var j = begin; j < end; j++) {
        let k_row = (h * params.rows + j) * d_qk;
        let v_row = (h * params.rows + j) * d_v;
        var s = 0.0;
        for (var i = 0u; i < d_qk; i++) {
            kr[i] = k[k_row + i];
            s += qr[i] * kr[i];
        }
        s *= params.scale;
        if (s > m) {
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
        let p = exp(s - m);
        l += p;
        if (with_grad) {
            // v_j loaded once for both a and dp = d_o . v_j; past WIDTH (d_v > WIDTH), d_o
            // comes from memory.
            var dp = 0.0;
            for (var i = 0u; i < d_v; i++) {
                let vi = v[v_row + i];
                if (i < WIDTH) {
                    a[i] += p * vi;
                    dp += dor[i] * vi;
                } else {
                    dp += d_o[o_row + i] * vi;
                }
            }
            e += p * dp;
            for (var i = 0u; i < d_qk; i++) {
                b[i] += p * dp * kr[i];
                c[i] += p * kr[i];
            }
        } else {
            for (var i = 0u; i < cols; i++) {
                a[i] += p * v[v_row + col0 + i];
            }
        }
    }

    let out = (((h * params.samples + sample) * params.groups + group) * params.spans + span)
        * RECORD;
    partials[out] = m;
    partials[out + 1u] = l;
    partials[out + 2u] = e;
    for (var i = 0u; i < WIDTH; i++) {
        partials[out + A_AT + i] = a[i];
        partials[out + B_AT + i] = b[i];
        partials[out + C_AT + i] = c[i];
    }
}

// One invocation per (head, sample, group, record entry): the spans' sums of that entry, each
// rescaled to the largest m. Entry 0 is that m itself.
@compute @workgroup_size(WORKGROUP)
fn combine_spans(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(wid, lid, nwg);
    let entry = id % RECORD;
    let record = id / RECORD;
    if (record >= params.heads * params.samples * params.groups) {
        return;
    }
    let first = record * params.spans * RECORD;
    var m = -3.4028235e38;
    for (var s = 0u; s < params.spans; s++) {
        m = max(m, partials[first + s * RECORD]);
    }
    var sum = 0.0;
    if (entry == 0u) {
        sum = m;
    } else {
        for (var s = 0u; s < params.spans; s++) {
            let at = first + s * RECORD;
            sum += exp(partials[at] - m) * partials[at + entry];
        }
    }
    combined[id] = sum;
}

// One invocation per (head, sample): the polynomial o and dq of the sampled row.
@compute @workgroup_size(WORKGROUP)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(wid, lid, nwg);
    if (id >= params.heads * params.samples) {
        return;
    }
    let h = id / params.samples;
    let row = sample_rows[id % params.samples];
    let width = params.d_v + params.d_qk;
    for (var i = 0u; i < params.d_v; i++) {
        picked[id * width + i] = o[(h * params.rows + row) * params.d_v + i];
    }
    if (params.with_grad != 0u) {
        for (var i = 0u; i < params.d_qk; i++) {
            picked[id * width + params.d_v + i] = dq[(h * params.rows + row) * params.d_qk + i];
        }
    }
}
