//! Host side of shaders/linear.wgsl: linear layers y = x W^T (+ b) and their gradients. The
//! products run on the matrix-product core ([`super::matmul`]); the bias gradient is a fixed-order
//! column sum, in two levels (blocks of [`SUM_BLOCK`] rows, then the blocks in order) that
//! LayerNorm's parameter gradients share. Every function records into the caller's encoder;
//! nothing is submitted here.

use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};

use super::matmul::{
    activation_scratch_bytes, Activation, Epilogue, Layout, Matmul, Packing, Shape, Triangles,
};

/// The most rows one bias_grad or LayerNorm param_grad dispatch sums (K_SPAN + K_SPAN / 128
/// loop iterations, inside llvmpipe's 65535 per invocation). Longer sums run span after span,
/// adding into the output in a fixed order.
pub(crate) const K_SPAN: usize = 32768;

/// Rows per partial sum of a two-level column sum (the shaders' `SUM_BLOCK`, set from this):
/// rounding grows with SUM_BLOCK + rows / SUM_BLOCK terms.
pub(crate) const SUM_BLOCK: usize = 128;
pub(crate) const SUM_BLOCK_CONSTANT: &[(&str, f64)] = &[("SUM_BLOCK", SUM_BLOCK as f64)];

const ADD_INTO_OUT: u32 = 1;

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct BiasGradParams as "Params" {
        rows: u32,
        cols: u32,
        row_begin: u32,
        row_end: u32,
        flags: u32,
        blocks: u32,
        stride: u32,
        offset: u32,
    }
}

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const DY: BindingDecl = BindingDecl::new("dy", 1, Access::Read, Elem::F32);
const DB: BindingDecl = BindingDecl::new("db", 2, Access::ReadWrite, Elem::F32);
const DY4: BindingDecl = BindingDecl::new("dy4", 3, Access::Read, Elem::Vec4F32);
const PARTIALS4: BindingDecl = BindingDecl::new("partials4", 4, Access::ReadWrite, Elem::Vec4F32);
const OUT4: BindingDecl = BindingDecl::new("out4", 5, Access::ReadWrite, Elem::Vec4F32);
const DY8: BindingDecl = BindingDecl::new("dy8", 6, Access::Read, Elem::Vec4U64);

/// Column sums of dy, one invocation per column: a bias's gradient, at any width.
pub const BIAS_GRAD: Kernel = Kernel {
    shader: "linear.wgsl",
    entry: "bias_grad",
    bindings: &[PARAMS, DY, DB],
    params: BiasGradParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &["SUM_BLOCK"],
    needs: Needs::Core,
};

/// The first level of the bias gradient at widths that are multiples of 4: every block of
/// SUM_BLOCK rows of 4 columns in its own invocation.
pub const BIAS_GRAD_BLOCKS: Kernel = Kernel {
    entry: "bias_grad_blocks",
    bindings: &[PARAMS, DY4, PARTIALS4],
    ..BIAS_GRAD
};

/// bias_grad_blocks by 8 columns a load (vec4<u64>), where the adapter has 64-bit integers and
/// the width is a multiple of 8.
pub const BIAS_GRAD_BLOCKS64: Kernel = Kernel {
    shader: "linear_int64.wgsl",
    entry: "bias_grad_blocks64",
    bindings: &[PARAMS, DY8, PARTIALS4],
    needs: Needs::Int64,
    ..BIAS_GRAD
};

/// The second level of a two-level column sum: the blocks' partials added in block order.
pub const SUM_BLOCKS: Kernel = Kernel {
    entry: "sum_blocks",
    bindings: &[PARAMS, PARTIALS4, OUT4],
    source_constants: &[],
    ..BIAS_GRAD
};

/// The blocks of SUM_BLOCK rows in each span of at most [`K_SPAN`] rows, and the spans, of a
/// column sum over `rows`: (span begin, span end, blocks).
pub(crate) fn sum_spans(rows: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..rows).step_by(K_SPAN).map(move |begin| {
        let end = (begin + K_SPAN).min(rows);
        (begin, end, (end - begin).div_ceil(SUM_BLOCK))
    })
}

