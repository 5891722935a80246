//! Host side of shaders/layer_norm.wgsl: LayerNorm over the last axis, forward (saving the mean
//! and 1/std of each row) and backward. Records into the caller's encoder.

use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::check_loop_budget;
use crate::ops::linear::{self, matrix, BlockPartials, SUM_BLOCK_CONSTANT};

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
const X4: BindingDecl = BindingDecl::new("x4", 11, Access::Read, Elem::Vec4F32);
const WEIGHT4: BindingDecl = BindingDecl::new("weight4", 12, Access::Read, Elem::Vec4F32);
const BIAS4: BindingDecl = BindingDecl::new("bias4", 13, Access::Read, Elem::Vec4F32);
const Y4: BindingDecl = BindingDecl::new("y4", 14, Access::ReadWrite, Elem::Vec4F32);
const DY4: BindingDecl = BindingDecl::new("dy4", 15, Access::Read, Elem::Vec4F32);
const DX4: BindingDecl = BindingDecl::new("dx4", 16, Access::ReadWrite, Elem::Vec4F32);
const PARTIALS4: BindingDecl = BindingDecl::new("partials4", 17, Access::ReadWrite, Elem::Vec4F32);
const X8: BindingDecl = BindingDecl::new("x8", 18, Access::Read, Elem::Vec4U64);
const DY8: BindingDecl = BindingDecl::new("dy8", 19, Access::Read, Elem::Vec4U64);
const WEIGHT8: BindingDecl = BindingDecl::new("weight8", 20, Access::Read, Elem::Vec4U64);
const BIAS8: BindingDecl = BindingDecl::new("bias8", 21, Access::Read, Elem::Vec4U64);
const Y8: BindingDecl = BindingDecl::new("y8", 22, Access::ReadWrite, Elem::Vec4U64);
const DX8: BindingDecl = BindingDecl::new("dx8", 23, Access::ReadWrite, Elem::Vec4U64);

/// The widest row the row kernels hold in their private arrays, in vec4s: the shader's
/// `ROW_QUADS_MAX`, a source constant set from this one.
pub const ROW_QUADS_MAX: usize = 64;
const ROW_CONSTANTS: &[(&str, f64)] = &[("ROW_QUADS_MAX", ROW_QUADS_MAX as f64)];

/// LayerNorm of each row, and its statistics.
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

/// dL/dx of each row.
pub const LAYER_NORM_INPUT_GRAD: Kernel = Kernel {
    entry: "input_grad",
    bindings: &[PARAMS, X, WEIGHT, SAVED_STATS, DY, DX],
    ..LAYER_NORM_FORWARD
};

/// dL/dweight and dL/dbias, one invocation per column: at any width.
pub const LAYER_NORM_PARAM_GRAD: Kernel = Kernel {
    entry: "param_grad",
    bindings: &[PARAMS, X, SAVED_STATS, DY, D_WEIGHT, D_BIAS],
    source_constants: &["SUM_BLOCK"],
    ..LAYER_NORM_FORWARD
};

/// forward for one row in a private array, loaded and stored as vec4s.
pub const LAYER_NORM_FORWARD_ROWS: Kernel = Kernel {
    entry: "forward_rows",
    bindings: &[PARAMS, X4, WEIGHT4, BIAS4, Y4, STATS],
    source_constants: &["ROW_QUADS_MAX"],
    ..LAYER_NORM_FORWARD
};

/// input_grad for one row in private arrays, loaded and stored as vec4s.
pub const LAYER_NORM_INPUT_GRAD_ROWS: Kernel = Kernel {
    entry: "input_grad_rows",
    bindings: &[PARAMS, X4, WEIGHT4, SAVED_STATS, DY4, DX4],
    source_constants: &["ROW_QUADS_MAX"],
    ..LAYER_NORM_FORWARD
};

/// forward_rows by 8 floats a load and store (vec4<u64>): the same bits.
pub const LAYER_NORM_FORWARD_ROWS64: Kernel = Kernel {
    shader: "layer_norm_int64.wgsl",
    entry: "forward_rows64",
    bindings: &[PARAMS, X8, WEIGHT8, BIAS8, Y8, STATS],
    needs: Needs::Int64,
    ..LAYER_NORM_FORWARD_ROWS
};

