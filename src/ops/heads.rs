//! Host side of shaders/heads.wgsl: between the projections' layout [B, n, H, d] and
//! attention's [B, H, n, d]. Records into the caller's encoder.

use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::check_shape;

const SHADER: &str = "heads.wgsl";

// Binding slots of shaders/heads.wgsl.
const PARAMS: u32 = 0;
const SRC: u32 = 1;
const DST: u32 = 2;

/// The shader's `Params`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    seq_len: u32,
    heads: u32,
    width: u32,
}

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
    run(ctx, encoder, "split_heads", src, &dst, layout)?;
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
    run(ctx, encoder, "merge_heads", src, &dst, layout)?;
    Ok(dst)
}

fn run(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    entry: &'static str,
    src: &GpuTensor,
    dst: &GpuTensor,
    layout: HeadLayout,
) -> Result<()> {
    let uniform = ctx.uniform(
        "heads params",
        &Params {
            batch: layout.batch as u32,
            seq_len: layout.seq_len as u32,
            heads: layout.heads as u32,
            width: layout.width as u32,
        },
    );
    let pipeline = ctx.pipeline(SHADER, entry, &[])?;
    let bindings = [(PARAMS, &uniform), (SRC, &src.buffer), (DST, &dst.buffer)];
    ctx.dispatch(encoder, &pipeline, &bindings, dst.len() as u64)
}
