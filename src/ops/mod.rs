//! Host modules, one per shader file: each checks shapes, builds bind groups and dispatches.

pub mod adamw;
pub mod certificate;
pub mod cross_entropy;
pub mod embedding;
pub mod exact_attention;
pub mod gelu;
pub mod heads;
pub mod layer_norm;
pub mod linear;
pub mod matmul;
pub mod poly_attention;
pub mod sampled_check;

use crate::attention::{Attention, AttentionShape};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};

/// Outputs and gradients of one attention call, back on the host.
#[derive(Clone, Debug)]
pub struct AttentionResult {
    /// The attention output.
    pub o: Vec<f32>,
    /// dL/dq.
    pub dq: Vec<f32>,
    /// dL/dk.
    pub dk: Vec<f32>,
    /// dL/dv.
    pub dv: Vec<f32>,
}

/// Host tensors of one attention call, `[B, H, n, d]` row-major.
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a> {
    /// Queries.
    pub q: &'a [f32],
    /// Keys.
    pub k: &'a [f32],
    /// Values.
    pub v: &'a [f32],
    /// Upstream gradient dL/do.
    pub d_o: &'a [f32],
}

impl<'a> AttentionInputs<'a> {
    /// Borrows `[q, k, v, d_o]` as made by `validate::random_attention_inputs`.
    pub fn from_array(tensors: &'a [Vec<f32>; 4]) -> Self {
        let [q, k, v, d_o] = tensors;
        AttentionInputs { q, k, v, d_o }
    }
}

/// Bytes of GPU memory one attention call holds, for estimating a pass before it allocates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttentionFootprint {
    /// What the forward keeps for the backward (output included).
    pub saved: u64,
    /// The most the forward holds besides while it runs.
    pub forward_scratch: u64,
    /// The most the backward holds while it runs, dq, dk and dv included.
    pub backward_scratch: u64,
    /// The largest single buffer of either half.
    pub largest: u64,
}

impl AttentionFootprint {
    /// The larger of each field: what either of two attentions may need.
    pub fn max(self, other: Self) -> Self {
        AttentionFootprint {
            saved: self.saved.max(other.saved),
            forward_scratch: self.forward_scratch.max(other.forward_scratch),
            backward_scratch: self.backward_scratch.max(other.backward_scratch),
            largest: self.largest.max(other.largest),
        }
    }
}

/// Either attention for one shape, behind one interface: the setting a caller switches.
pub enum AttentionOp {
    /// Exact softmax attention.
    Exact(exact_attention::ExactAttention),
    /// Polynomial attention.
    Poly(poly_attention::PolyAttention),
}

/// What either attention's forward keeps for its backward (a few per layer: the size of
/// the variants does not matter).
#[allow(clippy::large_enum_variant)]
pub enum AttentionSaved {
    /// Exact attention's saved state.
    Exact(exact_attention::ExactForward),
    /// Polynomial attention's saved state.
    Poly(poly_attention::PolyForward),
}

impl AttentionSaved {
    /// The attention output, `[B, H, n, d_v]`.
    pub fn o(&self) -> &GpuTensor {
        match self {
            AttentionSaved::Exact(f) => &f.o,
            AttentionSaved::Poly(f) => &f.o,
        }
    }
}

impl AttentionOp {
    /// Builds `attention` for `shape`, checking both against the device.
    pub fn new(ctx: &GpuContext, attention: Attention, shape: AttentionShape) -> Result<Self> {
        Ok(match attention {
            Attention::Exact => {
                AttentionOp::Exact(exact_attention::ExactAttention::new(ctx, shape)?)
            }
            Attention::Poly { degree } => {
                AttentionOp::Poly(poly_attention::PolyAttention::new(ctx, shape, degree)?)
            }
        })
    }

    /// The shape this attention was built for.
    pub fn shape(&self) -> &AttentionShape {
        match self {
            AttentionOp::Exact(op) => op.shape(),
            AttentionOp::Poly(op) => op.shape(),
        }
    }

    /// The GPU memory [`Self::forward`] and [`Self::backward`] allocate.
    pub fn footprint(&self, ctx: &GpuContext) -> AttentionFootprint {
        match self {
            AttentionOp::Exact(op) => op.footprint(),
            AttentionOp::Poly(op) => op.footprint(ctx),
        }
    }

    /// o = attention(q, k, v), keeping what the backward needs. Submits without waiting.
    pub fn forward(
        &self,
        ctx: &GpuContext,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
    ) -> Result<AttentionSaved> {
        Ok(match self {
            AttentionOp::Exact(op) => AttentionSaved::Exact(op.forward(ctx, q, k, v)?),
            AttentionOp::Poly(op) => AttentionSaved::Poly(op.forward(ctx, q, k, v)?),
        })
    }

