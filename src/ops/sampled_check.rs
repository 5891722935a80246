//! Host side of shaders/sampled_check.wgsl: the measured error of polynomial attention on m
//! sampled query rows per head (issue 12). Exact softmax attention and its dq are computed for
//! those rows only, in O(m n d), and compared with the polynomial o and dq of the same rows.
//! Recorded into the caller's encoder; its two small outputs are read back with the pass's
//! results and reduced here in f64.

use crate::attention::AttentionShape;
use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor, TensorData};
use crate::ops::{check_inputs, check_loop_budget, check_shape};
use crate::poly::MAX_D_QK;

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct SampledParams as "Params" {
        heads: u32,
        rows: u32,
        d_qk: u32,
        d_v: u32,
        samples: u32,
        span: u32,
        spans: u32,
        groups: u32,
        causal: u32,
        with_grad: u32,
        scale: f32,
        _pad0: u32,
    }
}

/// Widest q/k row and v column group the shader's private arrays hold: its `WIDTH`, a source
/// constant set from this one. Every polynomial attention's d_qk fits.
pub const SAMPLED_WIDTH: usize = 64;
const _: () = assert!(SAMPLED_WIDTH >= MAX_D_QK);
const WIDTH_CONSTANT: &[(&str, f64)] = &[("WIDTH", SAMPLED_WIDTH as f64)];

/// The shader's record: m, l, e, then a, b and c, each `SAMPLED_WIDTH` wide.
const RECORD: usize = 3 + 3 * SAMPLED_WIDTH;
const A_AT: usize = 3;
const B_AT: usize = 3 + SAMPLED_WIDTH;
const C_AT: usize = 3 + 2 * SAMPLED_WIDTH;

/// Loop iterations one invocation may run (llvmpipe stops loops at 65535 in all).
const SPAN_ITERATIONS: usize = 32768;

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const Q: BindingDecl = BindingDecl::new("q", 1, Access::Read, Elem::F32);
const K: BindingDecl = BindingDecl::new("k", 2, Access::Read, Elem::F32);
const V: BindingDecl = BindingDecl::new("v", 3, Access::Read, Elem::F32);
const D_O: BindingDecl = BindingDecl::new("d_o", 4, Access::Read, Elem::F32);
const SAMPLE_ROWS: BindingDecl = BindingDecl::new("sample_rows", 5, Access::Read, Elem::U32);
const PARTIALS: BindingDecl = BindingDecl::new("partials", 6, Access::ReadWrite, Elem::F32);
const COMBINED: BindingDecl = BindingDecl::new("combined", 7, Access::ReadWrite, Elem::F32);
const O: BindingDecl = BindingDecl::new("o", 8, Access::Read, Elem::F32);
const DQ: BindingDecl = BindingDecl::new("dq", 9, Access::Read, Elem::F32);
const PICKED: BindingDecl = BindingDecl::new("picked", 10, Access::ReadWrite, Elem::F32);

/// Per (head, sample, span of keys): online-softmax and dq sums.
pub const SPAN_SUMS: Kernel = Kernel {
    shader: "sampled_check.wgsl",
    entry: "span_sums",
    bindings: &[PARAMS, Q, K, V, D_O, SAMPLE_ROWS, PARTIALS],
    params: SampledParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &["WIDTH"],
    needs: Needs::Core,
};

/// span_sums with each key's loads shared by the lanes of a subgroup (see the shader).
pub const SPAN_SUMS_SHARED: Kernel = Kernel {
    shader: "sampled_check_subgroup.wgsl",
    entry: "span_sums_shared",
    constants: &["SUBGROUP"],
    needs: Needs::Subgroups,
    ..SPAN_SUMS
};

/// How span_sums loads the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLoads {
    /// Each invocation loads every key's k and v itself.
    PerSample,
    /// The lanes of a subgroup of this many share each key's loads.
    Shared {
        /// The subgroup's lanes.
        lanes: u32,
    },
}

impl KeyLoads {
    /// Shared where the adapter has subgroups of one fixed size (4 to 64 lanes). On llvmpipe,
    /// in the model at n = 4096, alternating in one script: 544 and 594 ms loading per sample,
    /// 384 and 367 ms shared.
    pub fn for_adapter(ctx: &GpuContext) -> Self {
        match ctx.adapter().subgroup_size {
            Some(lanes) if ctx.has_subgroups() && (4..=64).contains(&lanes) => {
                KeyLoads::Shared { lanes }
            }
            _ => KeyLoads::PerSample,
        }
    }
}

