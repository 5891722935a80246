//! Host side of shaders/exact_attention.wgsl: exact softmax attention, forward and backward,
//! in O(n d) memory and O(n^2 d) time. The baseline of every speed figure and the fallback
//! where the polynomial approximation cannot be trusted.
//!
//! FlashAttention-2's tiling: the rows of every head, laid end to end, are cut into windows of
//! query rows and windows of key rows, each as many rows as one 64 KiB uniform binding holds
//! (and as few as keep one invocation within llvmpipe's loop limit). A tiled kernel runs once
//! per (query window, key window) pair that holds work, each dispatch binding both windows by
//! dynamic offsets, in an order that lets it carry its running state in its output buffers
//! (see the shader's header). Forward: split_rows for q, k and v, pivot_span per tile pair,
//! pivot_rows, forward_span per tile pair (one submission). Backward: split_rows for dL/do,
//! row_terms, delta_span per tile pair, finish_delta, then query_grad_span, key_grad_span and
//! value_grad_span per tile pair (one submission).

use crate::attention::AttentionShape;
use crate::error::{Error, Result};
use crate::gpu::kernel::{
    gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup, WINDOW_BYTES,
};
use crate::gpu::tune::{fastest_agreeing, timed, Round, TuneMode};
use crate::gpu::{GpuContext, GpuTensor, WindowedDispatch, Work};
use crate::ops::{
    check_inputs, check_loop_budget, check_shape, probe_inputs, AttentionFootprint,
    AttentionGradients,
};

const SHADER: &str = "exact_attention.wgsl";

// Bindings of shaders/exact_attention.wgsl, one declaration per name; each kernel lists the
// ones it uses.
const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const Q_WIN: BindingDecl = BindingDecl::new("q_win", 1, Access::Window, Elem::Window);
const K_WIN: BindingDecl = BindingDecl::new("k_win", 2, Access::Window, Elem::Window);
const V_WIN: BindingDecl = BindingDecl::new("v_win", 3, Access::Window, Elem::Window);
const D_O_WIN: BindingDecl = BindingDecl::new("d_o_win", 4, Access::Window, Elem::Window);
const TERMS_WIN: BindingDecl = BindingDecl::new("terms_win", 5, Access::Window, Elem::Window);
const PIVOT_WIN: BindingDecl = BindingDecl::new("pivot_win", 6, Access::Window, Elem::Window);
const O: BindingDecl = BindingDecl::new("o", 7, Access::ReadWrite, Elem::F32);
const O_LO: BindingDecl = BindingDecl::new("o_lo", 8, Access::ReadWrite, Elem::F32);
const STATS: BindingDecl = BindingDecl::new("stats", 9, Access::ReadWrite, Elem::F32);
const PIVOTS: BindingDecl = BindingDecl::new("pivots", 10, Access::ReadWrite, Elem::F32);
const TERMS_OUT: BindingDecl = BindingDecl::new("terms_out", 11, Access::ReadWrite, Elem::F32);
const GRAD: BindingDecl = BindingDecl::new("grad", 12, Access::ReadWrite, Elem::F32);
const SPLIT_IN: BindingDecl = BindingDecl::new("split_in", 13, Access::Read, Elem::F32);
const SPLIT_OUT: BindingDecl = BindingDecl::new("split_out", 14, Access::ReadWrite, Elem::Vec2F32);
const DELTA_ACC: BindingDecl = BindingDecl::new("delta_acc", 15, Access::ReadWrite, Elem::F32);
const Q_SPLIT: BindingDecl = BindingDecl::new("q_split", 16, Access::Read, Elem::Vec2F32);
const K_SPLIT: BindingDecl = BindingDecl::new("k_split", 17, Access::Read, Elem::Vec2F32);
const V_SPLIT: BindingDecl = BindingDecl::new("v_split", 18, Access::Read, Elem::Vec2F32);
const D_O_SPLIT: BindingDecl = BindingDecl::new("d_o_split", 19, Access::Read, Elem::Vec2F32);
const PIVOT_OUT: BindingDecl = BindingDecl::new("pivot_out", 20, Access::ReadWrite, Elem::F32);