    /// dq, dk, dv given dL/do and what [`Self::forward`] kept on the same op.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        (q, k, v): (&GpuTensor, &GpuTensor, &GpuTensor),
        saved: &AttentionSaved,
        d_o: &GpuTensor,
    ) -> Result<AttentionGradients> {
        match (self, saved) {
            (AttentionOp::Exact(op), AttentionSaved::Exact(f)) => op.backward(ctx, q, k, v, f, d_o),
            (AttentionOp::Poly(op), AttentionSaved::Poly(f)) => op.backward(ctx, q, k, v, f, d_o),
            _ => Err(Error::shape(
                "attention backward",
                "the saved forward state comes from the other kind of attention",
            )),
        }
    }
}

/// Uploads the inputs, runs forward and backward on the GPU and reads everything back.
pub fn attention_forward_backward(
    ctx: &GpuContext,
    attention: Attention,
    shape: AttentionShape,
    inputs: AttentionInputs,
) -> Result<AttentionResult> {
    let op = AttentionOp::new(ctx, attention, shape)?;
    let (q, k, v, d_o) = upload_inputs(ctx, &shape, inputs)?;
    let saved = op.forward(ctx, &q, &k, &v)?;
    let grads = op.backward(ctx, (&q, &k, &v), &saved, &d_o)?;
    Ok(AttentionResult {
        o: saved.o().download(ctx)?,
        dq: grads.dq.download(ctx)?,
        dk: grads.dk.download(ctx)?,
        dv: grads.dv.download(ctx)?,
    })
}

/// q, k, v and dL/do on the GPU, each checked against the shape.
pub fn upload_inputs(
    ctx: &GpuContext,
    shape: &AttentionShape,
    inputs: AttentionInputs,
) -> Result<(GpuTensor, GpuTensor, GpuTensor, GpuTensor)> {
    shape.validate()?;
    Ok((
        GpuTensor::upload(ctx, "q", &shape.qk_shape(), inputs.q)?,
        GpuTensor::upload(ctx, "k", &shape.qk_shape(), inputs.k)?,
        GpuTensor::upload(ctx, "v", &shape.v_shape(), inputs.v)?,
        GpuTensor::upload(ctx, "d_o", &shape.v_shape(), inputs.d_o)?,
    ))
}

/// Gradients of one attention call, on the GPU.
pub struct AttentionGradients {
    /// dL/dq on the device.
    pub dq: GpuTensor,
    /// dL/dk on the device.
    pub dk: GpuTensor,
    /// dL/dv on the device.
    pub dv: GpuTensor,
}

/// Refuses q, k or v when its shape does not match `shape`, naming the tensor.
pub(crate) fn check_inputs(
    shape: &AttentionShape,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
) -> Result<()> {
    check_shape(q, &shape.qk_shape())?;
    check_shape(k, &shape.qk_shape())?;
    check_shape(v, &shape.v_shape())
}

/// Refuses a tensor whose shape is not `expected`, naming it.
pub(crate) fn check_shape(tensor: &GpuTensor, expected: &[usize]) -> Result<()> {
    if tensor.shape() != expected {
        return Err(Error::ShapeMismatch {
            tensor: tensor.name().into(),
            expected: expected.to_vec(),
            got: tensor.shape().to_vec(),
        });
    }
    Ok(())
}

/// Deterministic q, k, v and dL/do for `shape`, for the tuners' timing runs (the values of
/// `tune::probe_values`, one salt per tensor).
pub(crate) fn probe_inputs(
    ctx: &GpuContext,
    shape: &AttentionShape,
) -> Result<(GpuTensor, GpuTensor, GpuTensor, GpuTensor)> {
    let fill = |name: &str, dims: &[usize], salt: usize| {
        let values = crate::gpu::tune::probe_values(dims.iter().product(), salt);
        GpuTensor::upload(ctx, name, dims, &values)
    };
    Ok((
        fill("tune q", &shape.qk_shape(), 1)?,
        fill("tune k", &shape.qk_shape(), 2)?,
        fill("tune v", &shape.v_shape(), 3)?,
        fill("tune d_o", &shape.v_shape(), 4)?,
    ))
}

/// Refuses work whose kernels could loop past the adapter's per-invocation loop limit, where
/// the driver would cut the loops short and return wrong numbers without a word.
pub(crate) fn check_loop_budget(ctx: &GpuContext, what: &str, iterations: u64) -> Result<()> {
    match ctx.loop_iteration_limit() {
        Some(limit) if iterations >= limit => Err(Error::LimitExceeded {
            what: format!("{what} (loop iterations per invocation)"),
            limit: "the driver's loop iteration limit per invocation (llvmpipe: 65535)",
            needed: iterations,
            max: limit - 1,
        }),
        _ => Ok(()),
    }
}

