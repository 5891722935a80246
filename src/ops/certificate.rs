//! Host side of shaders/certificate.wgsl: the O(n d) inputs of attention's error certificate
//! (shared/DESIGN.md §3) per head: the logit bound R = max_a |q_a| max_b |k_b| / sqrt(d_qk) and
//! max |v|. Recorded into the caller's encoder; read back with the pass's results.

use crate::attention::AttentionShape;
use crate::error::Result;
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::{check_inputs, check_loop_budget};

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct CertificateParams as "Params" {
        heads: u32,
        rows: u32,
        d_qk: u32,
        d_v: u32,
        span: u32,
        spans: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// Per-span maxima of q, k and v.
pub const SPAN_MAXIMA: Kernel = Kernel {
    shader: "certificate.wgsl",
    entry: "span_maxima",
    bindings: &[
        BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
        BindingDecl::new("q", 1, Access::Read, Elem::F32),
        BindingDecl::new("k", 2, Access::Read, Elem::F32),
        BindingDecl::new("v", 3, Access::Read, Elem::F32),
        BindingDecl::new("out", 4, Access::ReadWrite, Elem::F32),
    ],
    params: CertificateParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

/// Values the shader writes per (head, span).
const PER_SPAN: usize = 4;

/// Loop iterations one invocation may run (llvmpipe stops loops at 65535 in all).
const SPAN_ITERATIONS: usize = 32768;

/// One head's certificate inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadBound {
    /// R = max_a |q_a| max_b |k_b| / sqrt(d_qk): no logit of the head is larger in magnitude.
    pub logit_bound: f64,
    /// max |v|, the scale of the output bound.
    pub max_abs_v: f64,
}

/// Rows per span for `shape`: as many as keep one invocation's loops under SPAN_ITERATIONS.
fn span_rows(shape: &AttentionShape) -> usize {
    (SPAN_ITERATIONS / (shape.d_qk + shape.d_v + 1)).max(1)
}

/// `[heads, spans, PER_SPAN]`: the shape of what [`record`] writes.
fn maxima_shape(shape: &AttentionShape) -> [usize; 3] {
    let spans = shape.seq_len.div_ceil(span_rows(shape));
    [shape.total_heads(), spans, PER_SPAN]
}

/// The bytes [`record`] allocates (for the memory estimate).
pub fn maxima_bytes(shape: &AttentionShape) -> u64 {
    GpuTensor::shape_bytes(&maxima_shape(shape))
}

/// Records the per-span maxima of q, k, v (attention's layout) into a new tensor, to be read
/// back and reduced by [`head_bounds`].
pub fn record(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    shape: &AttentionShape,
    (q, k, v): (&GpuTensor, &GpuTensor, &GpuTensor),
) -> Result<GpuTensor> {
    check_inputs(shape, q, k, v)?;
    let span = span_rows(shape);
    let iterations = (span * (shape.d_qk + shape.d_v + 1)) as u64;
    check_loop_budget(ctx, "certificate span_maxima", iterations)?;
    let [heads, spans, _] = maxima_shape(shape);
    let out = GpuTensor::output(ctx, "attention certificate maxima", &maxima_shape(shape))?;
    let params = CertificateParams {
        heads: heads as u32,
        rows: shape.seq_len as u32,
        d_qk: shape.d_qk as u32,
        d_v: shape.d_v as u32,
        span: span as u32,
        spans: spans as u32,
        ..Default::default()
    };
    let buffers = [
        ("q", &q.buffer),
        ("k", &k.buffer),
        ("v", &v.buffer),
        ("out", &out.buffer),
    ];
    ctx.run(
        encoder,
        &SPAN_MAXIMA,
        &[],
        &params,
        &buffers,
        Grid::Invocations((heads * spans) as u64),
    )?;
    Ok(out)
}

/// The largest logit bound R of `heads`: a layer's (or a call's) R.
pub fn largest_logit_bound(heads: &[HeadBound]) -> f64 {
    heads.iter().map(|h| h.logit_bound).fold(0.0, f64::max)
}

/// Each head's bounds from the maxima [`record`] wrote, read back. A NaN anywhere makes the
/// bound infinite: nothing is certified about a head that is not finite.
pub fn head_bounds(shape: &AttentionShape, maxima: &[f32]) -> Vec<HeadBound> {
    let per_head = maxima.len() / shape.total_heads().max(1);
    maxima
        .chunks(per_head.max(1))
        .map(|spans| {
            let largest = |i: usize| {
                spans
                    .chunks(PER_SPAN)
                    .map(|s| s[i] as f64)
                    .fold(
                        0.0,
                        |m: f64, x| if x.is_nan() { f64::INFINITY } else { m.max(x) },
                    )
            };
            HeadBound {
                logit_bound: (largest(0) * largest(1)).sqrt() / (shape.d_qk as f64).sqrt(),
                max_abs_v: largest(2),
            }
        })
        .collect()
}
