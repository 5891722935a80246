//! Host side of shaders/exact_attention.wgsl: exact softmax attention, forward and backward,
//! in O(n d) memory and O(n^2 d) time. The baseline of every speed figure and the fallback
//! where the polynomial approximation cannot be trusted.
//!
//! The key axis is cut into spans of at most `span` keys; each kernel runs once per span, in
//! order, carrying its running state in its output buffers, so no invocation loops over more
//! than one span (see the shader's header). Forward: split_rows for q and k, then pivot_span
//! and forward_span per span (one submission). Backward: split_rows for v and dL/do,
//! row_terms, then delta_span, query_grad_span, key_grad_span and value_grad_span per span
//! (one submission).

use crate::attention::AttentionShape;
use crate::error::{Error, Result};
use crate::gpu::{Binding, GpuContext, GpuTensor};
use crate::ops::{
    check_inputs, check_loop_budget, check_shape, AttentionFootprint, AttentionGradients,
};

const SHADER: &str = "exact_attention.wgsl";

// Binding slots of shaders/exact_attention.wgsl.
const PARAMS: u32 = 0;
const Q: u32 = 1;
const K: u32 = 2;
const V: u32 = 3;
const O: u32 = 4;
const STATS: u32 = 5;
const D_O: u32 = 6;
const ROW_TERMS: u32 = 7;
const GRAD: u32 = 8;
const O_LO: u32 = 9;
const PIVOTS: u32 = 10;
const SPLIT_IN: u32 = 11;
const SPLIT_OUT: u32 = 12;
const V_SPLIT: u32 = 13;
/// Floats per (row, column tile) of the forward's running sums: l as hi and lo.
const STATS_PER_TILE: usize = 2;
/// Floats per row of the pivots: the running max logit and its key.
const PIVOTS_PER_ROW: usize = 2;
/// Floats per row of the backward's row terms: log l, D, pivot, q . k_pivot in two parts, D's
/// low half, dO . v_pivot in two parts.
const ROW_TERMS_PER_ROW: usize = 8;
/// The longest sequence whose key positions an f32 holds exactly (the shader keeps each row's
/// pivot key in an f32).
const MAX_SEQ_LEN: usize = 1 << 24;
/// The widest rows of q, k, v and dL/do whose split (see split_rows in the shader) keeps at
/// least 4 bits in the high parts.
const MAX_WIDTH: usize = 1 << 16;

/// The shader's `Params`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    heads: u32,
    rows: u32,
    d_qk: u32,
    d_v: u32,
    causal: u32,
    span_start: u32,
    span_end: u32,
    split_bits: u32,
    logit_scale: f32,
    /// 1.0, which the shader's compiler cannot constant-fold (see two_sum in the shader).
    one: f32,
    _pad: [u32; 2],
}

impl Params {
    /// The parameters of the dispatch over keys (or queries) start..end of `shape`.
    fn span(shape: &AttentionShape, start: usize, end: usize) -> Self {
        Params {
            heads: shape.total_heads() as u32,
            rows: shape.seq_len as u32,
            d_qk: shape.d_qk as u32,
            d_v: shape.d_v as u32,
            causal: shape.causal as u32,
            span_start: start as u32,
            span_end: end as u32,
            split_bits: split_bits(shape.d_qk),
            logit_scale: (1.0 / (shape.d_qk as f64).sqrt()) as f32,
            one: 1.0,
            _pad: [0; 2],
        }
    }

    /// split_rows' parameters for every row of a `[B, H, n, width]` tensor of `shape`.
    fn split(shape: &AttentionShape, width: usize) -> Self {
        Params {
            heads: 1,
            rows: (shape.total_heads() * shape.seq_len) as u32,
            d_qk: width as u32,
            split_bits: split_bits(width),
            ..Params::span(shape, 0, 0)
        }
    }
}

/// Tile sizes, the shader's override constants. Loops over a tile have constant trip counts;
/// the defaults stay at 16 or below, which llvmpipe unrolls (the loop budget counts every loop
/// anyway, so larger tiles stay correct there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactTiles {
    /// Keys per block of the compensated sums (1 to 16).
    pub key_block: usize,
    /// Output columns per invocation (1 to 64).
    pub col_tile: usize,
}

impl Default for ExactTiles {
    fn default() -> Self {
        ExactTiles {
            key_block: 8,
            col_tile: 16,
        }
    }
}

