//! Host side of shaders/heads.wgsl: between the projections' layout [B, n, H, d] and
//! attention's [B, H, n, d]. Records into the caller's encoder.

use crate::error::Result;
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::check_shape;

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct HeadsParams as "Params" {
        batch: u32,
        seq_len: u32,
        heads: u32,
        width: u32,
    }
}

pub const SPLIT_HEADS: Kernel = Kernel {
    shader: "heads.wgsl",
    entry: "split_heads",
    bindings: &[
        BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
        BindingDecl::new("src", 1, Access::Read, Elem::F32),
        BindingDecl::new("dst", 2, Access::ReadWrite, Elem::F32),
    ],
    params: HeadsParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

pub const MERGE_HEADS: Kernel = Kernel {
    entry: "merge_heads",
    ..SPLIT_HEADS
};

/// Sizes of a multi-head tensor: batch, sequence, heads, width per head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLayout {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub width: usize,
}

impl HeadLayout {
    pub fn token_major(&self) -> Vec<usize> {
        vec![self.batch, self.seq_len, self.heads * self.width]
    }

    pub fn head_major(&self) -> Vec<usize> {
        vec![self.batch, self.heads, self.seq_len, self.width]
    }
}

/// A new `[B, H, n, d]` tensor from `src` `[B, n, H*d]`.
pub fn split_heads(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    src: &GpuTensor,
    layout: HeadLayout,
    name: &str,
) -> Result<GpuTensor> {
    check_shape(src, &layout.token_major())?;
    let dst = GpuTensor::output(ctx, name, &layout.head_major())?;
    run(ctx, encoder, &SPLIT_HEADS, src, &dst, layout)?;
    Ok(dst)
}

/// A new `[B, n, H*d]` tensor from `src` `[B, H, n, d]`.
pub fn merge_heads(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    src: &GpuTensor,
    layout: HeadLayout,
    name: &str,
) -> Result<GpuTensor> {
    check_shape(src, &layout.head_major())?;
    let dst = GpuTensor::output(ctx, name, &layout.token_major())?;
    run(ctx, encoder, &MERGE_HEADS, src, &dst, layout)?;
    Ok(dst)
}

fn run(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &Kernel,
    src: &GpuTensor,
    dst: &GpuTensor,
    layout: HeadLayout,
) -> Result<()> {
    let params = HeadsParams {
        batch: layout.batch as u32,
        seq_len: layout.seq_len as u32,
        heads: layout.heads as u32,
        width: layout.width as u32,
    };
    let buffers = [("src", &src.buffer), ("dst", &dst.buffer)];
    let grid = Grid::Invocations(dst.len() as u64);
    ctx.run(encoder, kernel, &[], &params, &buffers, grid)
}
