//! Host modules, one per shader file: each checks shapes, builds bind groups and dispatches.

pub mod poly_attention;

use crate::attention::{Attention, AttentionShape};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};

/// Outputs and gradients of one attention call, back on the host.
#[derive(Clone, Debug)]
pub struct AttentionResult {
    pub o: Vec<f32>,
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

/// Host tensors of one attention call, `[B, H, n, d]` row-major.
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
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

/// Uploads the inputs, runs forward and backward on the GPU and reads everything back.
pub fn attention_forward_backward(
    ctx: &GpuContext,
    attention: Attention,
    shape: AttentionShape,
    inputs: AttentionInputs,
) -> Result<AttentionResult> {
    match attention {
        Attention::Poly { degree } => {
            let op = poly_attention::PolyAttention::new(ctx, shape, degree)?;
            let (q, k, v, d_o) = upload_inputs(ctx, &shape, inputs)?;
            let forward = op.forward(ctx, &q, &k, &v)?;
            let grads = op.backward(ctx, &q, &k, &v, &forward, &d_o)?;
            Ok(AttentionResult {
                o: forward.o.download(ctx)?,
                dq: grads.dq.download(ctx)?,
                dk: grads.dk.download(ctx)?,
                dv: grads.dv.download(ctx)?,
            })
        }
        Attention::Exact => Err(crate::error::Error::shape(
            "attention",
            "exact attention is not implemented on the GPU yet",
        )),
    }
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
    pub dq: GpuTensor,
    pub dk: GpuTensor,
    pub dv: GpuTensor,
}

/// Refuses a tensor whose shape is not `expected`, naming it.
pub(crate) fn check_shape(tensor: &GpuTensor, expected: &[usize]) -> Result<()> {
    if tensor.shape() != expected {
        return Err(crate::error::Error::ShapeMismatch {
            tensor: tensor.name().into(),
            expected: expected.to_vec(),
            got: tensor.shape().to_vec(),
        });
    }
    Ok(())
}
