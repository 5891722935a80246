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

// One record's task: a sampled row of a head, the keys of a span, a column group of v.
struct Task {
    h: u32,
    sample: u32,
    span: u32,
    group: u32,
    row: u32,
    begin: u32,
    end: u32,        // past the last key the row sees in the span
    col0: u32,       // the group's first column of v
    cols: u32,       // and how many it has
    with_grad: bool, // the gradient sums (group 0 of a backward check)
    o_row: u32,      // where the row's d_o starts
}

fn task(h: u32, sample: u32, span: u32, group: u32) -> Task {
    var t: Task;
    t.h = h;
    t.sample = sample;
    t.span = span;
    t.group = group;
    t.row = sample_rows[sample];
    t.begin = span * params.span;
    t.end = min(t.begin + params.span, params.rows);
    if (params.causal != 0u) {
        t.end = min(t.end, t.row + 1u);
    }
    t.col0 = group * WIDTH;
    t.cols = min(WIDTH, params.d_v - t.col0);
    t.with_grad = group == 0u && params.with_grad != 0u;
    t.o_row = (h * params.rows + t.row) * params.d_v;
    return t;
}

// The running sums of one record (see the header). Function-scope values start zeroed.
struct Sums {
    m: f32,
    l: f32,
    e: f32,
    a: array<f32, WIDTH>,
    b: array<f32, WIDTH>,
    c: array<f32, WIDTH>,
}

// The task's q and (for the gradient sums) the first WIDTH entries of its d_o, loaded once.
fn load_row(t: Task, qr: ptr<function, array<f32, WIDTH>>, dor: ptr<function, array<f32, WIDTH>>) {
    for (var i = 0u; i < params.d_qk; i++) {
        (*qr)[i] = q[(t.h * params.rows + t.row) * params.d_qk + i];
    }
    if (t.with_grad) {
        for (var i = 0u; i < t.cols; i++) {
            (*dor)[i] = d_o[t.o_row + i];
        }
    }
}

// The running maximum of online softmax: where logit s exceeds it, the sums so far are
// rescaled by exp(m_old - s) and s becomes the maximum.
fn raise_maximum(t: Task, sums: ptr<function, Sums>, s: f32) {
    if (s <= (*sums).m) {
        return;
    }
    let r = exp((*sums).m - s);
    (*sums).l *= r;
    (*sums).e *= r;
    for (var i = 0u; i < t.cols; i++) {
        (*sums).a[i] *= r;
    }
    if (t.with_grad) {
        for (var i = 0u; i < params.d_qk; i++) {
            (*sums).b[i] *= r;
            (*sums).c[i] *= r;
        }
    }
    (*sums).m = s;
}

// The gradient sums' terms of a key with weight p, dp = d_o . v and k row kr.
fn add_gradient_terms(sums: ptr<function, Sums>, p: f32, dp: f32,
                      kr: ptr<function, array<f32, WIDTH>>) {
    (*sums).e += p * dp;
    for (var i = 0u; i < params.d_qk; i++) {
        (*sums).b[i] += p * dp * (*kr)[i];
        (*sums).c[i] += p * (*kr)[i];
    }
}

fn store_record(t: Task, sums: ptr<function, Sums>) {
    let out = (((t.h * params.samples + t.sample) * params.groups + t.group) * params.spans
        + t.span) * RECORD;
    partials[out] = (*sums).m;
    partials[out + 1u] = (*sums).l;
    partials[out + 2u] = (*sums).e;
    for (var i = 0u; i < WIDTH; i++) {
        partials[out + A_AT + i] = (*sums).a[i];
        partials[out + B_AT + i] = (*sums).b[i];
        partials[out + C_AT + i] = (*sums).c[i];
    }
}

@compute @workgroup_size(WORKGROUP)
fn span_sums(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    // Neighbouring invocations take neighbouring samples of one span: under a causal mask
    // their key counts are alike, so few lanes idle.
    let id = linear_id(wid, lid, nwg);
    let h = id / (params.samples * params.spans * params.groups);
    if (h >= params.heads) {
        return;
    }
    let sample = id % params.samples;
    let span = (id / params.samples) % params.spans;
    let t = task(h, sample, span, (id / (params.samples * params.spans)) % params.groups);
    let d_qk = params.d_qk;
    let d_v = params.d_v;
    var qr: array<f32, WIDTH>;
    var dor: array<f32, WIDTH>;
    load_row(t, &qr, &dor);

    var sums: Sums;
    sums.m = -3.4028235e38;
    var kr: array<f32, WIDTH>;
    for (var j = t.begin; j < t.end; j++) {
        let k_row = (h * params.rows + j) * d_qk;
        let v_row = (h * params.rows + j) * d_v;
        var s = 0.0;
        for (var i = 0u; i < d_qk; i++) {
            kr[i] = k[k_row + i];
            s += qr[i] * kr[i];
        }
        s *= params.scale;
        raise_maximum(t, &sums, s);
        let p = exp(s - sums.m);
        sums.l += p;
        if (t.with_grad) {
            // v_j loaded once for both a and dp = d_o . v_j; past WIDTH (d_v > WIDTH), d_o
            // comes from memory.
            var dp = 0.0;
            for (var i = 0u; i < d_v; i++) {
                let vi = v[v_row + i];
                if (i < WIDTH) {
                    sums.a[i] += p * vi;
                    dp += dor[i] * vi;
                } else {
                    dp += d_o[t.o_row + i] * vi;
                }
            }
            add_gradient_terms(&sums, p, dp, &kr);
        } else {
            for (var i = 0u; i < t.cols; i++) {
                sums.a[i] += p * v[v_row + t.col0 + i];
            }
        }
    }
    store_record(t, &sums);
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