/// Every kernel declared with [`crate::gpu::kernel::Kernel`]; `tests/kernels.rs` checks each
/// against its WGSL.
pub const DECLARED_KERNELS: &[&crate::gpu::kernel::Kernel] = &[
    &adamw::SQUARE_SUMS,
    &adamw::TOTAL_NORM,
    &adamw::UPDATE,
    &cross_entropy::CROSS_ENTROPY_ROWS,
    &embedding::EMBED,
    &embedding::TABLE_GRAD,
    &embedding::POSITION_GRAD,
    &matmul::MATMUL_REG,
    &matmul::MATMUL_TILED,
    &matmul::MATMUL_SUBGROUP,
    &matmul::MATMUL_BROADCAST64,
    &matmul::MATMUL_BROADCAST64_KM,
    &matmul::MATMUL_BROADCAST64_KM8,
    &matmul::MATMUL_WINDOWS64_KM8,
    &matmul::PACK_WINDOWS64,
    &matmul::MATMUL_BROADCAST,
    &matmul::PACK_WINDOWS,
    &matmul::PACK_K_CONTIGUOUS,
    &matmul::MATMUL_WINDOWS,
    &linear::BIAS_GRAD,
    &linear::BIAS_GRAD_BLOCKS,
    &linear::BIAS_GRAD_BLOCKS64,
    &linear::SUM_BLOCKS,
    &certificate::SPAN_MAXIMA,
    &sampled_check::SPAN_SUMS,
    &sampled_check::SPAN_SUMS_SHARED,
    &sampled_check::COMBINE_SPANS,
    &sampled_check::GATHER_ROWS,
    &gelu::GELU_FORWARD,
    &gelu::GELU_BACKWARD,
    &gelu::GELU_FORWARD4,
    &gelu::GELU_BACKWARD4,
    &heads::SPLIT_HEADS,
    &heads::MERGE_HEADS,
    &heads::SPLIT_HEADS_ROWS,
    &heads::MERGE_HEADS_ROWS,
    &poly_attention::PHI_ROWS,
    &poly_attention::PHI_GRAD_ROWS,
    &poly_attention::PHI_PAIRS,
    &poly_attention::PHI_GRAD_PAIRS,
    &poly_attention::PHI_GRAD_PAIRS4,
    &poly_attention::PHI_PAIRS_UNROLLED,
    &poly_attention::PHI_GRAD_PAIRS_UNROLLED,
    &poly_attention::PHI_GRAD_PAIRS_UNROLLED2,
    &poly_attention::PHI_PAIRS_UNROLLED64,
    &poly_attention::COPY_ROWS,
    &poly_attention::COPY_ROWS_TRANSPOSED_TOO,
    &poly_attention::COPY_ROWS_TO_CHUNKS4,
    &poly_attention::COPY_ROWS_FROM_CHUNKS4,
    &poly_attention::TAYLOR_WEIGHTS,
    &poly_attention::TAYLOR_GRADS,
    &poly_attention::NORMALISE,
    &poly_attention::NORMALISE4,
    &poly_attention::GRAD_ROWS,
    &poly_attention::GRAD_ROWS4,
    &poly_attention::SCAN_STATES,
    &poly_attention::SCAN_STATES64,
    &poly_attention::NORMALISE8,
    &poly_attention::COPY_ROWS_FROM_CHUNKS8,
    &poly_attention::COPY_ROWS_TO_CHUNKS8,
    &poly_attention::GRAD_ROWS8,
    &layer_norm::LAYER_NORM_FORWARD,
    &layer_norm::LAYER_NORM_INPUT_GRAD,
    &layer_norm::LAYER_NORM_PARAM_GRAD,
    &layer_norm::LAYER_NORM_FORWARD_ROWS,
    &layer_norm::LAYER_NORM_INPUT_GRAD_ROWS,
    &layer_norm::LAYER_NORM_FORWARD_ROWS64,
    &layer_norm::LAYER_NORM_INPUT_GRAD_ROWS64,
    &layer_norm::LAYER_NORM_PARAM_GRAD_BLOCKS,
    &layer_norm::LAYER_NORM_PARAM_GRAD_BLOCKS64,
    &exact_attention::SPLIT_ROWS,
    &exact_attention::PIVOT_SPAN,
    &exact_attention::PIVOT_ROWS,
    &exact_attention::FORWARD_SPAN,
    &exact_attention::ROW_TERMS,
    &exact_attention::DELTA_SPAN,
    &exact_attention::FINISH_DELTA,
    &exact_attention::QUERY_GRAD_SPAN,
    &exact_attention::KEY_GRAD_SPAN,
    &exact_attention::VALUE_GRAD_SPAN,
];