/// The spans' sums merged in a fixed order.
pub const COMBINE_SPANS: Kernel = Kernel {
    entry: "combine_spans",
    bindings: &[PARAMS, PARTIALS, COMBINED],
    ..SPAN_SUMS
};

/// The polynomial rows of the samples gathered.
pub const GATHER_ROWS: Kernel = Kernel {
    entry: "gather_rows",
    bindings: &[PARAMS, SAMPLE_ROWS, O, DQ, PICKED],
    ..SPAN_SUMS
};

/// The measured error of one layer's (or call's) attention on its sampled rows: ‖poly − exact‖
/// / ‖exact‖ over those rows of every head.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampledError {
    /// Query rows sampled per head.
    pub rows: usize,
    /// Relative error of the sampled rows of o.
    pub o_rel_err: f64,
    /// None where only the forward was checked.
    pub dq_rel_err: Option<f64>,
}

/// `m` distinct query rows of `0..n`, ascending, drawn from `seed`; every row when m >= n.
pub fn sample_rows(n: usize, m: usize, seed: u64) -> Vec<usize> {
    use rand::seq::index::sample;
    use rand::SeedableRng;
    if m >= n {
        return (0..n).collect();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows = sample(&mut rng, n, m).into_vec();
    rows.sort_unstable();
    rows
}

/// Sizes of one check.
#[derive(Clone, Copy, Debug)]
struct Layout {
    samples: usize,
    span: usize,
    spans: usize,
    groups: usize,
}

/// span_sums' loop iterations per key, at most (group 0, with the gradient sums, the maximum
/// rising), and those it runs once.
fn iterations_per_key(shape: &AttentionShape) -> usize {
    // The shared kernel's outer loops over runs of at least 4 lanes count too.
    let runs = (shape.d_qk + shape.d_v).div_ceil(4) + 2;
    3 * shape.d_qk + SAMPLED_WIDTH.min(shape.d_v) + shape.d_v + 3 + runs
}
const ITERATIONS_ONCE: usize = MAX_D_QK + 2 * SAMPLED_WIDTH;

impl Layout {
    fn of(shape: &AttentionShape, samples: usize) -> Self {
        let span =
            (SPAN_ITERATIONS.saturating_sub(ITERATIONS_ONCE) / iterations_per_key(shape)).max(1);
        Layout {
            samples,
            span,
            spans: shape.seq_len.div_ceil(span),
            groups: shape.d_v.div_ceil(SAMPLED_WIDTH),
        }
    }

    fn records(&self, heads: usize) -> usize {
        heads * self.samples * self.groups
    }
}

/// The GPU memory one check allocates: what it keeps until the pass's readback (its two small
/// outputs), and its scratch while it runs (the sampled rows and the span sums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckFootprint {
    /// Bytes kept from the forward to the backward.
    pub kept: u64,
    /// Scratch bytes.
    pub scratch: u64,
    /// The largest buffer.
    pub largest: u64,
}

/// What a check of `samples` rows per head allocates.
pub fn footprint(shape: &AttentionShape, samples: usize) -> CheckFootprint {
    let l = Layout::of(shape, samples);
    let records = l.records(shape.total_heads());
    let bytes = |floats: usize| GpuTensor::shape_bytes(&[floats]);
    let partials = bytes(records * l.spans * RECORD);
    CheckFootprint {
        kept: bytes(records * RECORD)
            + bytes(shape.total_heads() * samples * (shape.d_v + shape.d_qk)),
        scratch: bytes(samples) + partials,
        largest: partials,
    }
}

/// A check recorded on the GPU: [`Self::outputs`] to read back, then [`Self::finish`].
pub struct PendingCheck {
    shape: AttentionShape,
    rows: Vec<usize>,
    layout: Layout,
    with_grad: bool,
    combined: GpuTensor,
    picked: GpuTensor,
}

/// The polynomial attention's results the check compares: o, and (for a backward check) the
/// upstream gradient d_o and the dq it gave.
pub struct Checked<'a> {
    /// The polynomial output.
    pub o: &'a GpuTensor,
    /// dq and dL/do, for the dq check.
    pub grad: Option<(&'a GpuTensor, &'a GpuTensor)>,
}