/// input_grad_rows by 8 floats a load and store (vec4<u64>): the same bits.
pub const LAYER_NORM_INPUT_GRAD_ROWS64: Kernel = Kernel {
    shader: "layer_norm_int64.wgsl",
    entry: "input_grad_rows64",
    bindings: &[PARAMS, X8, WEIGHT8, SAVED_STATS, DY8, DX8],
    needs: Needs::Int64,
    ..LAYER_NORM_INPUT_GRAD_ROWS
};

/// param_grad's first level at widths that are multiples of 4: each block of SUM_BLOCK rows of 4
/// columns in its own invocation; [`linear::sum_blocks`] adds the blocks in order.
pub const LAYER_NORM_PARAM_GRAD_BLOCKS: Kernel = Kernel {
    entry: "param_grad_blocks",
    bindings: &[PARAMS, X4, SAVED_STATS, DY4, PARTIALS4],
    source_constants: &["SUM_BLOCK"],
    ..LAYER_NORM_FORWARD
};

/// param_grad_blocks by 8 columns a load (vec4<u64>), where the adapter has 64-bit integers and
/// the width is a multiple of 8.
pub const LAYER_NORM_PARAM_GRAD_BLOCKS64: Kernel = Kernel {
    shader: "layer_norm_int64.wgsl",
    entry: "param_grad_blocks64",
    bindings: &[PARAMS, X8, SAVED_STATS, DY8, PARTIALS4],
    needs: Needs::Int64,
    ..LAYER_NORM_PARAM_GRAD_BLOCKS
};

/// Whether the row kernels run this width here: a multiple of 4 that their private arrays
/// hold, on a CPU adapter. There a load costs the same for any address pattern and the
/// private arrays live in cache. On llvmpipe, in the model at n = 4096 (rows of 256, 9 calls
/// each), they took the forward from 222 ms to 145-150 and the input gradient from 307 to
/// 180-194 (BENCHMARKS.md). On a GPU the arrays would spill from registers, so the plain
/// kernels run there (unmeasured). The arrays are kept at 64 vec4s: at 256, llvmpipe took about
/// 97 s to compile the two kernels (about 6 s at 64; Mesa caches them on disk).
fn rows_fit(ctx: &GpuContext, width: usize) -> bool {
    ctx.adapter().device_type == "Cpu" && width.is_multiple_of(4) && width <= 4 * ROW_QUADS_MAX
}

/// How the forward and input-gradient kernels move a row: element by element (the plain
/// kernels), by vec4s (the row kernels) or, where the adapter has 64-bit integers and the width
/// is a multiple of 8, by vec4<u64>s (the row kernels' 64-bit forms: the same bits).
#[derive(Clone, Copy, PartialEq)]
enum RowAccess {
    Floats,
    Quads,
    Octs,
}

impl RowAccess {
    fn of(ctx: &GpuContext, width: usize) -> Self {
        if !rows_fit(ctx, width) {
            RowAccess::Floats
        } else if ctx.has_int64() && width.is_multiple_of(8) {
            RowAccess::Octs
        } else {
            RowAccess::Quads
        }
    }

