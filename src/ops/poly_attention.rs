//! Host side of shaders/poly_attention.wgsl: polynomial-method attention in time linear in n,
//! forward and backward, causal (by chunks) and not, and the feature map phi on its own.
//!
//! Forward: chunk_states -> scan_states -> attention_forward (one submission).
//! Backward: row_delta -> chunk_states (mode 1) -> scan_states (mode 1) -> query_grad,
//! key_grad, value_grad (one submission). See the shader's header for the math.

use wgpu::util::DeviceExt;

use crate::attention::AttentionShape;
use crate::error::{Error, Result};
use crate::gpu::{Binding, GpuContext, GpuTensor, TensorData};
use crate::ops::{check_inputs, check_loop_budget, check_shape, AttentionGradients};
use crate::poly::{self, MAX_D_QK};

const SHADER: &str = "poly_attention.wgsl";
/// ONE_SLOT in the shader: the index of the constant 1.0 in its private row arrays.
const ONE_SLOT: u8 = MAX_D_QK as u8;

/// Value columns per invocation (TILE_V in the shader).
const TILE_V: usize = 16;

// Binding slots of shaders/poly_attention.wgsl.
const PARAMS: u32 = 0;
const MONOMIALS: u32 = 1;
const Q: u32 = 2;
const K: u32 = 3;
const V: u32 = 4;
const O: u32 = 5;
const D_O: u32 = 6;
const ROW_TERMS: u32 = 7;
const STATES: u32 = 8;
const GRAD_STATES: u32 = 9;
const DQ: u32 = 10;
const DK: u32 = 11;
const DV: u32 = 12;
const STATE_X: u32 = 13;
const STATE_Y: u32 = 14;
const CHUNK_STATES_OUT: u32 = 15;
const SCANNED_STATES: u32 = 16;
const FEATURES_OUT: u32 = 17;
const FEATURE_GRADS: u32 = 18;
const X_GRAD: u32 = 19;

/// The shader's `Params`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    heads: u32,
    rows: u32,
    d_qk: u32,
    d_v: u32,
    chunk: u32,
    n_chunks: u32,
    features: u32,
    degree: u32,
    causal: u32,
    mode: u32,
    logit_scale: f32,
    _pad: u32,
}

/// The shader's `Monomial`: variables packed a byte each, coefficient, order.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Monomial {
    vars_lo: u32,
    vars_hi: u32,
    coef: f32,
    order: u32,
}

/// The monomials of phi for `d` variables and degree `degree`, each coefficient multiplied by
/// `input_scale^|alpha|` so that the kernels can expand unscaled rows.
fn monomial_table(d: usize, degree: u32, input_scale: f64) -> Vec<Monomial> {
    poly::monomials(d, degree)
        .iter()
        .map(|vars| {
            // Unused variable slots point at the row arrays' ONE_SLOT, which holds 1.0.
            let mut packed = [ONE_SLOT; 8];
            for (slot, &v) in packed.iter_mut().zip(vars) {
                *slot = v as u8;
            }
            Monomial {
                vars_lo: u32::from_le_bytes(packed[..4].try_into().unwrap()),
                vars_hi: u32::from_le_bytes(packed[4..].try_into().unwrap()),
                coef: (poly::monomial_coefficient(vars) * input_scale.powi(vars.len() as i32))
                    as f32,
                order: vars.len() as u32,
            }
        })
        .collect()
}

/// The feature map phi of degree `degree` over rows of width `d`, on the GPU.
pub struct FeatureMap {
    d: usize,
    degree: u32,
    features: usize,
    table: GpuTensor,
}

impl FeatureMap {
    /// phi with coefficients 1/sqrt(alpha!) * input_scale^|alpha|; checks degree, width and
    /// the table's size against the device.
    pub fn new(ctx: &GpuContext, d: usize, degree: u32, input_scale: f64) -> Result<Self> {
        poly::check_degree(degree)?;
        if d == 0 || d > MAX_D_QK {
            return Err(Error::shape(
                "d_qk",
                format!("is {d}; the feature kernels take 1 to {MAX_D_QK}"),
            ));
        }
        let features = poly::feature_dim(d, degree)
            .filter(|&k| k <= u32::MAX as usize / 4)
            .ok_or_else(|| {
                Error::shape(
                    "feature dimension",
                    format!("C({d} + {degree}, {degree}) is beyond the kernels' 32-bit indexing"),
                )
            })?;
        GpuTensor::check_size(ctx, "phi monomial table", &[features, 4])?;
        let table = monomial_table(d, degree, input_scale);
        let table = GpuTensor::from_data(
            ctx,
            "phi monomial table",
            &[features, 4],
            TensorData::Words(bytemuck::cast_slice(&table)),
        )?;
        Ok(FeatureMap {
            d,
            degree,
            features,
            table,
        })
    }