/// Records the check of `rows` (ascending, each below n) of every head of `shape`.
pub fn record(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    shape: &AttentionShape,
    rows: &[usize],
    qkv: (&GpuTensor, &GpuTensor, &GpuTensor),
    checked: Checked,
) -> Result<PendingCheck> {
    let loads = KeyLoads::for_adapter(ctx);
    record_with(ctx, encoder, (shape, rows), qkv, checked, loads)
}

/// [`record`] with the keys loaded as `loads` says (tests run both).
pub fn record_with(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    (shape, rows): (&AttentionShape, &[usize]),
    (q, k, v): (&GpuTensor, &GpuTensor, &GpuTensor),
    checked: Checked,
    loads: KeyLoads,
) -> Result<PendingCheck> {
    check_inputs(shape, q, k, v)?;
    check_shape(checked.o, &shape.v_shape())?;
    if let Some((d_o, dq)) = checked.grad {
        check_shape(d_o, &shape.v_shape())?;
        check_shape(dq, &shape.qk_shape())?;
    }
    check_rows(shape, rows)?;
    let layout = Layout::of(shape, rows.len());
    let per_span = (layout.span * iterations_per_key(shape) + ITERATIONS_ONCE) as u64;
    check_loop_budget(ctx, "sampled check span_sums", per_span)?;
    check_loop_budget(ctx, "sampled check combine_spans", 2 * layout.spans as u64)?;
    check_loop_budget(
        ctx,
        "sampled check gather_rows",
        (shape.d_v + shape.d_qk) as u64,
    )?;

    let heads = shape.total_heads();
    let with_grad = checked.grad.is_some();
    let params = SampledParams {
        heads: heads as u32,
        rows: shape.seq_len as u32,
        d_qk: shape.d_qk as u32,
        d_v: shape.d_v as u32,
        samples: rows.len() as u32,
        span: layout.span as u32,
        spans: layout.spans as u32,
        groups: layout.groups as u32,
        causal: shape.causal as u32,
        with_grad: with_grad as u32,
        scale: (1.0 / (shape.d_qk as f64).sqrt()) as f32,
        ..Default::default()
    };
    let words: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let sample_rows = GpuTensor::from_data(
        ctx,
        "sampled rows",
        &[rows.len()],
        TensorData::Words(bytemuck::cast_slice(&words)),
    )?;
    let records = layout.records(heads);
    let partials = GpuTensor::output(
        ctx,
        "sampled check partial sums",
        &[records, layout.spans, RECORD],
    )?;
    let combined = GpuTensor::output(ctx, "sampled check sums", &[records, RECORD])?;
    let picked = GpuTensor::output(
        ctx,
        "sampled polynomial rows",
        &[heads, rows.len(), shape.d_v + shape.d_qk],
    )?;
    // Without a backward, the d_o and dq slots are bound to tensors the kernels then ignore.
    let (d_o, dq) = checked.grad.unwrap_or((checked.o, q));
    let (kernel, constants, samples) = match loads {
        KeyLoads::PerSample => (&SPAN_SUMS, WIDTH_CONSTANT.to_vec(), rows.len()),
        KeyLoads::Shared { lanes } => {
            let mut constants = WIDTH_CONSTANT.to_vec();
            constants.push(("SUBGROUP", lanes as f64));
            let padded = rows.len().next_multiple_of(lanes as usize);
            (&SPAN_SUMS_SHARED, constants, padded)
        }
    };
    let invocations = heads * samples * layout.groups * layout.spans;
    ctx.run(
        encoder,
        kernel,
        &constants,
        &params,
        &[
            ("q", &q.buffer),
            ("k", &k.buffer),
            ("v", &v.buffer),
            ("d_o", &d_o.buffer),
            ("sample_rows", &sample_rows.buffer),
            ("partials", &partials.buffer),
        ],
        Grid::Invocations(invocations as u64),
    )?;
    ctx.run(
        encoder,
        &COMBINE_SPANS,
        WIDTH_CONSTANT,
        &params,
        &[
            ("partials", &partials.buffer),
            ("combined", &combined.buffer),
        ],
        Grid::Invocations((records * RECORD) as u64),
    )?;
    ctx.run(
        encoder,
        &GATHER_ROWS,
        WIDTH_CONSTANT,
        &params,
        &[
            ("sample_rows", &sample_rows.buffer),
            ("o", &checked.o.buffer),
            ("dq", &dq.buffer),
            ("picked", &picked.buffer),
        ],
        Grid::Invocations((heads * rows.len()) as u64),
    )?;
    Ok(PendingCheck {
        shape: *shape,
        rows: rows.to_vec(),
        layout,
        with_grad,
        combined,
        picked,
    })
}

