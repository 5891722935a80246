//! Host side of shaders/gelu.wgsl: tanh-GELU forward and backward, elementwise. Records into
//! the caller's encoder.

use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::check_shape;

const SHADER: &str = "gelu.wgsl";

// Binding slots of shaders/gelu.wgsl.
const PARAMS: u32 = 0;
const T: u32 = 1;
const UPSTREAM: u32 = 2;
const OUT: u32 = 3;

/// The shader's `Params`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
}

/// out = gelu(t).
pub fn gelu_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    t: &GpuTensor,
    out: &GpuTensor,
) -> Result<()> {
    check_shape(out, t.shape())?;
    run(
        ctx,
        encoder,
        "forward",
        &[(T, &t.buffer), (OUT, &out.buffer)],
        t.len(),
    )
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
    let bindings = [
        (T, &t.buffer),
        (UPSTREAM, &upstream.buffer),
        (OUT, &d_t.buffer),
    ];
    run(ctx, encoder, "backward", &bindings, t.len())
}

fn run(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    entry: &'static str,
    bindings: &[(u32, &wgpu::Buffer)],
    len: usize,
) -> Result<()> {
    let uniform = ctx.uniform(
        "gelu params",
        &Params {
            len: len as u32,
            _pad: [0; 3],
        },
    );
    let pipeline = ctx.pipeline(SHADER, entry, &[])?;
    let mut all = vec![(PARAMS, &uniform)];
    all.extend_from_slice(bindings);
    ctx.dispatch(encoder, &pipeline, &all, len as u64)
}
