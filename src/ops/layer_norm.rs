//! Host side of shaders/layer_norm.wgsl: LayerNorm over the last axis, forward (saving the mean
//! and 1/std of each row) and backward. Records into the caller's encoder.

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::check_loop_budget;
use crate::ops::linear::{matrix, K_SPAN};

const SHADER: &str = "layer_norm.wgsl";

// Binding slots of shaders/layer_norm.wgsl.
const PARAMS: u32 = 0;
const X: u32 = 1;
const WEIGHT: u32 = 2;
const BIAS: u32 = 3;
const Y: u32 = 4;
const STATS: u32 = 5;
const DY: u32 = 6;
const DX: u32 = 7;
const D_WEIGHT: u32 = 8;
const D_BIAS: u32 = 9;
const SAVED_STATS: u32 = 10;

const ADD_INTO_OUTPUT: u32 = 1;

/// The shader's `Params`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    width: u32,
    row_begin: u32,
    row_end: u32,
    eps: f32,
    flags: u32,
    _pad: [u32; 2],
}

/// A LayerNorm's parameters and epsilon.
#[derive(Clone, Copy)]
pub struct LayerNormParams<'a> {
    pub weight: &'a GpuTensor,
    pub bias: &'a GpuTensor,
    pub eps: f64,
}

fn params(rows: usize, width: usize, span: (usize, usize), eps: f64, flags: u32) -> Params {
    Params {
        rows: rows as u32,
        width: width as u32,
        row_begin: span.0 as u32,
        row_end: span.1 as u32,
        eps: eps as f32,
        flags,
        _pad: [0; 2],
    }
}

/// Checks the parameters' shapes and the per-row loops against the driver's budget; returns
/// (rows, width) of x.
fn check(ctx: &GpuContext, x: &GpuTensor, ln: &LayerNormParams) -> Result<(usize, usize)> {
    let (rows, width) = matrix(x);
    for t in [ln.weight, ln.bias] {
        if t.len() != width {
            return Err(Error::shape(
                format!("tensor {}", t.name()),
                format!(
                    "has {} values, LayerNorm of width {width} needs {width}",
                    t.len()
                ),
            ));
        }
    }
    // The forward loops over the row three times.
    check_loop_budget(ctx, "LayerNorm of this width", 3 * width as u64 + 3)?;
    Ok((rows, width))
}

/// y = LN(x); returns the saved statistics `[rows, 2]` (mean, 1/std).
pub fn layer_norm_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    ln: LayerNormParams,
    y: &GpuTensor,
) -> Result<GpuTensor> {
    let (rows, width) = check(ctx, x, &ln)?;
    let stats = GpuTensor::output(ctx, &format!("{} LayerNorm stats", x.name()), &[rows, 2])?;
    let uniform = ctx.uniform(
        "layer_norm params",
        &params(rows, width, (0, rows), ln.eps, 0),
    );
    let pipeline = ctx.pipeline(SHADER, "forward", &[])?;
    ctx.dispatch(
        encoder,
        &pipeline,
        &[
            (PARAMS, &uniform),
            (X, &x.buffer),
            (WEIGHT, &ln.weight.buffer),
            (BIAS, &ln.bias.buffer),
            (Y, &y.buffer),
            (STATS, &stats.buffer),
        ],
        rows as u64,
    )?;
    Ok(stats)
}

/// Where the LayerNorm backward writes its gradients.
pub struct LayerNormGrads<'a> {
    /// dL/dx; added into when `add_into_dx` (the residual stream's gradient is already there).
    pub dx: &'a GpuTensor,
    pub add_into_dx: bool,
    pub d_weight: &'a GpuTensor,
    pub d_bias: &'a GpuTensor,
}

/// The gradients of y = LN(x) given dy and the statistics the forward saved.
pub fn layer_norm_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    (x, stats, dy): (&GpuTensor, &GpuTensor, &GpuTensor),
    ln: LayerNormParams,
    out: LayerNormGrads,
) -> Result<()> {
    let (rows, width) = check(ctx, x, &ln)?;
    let flags = if out.add_into_dx { ADD_INTO_OUTPUT } else { 0 };
    let uniform = ctx.uniform(
        "layer_norm params",
        &params(rows, width, (0, rows), ln.eps, flags),
    );
    let pipeline = ctx.pipeline(SHADER, "input_grad", &[])?;
    ctx.dispatch(
        encoder,
        &pipeline,
        &[
            (PARAMS, &uniform),
            (X, &x.buffer),
            (WEIGHT, &ln.weight.buffer),
            (SAVED_STATS, &stats.buffer),
            (DY, &dy.buffer),
            (DX, &out.dx.buffer),
        ],
        rows as u64,
    )?;
    let pipeline = ctx.pipeline(SHADER, "param_grad", &[])?;
    for (i, span) in (0..rows).step_by(K_SPAN).enumerate() {
        let span = (span, (span + K_SPAN).min(rows));
        let flags = if i > 0 { ADD_INTO_OUTPUT } else { 0 };
        let uniform = ctx.uniform(
            "layer_norm params",
            &params(rows, width, span, ln.eps, flags),
        );
        ctx.dispatch(
            encoder,
            &pipeline,
            &[
                (PARAMS, &uniform),
                (X, &x.buffer),
                (SAVED_STATS, &stats.buffer),
                (DY, &dy.buffer),
                (D_WEIGHT, &out.d_weight.buffer),
                (D_BIAS, &out.d_bias.buffer),
            ],
            width as u64,
        )?;
    }
    Ok(())
}
