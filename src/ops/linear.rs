//! Host side of shaders/linear.wgsl: linear layers y = x W^T (+ b) and their gradients. The
//! products run on the matrix-product core ([`super::matmul`]); the bias gradient is a fixed-order
//! column sum. Every function records into the caller's encoder; nothing is submitted here.

use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};

use super::matmul::{Epilogue, Layout, Matmul, Packing, Shape, Triangles};

/// The most rows one bias_grad or LayerNorm param_grad dispatch sums (K_SPAN + K_SPAN / 128
/// loop iterations, inside llvmpipe's 65535 per invocation). Longer sums run span after span,
/// adding into the output in a fixed order.
pub(crate) const K_SPAN: usize = 32768;

const ADD_INTO_OUT: u32 = 1;

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct BiasGradParams as "Params" {
        rows: u32,
        cols: u32,
        row_begin: u32,
        row_end: u32,
        flags: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// Column sums of dy: a bias's gradient.
pub const BIAS_GRAD: Kernel = Kernel {
    shader: "linear.wgsl",
    entry: "bias_grad",
    bindings: &[
        BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
        BindingDecl::new("dy", 1, Access::Read, Elem::F32),
        BindingDecl::new("db", 2, Access::ReadWrite, Elem::F32),
    ],
    params: BiasGradParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

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

/// [dW = dy^T x (out x inp, summing over rows), dx = dy W (rows x inp, summing over out)].
fn backward_shapes(rows: usize, inp: usize, out: usize) -> [Shape; 2] {
    [
        Shape {
            batch: 1,
            m: out,
            n: inp,
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

/// Where a linear layer's backward writes dx.
pub struct InputGrad<'a> {
    /// dL/dx.
    pub dx: &'a GpuTensor,
    /// Whether dx is added to what it holds.
    pub add: bool,
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
    // dW [out, in] = dy^T x: op(A) = dy^T with dy stored [rows, out], op(B) = x.
    let [dw_shape, dx_shape] = backward_shapes(rows, inp, out);
    Matmul {
        shape: dw_shape,
        layout: Layout::dense(&dw_shape, true, false),
        epilogue: Epilogue::default(),
        a: dy,
        b: x,
        c: dw,
        bias: None,
        triangles: Triangles::NONE,
    }
    .run(ctx, encoder)?;
    if let Some(db) = db {
        bias_grad(ctx, encoder, dy, db)?;
    }
    if let Some(InputGrad { dx, add }) = dx {
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
        }
        .run(ctx, encoder)?;
    }
    Ok(())
}

/// db = column sums of dy `[.., out]`, span by span of rows.
fn bias_grad(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dy: &GpuTensor,
    db: &GpuTensor,
) -> Result<()> {
    let (rows, cols) = matrix(dy);
    check_matrix(db, 1, cols)?;
    for (i, start) in (0..rows).step_by(K_SPAN).enumerate() {
        let params = BiasGradParams {
            rows: rows as u32,
            cols: cols as u32,
            row_begin: start as u32,
            row_end: (start + K_SPAN).min(rows) as u32,
            flags: if i > 0 { ADD_INTO_OUT } else { 0 },
            ..Default::default()
        };
        ctx.run(
            encoder,
            &BIAS_GRAD,
            &[],
            &params,
            &[("dy", &dy.buffer), ("db", &db.buffer)],
            Grid::Invocations(cols as u64),
        )?;
    }
    Ok(())
}
