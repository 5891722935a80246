//! The model's forward and backward pass on the GPU, block by block:
//!
//! ```text
//! forward, per block (two submissions around attention's own):
//!   h1 = LN1(x)  q, k, v = h1 Wq^T, h1 Wk^T, h1 Wv^T  -> split into heads
//!   o = attention(q, k, v)                           -> merge heads
//!   x_mid = x + o Wo^T   h2 = LN2(x_mid)   u = fc1(h2)   act = gelu(u)   x_out = x_mid + fc2(act)
//! y = LN_f(x_L)
//! backward, per block in reverse, from d_out = dL/dx_out:
//!   fc2, gelu, fc1 backward -> d_h2;  d_mid = d_out + LN2'(d_h2)
//!   Wo backward -> d_o -> split;  attention backward -> dq, dk, dv -> merge
//!   q, k, v backward -> d_h1 (summed);  d_in = d_mid + LN1'(d_h1)
//! ```
//!
//! Every activation the backward needs stays on the GPU; nothing is read back between layers.
//! y and every gradient come back in one readback at the end (with `Loss::Mse`, y is also read
//! once before the backward, which needs it for dL/dy).

use std::collections::BTreeMap;

use crate::attention::{Attention, AttentionShape};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::gelu::{gelu_backward, gelu_forward};
use crate::ops::heads::{merge_heads, split_heads, HeadLayout};
use crate::ops::layer_norm::{
    layer_norm_backward, layer_norm_forward, LayerNormGrads, LayerNormParams,
};
use crate::ops::linear::{linear_backward, linear_forward, InputGrad};
use crate::ops::{AttentionOp, AttentionSaved};

use super::{HostTensor, Loss, Model, ModelConfig, Tensors};

/// A model's parameters on the GPU, ready for any number of forward and backward passes.
pub struct GpuModel {
    model: Model,
    attention: Attention,
    params: BTreeMap<String, GpuTensor>,
}

/// y, the loss (for a built-in loss), dL/dx and dL/dparam for every parameter, by the
/// parameter's name.
#[derive(Clone, Debug)]
pub struct ModelGradients {
    pub y: HostTensor,
    pub loss: Option<f64>,
    pub grad_x: HostTensor,
    pub grads: Tensors,
}

/// What one block's forward keeps for its backward.
struct BlockState {
    x_in: GpuTensor,
    ln1_stats: GpuTensor,
    h1: GpuTensor,
    /// q, k, v in attention's layout [B, H, n, d].
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
    attention: AttentionSaved,
    /// The attention output, heads merged [B, n, H*d_v].
    o: GpuTensor,
    x_mid: GpuTensor,
    ln2_stats: GpuTensor,
    h2: GpuTensor,
    u: GpuTensor,
    act: GpuTensor,
}

/// The whole forward pass, kept for the backward.
struct ForwardState {
    blocks: Vec<BlockState>,
    /// The last block's output, LN_f's input.
    x_last: GpuTensor,
    lnf_stats: GpuTensor,
    y: GpuTensor,
}

/// Sizes of one pass.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    seq_len: usize,
}

