//! One transformer block on the GPU, forward and backward, in steps that each record into an
//! encoder (attention submits its own work between them):
//!
//! ```text
//! forward                                          backward, from d_out = dL/dx_out
//!   qkv:    h1 = LN1(x_in), q k v = h1 W^T, split    mlp:    fc2, gelu, fc1 back -> d_h2
//!   [attention]                                              d_mid = d_out + LN2'(d_h2)
//!   output: o = merge, x_mid = x_in + o Wo^T         output: Wo back -> d_o, split
//!   mlp:    h2 = LN2(x_mid), u = fc1(h2),            [attention backward]
//!           act = gelu(u), x_out = x_mid + fc2(act)  qkv:    merge, q k v back -> d_h1
//!                                                            d_in = d_mid + LN1'(d_h1)
//! ```

use std::collections::BTreeMap;

use crate::attention::AttentionShape;
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::certificate;
use crate::ops::heads::{merge_heads, split_heads, HeadLayout};
use crate::ops::layer_norm::{
    layer_norm_backward, layer_norm_forward, LayerNormGrads, LayerNormParams,
};
use crate::ops::linear::{
    self, linear_backward, linear_forward, linear_forward_activated, InputGrad,
};
use crate::ops::matmul::{Activation, Packing};
use crate::ops::sampled_check::{self, Checked, PendingCheck};
use crate::ops::{AttentionFootprint, AttentionGradients, AttentionOp, AttentionSaved};

use super::ModelConfig;

/// Sizes of one pass.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub batch: usize,
    pub seq_len: usize,
}

/// What one block's forward keeps for its backward.
pub(super) struct BlockState {
    /// The per-span maxima of q, k and v that the layer's certificate is formed from.
    pub certificate: GpuTensor,
    x_in: GpuTensor,
    qkv: QkvState,
    attention: AttentionSaved,
    /// The attention output, heads merged [B, n, H*d_v].
    o: GpuTensor,
    x_mid: GpuTensor,
    mlp: MlpState,
}

impl BlockState {
    /// The certificate's maxima, the rest of the block's activations dropped.
    pub fn into_certificate(self) -> GpuTensor {
        self.certificate
    }