    /// The feature dimension k = C(d + g, g).
    pub fn features(&self) -> usize {
        self.features
    }

    /// Override constants of every pipeline that evaluates phi.
    fn constants(&self) -> [(&'static str, f64); 1] {
        [("DEGREE", self.degree as f64)]
    }

    fn params(&self, ctx: &GpuContext, rows: usize) -> wgpu::Buffer {
        params_buffer(
            ctx,
            Params {
                heads: 1,
                rows: rows as u32,
                d_qk: self.d as u32,
                d_v: 1,
                chunk: 1,
                n_chunks: 1,
                features: self.features as u32,
                degree: self.degree,
                causal: 0,
                mode: 0,
                logit_scale: 1.0,
                _pad: 0,
            },
        )
    }

    fn rows_of(&self, x: &GpuTensor) -> Result<usize> {
        match x.shape() {
            [rows, d] if *d == self.d => Ok(*rows),
            _ => Err(Error::ShapeMismatch {
                tensor: x.name().into(),
                expected: vec![x.len() / self.d.max(1), self.d],
                got: x.shape().to_vec(),
            }),
        }
    }

    /// phi of every row of `x` `[rows, d]`: `[rows, k]`.
    pub fn forward(&self, ctx: &GpuContext, x: &GpuTensor) -> Result<GpuTensor> {
        let rows = self.rows_of(x)?;
        let out = GpuTensor::output(ctx, "phi(x)", &[rows, self.features])?;
        let params = self.params(ctx, rows);
        let pipeline = ctx.pipeline(SHADER, "phi_forward", &self.constants())?;
        let mut encoder = ctx.encoder("phi_forward");
        let bindings: &[Binding] = &[
            (PARAMS, &params),
            (MONOMIALS, &self.table.buffer),
            (STATE_X, &x.buffer),
            (FEATURES_OUT, &out.buffer),
        ];
        ctx.checked("phi_forward", || {
            ctx.dispatch(
                &mut encoder,
                &pipeline,
                bindings,
                (rows * self.features) as u64,
            )
        })??;
        ctx.submit("phi_forward", encoder)?;
        Ok(out)
    }

    /// J_phi(x)^T g for every row: `x` `[rows, d]`, `feature_grads` `[rows, k]` -> `[rows, d]`.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        feature_grads: &GpuTensor,
    ) -> Result<GpuTensor> {
        let rows = self.rows_of(x)?;
        check_loop_budget(ctx, "phi_backward", (2 * self.d + self.features) as u64)?;
        check_shape(feature_grads, &[rows, self.features])?;
        let out = GpuTensor::output(ctx, "dx", &[rows, self.d])?;
        let params = self.params(ctx, rows);
        let pipeline = ctx.pipeline(SHADER, "phi_backward", &self.constants())?;
        let mut encoder = ctx.encoder("phi_backward");
        let bindings: &[Binding] = &[
            (PARAMS, &params),
            (MONOMIALS, &self.table.buffer),
            (STATE_X, &x.buffer),
            (FEATURE_GRADS, &feature_grads.buffer),
            (X_GRAD, &out.buffer),
        ];
        ctx.checked("phi_backward", || {
            ctx.dispatch(&mut encoder, &pipeline, bindings, rows as u64)
        })??;
        ctx.submit("phi_backward", encoder)?;
        Ok(out)
    }
}