const fn kernel(entry: &'static str, bindings: &'static [BindingDecl]) -> Kernel {
    Kernel {
        shader: SHADER,
        entry,
        bindings,
        params: ExactParams::LAYOUT,
        workgroup: Workgroup::Override("WORKGROUP"),
        constants: &["KEY_BLOCK", "COL_TILE", "D_QK", "D_V"],
        source_constants: &[],
        needs: Needs::Core,
    }
}

/// Rows split into [high, low] pairs.
pub const SPLIT_ROWS: Kernel = kernel("split_rows", &[PARAMS, SPLIT_IN, SPLIT_OUT]);
/// Each query span's pivot key.
pub const PIVOT_SPAN: Kernel = kernel("pivot_span", &[PARAMS, Q_WIN, K_WIN, PIVOTS]);
/// Each row's pivot.
pub const PIVOT_ROWS: Kernel = kernel(
    "pivot_rows",
    &[PARAMS, PIVOTS, Q_SPLIT, K_SPLIT, TERMS_OUT, PIVOT_OUT],
);
/// The forward over a span of keys.
pub const FORWARD_SPAN: Kernel = kernel(
    "forward_span",
    &[PARAMS, Q_WIN, K_WIN, V_WIN, TERMS_WIN, O, O_LO, STATS],
);
/// Each row's dO . o terms.
pub const ROW_TERMS: Kernel = kernel("row_terms", &[PARAMS, TERMS_OUT, D_O_SPLIT, V_SPLIT, STATS]);
/// The delta sums over a span.
pub const DELTA_SPAN: Kernel = kernel(
    "delta_span",
    &[PARAMS, Q_WIN, K_WIN, V_WIN, D_O_WIN, TERMS_WIN, DELTA_ACC],
);
/// The delta rows finished.
pub const FINISH_DELTA: Kernel = kernel("finish_delta", &[PARAMS, TERMS_OUT, DELTA_ACC]);
/// dq over a span of keys.
pub const QUERY_GRAD_SPAN: Kernel = kernel(
    "query_grad_span",
    &[
        PARAMS, Q_WIN, K_WIN, V_WIN, D_O_WIN, TERMS_WIN, PIVOT_WIN, GRAD,
    ],
);
/// dk over a span of queries.
pub const KEY_GRAD_SPAN: Kernel = kernel(
    "key_grad_span",
    &[PARAMS, Q_WIN, K_WIN, V_WIN, D_O_WIN, TERMS_WIN, GRAD],
);
/// dv over a span of queries.
pub const VALUE_GRAD_SPAN: Kernel = kernel(
    "value_grad_span",
    &[PARAMS, Q_WIN, K_WIN, D_O_WIN, TERMS_WIN, GRAD],
);

/// Floats per (row, column tile) of the forward's running sums: l as hi and lo.
const STATS_PER_TILE: usize = 2;
/// Floats per row of the pivots: the running max logit and its key.
const PIVOTS_PER_ROW: usize = 2;
/// Floats per row of the row terms: log l, D, pivot, q . k_pivot in two parts, 0,
/// dO . v_pivot in two parts.
const ROW_TERMS_PER_ROW: usize = 8;
/// Floats per row of delta_span's running sum: D as hi and lo.
const DELTA_PER_ROW: usize = 2;
/// The longest sequence whose key positions an f32 holds exactly (the shader keeps each row's
/// pivot key in an f32).
const MAX_SEQ_LEN: usize = 1 << 24;
/// The widest rows of q, k, v and dL/do: a window (64 KiB) must hold two rows of their
/// [high, low] pairs.
const MAX_WIDTH: usize = 4096;
/// The widest rows the tiled kernels hold in registers: 2 MAX_ROW_VEC4S in the shader
/// (`tests/kernels.rs` checks that they agree).
pub const MAX_HELD_WIDTH: u64 = 64;
/// Bytes of one [high, low] pair.
const PAIR_BYTES: usize = 8;

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct ExactParams as "Params" {
        heads: u32,
        rows: u32,
        d_qk: u32,
        d_v: u32,
        causal: u32,
        q_first: u32,
        q_count: u32,
        k_first: u32,
        k_count: u32,
        split_bits: u32,
        logit_scale: f32,
        /// 1.0, which the shader's compiler cannot constant-fold (see two_sum in the shader).
        one: f32,
    }
}