    /// The block's activations in the order of the forward pass, by the name they are
    /// reported under (the block's output is the next block's input, or the final LN's).
    pub fn activations(&self) -> [(&'static str, &GpuTensor); 10] {
        let (q, m) = (&self.qkv, &self.mlp);
        [
            ("input", &self.x_in),
            ("ln1 output", &q.h1),
            ("attn.q output", &q.q),
            ("attn.k output", &q.k),
            ("attn.v output", &q.v),
            ("attention output", &self.o),
            ("input + attention (x_mid)", &self.x_mid),
            ("ln2 output", &m.h2),
            ("mlp.fc1 output", &m.u),
            ("mlp.gelu output", &m.act),
        ]
    }
}

/// A block's forward up to attention: see [`BlockPass::forward_qkv`].
pub(super) struct QkvStage {
    x_in: GpuTensor,
    qkv: QkvState,
    pub certificate: GpuTensor,
}

impl QkvStage {
    /// q, k, v in attention's layout.
    pub fn qkv(&self) -> (&GpuTensor, &GpuTensor, &GpuTensor) {
        (&self.qkv.q, &self.qkv.k, &self.qkv.v)
    }
}

struct QkvState {
    ln1_stats: GpuTensor,
    h1: GpuTensor,
    /// q, k, v in attention's layout [B, H, n, d].
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
}

struct MlpState {
    ln2_stats: GpuTensor,
    h2: GpuTensor,
    /// fc1's output (GELU's input) and GELU's output.
    u: GpuTensor,
    act: GpuTensor,
}

/// The attention shape of a pass of `c` over `dims`.
pub(super) fn attention_shape(c: &ModelConfig, dims: Dims) -> AttentionShape {
    AttentionShape::new(dims.batch, c.n_heads, dims.seq_len, c.d_qk, c.d_v, c.causal)
}

/// Bytes of GPU memory one block's pass allocates, written next to the code that allocates
/// it: a tensor added to the pass belongs here too, and tests/model_gpu.rs checks the model's
/// estimate against a measured pass.
pub(super) struct BlockFootprint {
    /// What the forward keeps for the backward, the block's input included.
    pub kept: u64,
    /// The most the forward holds besides, packed operands of its products included.
    pub forward_scratch: u64,
    /// The most the backward holds, its output d_in included.
    pub backward_scratch: u64,
    /// The largest packed operand of its linear layers' products.
    pub largest_packed: u64,
}

impl BlockFootprint {
    pub fn of(
        ctx: &GpuContext,
        c: &ModelConfig,
        dims: Dims,
        attention: AttentionFootprint,
    ) -> Self {
        let rows = dims.batch * dims.seq_len;
        let act = |width: usize| GpuTensor::shape_bytes(&[rows, width]);
        let (d, qk, v, ff) = (c.d_model, c.n_heads * c.d_qk, c.n_heads * c.d_v, c.d_ff);
        let stats = GpuTensor::shape_bytes(&[rows, 2]);
        // (rows, in, out) of every linear layer: q, k, v, o, fc1, fc2.
        let linears = [(d, qk), (d, qk), (d, v), (v, d), (d, ff), (ff, d)];
        let packing = |backward: bool| -> Packing {
            linears
                .iter()
                .map(|&(i, o)| linear::packing(ctx, (rows, i, o), backward))
                .sum()
        };
        // x_in, h1, x_mid, h2; q, k (heads); v, o (heads merged); u, act; both LN stats; the
        // certificate's maxima.
        let kept = 4 * act(d)
            + 2 * act(qk)
            + 2 * act(v)
            + 2 * act(ff)
            + 2 * stats
            + certificate::maxima_bytes(&attention_shape(c, dims));
        BlockFootprint {
            kept: kept + attention.saved,
            // q, k and v before their split into heads.
            forward_scratch: 2 * act(qk)
                + act(v)
                + attention.forward_scratch
                + packing(false).total,
            // d_u (and GELU's upstream gradient where fc2's input gradient cannot apply
            // gelu' itself); d_h2, d_mid, d_h1, d_in; d_o merged and split; dq, dk, dv merged;
            // the column sums' partials (the MLP's biases, both LayerNorms).
            backward_scratch: act(ff)
                + linear::input_grad_activation_bytes(ctx, (rows, ff, d))
                + 4 * act(d)
                + 3 * act(v)
                + 2 * act(qk)
                + attention.backward_scratch
                + packing(true).total
                + linear::sum_partials_bytes(rows, ff, 1)
                + linear::sum_partials_bytes(rows, d, 1)
                + 2 * linear::sum_partials_bytes(rows, d, 2),
            largest_packed: packing(true).largest.max(packing(false).largest),
        }
    }
}

/// Block `layer` of a model during one pass: its parameters, the pass's sizes, and the
/// gradient tensors it writes into (backward).
pub(super) struct BlockPass<'a> {
    pub ctx: &'a GpuContext,
    pub config: &'a ModelConfig,
    pub params: &'a BTreeMap<String, GpuTensor>,
    pub layer: usize,
    pub dims: Dims,
}

