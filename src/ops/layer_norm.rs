//! Host side of shaders/layer_norm.wgsl: LayerNorm over the last axis, forward (saving the mean
//! and 1/std of each row) and backward. Records into the caller's encoder.

use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::check_loop_budget;
use crate::ops::linear::{matrix, K_SPAN};

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct LayerNormKernelParams as "Params" {
        rows: u32,
        width: u32,
        row_begin: u32,
        row_end: u32,
        eps: f32,
        flags: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

const ADD_INTO_OUTPUT: u32 = 1;

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const X: BindingDecl = BindingDecl::new("x", 1, Access::Read, Elem::F32);
const WEIGHT: BindingDecl = BindingDecl::new("weight", 2, Access::Read, Elem::F32);
const BIAS: BindingDecl = BindingDecl::new("bias", 3, Access::Read, Elem::F32);
const Y: BindingDecl = BindingDecl::new("y", 4, Access::ReadWrite, Elem::F32);
const STATS: BindingDecl = BindingDecl::new("stats", 5, Access::ReadWrite, Elem::F32);
const DY: BindingDecl = BindingDecl::new("dy", 6, Access::Read, Elem::F32);
const DX: BindingDecl = BindingDecl::new("dx", 7, Access::ReadWrite, Elem::F32);
const D_WEIGHT: BindingDecl = BindingDecl::new("d_weight", 8, Access::ReadWrite, Elem::F32);
const D_BIAS: BindingDecl = BindingDecl::new("d_bias", 9, Access::ReadWrite, Elem::F32);
const SAVED_STATS: BindingDecl = BindingDecl::new("saved_stats", 10, Access::Read, Elem::F32);

pub const LAYER_NORM_FORWARD: Kernel = Kernel {
    shader: "layer_norm.wgsl",
    entry: "forward",
    bindings: &[PARAMS, X, WEIGHT, BIAS, Y, STATS],
    params: LayerNormKernelParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

pub const LAYER_NORM_INPUT_GRAD: Kernel = Kernel {
    entry: "input_grad",
    bindings: &[PARAMS, X, WEIGHT, SAVED_STATS, DY, DX],
    ..LAYER_NORM_FORWARD
};

pub const LAYER_NORM_PARAM_GRAD: Kernel = Kernel {
    entry: "param_grad",
    bindings: &[PARAMS, X, SAVED_STATS, DY, D_WEIGHT, D_BIAS],
    ..LAYER_NORM_FORWARD
};

/// A LayerNorm's parameters and epsilon.
#[derive(Clone, Copy)]
pub struct LayerNormParams<'a> {
    pub weight: &'a GpuTensor,
    pub bias: &'a GpuTensor,
    pub eps: f64,
}

fn params(
    rows: usize,
    width: usize,
    span: (usize, usize),
    eps: f64,
    flags: u32,
) -> LayerNormKernelParams {
    LayerNormKernelParams {
        rows: rows as u32,
        width: width as u32,
        row_begin: span.0 as u32,
        row_end: span.1 as u32,
        eps: eps as f32,
        flags,
        ..Default::default()
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
    ctx.run(
        encoder,
        &LAYER_NORM_FORWARD,
        &[],
        &params(rows, width, (0, rows), ln.eps, 0),
        &[
            ("x", &x.buffer),
            ("weight", &ln.weight.buffer),
            ("bias", &ln.bias.buffer),
            ("y", &y.buffer),
            ("stats", &stats.buffer),
        ],
        Grid::Invocations(rows as u64),
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
    ctx.run(
        encoder,
        &LAYER_NORM_INPUT_GRAD,
        &[],
        &params(rows, width, (0, rows), ln.eps, flags),
        &[
            ("x", &x.buffer),
            ("weight", &ln.weight.buffer),
            ("saved_stats", &stats.buffer),
            ("dy", &dy.buffer),
            ("dx", &out.dx.buffer),
        ],
        Grid::Invocations(rows as u64),
    )?;
    for (i, span) in (0..rows).step_by(K_SPAN).enumerate() {
        let span = (span, (span + K_SPAN).min(rows));
        let flags = if i > 0 { ADD_INTO_OUTPUT } else { 0 };
        ctx.run(
            encoder,
            &LAYER_NORM_PARAM_GRAD,
            &[],
            &params(rows, width, span, ln.eps, flags),
            &[
                ("x", &x.buffer),
                ("saved_stats", &stats.buffer),
                ("dy", &dy.buffer),
                ("d_weight", &out.d_weight.buffer),
                ("d_bias", &out.d_bias.buffer),
            ],
            Grid::Invocations(width as u64),
        )?;
    }
    Ok(())
}