/// What the forward pass keeps for the backward pass.
pub struct ExactForward {
    /// The attention output, `[B, H, n, d_v]`.
    pub o: GpuTensor,
    /// The compensated softmax sum of each row, relative to its pivot, `[B*H, n, v_tiles, 2]`.
    stats: GpuTensor,
    /// Each row's largest logit and its key, `[B*H, n, 2]`.
    pivots: GpuTensor,
    /// q and k as exact high and low parts, `[B*H, n, d_qk, 2]`: the logits of the backward
    /// are taken from these, as the forward's were.
    q_split: GpuTensor,
    k_split: GpuTensor,
}

/// Exact softmax attention for one shape, with its per-span parameters built once.
pub struct ExactAttention {
    shape: AttentionShape,
    tiles: ExactTiles,
    span: usize,
    /// One uniform buffer per span of keys, in order.
    span_params: Vec<wgpu::Buffer>,
    /// split_rows' parameters for rows of width d_qk (q, k) and d_v (v, dL/do).
    split_params_qk: wgpu::Buffer,
    split_params_v: wgpu::Buffer,
}

impl ExactAttention {
    /// The longest span on an adapter with no loop limit: keeps each dispatch short enough for
    /// drivers that reset a GPU stuck in one dispatch for seconds.
    pub const MAX_SPAN: usize = 4096;

    pub fn new(ctx: &GpuContext, shape: AttentionShape) -> Result<Self> {
        Self::with_tiles(ctx, shape, ExactTiles::default(), None)
    }

    /// `span`: keys per dispatch, or `None` for the longest the adapter allows. Any span gives
    /// the same result up to rounding. Checks shape, tiles and sizes before allocating.
    pub fn with_tiles(
        ctx: &GpuContext,
        shape: AttentionShape,
        tiles: ExactTiles,
        span: Option<usize>,
    ) -> Result<Self> {
        shape.validate()?;
        if !(1..=16).contains(&tiles.key_block) || !(1..=64).contains(&tiles.col_tile) {
            return Err(Error::shape(
                "exact attention tiles",
                format!("{tiles:?}: key_block must be 1 to 16, col_tile 1 to 64"),
            ));
        }
        if shape.d_qk.max(shape.d_v) > MAX_WIDTH {
            return Err(Error::shape(
                format!("attention {shape}"),
                format!("exact attention takes d_qk and d_v of at most {MAX_WIDTH}"),
            ));
        }
        if shape.seq_len > MAX_SEQ_LEN {
            return Err(Error::shape(
                format!("attention {shape}"),
                format!("exact attention takes sequences of at most {MAX_SEQ_LEN} tokens"),
            ));
        }
        if shape.total_heads() * shape.seq_len * shape.d_qk.max(shape.d_v) > u32::MAX as usize {
            return Err(Error::shape(
                format!("attention {shape}"),
                "has more elements than u32 indexing reaches",
            ));
        }
        let longest = Self::longest_span(ctx, &shape, &tiles)?;
        let span = match span {
            Some(0) => return Err(Error::shape("exact attention span", "must be at least 1")),
            Some(s) => s.min(longest),
            None => longest,
        };
        for (name, s) in [("q", shape.qk_shape()), ("v", shape.v_shape())] {
            GpuTensor::check_size(ctx, name, &s, 0)?;
        }
        let split_params = |width| {
            ctx.uniform(
                "exact_attention split params",
                &Params::split(&shape, width),
            )
        };
        let mut op = ExactAttention {
            shape,
            tiles,
            span,
            span_params: Vec::new(),
            split_params_qk: split_params(shape.d_qk),
            split_params_v: split_params(shape.d_v),
        };
        GpuTensor::check_size(ctx, "exact attention row stats", &op.stats_shape(), 0)?;
        op.span_params = op
            .spans()
            .map(|(s, e)| ctx.uniform("exact_attention params", &Params::span(&shape, s, e)))
            .collect();
        Ok(op)
    }

    pub fn shape(&self) -> &AttentionShape {
        &self.shape
    }

    /// Keys (or queries) per dispatch.
    pub fn span(&self) -> usize {
        self.span
    }