/// Refuses an empty sample, or rows out of order, repeated or past n.
fn check_rows(shape: &AttentionShape, rows: &[usize]) -> Result<()> {
    let ascending = rows.windows(2).all(|w| w[0] < w[1]);
    match rows.last() {
        None => Err(Error::shape("sampled rows", "at least one row is needed")),
        Some(&last) if last >= shape.seq_len || !ascending => Err(Error::shape(
            "sampled rows",
            format!(
                "must be distinct, ascending and below n = {}",
                shape.seq_len
            ),
        )),
        _ => Ok(()),
    }
}

impl PendingCheck {
    /// The tensors to read back, in the order [`Self::finish`] takes them.
    pub fn outputs(&self) -> [&GpuTensor; 2] {
        [&self.combined, &self.picked]
    }

    /// Reads the outputs back and forms the error.
    pub fn measure(self, ctx: &GpuContext) -> Result<SampledError> {
        let mut values = GpuTensor::download_all(ctx, &self.outputs())?;
        let picked = values.pop().expect("two outputs");
        let combined = values.pop().expect("two outputs");
        Ok(self.finish(&combined, &picked))
    }

    /// The error from the read-back outputs: the exact o and dq of each sampled row formed in
    /// f64 from the sums, against the polynomial rows.
    pub fn finish(&self, combined: &[f32], picked: &[f32]) -> SampledError {
        let s = &self.shape;
        let (d_qk, d_v, groups) = (s.d_qk, s.d_v, self.layout.groups);
        let scale = 1.0 / (d_qk as f64).sqrt();
        let mut o_err = ErrorSums::default();
        let mut dq_err = ErrorSums::default();
        let records: Vec<&[f32]> = combined.chunks(RECORD).collect();
        for (r, poly) in picked.chunks(d_v + d_qk).enumerate() {
            let record = |g: usize| records[r * groups + g];
            let first = record(0);
            let at = |i: usize| first[i] as f64;
            let l = at(1);
            for (c, &o) in poly[..d_v].iter().enumerate() {
                let a = record(c / SAMPLED_WIDTH)[A_AT + c % SAMPLED_WIDTH] as f64;
                o_err.add(o as f64, a / l);
            }
            if self.with_grad {
                // A row that sees one key has dq = 0 exactly (its weight is 1 whatever the
                // logit); the sums would leave f32 rounding there instead.
                let one_key = s.seq_len == 1 || (s.causal && self.rows[r % self.rows.len()] == 0);
                let delta = at(2) / l;
                for i in 0..d_qk {
                    let exact = if one_key {
                        0.0
                    } else {
                        scale * (at(B_AT + i) - delta * at(C_AT + i)) / l
                    };
                    dq_err.add(poly[d_v + i] as f64, exact);
                }
            }
        }
        SampledError {
            rows: self.layout.samples,
            o_rel_err: o_err.relative(),
            dq_rel_err: self.with_grad.then(|| dq_err.relative()),
        }
    }
}

/// Sums of squares for ‖poly − exact‖ / ‖exact‖.
#[derive(Default)]
struct ErrorSums {
    diff: f64,
    exact: f64,
    count: usize,
}

impl ErrorSums {
    fn add(&mut self, poly: f64, exact: f64) {
        self.diff += (poly - exact).powi(2);
        self.exact += exact.powi(2);
        self.count += 1;
    }

    /// Infinite for a NaN (nothing is claimed about it). Where the exact values are all zero
    /// (dq when every sampled row sees one key) a relative error means nothing: the RMS of
    /// the difference instead, as `reference::gradient_error` does.
    fn relative(&self) -> f64 {
        let r = if self.exact > 0.0 {
            (self.diff / self.exact).sqrt()
        } else {
            (self.diff / self.count.max(1) as f64).sqrt()
        };
        if r.is_nan() {
            f64::INFINITY
        } else {
            r
        }
    }
}