/// The partials' shape of a two-level column sum over `rows` x `width` (`sums` sums of that
/// width: 1 for a bias, 2 for a LayerNorm's weight and bias): one row per block of its longest
/// span. None where the width runs the one-level kernels or there are no rows.
fn sum_partials_shape(rows: usize, width: usize, sums: usize) -> Option<[usize; 2]> {
    let blocks = sum_spans(rows).map(|(_, _, b)| b).max().unwrap_or(0);
    (width.is_multiple_of(4) && blocks > 0).then_some([blocks, sums * width])
}

/// Bytes of [`sum_partials`]' tensor (0 where there is none), for memory estimates.
pub(crate) fn sum_partials_bytes(rows: usize, width: usize, sums: usize) -> u64 {
    sum_partials_shape(rows, width, sums).map_or(0, |shape| GpuTensor::shape_bytes(&shape))
}

/// The partials tensor of a two-level column sum (see [`sum_partials_shape`]), allocated once
/// and shared by its spans: each span writes its blocks before [`sum_blocks`] reads them, and
/// the encoder orders the next span's writes after those reads.
pub(crate) fn sum_partials(
    ctx: &GpuContext,
    name: &str,
    (rows, width, sums): (usize, usize, usize),
) -> Result<Option<GpuTensor>> {
    sum_partials_shape(rows, width, sums)
        .map(|shape| GpuTensor::output(ctx, name, &shape))
        .transpose()
}

/// Where [`sum_blocks`] reads: `blocks` rows of `stride` vec4s, each summed from `offset`.
#[derive(Clone, Copy)]
pub(crate) struct BlockPartials<'a> {
    pub tensor: &'a GpuTensor,
    pub blocks: usize,
    pub stride: usize,
    pub offset: usize,
}

/// out (+)= the partials' blocks added in block order, `out.len()` (a multiple of 4) columns.
pub(crate) fn sum_blocks(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    partials: BlockPartials,
    out: &GpuTensor,
    add: bool,
) -> Result<()> {
    let quads = out.len() / 4;
    if !out.len().is_multiple_of(4) || partials.offset + quads > partials.stride {
        return Err(Error::shape(
            format!("column sum into {}", out.name()),
            format!(
                "{} columns from vec4 {} of rows of {}: not whole vec4s inside a row",
                out.len(),
                partials.offset,
                partials.stride
            ),
        ));
    }
    if partials.tensor.len() < partials.blocks * partials.stride * 4 {
        return Err(Error::shape(
            format!("tensor {}", partials.tensor.name()),
            format!(
                "holds {} elements; {} blocks of {} vec4s are read",
                partials.tensor.len(),
                partials.blocks,
                partials.stride
            ),
        ));
    }
    let params = BiasGradParams {
        cols: out.len() as u32,
        flags: if add { ADD_INTO_OUT } else { 0 },
        blocks: partials.blocks as u32,
        stride: partials.stride as u32,
        offset: partials.offset as u32,
        ..Default::default()
    };
    ctx.run(
        encoder,
        &SUM_BLOCKS,
        &[],
        &params,
        &[
            (PARTIALS4.name, &partials.tensor.buffer),
            (OUT4.name, &out.buffer),
        ],
        Grid::Invocations(quads as u64),
    )
}

/// A tensor seen as a matrix: (rows, last dimension).
pub(crate) fn matrix(t: &GpuTensor) -> (usize, usize) {
    let width = *t.shape().last().unwrap_or(&1);
    (t.len() / width.max(1), width)
}

fn check_matrix(t: &GpuTensor, rows: usize, width: usize) -> Result<()> {
    if matrix(t) != (rows, width) {
        return Err(Error::shape(
            format!("tensor {}", t.name()),
            format!(
                "is {:?}, seen as a {:?} matrix; expected {rows} x {width}",
                t.shape(),
                matrix(t)
            ),
        ));
    }
    Ok(())
}

