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
const T4: BindingDecl = BindingDecl::new("t4", 4, Access::Read, Elem::Vec4F32);
const UPSTREAM4: BindingDecl = BindingDecl::new("upstream4", 5, Access::Read, Elem::Vec4F32);
const OUT4: BindingDecl = BindingDecl::new("out4", 6, Access::ReadWrite, Elem::Vec4F32);

/// gelu(t), elementwise.
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

/// dL/dt from dL/dgelu(t), elementwise.
pub const GELU_BACKWARD: Kernel = Kernel {
    entry: "backward",
    bindings: &[PARAMS, T, UPSTREAM, OUT],
    ..GELU_FORWARD
};

/// forward on vec4s, for lengths that are multiples of 4.
pub const GELU_FORWARD4: Kernel = Kernel {
    entry: "forward4",
    bindings: &[PARAMS, T4, OUT4],
    ..GELU_FORWARD
};

/// backward on vec4s, for lengths that are multiples of 4.
pub const GELU_BACKWARD4: Kernel = Kernel {
    entry: "backward4",
    bindings: &[PARAMS, T4, UPSTREAM4, OUT4],
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
    let len = t.len();
    if len.is_multiple_of(4) {
        let buffers = [(T4.name, &t.buffer), (OUT4.name, &out.buffer)];
        return run(ctx, encoder, &GELU_FORWARD4, &buffers, len, len / 4);
    }
    let buffers = [(T.name, &t.buffer), (OUT.name, &out.buffer)];
    run(ctx, encoder, &GELU_FORWARD, &buffers, len, len)
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
    let len = t.len();
    if len.is_multiple_of(4) {
        let buffers = [
            (T4.name, &t.buffer),
            (UPSTREAM4.name, &upstream.buffer),
            (OUT4.name, &d_t.buffer),
        ];
        return run(ctx, encoder, &GELU_BACKWARD4, &buffers, len, len / 4);
    }
    let buffers = [
        (T.name, &t.buffer),
        (UPSTREAM.name, &upstream.buffer),
        (OUT.name, &d_t.buffer),
    ];
    run(ctx, encoder, &GELU_BACKWARD, &buffers, len, len)
}

fn run(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &Kernel,
    buffers: &[(&str, &wgpu::Buffer)],
    len: usize,
    invocations: usize,
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
        Grid::Invocations(invocations as u64),
    )
}