impl ExactParams {
    /// The parameters of `shape` for the tile pair of query rows `q` and key rows `k`
    /// (global rows; empty for the per-row kernels).
    fn tiles(shape: &AttentionShape, q: (usize, usize), k: (usize, usize)) -> Self {
        ExactParams {
            heads: shape.total_heads() as u32,
            rows: shape.seq_len as u32,
            d_qk: shape.d_qk as u32,
            d_v: shape.d_v as u32,
            causal: shape.causal as u32,
            q_first: q.0 as u32,
            q_count: (q.1 - q.0) as u32,
            k_first: k.0 as u32,
            k_count: (k.1 - k.0) as u32,
            split_bits: split_bits(shape.d_qk),
            logit_scale: (1.0 / (shape.d_qk as f64).sqrt()) as f32,
            one: 1.0,
        }
    }

    fn rows(shape: &AttentionShape) -> Self {
        Self::tiles(shape, (0, 0), (0, 0))
    }

    /// split_rows' parameters for every row of a `[B, H, n, width]` tensor of `shape`.
    fn split(shape: &AttentionShape, width: usize) -> Self {
        ExactParams {
            heads: 1,
            rows: (shape.total_heads() * shape.seq_len) as u32,
            d_qk: width as u32,
            split_bits: split_bits(width),
            ..Self::rows(shape)
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
    /// Each row's terms (see the shader's `terms_out`), `[B*H, n, 8]`: the forward writes the
    /// pivot's, the backward the rest.
    terms: GpuTensor,
    /// q, k and v as exact high and low parts, `[B*H, n, width, 2]`: the logits of the
    /// backward are taken from these, as the forward's were.
    q_split: GpuTensor,
    k_split: GpuTensor,
    v_split: GpuTensor,
    /// Each row's pivot key, `[B*H, n, d_qk]`.
    pivot_keys: GpuTensor,
}

/// Rows per window on each side: query windows hold q, dL/do, the row terms and the pivot
/// keys of their rows, key windows k and v.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WindowRows {
    query: usize,
    key: usize,
}

/// Which side a tiled kernel's invocations own: query rows (looping over a key window) or key
/// rows (looping over a query window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Over {
    Queries,
    Keys,
}

/// One tile pair: global rows [start, end) of the query window and of the key window.
type TilePair = ((usize, usize), (usize, usize));

/// Exact softmax attention for one shape.
pub struct ExactAttention {
    shape: AttentionShape,
    tiles: ExactTiles,
    windows: WindowRows,
}

impl ExactAttention {
    /// The most rows of a window on an adapter with no loop limit: keeps each dispatch short.
    pub const MAX_SPAN: usize = 4096;

    /// Exact attention with the tiles the tuner chooses for this adapter and these widths
    /// (the defaults with tuning off).
    pub fn new(ctx: &GpuContext, shape: AttentionShape) -> Result<Self> {
        let tiles = choose_tiles(ctx, &shape)?;
        Self::with_tiles(ctx, shape, tiles, None)
    }