/// y (+)= x W^T (+ b): x `[.., in]`, w `[out, in]`, bias `[out]`, y `[.., out]`.
pub fn linear_forward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    y: &GpuTensor,
    add_into_y: bool,
) -> Result<()> {
    let y = (y, add_into_y, Activation::None);
    linear_forward_activated(ctx, encoder, x, w, bias, y)
}

/// [`linear_forward`] with an activation in the product's epilogue: with
/// [`Activation::Gelu`], y = x W^T + b and its `out` = gelu(y) from one pass.
pub fn linear_forward_activated(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    (y, add_into_y, activation): (&GpuTensor, bool, Activation),
) -> Result<()> {
    let (rows, inp) = matrix(x);
    let (out, _) = matrix(w);
    check_matrix(w, out, inp)?;
    check_matrix(y, rows, out)?;
    if let Some(bias) = bias {
        check_matrix(bias, 1, out)?;
    }
    let shape = forward_shape(rows, inp, out);
    Matmul {
        shape,
        layout: Layout::dense(&shape, false, true),
        epilogue: Epilogue {
            alpha: 1.0,
            add_into_c: add_into_y,
        },
        a: x,
        b: w,
        c: y,
        bias,
        triangles: Triangles::NONE,
        activation,
    }
    .run(ctx, encoder)
}

/// Where a linear layer's backward writes dx, and whether it adds into what is there.
/// y = x W^T: rows x out, summing over inp.
fn forward_shape(rows: usize, inp: usize, out: usize) -> Shape {
    Shape {
        batch: 1,
        m: rows,
        n: out,
        k: inp,
    }
}

/// Whether dW runs as dW^T = x^T dy, stored transposed (so as W lies), rather than dy^T x:
/// where out < inp, so that op(B), whose rows the kernels load most often (a lane loads op(B)
/// at every k and shares op(A)'s loads), has the shorter rows. On llvmpipe dW of 256 x 1024 ran
/// at 30-48 GFLOP/s as dy^T x and at 58 as x^T dy (BENCHMARKS.md).
fn weight_grad_transposed(inp: usize, out: usize) -> bool {
    out < inp
}

/// [dW = dy^T x (out x inp, summing over rows; inp x out where `weight_grad_transposed`), dx
/// = dy W (rows x inp, summing over out)].
fn backward_shapes(rows: usize, inp: usize, out: usize) -> [Shape; 2] {
    let (m, n) = if weight_grad_transposed(inp, out) {
        (inp, out)
    } else {
        (out, inp)
    };
    [
        Shape {
            batch: 1,
            m,
            n,
            k: rows,
        },
        Shape {
            batch: 1,
            m: rows,
            n: inp,
            k: out,
        },
    ]
}

/// The packed operands a linear layer of `rows` x `inp` -> `out` records (see
/// [`Packing`]): its forward, or its backward's two products.
pub(crate) fn packing(
    ctx: &GpuContext,
    (rows, inp, out): (usize, usize, usize),
    backward: bool,
) -> Packing {
    let shapes = if backward {
        backward_shapes(rows, inp, out).to_vec()
    } else {
        vec![forward_shape(rows, inp, out)]
    };
    shapes.iter().map(|s| Packing::of(ctx, s)).sum()
}

/// Bytes the input gradient of a linear layer of `rows` x `inp` -> `out` allocates for an
/// activation applied to it (see [`InputGrad::activation`]), beyond its own tensors.
pub(crate) fn input_grad_activation_bytes(
    ctx: &GpuContext,
    (rows, inp, out): (usize, usize, usize),
) -> u64 {
    activation_scratch_bytes(ctx, &backward_shapes(rows, inp, out)[1])
}

/// Where a linear layer's backward writes dx.
pub struct InputGrad<'a> {
    /// dL/dx.
    pub dx: &'a GpuTensor,
    /// Whether dx is added to what it holds.
    pub add: bool,
    /// Applied to dx in the product's epilogue: [`Activation::GeluGrad`] makes it the
    /// gradient at the pre-activation of a GELU whose output is x' (the layer before this
    /// one): dL/du = (dy W) * gelu'(u).
    pub activation: Activation<'a>,
}