impl GpuModel {
    /// Uploads the parameters of `model` (already checked by [`Model::new`]).
    pub fn new(ctx: &GpuContext, model: &Model) -> Result<Self> {
        let attention = model.config().attention_kind()?;
        let mut params = BTreeMap::new();
        for (name, tensor) in model.params() {
            params.insert(
                name.clone(),
                GpuTensor::upload(ctx, name, &tensor.shape, &tensor.data)?,
            );
        }
        Ok(GpuModel {
            model: model.clone(),
            attention,
            params,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// y = model(x) for x `[B, n, d_model]`.
    pub fn forward(&self, ctx: &GpuContext, x: &HostTensor) -> Result<HostTensor> {
        let (dims, attention) = self.prepare(ctx, x)?;
        let state = self.forward_state(ctx, x, dims, &attention)?;
        download(ctx, &state.y)
    }

    /// One forward and backward pass: y, dL/dx and dL/dparam for every parameter.
    pub fn gradients(
        &self,
        ctx: &GpuContext,
        x: &HostTensor,
        loss: &Loss,
    ) -> Result<ModelGradients> {
        let (dims, attention) = self.prepare(ctx, x)?;
        let upstream = loss.tensor();
        if upstream.shape != x.shape {
            return Err(Error::ShapeMismatch {
                tensor: loss.tensor_name().into(),
                expected: x.shape.clone(),
                got: upstream.shape.clone(),
            });
        }
        upstream.check_finite(loss.tensor_name())?;
        let state = self.forward_state(ctx, x, dims, &attention)?;
        // dL/dy: given (no readback before the backward), or from y for a built-in loss.
        let (loss_value, dy) = match loss {
            Loss::Vjp(dy) => (None, dy.data.clone()),
            Loss::Mse(_) => loss.gradient(&state.y.download(ctx)?),
        };
        let dy = GpuTensor::upload(ctx, "dy", &x.shape, &dy)?;
        let (grad_x, grads) = self.backward(ctx, &state, dims, &attention, dy)?;
        // Everything else comes back in one readback.
        let mut wanted: Vec<&GpuTensor> = vec![&state.y, &grad_x];
        wanted.extend(grads.values());
        let mut values = GpuTensor::download_all(ctx, &wanted)?.into_iter();
        let mut host = |t: &GpuTensor| HostTensor {
            shape: t.shape().to_vec(),
            data: values.next().expect("one value per tensor read back"),
        };
        let y = host(&state.y);
        let grad_x = host(&grad_x);
        let grads = grads
            .iter()
            .map(|(name, g)| (name.clone(), host(g)))
            .collect();
        Ok(ModelGradients {
            y,
            loss: loss_value,
            grad_x,
            grads,
        })
    }

    /// Checks x and builds the attention for its shape.
    fn prepare(&self, ctx: &GpuContext, x: &HostTensor) -> Result<(Dims, AttentionOp)> {
        let (batch, seq_len) = self.model.check_input("x", x)?;
        let c = self.config();
        let shape = AttentionShape::new(batch, c.n_heads, seq_len, c.d_qk, c.d_v, c.causal);
        let attention = AttentionOp::new(ctx, self.attention, shape)?;
        Ok((Dims { batch, seq_len }, attention))
    }

    fn p(&self, layer: usize, name: &str) -> &GpuTensor {
        &self.params[&format!("blocks.{layer}.{name}")]
    }

    fn ln(&self, prefix: &str) -> LayerNormParams<'_> {
        LayerNormParams {
            weight: &self.params[&format!("{prefix}.weight")],
            bias: &self.params[&format!("{prefix}.bias")],
            eps: self.config().ln_eps,
        }
    }

    fn heads(&self, dims: Dims, width: usize) -> HeadLayout {
        HeadLayout {
            batch: dims.batch,
            seq_len: dims.seq_len,
            heads: self.config().n_heads,
            width,
        }
    }

    fn forward_state(
        &self,
        ctx: &GpuContext,
        x: &HostTensor,
        dims: Dims,
        attention: &AttentionOp,
    ) -> Result<ForwardState> {
        let mut h = GpuTensor::upload(ctx, "x", &x.shape, &x.data)?;
        let mut blocks = Vec::new();
        for l in 0..self.config().n_layers {
            let (block, next) = self.block_forward(ctx, l, h, dims, attention)?;
            blocks.push(block);
            h = next;
        }
        let mut encoder = ctx.encoder("final LayerNorm");
        let y = GpuTensor::output(ctx, "y", &x.shape)?;
        let lnf_stats = layer_norm_forward(ctx, &mut encoder, &h, self.ln("ln_f"), &y)?;
        ctx.submit("final LayerNorm", encoder)?;
        Ok(ForwardState {
            blocks,
            x_last: h,
            lnf_stats,
            y,
        })
    }

    fn block_forward(
        &self,
        ctx: &GpuContext,
        l: usize,
        x_in: GpuTensor,
        dims: Dims,
        attention: &AttentionOp,
    ) -> Result<(BlockState, GpuTensor)> {
        let c = self.config();
        let name = |s: &str| format!("blocks.{l}.{s}");
        let tokens = [dims.batch, dims.seq_len];
        let activation = |s: &str, width: usize| {
            GpuTensor::output(ctx, &name(s), &[tokens[0], tokens[1], width])
        };
        let during = format!("forward of block {l}");

        let mut enc = ctx.encoder(&during);
        let h1 = activation("h1", c.d_model)?;
        let ln1_stats = layer_norm_forward(ctx, &mut enc, &x_in, self.ln(&name("ln1")), &h1)?;
        let mut project = |which: &str, width: usize| -> Result<GpuTensor> {
            let out = activation(&format!("attn.{which}"), c.n_heads * width)?;
            let w = self.p(l, &format!("attn.{which}.weight"));
            linear_forward(ctx, &mut enc, &h1, w, None, &out, false)?;
            split_heads(
                ctx,
                &mut enc,
                &out,
                self.heads(dims, width),
                &name(&format!("attn.{which} heads")),
            )
        };
        let (q, k, v) = (
            project("q", c.d_qk)?,
            project("k", c.d_qk)?,
            project("v", c.d_v)?,
        );
        ctx.submit(&during, enc)?;

        let saved = attention.forward(ctx, &q, &k, &v)?;

        let mut enc = ctx.encoder(&during);
        let o = merge_heads(
            ctx,
            &mut enc,
            saved.o(),
            self.heads(dims, c.d_v),
            &name("attn.o"),
        )?;
        let x_mid = activation("x_mid", c.d_model)?;
        copy(&mut enc, &x_in, &x_mid);
        linear_forward(
            ctx,
            &mut enc,
            &o,
            self.p(l, "attn.o.weight"),
            None,
            &x_mid,
            true,
        )?;
        let h2 = activation("h2", c.d_model)?;
        let ln2_stats = layer_norm_forward(ctx, &mut enc, &x_mid, self.ln(&name("ln2")), &h2)?;
        let u = activation("mlp.fc1", c.d_ff)?;
        let fc1_bias = Some(self.p(l, "mlp.fc1.bias"));
        linear_forward(
            ctx,
            &mut enc,
            &h2,
            self.p(l, "mlp.fc1.weight"),
            fc1_bias,
            &u,
            false,
        )?;
        let act = activation("mlp.gelu", c.d_ff)?;
        gelu_forward(ctx, &mut enc, &u, &act)?;
        let x_out = activation("x_out", c.d_model)?;
        copy(&mut enc, &x_mid, &x_out);
        let fc2_bias = Some(self.p(l, "mlp.fc2.bias"));
        linear_forward(
            ctx,
            &mut enc,
            &act,
            self.p(l, "mlp.fc2.weight"),
            fc2_bias,
            &x_out,
            true,
        )?;
        ctx.submit(&during, enc)?;

        let block = BlockState {
            x_in,
            ln1_stats,
            h1,
            q,
            k,
            v,
            attention: saved,
            o,
            x_mid,
            ln2_stats,
            h2,
            u,
            act,
        };
        Ok((block, x_out))
    }

    /// dL/dx and the parameter gradients (on the GPU) given dy.
    fn backward(
        &self,
        ctx: &GpuContext,
        state: &ForwardState,
        dims: Dims,
        attention: &AttentionOp,
        dy: GpuTensor,
    ) -> Result<(GpuTensor, BTreeMap<String, GpuTensor>)> {
        let mut grads = BTreeMap::new();
        for (name, shape) in self.config().parameter_shapes() {
            let g = GpuTensor::output(ctx, &format!("grad.{name}"), &shape)?;
            grads.insert(name, g);
        }
        let mut enc = ctx.encoder("backward of the final LayerNorm");
        let mut d = GpuTensor::output(ctx, "grad of the last block's output", dy.shape())?;
        layer_norm_backward(
            ctx,
            &mut enc,
            (&state.x_last, &state.lnf_stats, &dy),
            self.ln("ln_f"),
            LayerNormGrads {
                dx: &d,
                add_into_dx: false,
                d_weight: &grads["ln_f.weight"],
                d_bias: &grads["ln_f.bias"],
            },
        )?;
        ctx.submit("backward of the final LayerNorm", enc)?;
        for (l, block) in state.blocks.iter().enumerate().rev() {
            d = self.block_backward(ctx, l, block, dims, attention, d, &grads)?;
        }
        Ok((d, grads))
    }

    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        ctx: &GpuContext,
        l: usize,
        st: &BlockState,
        dims: Dims,
        attention: &AttentionOp,
        d_out: GpuTensor,
        grads: &BTreeMap<String, GpuTensor>,
    ) -> Result<GpuTensor> {
        let c = self.config();
        let g = |s: &str| &grads[&format!("blocks.{l}.{s}")];
        let name = |s: &str| format!("grad of blocks.{l}.{s}");
        let activation = |s: &str, width: usize| {
            GpuTensor::output(ctx, &name(s), &[dims.batch, dims.seq_len, width])
        };
        let during = format!("backward of block {l}");

        let mut enc = ctx.encoder(&during);
        let d_act = activation("mlp.gelu", c.d_ff)?;
        linear_backward(
            ctx,
            &mut enc,
            (&st.act, self.p(l, "mlp.fc2.weight"), &d_out),
            Some(InputGrad {
                dx: &d_act,
                add: false,
            }),
            g("mlp.fc2.weight"),
            Some(g("mlp.fc2.bias")),
        )?;
        let d_u = activation("mlp.fc1", c.d_ff)?;
        gelu_backward(ctx, &mut enc, &st.u, &d_act, &d_u)?;
        let d_h2 = activation("h2", c.d_model)?;
        linear_backward(
            ctx,
            &mut enc,
            (&st.h2, self.p(l, "mlp.fc1.weight"), &d_u),
            Some(InputGrad {
                dx: &d_h2,
                add: false,
            }),
            g("mlp.fc1.weight"),
            Some(g("mlp.fc1.bias")),
        )?;
        let d_mid = activation("x_mid", c.d_model)?;
        copy(&mut enc, &d_out, &d_mid);
        layer_norm_backward(
            ctx,
            &mut enc,
            (&st.x_mid, &st.ln2_stats, &d_h2),
            self.ln(&format!("blocks.{l}.ln2")),
            LayerNormGrads {
                dx: &d_mid,
                add_into_dx: true,
                d_weight: g("ln2.weight"),
                d_bias: g("ln2.bias"),
            },
        )?;
        let d_o = activation("attn.o", c.n_heads * c.d_v)?;
        linear_backward(
            ctx,
            &mut enc,
            (&st.o, self.p(l, "attn.o.weight"), &d_mid),
            Some(InputGrad {
                dx: &d_o,
                add: false,
            }),
            g("attn.o.weight"),
            None,
        )?;
        let d_o_heads = split_heads(
            ctx,
            &mut enc,
            &d_o,
            self.heads(dims, c.d_v),
            &name("attn.o heads"),
        )?;
        ctx.submit(&during, enc)?;

        let d_qkv = attention.backward(ctx, (&st.q, &st.k, &st.v), &st.attention, &d_o_heads)?;

        let mut enc = ctx.encoder(&during);
        let d_h1 = activation("h1", c.d_model)?;
        for (i, (which, d_heads, width)) in [
            ("q", &d_qkv.dq, c.d_qk),
            ("k", &d_qkv.dk, c.d_qk),
            ("v", &d_qkv.dv, c.d_v),
        ]
        .into_iter()
        .enumerate()
        {
            let d_proj = merge_heads(
                ctx,
                &mut enc,
                d_heads,
                self.heads(dims, width),
                &name(&format!("attn.{which}")),
            )?;
            let weight = format!("attn.{which}.weight");
            linear_backward(
                ctx,
                &mut enc,
                (&st.h1, self.p(l, &weight), &d_proj),
                Some(InputGrad {
                    dx: &d_h1,
                    add: i > 0,
                }),
                g(&weight),
                None,
            )?;
        }
        let d_in = activation("x_in", c.d_model)?;
        copy(&mut enc, &d_mid, &d_in);
        layer_norm_backward(
            ctx,
            &mut enc,
            (&st.x_in, &st.ln1_stats, &d_h1),
            self.ln(&format!("blocks.{l}.ln1")),
            LayerNormGrads {
                dx: &d_in,
                add_into_dx: true,
                d_weight: g("ln1.weight"),
                d_bias: g("ln1.bias"),
            },
        )?;
        ctx.submit(&during, enc)?;
        Ok(d_in)
    }
}

/// dst = src (same size), recorded into the encoder.
fn copy(encoder: &mut wgpu::CommandEncoder, src: &GpuTensor, dst: &GpuTensor) {
    encoder.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, src.buffer.size());
}

fn download(ctx: &GpuContext, t: &GpuTensor) -> Result<HostTensor> {
    Ok(HostTensor {
        shape: t.shape().to_vec(),
        data: t.download(ctx)?,
    })
}