    /// `span`: the most rows per window (each dispatch's keys, or queries), or `None` for as
    /// many as a window and the adapter's loop limit allow; it is rounded down to a multiple
    /// of the rows that keep windows aligned (at least one such multiple). Any span gives the
    /// same result up to rounding. Checks shape, tiles and sizes before allocating.
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
        if span == Some(0) {
            return Err(Error::shape("exact attention span", "must be at least 1"));
        }
        for (name, s) in [("q", shape.qk_shape()), ("v", shape.v_shape())] {
            GpuTensor::check_size(ctx, name, &s, 0)?;
        }
        let rows = (
            span.unwrap_or(usize::MAX),
            Self::longest_span(ctx, &shape, &tiles)?,
        );
        let windows = WindowRows {
            query: window_rows(ctx, &query_row_bytes(&shape), rows, &shape)?,
            key: window_rows(ctx, &key_row_bytes(&shape), rows, &shape)?,
        };
        let op = ExactAttention {
            shape,
            tiles,
            windows,
        };
        GpuTensor::check_size(ctx, "exact attention row stats", &op.stats_shape(), 0)?;
        Ok(op)
    }

    /// The shape it runs.
    pub fn shape(&self) -> &AttentionShape {
        &self.shape
    }

    /// Keys per key window (the longest loop of a query row's invocation).
    pub fn span(&self) -> usize {
        self.windows.key
    }

    /// The longest span whose kernels stay within the adapter's loop limit, at most
    /// [`Self::MAX_SPAN`]; an error when not even one key block fits.
    fn longest_span(ctx: &GpuContext, shape: &AttentionShape, tiles: &ExactTiles) -> Result<usize> {
        let cap = Self::MAX_SPAN;
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

    /// An upper bound on the loop iterations of one invocation over a window of `span` rows,
    /// counting every loop as if none unrolled (llvmpipe does not unroll a constant-trip loop
    /// that holds another loop, and tiles may be set above what it unrolls). The last key
    /// block may run key_block - 1 masked keys past the window.
    pub fn loop_iterations(shape: &AttentionShape, tiles: &ExactTiles, span: usize) -> u64 {
        let (d_qk, d_v) = (shape.d_qk as u64, shape.d_v as u64);
        let (block, cols, span) = (tiles.key_block as u64, tiles.col_tile as u64, span as u64);
        let load_store = 2 * cols;
        // Rows held in registers before the loop (q or k, and dO): at most MAX_HELD_WIDTH wide.
        let held = (d_qk.min(MAX_HELD_WIDTH) + d_v.min(MAX_HELD_WIDTH)) / 2;
        // Per key: its logit, its dO . v and its columns; per block: the compensated fold.
        let per_gradient_block = 1 + block * (1 + d_qk + d_v + cols) + 2 * cols;
        let gradients = span.div_ceil(block) * per_gradient_block + 2 * load_store + held;
        // Per key: its logit and its weighted values; per block: the fold.
        let per_block = 1 + block * (1 + d_qk + cols) + cols;
        let forward = span.div_ceil(block) * per_block + load_store + held;
        let pivots = span * (1 + d_qk);
        // pivot_rows (2 d_qk + d_v), row_terms (d_v) and split_rows (twice the widest of d_qk
        // and d_v) loop over one row.
        let rows = (2 * d_qk + d_v).max(2 * d_qk.max(d_v));
        gradients.max(forward).max(pivots).max(rows)
    }

    fn constants(&self) -> [(&'static str, f64); 4] {
        [
            ("KEY_BLOCK", self.tiles.key_block as f64),
            ("COL_TILE", self.tiles.col_tile as f64),
            ("D_QK", self.shape.d_qk as f64),
            ("D_V", self.shape.d_v as f64),
        ]
    }

    fn column_tiles(&self, width: usize) -> usize {
        width.div_ceil(self.tiles.col_tile)
    }

    fn total_rows(&self) -> usize {
        self.shape.total_heads() * self.shape.seq_len
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

    fn per_row(&self, width: usize) -> [usize; 3] {
        [self.shape.total_heads(), self.shape.seq_len, width]
    }

    fn split_shape(&self, width: usize) -> [usize; 4] {
        [self.shape.total_heads(), self.shape.seq_len, width, 2]
    }

    /// The tile pairs a kernel over `over` runs, in order: per window of its own rows, every
    /// window of the other side holding rows of the same heads it meets (causal: on or below
    /// the diagonal), in increasing order, which is the order its running state needs.
    fn tile_pairs(&self, over: Over) -> Vec<TilePair> {
        let n = self.shape.seq_len;
        let causal = self.shape.causal;
        let total = self.total_rows();
        let head_start = |row: usize| row / n * n;
        let windows = |size: usize| {
            (0..total)
                .step_by(size)
                .map(move |s| (s, (s + size).min(total)))
        };
        let (own, other) = match over {
            Over::Queries => (self.windows.query, self.windows.key),
            Over::Keys => (self.windows.key, self.windows.query),
        };
        let mut pairs = Vec::new();
        for (start, end) in windows(own) {
            // The other side's rows [lo, hi) this window's rows meet.
            let (lo, hi) = match (over, causal) {
                (Over::Queries, true) => (head_start(start), end),
                (Over::Keys, true) => (start, head_start(end - 1) + n),
                (_, false) => (head_start(start), head_start(end - 1) + n),
            };
            for first in (lo / other * other..hi).step_by(other) {
                let window = (first, (first + other).min(total));
                pairs.push(match over {
                    Over::Queries => ((start, end), window),
                    Over::Keys => (window, (start, end)),
                });
            }
        }
        pairs
    }

    /// Records `kernel` over every tile pair of `over`, one invocation per row of its own side
    /// and column tile of `width`; `buffers` names every binding, windows included.
    fn run_tiles(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        (over, width): (Over, usize),
        buffers: &[(&str, &wgpu::Buffer)],
    ) -> Result<()> {
        let s = &self.shape;
        let (query_bytes, key_bytes) = (query_row_bytes(s), key_row_bytes(s));
        let per_group = kernel.workgroup_invocations(&self.constants()) as usize;
        let dispatches: Vec<_> = self
            .tile_pairs(over)
            .into_iter()
            .map(|(q, k)| {
                let own = match over {
                    Over::Queries => q.1 - q.0,
                    Over::Keys => k.1 - k.0,
                };
                let mut windows = Vec::new();
                for (name, bytes) in query_bytes {
                    windows.push((name, (q.0 * bytes) as u64));
                }
                for (name, bytes) in key_bytes {
                    windows.push((name, (k.0 * bytes) as u64));
                }
                WindowedDispatch {
                    params: ExactParams::tiles(s, q, k),
                    windows,
                    workgroups: (own * self.column_tiles(width)).div_ceil(per_group) as u64,
                }
            })
            .collect();
        ctx.run_windowed(
            encoder,
            kernel,
            &self.constants(),
            &dispatches,
            buffers,
            Work::default(),
        )
    }

    /// Records a per-row kernel over every row of every head.
    fn run_rows(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        buffers: &[(&str, &wgpu::Buffer)],
    ) -> Result<()> {
        ctx.run(
            encoder,
            kernel,
            &self.constants(),
            &ExactParams::rows(&self.shape),
            buffers,
            Grid::Invocations(self.total_rows() as u64),
        )
    }

    /// Records split_rows: `input` (`[B, H, n, width]`) into exact high and low parts, in a
    /// new tensor that windows can be placed on.
    fn split(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        name: &str,
        input: &GpuTensor,
        width: usize,
    ) -> Result<GpuTensor> {
        let out = GpuTensor::windowable_output(ctx, name, &self.split_shape(width))?;
        ctx.run(
            encoder,
            &SPLIT_ROWS,
            &self.constants(),
            &ExactParams::split(&self.shape, width),
            &[("split_in", &input.buffer), ("split_out", &out.buffer)],
            Grid::Invocations(self.total_rows() as u64),
        )?;
        Ok(out)
    }

    /// The bytes [`Self::forward`] and [`Self::backward`] allocate (kept next to them: a
    /// tensor added there belongs here, and the model's memory test checks the sum).
    pub fn footprint(&self) -> AttentionFootprint {
        let s = &self.shape;
        let bytes = GpuTensor::shape_bytes;
        let windowable = GpuTensor::windowable_bytes;
        let split = |width: usize| windowable(&self.split_shape(width));
        let terms = windowable(&self.per_row(ROW_TERMS_PER_ROW));
        let pivot_keys = windowable(&self.per_row(s.d_qk));
        AttentionFootprint {
            saved: bytes(&s.v_shape())
                + bytes(&self.stats_shape())
                + terms
                + 2 * split(s.d_qk)
                + split(s.d_v)
                + pivot_keys,
            forward_scratch: bytes(&s.v_shape()) + bytes(&self.per_row(PIVOTS_PER_ROW)),
            backward_scratch: bytes(&self.per_row(DELTA_PER_ROW))
                + 2 * bytes(&s.qk_shape())
                + bytes(&s.v_shape())
                + split(s.d_v),
            largest: split(s.d_qk.max(s.d_v))
                .max(bytes(&self.stats_shape()))
                .max(terms)
                .max(pivot_keys),
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
        let mut encoder = ctx.encoder("exact attention forward");
        let out = ctx.checked("recording exact attention forward", || -> Result<_> {
            let q_split = self.split(ctx, &mut encoder, "q split", q, s.d_qk)?;
            let k_split = self.split(ctx, &mut encoder, "k split", k, s.d_qk)?;
            let v_split = self.split(ctx, &mut encoder, "v split", v, s.d_v)?;
            let out = ExactForward {
                o: GpuTensor::output(ctx, "o", &s.v_shape())?,
                stats: GpuTensor::output(ctx, "exact attention row sums", &self.stats_shape())?,
                terms: GpuTensor::windowable_output(
                    ctx,
                    "exact attention row terms",
                    &self.per_row(ROW_TERMS_PER_ROW),
                )?,
                pivot_keys: GpuTensor::windowable_output(
                    ctx,
                    "exact attention pivot keys",
                    &self.per_row(s.d_qk),
                )?,
                q_split,
                k_split,
                v_split,
            };
            let pivots =
                GpuTensor::output(ctx, "exact attention pivots", &self.per_row(PIVOTS_PER_ROW))?;
            // The low half of the compensated accumulator, between windows.
            let o_lo = GpuTensor::output(ctx, "exact attention accumulator", &s.v_shape())?;
            let (qs, ks, vs) = (
                &out.q_split.buffer,
                &out.k_split.buffer,
                &out.v_split.buffer,
            );
            self.run_tiles(
                ctx,
                &mut encoder,
                &PIVOT_SPAN,
                (Over::Queries, 1),
                &[("q_win", qs), ("k_win", ks), ("pivots", &pivots.buffer)],
            )?;
            self.run_rows(
                ctx,
                &mut encoder,
                &PIVOT_ROWS,
                &[
                    ("pivots", &pivots.buffer),
                    ("q_split", qs),
                    ("k_split", ks),
                    ("terms_out", &out.terms.buffer),
                    ("pivot_out", &out.pivot_keys.buffer),
                ],
            )?;
            self.run_tiles(
                ctx,
                &mut encoder,
                &FORWARD_SPAN,
                (Over::Queries, s.d_v),
                &[
                    ("q_win", qs),
                    ("k_win", ks),
                    ("v_win", vs),
                    ("terms_win", &out.terms.buffer),
                    ("o", &out.o.buffer),
                    ("o_lo", &o_lo.buffer),
                    ("stats", &out.stats.buffer),
                ],
            )?;
            Ok(out)
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
        let grads = AttentionGradients {
            dq: GpuTensor::output(ctx, "dq", &s.qk_shape())?,
            dk: GpuTensor::output(ctx, "dk", &s.qk_shape())?,
            dv: GpuTensor::output(ctx, "dv", &s.v_shape())?,
        };
        let delta = GpuTensor::output(ctx, "exact attention delta", &self.per_row(DELTA_PER_ROW))?;
        let mut encoder = ctx.encoder("exact attention backward");
        ctx.checked("recording exact attention backward", || -> Result<()> {
            let d_o_split = self.split(ctx, &mut encoder, "d_o split", d_o, s.d_v)?;
            let (qs, ks, vs) = (
                &saved.q_split.buffer,
                &saved.k_split.buffer,
                &saved.v_split.buffer,
            );
            let (terms, d_os) = (&saved.terms.buffer, &d_o_split.buffer);
            self.run_rows(
                ctx,
                &mut encoder,
                &ROW_TERMS,
                &[
                    ("terms_out", terms),
                    ("d_o_split", d_os),
                    ("v_split", vs),
                    ("stats", &saved.stats.buffer),
                ],
            )?;
            let windows = [
                ("q_win", qs),
                ("k_win", ks),
                ("v_win", vs),
                ("d_o_win", d_os),
                ("terms_win", terms),
            ];
            let mut delta_bindings = windows.to_vec();
            delta_bindings.push(("delta_acc", &delta.buffer));
            self.run_tiles(
                ctx,
                &mut encoder,
                &DELTA_SPAN,
                (Over::Queries, 1),
                &delta_bindings,
            )?;
            self.run_rows(
                ctx,
                &mut encoder,
                &FINISH_DELTA,
                &[("terms_out", terms), ("delta_acc", &delta.buffer)],
            )?;
            let mut query_bindings = windows.to_vec();
            query_bindings.extend([
                ("pivot_win", &saved.pivot_keys.buffer),
                ("grad", &grads.dq.buffer),
            ]);
            self.run_tiles(
                ctx,
                &mut encoder,
                &QUERY_GRAD_SPAN,
                (Over::Queries, s.d_qk),
                &query_bindings,
            )?;
            let mut key_bindings = windows.to_vec();
            key_bindings.push(("grad", &grads.dk.buffer));
            self.run_tiles(
                ctx,
                &mut encoder,
                &KEY_GRAD_SPAN,
                (Over::Keys, s.d_qk),
                &key_bindings,
            )?;
            let mut value_bindings: Vec<_> = windows
                .iter()
                .filter(|(n, _)| *n != "v_win")
                .copied()
                .collect();
            value_bindings.push(("grad", &grads.dv.buffer));
            self.run_tiles(
                ctx,
                &mut encoder,
                &VALUE_GRAD_SPAN,
                (Over::Keys, s.d_v),
                &value_bindings,
            )
        })??;
        ctx.submit("exact attention backward", encoder)?;
        Ok(grads)
    }
}

/// The tiles the tuner times: the default, then each setting one step from it (llvmpipe:
/// col_tile 64 runs 1.3x slower than 16, its arrays leaving registers; a GPU may differ).
const TILE_CANDIDATES: [ExactTiles; 5] = [
    ExactTiles {
        key_block: 8,
        col_tile: 16,
    },
    ExactTiles {
        key_block: 4,
        col_tile: 16,
    },
    ExactTiles {
        key_block: 16,
        col_tile: 16,
    },
    ExactTiles {
        key_block: 8,
        col_tile: 8,
    },
    ExactTiles {
        key_block: 8,
        col_tile: 32,
    },
];

/// Rows of the one head the tuner times each candidate on.
const TILE_PROBE_ROWS: usize = 512;

/// The tune-cache class of a tile choice: tiles trade costs that depend on the widths, not on
/// n or the number of heads.
pub fn tiles_class(shape: &AttentionShape) -> String {
    format!("exact_attention tiles d_qk{} d_v{}", shape.d_qk, shape.d_v)
}

impl std::fmt::Display for ExactTiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.key_block, self.col_tile)
    }
}

/// The cached tiles of `shape`'s class, measured (and cached) when there are none; the
/// defaults with tuning off.
pub fn choose_tiles(ctx: &GpuContext, shape: &AttentionShape) -> Result<ExactTiles> {
    let class = tiles_class(shape);
    {
        let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
        if tuner.mode == TuneMode::Off {
            return Ok(ExactTiles::default());
        }
        if let Some(value) = tuner.cached(&class).map(str::to_string) {
            match TILE_CANDIDATES.iter().find(|t| t.to_string() == value) {
                Some(&tiles) => return Ok(tiles),
                None => tuner.forget(&class, "not one of the tiles polygrad times"),
            }
        }
    }
    let chosen = measure_tiles(ctx, shape)?;
    let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
    tuner.record(&class, &chosen.to_string());
    Ok(chosen)
}

/// Times forward + backward of one causal head of TILE_PROBE_ROWS rows with each candidate
/// and returns the fastest whose output agrees with the others (`tune::fastest_agreeing`).
fn measure_tiles(ctx: &GpuContext, shape: &AttentionShape) -> Result<ExactTiles> {
    let probe = AttentionShape::new(1, 1, TILE_PROBE_ROWS, shape.d_qk, shape.d_v, true);
    let (q, k, v, d_o) = probe_inputs(ctx, &probe)?;
    let chosen = fastest_agreeing("exact attention tiles", &TILE_CANDIDATES, |tiles, round| {
        let Ok(op) = ExactAttention::with_tiles(ctx, probe, tiles, None) else {
            return Ok(None);
        };
        let (time, dq) = timed(|| {
            let saved = op.forward(ctx, &q, &k, &v)?;
            let grads = op.backward(ctx, &q, &k, &v, &saved, &d_o)?;
            ctx.synchronize()?;
            Ok(grads.dq)
        })?;
        Ok(Some((
            time,
            (round == Round::Check)
                .then(|| dq.download(ctx))
                .transpose()?,
        )))
    })?;
    Ok(chosen.unwrap_or_default())
}

/// Bytes per row of each query-side window, by binding name.
fn query_row_bytes(shape: &AttentionShape) -> [(&'static str, usize); 4] {
    [
        ("q_win", shape.d_qk * PAIR_BYTES),
        ("d_o_win", shape.d_v * PAIR_BYTES),
        ("terms_win", ROW_TERMS_PER_ROW * 4),
        ("pivot_win", shape.d_qk * 4),
    ]
}

/// Bytes per row of each key-side window, by binding name.
fn key_row_bytes(shape: &AttentionShape) -> [(&'static str, usize); 2] {
    [
        ("k_win", shape.d_qk * PAIR_BYTES),
        ("v_win", shape.d_v * PAIR_BYTES),
    ]
}

/// Rows per window for bindings of these row sizes: as many as the smallest window holds, at
/// most `asked` (rounded down, but to no fewer than one step) and `longest` (the loop limit's),
/// and a multiple of the rows that keep every window's offset aligned to the adapter's
/// min_uniform_buffer_offset_alignment (so a window may start at any multiple).
fn window_rows(
    ctx: &GpuContext,
    row_bytes: &[(&'static str, usize)],
    (asked, longest): (usize, usize),
    shape: &AttentionShape,
) -> Result<usize> {
    let align = ctx.limits().min_uniform_buffer_offset_alignment as usize;
    let step = row_bytes
        .iter()
        .map(|&(_, b)| align / gcd(align, b))
        .fold(1, lcm);
    let holds = row_bytes
        .iter()
        .map(|&(_, b)| WINDOW_BYTES as usize / b)
        .min()
        .unwrap_or(usize::MAX)
        .min(longest);
    let rows = (holds.min(asked) / step).max(1) * step;
    if rows > holds {
        return Err(Error::shape(
            format!("attention {shape}"),
            format!(
                "exact attention's windows need {step} rows of {row_bytes:?} bytes (offsets \
                 aligned to {align} bytes), but a window holds {holds}"
            ),
        ));
    }
    Ok(rows)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Bits of the high parts of q and k (see split_rows in the shader): d_qk products of two
/// such parts, each below 2^(2 bits), must sum within f32's 24-bit significand.
fn split_bits(d_qk: usize) -> u32 {
    let sum_bits = d_qk.next_power_of_two().trailing_zeros();
    (24 - sum_bits) / 2
}