fn concat<'b>(a: &[Binding<'b>], b: &[Binding<'b>]) -> Vec<Binding<'b>> {
    a.iter().chain(b).copied().collect()
}

fn params_buffer(ctx: &GpuContext, params: Params) -> wgpu::Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("poly_attention params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// What the forward pass keeps for the backward pass.
pub struct PolyForward {
    /// The attention output, `[B, H, n, d_v]`.
    pub o: GpuTensor,
    /// Per row [Z_a, delta_a]; the backward fills delta.
    row_terms: GpuTensor,
    /// Prefix (causal) or total states [B*H, n_chunks, k, d_v + 1].
    states: GpuTensor,
}

/// Polynomial attention of degree `degree` for one shape, with its tables built once.
pub struct PolyAttention {
    shape: AttentionShape,
    chunk: usize,
    n_chunks: usize,
    phi: FeatureMap,
    forward_params: wgpu::Buffer,
    backward_params: wgpu::Buffer,
}

impl PolyAttention {
    /// Rows per chunk of the causal decomposition; any value gives the same result up to
    /// rounding.
    pub const DEFAULT_CHUNK: usize = 32;

    pub fn new(ctx: &GpuContext, shape: AttentionShape, degree: u32) -> Result<Self> {
        Self::with_chunk(ctx, shape, degree, Self::DEFAULT_CHUNK)
    }

    /// Checks the shape, the degree and every buffer's size against the device before
    /// allocating anything large.
    pub fn with_chunk(
        ctx: &GpuContext,
        shape: AttentionShape,
        degree: u32,
        chunk: usize,
    ) -> Result<Self> {
        shape.validate()?;
        if chunk == 0 {
            return Err(Error::shape("chunk size", "must be at least 1"));
        }
        if shape.total_heads().max(shape.seq_len).max(shape.d_v) > u32::MAX as usize / 4 {
            return Err(Error::shape(
                format!("attention {shape}"),
                "has a dimension beyond u32 indexing",
            ));
        }
        let phi = FeatureMap::new(ctx, shape.d_qk, degree, (shape.d_qk as f64).powf(-0.25))?;
        let n_chunks = shape.seq_len.div_ceil(chunk);
        let op = PolyAttention {
            shape,
            chunk,
            n_chunks,
            forward_params: params_buffer(ctx, Self::params(&shape, chunk, n_chunks, &phi, 0)),
            backward_params: params_buffer(ctx, Self::params(&shape, chunk, n_chunks, &phi, 1)),
            phi,
        };
        GpuTensor::check_size(ctx, "poly attention chunk states", &op.states_shape())?;
        check_loop_budget(
            ctx,
            &format!("poly attention {shape} g={degree} chunk={chunk}"),
            op.loop_iterations(),
        )?;
        for (name, s) in [("q", shape.qk_shape()), ("v", shape.v_shape())] {
            GpuTensor::check_size(ctx, name, &s)?;
        }
        Ok(op)
    }

    fn params(
        shape: &AttentionShape,
        chunk: usize,
        n_chunks: usize,
        phi: &FeatureMap,
        mode: u32,
    ) -> Params {
        Params {
            heads: shape.total_heads() as u32,
            rows: shape.seq_len as u32,
            d_qk: shape.d_qk as u32,
            d_v: shape.d_v as u32,
            chunk: chunk as u32,
            n_chunks: n_chunks as u32,
            features: phi.features as u32,
            degree: phi.degree,
            causal: shape.causal as u32,
            mode,
            logit_scale: (1.0 / (shape.d_qk as f64).sqrt()) as f32,
            _pad: 0,
        }
    }

    pub fn shape(&self) -> &AttentionShape {
        &self.shape
    }

    /// Rows per chunk of the causal decomposition.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// The feature dimension k.
    pub fn features(&self) -> usize {
        self.phi.features
    }

    /// An upper bound on the loop iterations any one invocation of this shape's kernels runs,
    /// counting only loops whose trip count is not a compile-time constant (query_grad and
    /// key_grad are the longest: the feature loop with its column tiles, then the chunk).
    pub fn loop_iterations(&self) -> u64 {
        let s = &self.shape;
        let col_tiles = s.d_v.div_ceil(TILE_V) as u64;
        let features = self.phi.features as u64;
        2 * s.d_qk as u64
            + features * (1 + col_tiles)
            + self.chunk.min(s.seq_len) as u64 * (1 + 2 * s.d_qk as u64 + s.d_v as u64)
            + self.n_chunks as u64
            + s.d_v as u64
    }

    fn states_shape(&self) -> [usize; 4] {
        [
            self.shape.total_heads(),
            self.n_chunks,
            self.phi.features,
            self.shape.d_v + 1,
        ]
    }

    fn rows(&self) -> u64 {
        (self.shape.total_heads() * self.shape.seq_len) as u64
    }

    /// Invocations of a kernel that runs per (head, value column tile, row).
    fn row_tile_invocations(&self) -> u64 {
        self.rows() * self.shape.d_v.div_ceil(TILE_V) as u64
    }

    fn chunk_states_invocations(&self) -> u64 {
        let s = self.states_shape();
        (s[0] * s[1] * s[2] * s[3].div_ceil(TILE_V)) as u64
    }

    fn scan_invocations(&self) -> u64 {
        let s = self.states_shape();
        (s[0] * s[2] * s[3]) as u64
    }

    /// o = attention(q, k, v), keeping what the backward needs. Submits without waiting.
    pub fn forward(
        &self,
        ctx: &GpuContext,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
    ) -> Result<PolyForward> {
        check_inputs(&self.shape, q, k, v)?;
        let out = PolyForward {
            o: GpuTensor::output(ctx, "o", &self.shape.v_shape())?,
            row_terms: GpuTensor::output(
                ctx,
                "poly attention row terms",
                &[self.shape.total_heads(), self.shape.seq_len, 2],
            )?,
            states: GpuTensor::output(ctx, "poly attention chunk states", &self.states_shape())?,
        };
        let (params, table) = (&self.forward_params, &self.phi.table.buffer);
        let mut encoder = ctx.encoder("poly attention forward");
        ctx.checked("recording poly attention forward", || -> Result<()> {
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "chunk_states", &self.phi.constants())?,
                &[
                    (PARAMS, params),
                    (MONOMIALS, table),
                    (STATE_X, &k.buffer),
                    (STATE_Y, &v.buffer),
                    (ROW_TERMS, &out.row_terms.buffer),
                    (CHUNK_STATES_OUT, &out.states.buffer),
                ],
                self.chunk_states_invocations(),
            )?;
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "scan_states", &self.phi.constants())?,
                &[(PARAMS, params), (SCANNED_STATES, &out.states.buffer)],
                self.scan_invocations(),
            )?;
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "attention_forward", &self.phi.constants())?,
                &[
                    (PARAMS, params),
                    (MONOMIALS, table),
                    (Q, &q.buffer),
                    (K, &k.buffer),
                    (V, &v.buffer),
                    (STATES, &out.states.buffer),
                    (O, &out.o.buffer),
                    (ROW_TERMS, &out.row_terms.buffer),
                ],
                self.row_tile_invocations(),
            )
        })??;
        ctx.submit("poly attention forward", encoder)?;
        Ok(out)
    }

    /// dq, dk, dv given dL/do, from the inputs and what [`Self::forward`] kept.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        saved: &PolyForward,
        d_o: &GpuTensor,
    ) -> Result<AttentionGradients> {
        check_inputs(&self.shape, q, k, v)?;
        check_shape(d_o, &self.shape.v_shape())?;
        check_shape(&saved.o, &self.shape.v_shape())?;
        let grad_states =
            GpuTensor::output(ctx, "poly attention gradient states", &self.states_shape())?;
        let grads = AttentionGradients {
            dq: GpuTensor::output(ctx, "dq", &self.shape.qk_shape())?,
            dk: GpuTensor::output(ctx, "dk", &self.shape.qk_shape())?,
            dv: GpuTensor::output(ctx, "dv", &self.shape.v_shape())?,
        };
        let (params, table) = (&self.backward_params, &self.phi.table.buffer);
        let row_terms = &saved.row_terms.buffer;
        let mut encoder = ctx.encoder("poly attention backward");
        ctx.checked("recording poly attention backward", || -> Result<()> {
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "row_delta", &self.phi.constants())?,
                &[
                    (PARAMS, params),
                    (D_O, &d_o.buffer),
                    (O, &saved.o.buffer),
                    (ROW_TERMS, row_terms),
                ],
                self.rows(),
            )?;
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "chunk_states", &self.phi.constants())?,
                &[
                    (PARAMS, params),
                    (MONOMIALS, table),
                    (STATE_X, &q.buffer),
                    (STATE_Y, &d_o.buffer),
                    (ROW_TERMS, row_terms),
                    (CHUNK_STATES_OUT, &grad_states.buffer),
                ],
                self.chunk_states_invocations(),
            )?;
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "scan_states", &self.phi.constants())?,
                &[(PARAMS, params), (SCANNED_STATES, &grad_states.buffer)],
                self.scan_invocations(),
            )?;
            let shared = [
                (PARAMS, params),
                (MONOMIALS, table),
                (Q, &q.buffer),
                (K, &k.buffer),
                (D_O, &d_o.buffer),
                (ROW_TERMS, row_terms),
            ];

            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "query_grad", &self.phi.constants())?,
                &concat(
                    &shared,
                    &[
                        (V, &v.buffer),
                        (STATES, &saved.states.buffer),
                        (DQ, &grads.dq.buffer),
                    ],
                ),
                self.rows(),
            )?;
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "key_grad", &self.phi.constants())?,
                &concat(
                    &shared,
                    &[
                        (V, &v.buffer),
                        (GRAD_STATES, &grad_states.buffer),
                        (DK, &grads.dk.buffer),
                    ],
                ),
                self.rows(),
            )?;
            ctx.dispatch(
                &mut encoder,
                &*ctx.pipeline(SHADER, "value_grad", &self.phi.constants())?,
                &concat(
                    &shared,
                    &[(GRAD_STATES, &grad_states.buffer), (DV, &grads.dv.buffer)],
                ),
                self.row_tile_invocations(),
            )
        })??;
        ctx.submit("poly attention backward", encoder)?;
        Ok(grads)
    }
}