    /// The longest span whose kernels stay within the adapter's loop limit, at most
    /// [`Self::MAX_SPAN`] and n; an error when not even one key block fits.
    fn longest_span(ctx: &GpuContext, shape: &AttentionShape, tiles: &ExactTiles) -> Result<usize> {
        let cap = Self::MAX_SPAN.min(shape.seq_len);
        let Some(limit) = ctx.loop_iteration_limit() else {
            return Ok(cap);
        };
        check_loop_budget(
            ctx,
            &format!("exact attention {shape}, one key per span"),
            Self::loop_iterations(shape, tiles, 1),
        )?;
        // loop_iterations grows with the span: the longest span below the limit by bisection.
        let (mut fits, mut too_long) = (1, cap + 1);
        while too_long - fits > 1 {
            let mid = (fits + too_long) / 2;
            if Self::loop_iterations(shape, tiles, mid) < limit {
                fits = mid;
            } else {
                too_long = mid;
            }
        }
        Ok(fits)
    }

    /// An upper bound on the loop iterations of one invocation over a span of `span` keys,
    /// counting every loop as if none unrolled (llvmpipe does not unroll a constant-trip loop
    /// that holds another loop, and tiles may be set above what it unrolls). The forward's
    /// last key block may run key_block - 1 masked keys past the span.
    pub fn loop_iterations(shape: &AttentionShape, tiles: &ExactTiles, span: usize) -> u64 {
        let (d_qk, d_v) = (shape.d_qk as u64, shape.d_v as u64);
        let (block, cols, span) = (tiles.key_block as u64, tiles.col_tile as u64, span as u64);
        let load_store = 2 * cols;
        // Per key: its logit, its dO . v and its columns; per block: the compensated fold.
        let per_gradient_block = 1 + block * (1 + d_qk + d_v + cols) + 2 * cols;
        let gradients = span.div_ceil(block) * per_gradient_block + 2 * load_store;
        // Per key: its logit and its weighted values; per block: the fold. Before the loop: the
        // pivot's logit.
        let per_block = 1 + block * (1 + d_qk + cols) + cols;
        let forward = span.div_ceil(block) * per_block + load_store + d_qk;
        let pivots = span * (1 + d_qk);
        // row_terms (d_qk + d_v) and split_rows (twice the widest of d_qk and d_v) loop over
        // one row.
        let rows = (d_v + d_qk).max(2 * d_qk.max(d_v));
        gradients.max(forward).max(pivots).max(rows)
    }