    /// The binding of one of a kernel's tensors under this access: `views` is its plain, vec4
    /// and vec4<u64> binding (the same as the plain one where it has no other).
    fn view(self, views: [BindingDecl; 3]) -> &'static str {
        views[self as usize].name
    }

    /// The kernel and its source constants, of the plain, row and 64-bit row kernels given.
    fn kernel(
        self,
        kernels: [&'static Kernel; 3],
    ) -> (&'static Kernel, &'static [(&'static str, f64)]) {
        let constants = if self == RowAccess::Floats {
            &[][..]
        } else {
            ROW_CONSTANTS
        };
        (kernels[self as usize], constants)
    }
}

/// A LayerNorm's parameters and epsilon.
#[derive(Clone, Copy)]
pub struct LayerNormParams<'a> {
    /// gamma.
    pub weight: &'a GpuTensor,
    /// beta.
    pub bias: &'a GpuTensor,
    /// epsilon.
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
    // The row kernels bind the vec4 or vec4<u64> views of the same buffers.
    let access = RowAccess::of(ctx, width);
    let (kernel, constants) = access.kernel([
        &LAYER_NORM_FORWARD,
        &LAYER_NORM_FORWARD_ROWS,
        &LAYER_NORM_FORWARD_ROWS64,
    ]);
    ctx.run(
        encoder,
        kernel,
        constants,
        &params(rows, width, (0, rows), ln.eps, 0),
        &[
            (access.view([X, X4, X8]), &x.buffer),
            (access.view([WEIGHT, WEIGHT4, WEIGHT8]), &ln.weight.buffer),
            (access.view([BIAS, BIAS4, BIAS8]), &ln.bias.buffer),
            (access.view([Y, Y4, Y8]), &y.buffer),
            (STATS.name, &stats.buffer),
        ],
        Grid::Invocations(rows as u64),
    )?;
    Ok(stats)
}

/// Where the LayerNorm backward writes its gradients.
pub struct LayerNormGrads<'a> {
    /// dL/dx; added into when `add_into_dx` (the residual stream's gradient is already there).
    pub dx: &'a GpuTensor,
    /// Whether dx is added to what it holds.
    pub add_into_dx: bool,
    /// dL/dweight.
    pub d_weight: &'a GpuTensor,
    /// dL/dbias.
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
    let access = RowAccess::of(ctx, width);
    let (kernel, constants) = access.kernel([
        &LAYER_NORM_INPUT_GRAD,
        &LAYER_NORM_INPUT_GRAD_ROWS,
        &LAYER_NORM_INPUT_GRAD_ROWS64,
    ]);
    ctx.run(
        encoder,
        kernel,
        constants,
        &params(rows, width, (0, rows), ln.eps, flags),
        &[
            (access.view([X, X4, X8]), &x.buffer),
            (access.view([WEIGHT, WEIGHT4, WEIGHT8]), &ln.weight.buffer),
            (SAVED_STATS.name, &stats.buffer),
            (access.view([DY, DY4, DY8]), &dy.buffer),
            (access.view([DX, DX4, DX8]), &out.dx.buffer),
        ],
        Grid::Invocations(rows as u64),
    )?;
    // Per block: the weight's partials, then the bias's.
    let partials = linear::sum_partials(ctx, "LayerNorm gradient partials", (rows, width, 2))?;
    for (i, (begin, end, blocks)) in linear::sum_spans(rows).enumerate() {
        let params = params(
            rows,
            width,
            (begin, end),
            ln.eps,
            if i > 0 { ADD_INTO_OUTPUT } else { 0 },
        );
        let Some(partials) = &partials else {
            ctx.run(
                encoder,
                &LAYER_NORM_PARAM_GRAD,
                SUM_BLOCK_CONSTANT,
                &params,
                &[
                    (X.name, &x.buffer),
                    (SAVED_STATS.name, &stats.buffer),
                    (DY.name, &dy.buffer),
                    (D_WEIGHT.name, &out.d_weight.buffer),
                    (D_BIAS.name, &out.d_bias.buffer),
                ],
                Grid::Invocations(width as u64),
            )?;
            continue;
        };
        // 8 columns an invocation where u64 loads may carry them, else 4.
        let (kernel, [x_binding, dy_binding], cols_each) =
            if ctx.has_int64() && width.is_multiple_of(8) {
                (&LAYER_NORM_PARAM_GRAD_BLOCKS64, [X8, DY8], 8)
            } else {
                (&LAYER_NORM_PARAM_GRAD_BLOCKS, [X4, DY4], 4)
            };
        ctx.run(
            encoder,
            kernel,
            SUM_BLOCK_CONSTANT,
            &params,
            &[
                (x_binding.name, &x.buffer),
                (SAVED_STATS.name, &stats.buffer),
                (dy_binding.name, &dy.buffer),
                (PARTIALS4.name, &partials.buffer),
            ],
            Grid::Invocations((blocks * width / cols_each) as u64),
        )?;
        for (sum, into) in [out.d_weight, out.d_bias].into_iter().enumerate() {
            let partials = BlockPartials {
                tensor: partials,
                blocks,
                stride: width / 2,
                offset: sum * width / 4,
            };
            linear::sum_blocks(ctx, encoder, partials, into, i > 0)?;
        }
    }
    Ok(())
}
