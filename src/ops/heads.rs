//! Host side of shaders/heads.wgsl: between the projections' layout [B, n, H, d] and
//! attention's [B, H, n, d]. Records into the caller's encoder.

use crate::error::Result;
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::{check_loop_budget, check_shape};

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct HeadsParams as "Params" {
        batch: u32,
        seq_len: u32,
        heads: u32,
        width: u32,
    }
}

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const SRC: BindingDecl = BindingDecl::new("src", 1, Access::Read, Elem::F32);
const DST: BindingDecl = BindingDecl::new("dst", 2, Access::ReadWrite, Elem::F32);
const SRC4: BindingDecl = BindingDecl::new("src4", 3, Access::Read, Elem::Vec4F32);
const DST4: BindingDecl = BindingDecl::new("dst4", 4, Access::ReadWrite, Elem::Vec4F32);

/// [B, n, H, d] to [B, H, n, d].
pub const SPLIT_HEADS: Kernel = Kernel {
    shader: "heads.wgsl",
    entry: "split_heads",
    bindings: &[PARAMS, SRC, DST],
    params: HeadsParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

/// [B, H, n, d] to [B, n, H, d].
pub const MERGE_HEADS: Kernel = Kernel {
    entry: "merge_heads",
    ..SPLIT_HEADS
};

/// split_heads by rows of vec4s, for widths that are multiples of 4.
pub const SPLIT_HEADS_ROWS: Kernel = Kernel {
    entry: "split_heads_rows",
    bindings: &[PARAMS, SRC4, DST4],
    ..SPLIT_HEADS
};

/// merge_heads by rows of vec4s, for widths that are multiples of 4.
pub const MERGE_HEADS_ROWS: Kernel = Kernel {
    entry: "merge_heads_rows",
    bindings: &[PARAMS, SRC4, DST4],
    ..SPLIT_HEADS
};

/// Sizes of a multi-head tensor: batch, sequence, heads, width per head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLayout {
    /// Batch elements.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Heads.
    pub heads: usize,
    /// Width per head.
    pub width: usize,
}

impl HeadLayout {
    /// The token-major shape [B, n, H * d].
    pub fn token_major(&self) -> Vec<usize> {
        vec![self.batch, self.seq_len, self.heads * self.width]
    }

    /// The head-major shape [B, H, n, d].
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
    run(
        ctx,
        encoder,
        [&SPLIT_HEADS, &SPLIT_HEADS_ROWS],
        src,
        &dst,
        layout,
    )?;
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
    run(
        ctx,
        encoder,
        [&MERGE_HEADS, &MERGE_HEADS_ROWS],
        src,
        &dst,
        layout,
    )?;
    Ok(dst)
}

/// Runs the per-element kernel of `[per_element, by_rows]`, or the by-rows one where the width
/// is a multiple of 4 (the loop budget holds: a row of d takes d / 4 iterations).
fn run(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    [per_element, by_rows]: [&Kernel; 2],
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
    if layout.width.is_multiple_of(4) {
        check_loop_budget(
            ctx,
            "a head-layout copy of this width",
            layout.width as u64 / 4,
        )?;
        let rows = layout.batch * layout.heads * layout.seq_len;
        let buffers = [(SRC4.name, &src.buffer), (DST4.name, &dst.buffer)];
        let grid = Grid::Invocations(rows as u64);
        return ctx.run(encoder, by_rows, &[], &params, &buffers, grid);
    }
    let buffers = [(SRC.name, &src.buffer), (DST.name, &dst.buffer)];
    let grid = Grid::Invocations(dst.len() as u64);
    ctx.run(encoder, per_element, &[], &params, &buffers, grid)
}