/// Gradients of y = x W^T (+ b) given dy: dw = dy^T x, db = column sums of dy (when given),
/// dx (+)= dy W (when given).
pub fn linear_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    (x, w, dy): (&GpuTensor, &GpuTensor, &GpuTensor),
    dx: Option<InputGrad>,
    dw: &GpuTensor,
    db: Option<&GpuTensor>,
) -> Result<()> {
    let (rows, inp) = matrix(x);
    let (out, _) = matrix(w);
    check_matrix(w, out, inp)?;
    check_matrix(dy, rows, out)?;
    check_matrix(dw, out, inp)?;
    // dW [out, in] = dy^T x: op(A) = dy^T with dy stored [rows, out], op(B) = x; or dW^T =
    // x^T dy, stored transposed.
    let [dw_shape, dx_shape] = backward_shapes(rows, inp, out);
    let dense = Layout::dense(&dw_shape, true, false);
    let (layout, a, b) = if weight_grad_transposed(inp, out) {
        (dense.with_c_transposed(&dw_shape), x, dy)
    } else {
        (dense, dy, x)
    };
    Matmul {
        shape: dw_shape,
        layout,
        epilogue: Epilogue::default(),
        a,
        b,
        c: dw,
        bias: None,
        triangles: Triangles::NONE,
        activation: Activation::None,
    }
    .run(ctx, encoder)?;
    if let Some(db) = db {
        bias_grad(ctx, encoder, dy, db)?;
    }
    if let Some(InputGrad {
        dx,
        add,
        activation,
    }) = dx
    {
        check_matrix(dx, rows, inp)?;
        // dx [rows, in] = dy W: W stored [out, in] is op(B) as it is.
        Matmul {
            shape: dx_shape,
            layout: Layout::dense(&dx_shape, false, false),
            epilogue: Epilogue {
                alpha: 1.0,
                add_into_c: add,
            },
            a: dy,
            b: w,
            c: dx,
            bias: None,
            triangles: Triangles::NONE,
            activation,
        }
        .run(ctx, encoder)?;
    }
    Ok(())
}

/// db = column sums of dy `[.., out]`, span by span of rows: in two levels where out is a
/// multiple of 4, else one invocation per column.
fn bias_grad(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dy: &GpuTensor,
    db: &GpuTensor,
) -> Result<()> {
    let (rows, cols) = matrix(dy);
    check_matrix(db, 1, cols)?;
    let partials = sum_partials(ctx, "bias gradient partials", (rows, cols, 1))?;
    for (i, (begin, end, blocks)) in sum_spans(rows).enumerate() {
        let params = BiasGradParams {
            rows: rows as u32,
            cols: cols as u32,
            row_begin: begin as u32,
            row_end: end as u32,
            flags: if i > 0 { ADD_INTO_OUT } else { 0 },
            ..Default::default()
        };
        let Some(partials) = &partials else {
            let buffers = [(DY.name, &dy.buffer), (DB.name, &db.buffer)];
            let grid = Grid::Invocations(cols as u64);
            ctx.run(
                encoder,
                &BIAS_GRAD,
                SUM_BLOCK_CONSTANT,
                &params,
                &buffers,
                grid,
            )?;
            continue;
        };
        // 8 columns an invocation where u64 loads may carry them, else 4.
        let (kernel, dy_binding, cols_each) = if ctx.has_int64() && cols.is_multiple_of(8) {
            (&BIAS_GRAD_BLOCKS64, DY8, 8)
        } else {
            (&BIAS_GRAD_BLOCKS, DY4, 4)
        };
        ctx.run(
            encoder,
            kernel,
            SUM_BLOCK_CONSTANT,
            &params,
            &[
                (dy_binding.name, &dy.buffer),
                (PARTIALS4.name, &partials.buffer),
            ],
            Grid::Invocations((blocks * cols / cols_each) as u64),
        )?;
        let partials = BlockPartials {
            tensor: partials,
            blocks,
            stride: cols / 4,
            offset: 0,
        };
        sum_blocks(ctx, encoder, partials, db, i > 0)?;
    }
    Ok(())
}
