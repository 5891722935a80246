//! Host side of shaders/linear.wgsl: linear layers y = x W^T (+ b) and their gradients, all
//! through one product kernel C = A B^T (see the shader's header for why the transposes).
//! Every function records into the caller's encoder; nothing is submitted here.

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};

const SHADER: &str = "linear.wgsl";

// Binding slots of shaders/linear.wgsl.
const PARAMS: u32 = 0;
const A: u32 = 1;
const B: u32 = 2;
const BIAS: u32 = 3;
const C: u32 = 4;
const A4: u32 = 5;
const B4: u32 = 6;

const ADD_INTO_C: u32 = 1;
const ADD_BIAS: u32 = 2;

/// The most k one matmul_nt dispatch sums over (K_SPAN / 4 + K_SPAN / 128 loop iterations), and
/// the most rows one row_sum or LayerNorm param_grad dispatch sums (K_SPAN + K_SPAN / 128): both
/// inside llvmpipe's 65535 iterations per invocation.
/// Longer sums run span after span, adding into C in a fixed order.
pub(crate) const K_SPAN: usize = 32768;

/// The shader's `Params`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    k_begin: u32,
    k_end: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    flags: u32,
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

/// [start, end) spans of at most K_SPAN covering 0..len.
fn spans(len: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len)
        .step_by(K_SPAN)
        .map(move |s| (s, (s + K_SPAN).min(len)))
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
    matmul_nt(ctx, encoder, x, w, bias, y, add_into_y)
}

/// Where a linear layer's backward writes dx, and whether it adds into what is there.
pub struct InputGrad<'a> {
    pub dx: &'a GpuTensor,
    pub add: bool,
}

/// Gradients of y = x W^T (+ b) given dy: dw = dy^T x, db = column sums of dy (when given),
/// dx (+)= dy W (when given). Takes the layer's input already transposed, `x_t` = x^T from
/// [`transpose`], so that layers sharing one input (q, k and v) transpose it once.
pub fn linear_backward(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    (x_t, w, dy): (&GpuTensor, &GpuTensor, &GpuTensor),
    dx: Option<InputGrad>,
    dw: &GpuTensor,
    db: Option<&GpuTensor>,
) -> Result<()> {
    let dy_t = transpose(ctx, encoder, dy)?;
    matmul_nt(ctx, encoder, &dy_t, x_t, None, dw, false)?;
    if let Some(db) = db {
        row_sum(ctx, encoder, &dy_t, db)?;
    }
    if let Some(InputGrad { dx, add }) = dx {
        let w_t = transpose(ctx, encoder, w)?;
        matmul_nt(ctx, encoder, dy, &w_t, None, dx, add)?;
    }
    Ok(())
}

/// c (+)= a b^T (+ bias): a `[rows, k]`, b `[cols, k]`, c `[rows, cols]`.
fn matmul_nt(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    a: &GpuTensor,
    b: &GpuTensor,
    bias: Option<&GpuTensor>,
    c: &GpuTensor,
    add_into_c: bool,
) -> Result<()> {
    let (rows, k) = matrix(a);
    let (cols, _) = matrix(b);
    check_matrix(b, cols, k)?;
    check_matrix(c, rows, cols)?;
    if let Some(bias) = bias {
        check_matrix(bias, 1, cols)?;
    }
    // Spans start at multiples of K_SPAN (a multiple of 4), so every span of a K that is a
    // multiple of 4 can use vector loads.
    let vec4 = k % 4 == 0;
    let entry = if vec4 { "matmul_nt_vec4" } else { "matmul_nt" };
    let (a_slot, b_slot) = if vec4 { (A4, B4) } else { (A, B) };
    let pipeline = ctx.pipeline(SHADER, entry, &[])?;
    let invocations = (rows.div_ceil(4) * cols.div_ceil(4)) as u64;
    for (i, (k_begin, k_end)) in spans(k).enumerate() {
        let mut flags = 0;
        if add_into_c || i > 0 {
            flags |= ADD_INTO_C;
        }
        if bias.is_some() && i == 0 {
            flags |= ADD_BIAS;
        }
        let params = ctx.uniform(
            "linear params",
            &Params {
                rows: rows as u32,
                cols: cols as u32,
                k_begin: k_begin as u32,
                k_end: k_end as u32,
                lda: k as u32,
                ldb: k as u32,
                ldc: cols as u32,
                flags,
            },
        );
        // Without a bias the slot still needs a buffer; b is never read through it.
        let bias_buffer = bias.map_or(&b.buffer, |t| &t.buffer);
        ctx.dispatch(
            encoder,
            &pipeline,
            &[
                (PARAMS, &params),
                (a_slot, &a.buffer),
                (b_slot, &b.buffer),
                (BIAS, bias_buffer),
                (C, &c.buffer),
            ],
            invocations,
        )?;
    }
    Ok(())
}

/// a^T, a new tensor `[width, rows]` for a `[.., width]`.
pub fn transpose(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    a: &GpuTensor,
) -> Result<GpuTensor> {
    let (rows, cols) = matrix(a);
    let out = GpuTensor::output(ctx, &format!("{}^T", a.name()), &[cols, rows])?;
    let params = ctx.uniform(
        "transpose params",
        &Params {
            rows: rows as u32,
            cols: cols as u32,
            k_begin: 0,
            k_end: 0,
            lda: cols as u32,
            ldb: 0,
            ldc: rows as u32,
            flags: 0,
        },
    );
    let pipeline = ctx.pipeline(SHADER, "transpose", &[])?;
    ctx.dispatch(
        encoder,
        &pipeline,
        &[(PARAMS, &params), (A, &a.buffer), (C, &out.buffer)],
        (rows * cols) as u64,
    )?;
    Ok(out)
}

/// out[r] = sum of row r of a, span by span.
fn row_sum(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    a: &GpuTensor,
    out: &GpuTensor,
) -> Result<()> {
    let (rows, width) = matrix(a);
    check_matrix(out, 1, rows)?;
    let pipeline = ctx.pipeline(SHADER, "row_sum", &[])?;
    for (i, (k_begin, k_end)) in spans(width).enumerate() {
        let params = ctx.uniform(
            "row_sum params",
            &Params {
                rows: rows as u32,
                cols: 1,
                k_begin: k_begin as u32,
                k_end: k_end as u32,
                lda: width as u32,
                ldb: 0,
                ldc: 1,
                flags: if i > 0 { ADD_INTO_C } else { 0 },
            },
        );
        ctx.dispatch(
            encoder,
            &pipeline,
            &[(PARAMS, &params), (A, &a.buffer), (C, &out.buffer)],
            rows as u64,
        )?;
    }
    Ok(())
}