    /// [start, end) of each span of keys, in order.
    fn spans(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.shape.seq_len)
            .step_by(self.span)
            .map(|s| (s, (s + self.span).min(self.shape.seq_len)))
    }

    fn constants(&self) -> [(&'static str, f64); 2] {
        [
            ("KEY_BLOCK", self.tiles.key_block as f64),
            ("COL_TILE", self.tiles.col_tile as f64),
        ]
    }

    fn column_tiles(&self, width: usize) -> usize {
        width.div_ceil(self.tiles.col_tile)
    }

    fn stats_shape(&self) -> [usize; 4] {
        let s = &self.shape;
        [
            s.total_heads(),
            s.seq_len,
            self.column_tiles(s.d_v),
            STATS_PER_TILE,
        ]
    }

    /// Invocations of a kernel over rows (or keys) `first..last` of every head, one per column
    /// tile of a row of `width`.
    fn invocations(&self, first: usize, last: usize, width: usize) -> u64 {
        (self.shape.total_heads() * (last - first) * self.column_tiles(width)) as u64
    }

    /// Causal dispatches skip the rows whose keys all lie in earlier spans (query-side kernels)
    /// and the keys that no query of the span sees (key-side kernels).
    fn query_rows(&self, start: usize) -> (usize, usize) {
        (
            if self.shape.causal { start } else { 0 },
            self.shape.seq_len,
        )
    }

    fn key_rows(&self, end: usize) -> (usize, usize) {
        (
            0,
            if self.shape.causal {
                end
            } else {
                self.shape.seq_len
            },
        )
    }

    /// Records `entry` once per span of keys, in order, each dispatch over the positions with
    /// work in the span and one invocation per column tile of `width` (1: one per position);
    /// the span's parameters go before `bindings`.
    fn dispatch_spans(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        entry: &'static str,
        over: Over,
        width: usize,
        bindings: &[Binding<'_>],
    ) -> Result<()> {
        let pipeline = ctx.pipeline(SHADER, entry, &self.constants())?;
        for ((start, end), params) in self.spans().zip(&self.span_params) {
            let (first, last) = match over {
                Over::Queries => self.query_rows(start),
                Over::Keys => self.key_rows(end),
            };
            let mut all = vec![(PARAMS, params)];
            all.extend_from_slice(bindings);
            ctx.dispatch(
                encoder,
                &pipeline,
                &all,
                self.invocations(first, last, width),
            )?;
        }
        Ok(())
    }

    /// A `[B*H, n, width, 2]` buffer for a split tensor.
    fn split_output(&self, ctx: &GpuContext, name: &str, width: usize) -> Result<GpuTensor> {
        let s = &self.shape;
        GpuTensor::output(ctx, name, &[s.total_heads(), s.seq_len, width, 2])
    }

    /// Records split_rows: `input` ([B, H, n, width]) into exact high and low parts, with the
    /// parameters built for its width.
    fn split(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        (input, params): (&GpuTensor, &wgpu::Buffer),
        out: &GpuTensor,
    ) -> Result<()> {
        ctx.dispatch(
            encoder,
            &*ctx.pipeline(SHADER, "split_rows", &self.constants())?,
            &[
                (PARAMS, params),
                (SPLIT_IN, &input.buffer),
                (SPLIT_OUT, &out.buffer),
            ],
            (self.shape.total_heads() * self.shape.seq_len) as u64,
        )
    }

    /// The bytes [`Self::forward`] and [`Self::backward`] allocate (kept next to them: a
    /// tensor added there belongs here, and the model's memory test checks the sum).
    pub fn footprint(&self) -> AttentionFootprint {
        let s = &self.shape;
        let bytes = GpuTensor::shape_bytes;
        let split = |width: usize| bytes(&[s.total_heads(), s.seq_len, width, 2]);
        AttentionFootprint {
            saved: bytes(&s.v_shape())
                + bytes(&self.stats_shape())
                + bytes(&[s.total_heads(), s.seq_len, PIVOTS_PER_ROW])
                + 2 * split(s.d_qk),
            forward_scratch: bytes(&s.v_shape()),
            backward_scratch: bytes(&[s.total_heads(), s.seq_len, ROW_TERMS_PER_ROW])
                + 2 * bytes(&s.qk_shape())
                + bytes(&s.v_shape())
                + 2 * split(s.d_v),
            largest: split(s.d_qk.max(s.d_v)).max(bytes(&self.stats_shape())),
        }
    }

    /// o = softmax(q k^T / sqrt(d_qk)) v, keeping what the backward needs. Submits without
    /// waiting.
    pub fn forward(
        &self,
        ctx: &GpuContext,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
    ) -> Result<ExactForward> {
        check_inputs(&self.shape, q, k, v)?;
        let s = &self.shape;
        let out = ExactForward {
            o: GpuTensor::output(ctx, "o", &s.v_shape())?,
            stats: GpuTensor::output(ctx, "exact attention row sums", &self.stats_shape())?,
            pivots: GpuTensor::output(
                ctx,
                "exact attention pivots",
                &[s.total_heads(), s.seq_len, PIVOTS_PER_ROW],
            )?,
            q_split: self.split_output(ctx, "q split", s.d_qk)?,
            k_split: self.split_output(ctx, "k split", s.d_qk)?,
        };
        // The low half of the compensated accumulator, between spans.
        let o_lo = GpuTensor::output(ctx, "exact attention accumulator", &s.v_shape())?;
        let mut encoder = ctx.encoder("exact attention forward");
        ctx.checked("recording exact attention forward", || -> Result<()> {
            self.split(ctx, &mut encoder, (q, &self.split_params_qk), &out.q_split)?;
            self.split(ctx, &mut encoder, (k, &self.split_params_qk), &out.k_split)?;
            let (q_split, k_split) = (&out.q_split.buffer, &out.k_split.buffer);
            let pivot_bindings = [(Q, q_split), (K, k_split), (PIVOTS, &out.pivots.buffer)];
            self.dispatch_spans(
                ctx,
                &mut encoder,
                "pivot_span",
                Over::Queries,
                1,
                &pivot_bindings,
            )?;
            let forward_bindings = [
                (Q, q_split),
                (K, k_split),
                (V, &v.buffer),
                (O, &out.o.buffer),
                (STATS, &out.stats.buffer),
                (O_LO, &o_lo.buffer),
                (PIVOTS, &out.pivots.buffer),
            ];
            let (entry, width) = ("forward_span", s.d_v);
            self.dispatch_spans(
                ctx,
                &mut encoder,
                entry,
                Over::Queries,
                width,
                &forward_bindings,
            )
        })??;
        ctx.submit("exact attention forward", encoder)?;
        Ok(out)
    }

    /// dq, dk, dv given dL/do, recomputing the probabilities from the forward's split q and k
    /// and its row sums.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        saved: &ExactForward,
        d_o: &GpuTensor,
    ) -> Result<AttentionGradients> {
        check_inputs(&self.shape, q, k, v)?;
        check_shape(d_o, &self.shape.v_shape())?;
        check_shape(&saved.o, &self.shape.v_shape())?;
        let s = &self.shape;
        let row_terms = GpuTensor::output(
            ctx,
            "exact attention row terms",
            &[s.total_heads(), s.seq_len, ROW_TERMS_PER_ROW],
        )?;
        let grads = AttentionGradients {
            dq: GpuTensor::output(ctx, "dq", &s.qk_shape())?,
            dk: GpuTensor::output(ctx, "dk", &s.qk_shape())?,
            dv: GpuTensor::output(ctx, "dv", &s.v_shape())?,
        };
        let constants = self.constants();
        let (q_split, k_split) = (&saved.q_split.buffer, &saved.k_split.buffer);
        let v_split = self.split_output(ctx, "v split", s.d_v)?;
        let d_o_split = self.split_output(ctx, "d_o split", s.d_v)?;
        let mut encoder = ctx.encoder("exact attention backward");
        ctx.checked("recording exact attention backward", || -> Result<()> {
            self.split(ctx, &mut encoder, (v, &self.split_params_v), &v_split)?;
            self.split(ctx, &mut encoder, (d_o, &self.split_params_v), &d_o_split)?;
            let (v_split, d_o) = (&v_split.buffer, &d_o_split.buffer);
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "row_terms", &constants)?,
                &[
                    (PARAMS, &self.span_params[0]),
                    (Q, q_split),
                    (K, k_split),
                    (STATS, &saved.stats.buffer),
                    (PIVOTS, &saved.pivots.buffer),
                    (V_SPLIT, v_split),
                    (D_O, d_o),
                    (ROW_TERMS, &row_terms.buffer),
                ],
                (s.total_heads() * s.seq_len) as u64,
            )?;
            let row_terms = &row_terms.buffer;
            let delta_bindings = [
                (Q, q_split),
                (K, k_split),
                (V_SPLIT, v_split),
                (D_O, d_o),
                (ROW_TERMS, row_terms),
            ];
            self.dispatch_spans(
                ctx,
                &mut encoder,
                "delta_span",
                Over::Queries,
                1,
                &delta_bindings,
            )?;
            let kernels = [
                ("query_grad_span", Over::Queries, &grads.dq, s.d_qk),
                ("key_grad_span", Over::Keys, &grads.dk, s.d_qk),
                ("value_grad_span", Over::Keys, &grads.dv, s.d_v),
            ];
            for (entry, over, grad, width) in kernels {
                let mut bindings = vec![
                    (Q, q_split),
                    (K, k_split),
                    (D_O, d_o),
                    (ROW_TERMS, row_terms),
                    (GRAD, &grad.buffer),
                ];
                if entry != "value_grad_span" {
                    bindings.push((V_SPLIT, v_split));
                }
                self.dispatch_spans(ctx, &mut encoder, entry, over, width, &bindings)?;
            }
            Ok(())
        })??;
        ctx.submit("exact attention backward", encoder)?;
        Ok(grads)
    }
}

/// What a span's dispatch runs over: query rows (kernels that loop over a row's keys) or keys
/// (kernels that loop over a key's queries).
#[derive(Clone, Copy)]
enum Over {
    Queries,
    Keys,
}

/// Bits of the high parts of q and k (see split_rows in the shader): d_qk products of two
/// such parts, each below 2^(2 bits), must sum within f32's 24-bit significand.
fn split_bits(d_qk: usize) -> u32 {
    let sum_bits = d_qk.next_power_of_two().trailing_zeros();
    (24 - sum_bits) / 2
}