impl BlockPass<'_> {
    fn name(&self, what: &str) -> String {
        format!("blocks.{}.{what}", self.layer)
    }

    fn param<'p>(&self, params: &'p BTreeMap<String, GpuTensor>, what: &str) -> &'p GpuTensor {
        &params[&self.name(what)]
    }

    fn weight(&self, what: &str) -> &GpuTensor {
        self.param(self.params, what)
    }

    fn ln(&self, which: &str) -> LayerNormParams<'_> {
        LayerNormParams {
            weight: self.weight(&format!("{which}.weight")),
            bias: self.weight(&format!("{which}.bias")),
            eps: self.config.ln_eps,
        }
    }

    fn heads(&self, width: usize) -> HeadLayout {
        HeadLayout {
            batch: self.dims.batch,
            seq_len: self.dims.seq_len,
            heads: self.config.n_heads,
            width,
        }
    }

    /// A new activation (or activation gradient) `[B, n, width]` named after the block.
    fn activation(&self, what: &str, width: usize) -> Result<GpuTensor> {
        let shape = [self.dims.batch, self.dims.seq_len, width];
        GpuTensor::output(self.ctx, &self.name(what), &shape)
    }

    /// The block's forward up to attention's inputs: LN1, q, k, v and the certificate's
    /// maxima. Submitted; attention's choice may read the certificate back before
    /// [`Self::forward_rest`].
    pub fn forward_qkv(&self, x_in: GpuTensor, shape: &AttentionShape) -> Result<QkvStage> {
        let during = format!("forward of block {}", self.layer);
        let mut enc = self.ctx.encoder(&during);
        let qkv = self.qkv_forward(&mut enc, &x_in)?;
        let certificate = certificate::record(self.ctx, &mut enc, shape, (&qkv.q, &qkv.k, &qkv.v))?;
        self.ctx.submit(&during, enc)?;
        Ok(QkvStage {
            x_in,
            qkv,
            certificate,
        })
    }

    /// The rest of the block's forward: attention (or its forward already run, `saved`), the
    /// output projection and the MLP.
    pub fn forward_rest(
        &self,
        stage: QkvStage,
        attention: &AttentionOp,
        saved: Option<AttentionSaved>,
    ) -> Result<(BlockState, GpuTensor)> {
        let during = format!("forward of block {}", self.layer);
        let QkvStage {
            x_in,
            qkv,
            certificate,
        } = stage;
        let saved = match saved {
            Some(saved) => saved,
            None => attention.forward(self.ctx, &qkv.q, &qkv.k, &qkv.v)?,
        };

        let mut enc = self.ctx.encoder(&during);
        let (o, x_mid) = self.output_forward(&mut enc, &x_in, saved.o())?;
        let (mlp, x_out) = self.mlp_forward(&mut enc, &x_mid)?;
        self.ctx.submit(&during, enc)?;
        let state = BlockState {
            certificate,
            x_in,
            qkv,
            attention: saved,
            o,
            x_mid,
            mlp,
        };
        Ok((state, x_out))
    }

    fn qkv_forward(&self, enc: &mut wgpu::CommandEncoder, x_in: &GpuTensor) -> Result<QkvState> {
        let (ctx, c) = (self.ctx, self.config);
        let h1 = self.activation("h1", c.d_model)?;
        let ln1_stats = layer_norm_forward(ctx, enc, x_in, self.ln("ln1"), &h1)?;
        let mut project = |which: &str, width: usize| -> Result<GpuTensor> {
            let out = self.activation(&format!("attn.{which}"), c.n_heads * width)?;
            let w = self.weight(&format!("attn.{which}.weight"));
            linear_forward(ctx, enc, &h1, w, None, &out, false)?;
            let name = self.name(&format!("attn.{which} heads"));
            split_heads(ctx, enc, &out, self.heads(width), &name)
        };
        let (q, k, v) = (
            project("q", c.d_qk)?,
            project("k", c.d_qk)?,
            project("v", c.d_v)?,
        );
        Ok(QkvState {
            ln1_stats,
            h1,
            q,
            k,
            v,
        })
    }

    /// (o with heads merged, x_mid = x_in + o Wo^T).
    fn output_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        x_in: &GpuTensor,
        o_heads: &GpuTensor,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let c = self.config;
        let o = merge_heads(
            self.ctx,
            enc,
            o_heads,
            self.heads(c.d_v),
            &self.name("attn.o"),
        )?;
        let x_mid = self.activation("x_mid", c.d_model)?;
        copy(enc, x_in, &x_mid);
        let wo = self.weight("attn.o.weight");
        linear_forward(self.ctx, enc, &o, wo, None, &x_mid, true)?;
        Ok((o, x_mid))
    }

    /// (the MLP's saved state, x_out = x_mid + fc2(gelu(fc1(LN2(x_mid))))).
    fn mlp_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        x_mid: &GpuTensor,
    ) -> Result<(MlpState, GpuTensor)> {
        let (ctx, c) = (self.ctx, self.config);
        let h2 = self.activation("h2", c.d_model)?;
        let ln2_stats = layer_norm_forward(ctx, enc, x_mid, self.ln("ln2"), &h2)?;
        // u = fc1(h2) and act = gelu(u), from one product.
        let u = self.activation("mlp.fc1", c.d_ff)?;
        let act = self.activation("mlp.gelu", c.d_ff)?;
        let (w1, b1) = (self.weight("mlp.fc1.weight"), self.weight("mlp.fc1.bias"));
        let gelu = Activation::Gelu { out: &act };
        linear_forward_activated(ctx, enc, &h2, w1, Some(b1), (&u, false, gelu))?;
        let x_out = self.activation("x_out", c.d_model)?;
        copy(enc, x_mid, &x_out);
        let (w2, b2) = (self.weight("mlp.fc2.weight"), self.weight("mlp.fc2.bias"));
        linear_forward(ctx, enc, &act, w2, Some(b2), &x_out, true)?;
        let state = MlpState {
            ln2_stats,
            h2,
            u,
            act,
        };
        Ok((state, x_out))
    }

    /// dL/dx_in given d_out = dL/dx_out, writing the block's parameter gradients into `grads`;
    /// with `sample_rows`, also the sampled check of a polynomial attention's o and dq on
    /// those rows, to be read back with the pass's results.
    pub fn backward(
        &self,
        st: &BlockState,
        attention: &AttentionOp,
        (d_out, sample_rows): (&GpuTensor, Option<&[usize]>),
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<(GpuTensor, Option<PendingCheck>)> {
        let during = format!("backward of block {}", self.layer);
        let mut enc = self.ctx.encoder(&during);
        let d_mid = self.mlp_backward(&mut enc, st, d_out, grads)?;
        let d_o_heads = self.output_backward(&mut enc, st, &d_mid, grads)?;
        self.ctx.submit(&during, enc)?;

        let q = &st.qkv;
        let d_qkv = attention.backward(self.ctx, (&q.q, &q.k, &q.v), &st.attention, &d_o_heads)?;

        let mut enc = self.ctx.encoder(&during);
        let check = match (attention, sample_rows) {
            (AttentionOp::Poly(_), Some(rows)) => {
                let checked = Checked {
                    o: st.attention.o(),
                    grad: Some((&d_o_heads, &d_qkv.dq)),
                };
                let qkv = (&q.q, &q.k, &q.v);
                let shape = attention.shape();
                Some(sampled_check::record(
                    self.ctx, &mut enc, shape, rows, qkv, checked,
                )?)
            }
            _ => None,
        };
        let d_in = self.qkv_backward(&mut enc, st, &d_qkv, &d_mid, grads)?;
        self.ctx.submit(&during, enc)?;
        Ok((d_in, check))
    }

    /// dL/dx_mid = d_out + LN2'(the MLP's backward of d_out).
    fn mlp_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        st: &BlockState,
        d_out: &GpuTensor,
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<GpuTensor> {
        let (ctx, c, m) = (self.ctx, self.config, &st.mlp);
        let g = |what: &str| self.param(grads, what);
        // d_u = (d_out W2) * gelu'(u), from one product.
        let d_u = self.activation("grad mlp.fc1", c.d_ff)?;
        linear_backward(
            ctx,
            enc,
            (&m.act, self.weight("mlp.fc2.weight"), d_out),
            Some(InputGrad {
                dx: &d_u,
                add: false,
                activation: Activation::GeluGrad { pre: &m.u },
            }),
            g("mlp.fc2.weight"),
            Some(g("mlp.fc2.bias")),
        )?;
        let d_h2 = self.activation("grad h2", c.d_model)?;
        linear_backward(
            ctx,
            enc,
            (&m.h2, self.weight("mlp.fc1.weight"), &d_u),
            Some(InputGrad {
                dx: &d_h2,
                add: false,
                activation: Activation::None,
            }),
            g("mlp.fc1.weight"),
            Some(g("mlp.fc1.bias")),
        )?;
        let d_mid = self.activation("grad x_mid", c.d_model)?;
        copy(enc, d_out, &d_mid);
        let ln2_grads = LayerNormGrads {
            dx: &d_mid,
            add_into_dx: true,
            d_weight: g("ln2.weight"),
            d_bias: g("ln2.bias"),
        };
        let saved = (&st.x_mid, &m.ln2_stats, &d_h2);
        layer_norm_backward(ctx, enc, saved, self.ln("ln2"), ln2_grads)?;
        Ok(d_mid)
    }

    /// dL/do in attention's layout, from dL/dx_mid through Wo.
    fn output_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        st: &BlockState,
        d_mid: &GpuTensor,
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<GpuTensor> {
        let c = self.config;
        let d_o = self.activation("grad attn.o", c.n_heads * c.d_v)?;
        linear_backward(
            self.ctx,
            enc,
            (&st.o, self.weight("attn.o.weight"), d_mid),
            Some(InputGrad {
                dx: &d_o,
                add: false,
                activation: Activation::None,
            }),
            self.param(grads, "attn.o.weight"),
            None,
        )?;
        let name = self.name("grad attn.o heads");
        split_heads(self.ctx, enc, &d_o, self.heads(c.d_v), &name)
    }

    /// dL/dx_in = d_mid + LN1'(the sum of q, k and v's backward).
    fn qkv_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        st: &BlockState,
        d_qkv: &AttentionGradients,
        d_mid: &GpuTensor,
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<GpuTensor> {
        let (ctx, c, q) = (self.ctx, self.config, &st.qkv);
        let g = |what: &str| self.param(grads, what);
        let d_h1 = self.activation("grad h1", c.d_model)?;
        let projections = [
            ("q", &d_qkv.dq, c.d_qk),
            ("k", &d_qkv.dk, c.d_qk),
            ("v", &d_qkv.dv, c.d_v),
        ];
        for (i, (which, d_heads, width)) in projections.into_iter().enumerate() {
            let name = self.name(&format!("grad attn.{which}"));
            let d_proj = merge_heads(ctx, enc, d_heads, self.heads(width), &name)?;
            let weight = format!("attn.{which}.weight");
            linear_backward(
                ctx,
                enc,
                (&q.h1, self.weight(&weight), &d_proj),
                // The three projections' input gradients add up in d_h1.
                Some(InputGrad {
                    dx: &d_h1,
                    add: i > 0,
                    activation: Activation::None,
                }),
                g(&weight),
                None,
            )?;
        }
        let d_in = self.activation("grad x_in", c.d_model)?;
        copy(enc, d_mid, &d_in);
        let ln1_grads = LayerNormGrads {
            dx: &d_in,
            add_into_dx: true,
            d_weight: g("ln1.weight"),
            d_bias: g("ln1.bias"),
        };
        let saved = (&st.x_in, &q.ln1_stats, &d_h1);
        layer_norm_backward(ctx, enc, saved, self.ln("ln1"), ln1_grads)?;
        Ok(d_in)
    }
}

/// dst = src (same size), recorded into the encoder.
pub(super) fn copy(encoder: &mut wgpu::CommandEncoder, src: &GpuTensor, dst: &GpuTensor) {
    encoder.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, src.buffer.size());
}
