//! Host side of shaders/gelu.wgsl: tanh-GELU forward and backward, elementwise. Records into
//! the caller's encoder.

use crate::error::Result;
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::check_shape;

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct GeluParams as "Params" {
        len: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const T: BindingDecl = BindingDecl::new("t", 1, Access::Read, Elem::F32);
const UPSTREAM: BindingDecl = BindingDecl::new("upstream", 2, Access::Read, Elem::F32);
const OUT: BindingDecl = BindingDecl::new("out", 3, Access::ReadWrite, Elem::F32);

pub const GELU_FORWARD: Kernel = Kernel {
    shader: "gelu.wgsl",
    entry: "forward",
    bindings: &[PARAMS, T, OUT],
    params: GeluParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

pub const GELU_BACKWARD: Kernel = Kernel {
    entry: "backward",
    bindings: &[PARAMS, T, UPSTREAM, OUT],
    ..GELU_FORWARD
};

/// out = gelu(t).
pub fn gelu_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    t: &GpuTensor,
    out: &GpuTensor,
) -> Result<()> {
    check_shape(out, t.shape())?;
    let buffers = [("t", &t.buffer), ("out", &out.buffer)];
    run(ctx, encoder, &GELU_FORWARD, &buffers, t.len())
}

/// d_t = upstream * gelu'(t).
pub fn gelu_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    t: &GpuTensor,
    upstream: &GpuTensor,
    d_t: &GpuTensor,
) -> Result<()> {
    check_shape(upstream, t.shape())?;
    check_shape(d_t, t.shape())?;
    let buffers = [
        ("t", &t.buffer),
        ("upstream", &upstream.buffer),
        ("out", &d_t.buffer),
    ];
    run(ctx, encoder, &GELU_BACKWARD, &buffers, t.len())
}

fn run(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &Kernel,
    buffers: &[(&str, &wgpu::Buffer)],
    len: usize,
) -> Result<()> {
    let params = GeluParams {
        len: len as u32,
        ..Default::default()
    };
    ctx.run(
        encoder,
        kernel,
        &[],
        &params,
        buffers,
        Grid::Invocations(len as u64),
    )
}
