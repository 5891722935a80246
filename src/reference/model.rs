//! The whole transformer of shared/DESIGN.md §1 in f64, forward and backward, built from the
//! reference linear, LayerNorm, GELU and attention functions and nothing of the GPU path.

use std::collections::BTreeMap;

use crate::attention::AttentionShape;
use crate::model::{Model, ModelConfig};

use super::attention::{attention_backward, attention_forward};
use super::gelu::{gelu, gelu_derivative};
use super::layer_norm::{layer_norm_backward, layer_norm_forward};
use super::linear::{linear_backward, linear_forward};
use super::widen;

/// What the loss gives the backward pass.
#[derive(Clone, Copy, Debug)]
pub enum ReferenceLoss<'a> {
    /// dL/dy given directly.
    Vjp(&'a [f64]),
    /// L = mean((y - target)^2).
    Mse(&'a [f64]),
}

/// y, the loss (for a built-in loss), dL/dx and dL/dparam for every parameter, in f64.
#[derive(Clone, Debug)]
pub struct ReferenceGradients {
    pub y: Vec<f64>,
    pub loss: Option<f64>,
    pub grad_x: Vec<f64>,
    pub grads: BTreeMap<String, Vec<f64>>,
}

/// A model in f64: its config and its parameters by name.
#[derive(Clone, Debug)]
pub struct ReferenceModel {
    pub config: ModelConfig,
    pub params: BTreeMap<String, Vec<f64>>,
}

impl ReferenceModel {
    /// The parameters of `model` widened to f64.
    pub fn from_model(model: &Model) -> Self {
        ReferenceModel {
            config: model.config().clone(),
            params: model
                .params()
                .iter()
                .map(|(name, t)| (name.clone(), widen(&t.data)))
                .collect(),
        }
    }

    /// y = model(x) for x `[batch, seq_len, d_model]`.
    pub fn forward(&self, x: &[f64], batch: usize, seq_len: usize) -> Vec<f64> {
        forward_with_caches(&Net::new(self, batch, seq_len), x).2
    }

    /// Forward and backward: y, the loss, dL/dx and dL/dparam for every parameter.
    pub fn gradients(
        &self,
        x: &[f64],
        batch: usize,
        seq_len: usize,
        loss: ReferenceLoss,
    ) -> ReferenceGradients {
        model_gradients(self, x, batch, seq_len, loss)
    }
}

/// A model and the sizes of one input.
struct Net<'a> {
    config: &'a ModelConfig,
    params: &'a BTreeMap<String, Vec<f64>>,
    batch: usize,
    seq_len: usize,
}

/// Activations of one block that its backward needs.
struct BlockCache {
    x_in: Vec<f64>,
    h1: Vec<f64>,
    /// q, k, v in attention's layout [B, H, n, d].
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    /// Attention output, heads concatenated per token [B, n, H*d_v].
    o: Vec<f64>,
    x_mid: Vec<f64>,
    h2: Vec<f64>,
    /// fc1 output (GELU's input) and GELU's output.
    u: Vec<f64>,
    act: Vec<f64>,
}

impl<'a> Net<'a> {
    fn new(model: &'a ReferenceModel, batch: usize, seq_len: usize) -> Self {
        Net {
            config: &model.config,
            params: &model.params,
            batch,
            seq_len,
        }
    }

    fn p(&self, layer: usize, name: &str) -> &[f64] {
        &self.params[&format!("blocks.{layer}.{name}")]
    }

    fn attention_shape(&self) -> AttentionShape {
        let c = self.config;
        AttentionShape::new(self.batch, c.n_heads, self.seq_len, c.d_qk, c.d_v, c.causal)
    }

    /// [B, n, H, d] to [B, H, n, d], or back when `to_heads` is false.
    fn permute(&self, x: &[f64], d: usize, to_heads: bool) -> Vec<f64> {
        let (b_count, n, h_count) = (self.batch, self.seq_len, self.config.n_heads);
        let mut out = vec![0.0; x.len()];
        for b in 0..b_count {
            for t in 0..n {
                for h in 0..h_count {
                    for e in 0..d {
                        let token_major = ((b * n + t) * h_count + h) * d + e;
                        let head_major = ((b * h_count + h) * n + t) * d + e;
                        if to_heads {
                            out[head_major] = x[token_major];
                        } else {
                            out[token_major] = x[head_major];
                        }
                    }
                }
            }
        }
        out
    }

    fn block_forward(&self, l: usize, x_in: Vec<f64>) -> (BlockCache, Vec<f64>) {
        let c = self.config;
        let (qk, vw) = (c.n_heads * c.d_qk, c.n_heads * c.d_v);
        let attention = c.attention_kind().expect("a Model's config is valid");
        let h1 = layer_norm_forward(
            &x_in,
            self.p(l, "ln1.weight"),
            self.p(l, "ln1.bias"),
            c.ln_eps,
        );
        let q = self.permute(
            &linear_forward(&h1, self.p(l, "attn.q.weight"), None, qk),
            c.d_qk,
            true,
        );
        let k = self.permute(
            &linear_forward(&h1, self.p(l, "attn.k.weight"), None, qk),
            c.d_qk,
            true,
        );
        let v = self.permute(
            &linear_forward(&h1, self.p(l, "attn.v.weight"), None, vw),
            c.d_v,
            true,
        );
        let o_heads = attention_forward(&self.attention_shape(), attention, &q, &k, &v);
        let o = self.permute(&o_heads, c.d_v, false);
        let proj = linear_forward(&o, self.p(l, "attn.o.weight"), None, c.d_model);
        let x_mid: Vec<f64> = x_in.iter().zip(&proj).map(|(a, b)| a + b).collect();
        let h2 = layer_norm_forward(
            &x_mid,
            self.p(l, "ln2.weight"),
            self.p(l, "ln2.bias"),
            c.ln_eps,
        );
        let u = linear_forward(
            &h2,
            self.p(l, "mlp.fc1.weight"),
            Some(self.p(l, "mlp.fc1.bias")),
            c.d_ff,
        );
        let act: Vec<f64> = u.iter().map(|&t| gelu(t)).collect();
        let mlp = linear_forward(
            &act,
            self.p(l, "mlp.fc2.weight"),
            Some(self.p(l, "mlp.fc2.bias")),
            c.d_model,
        );
        let x_out = x_mid.iter().zip(&mlp).map(|(a, b)| a + b).collect();
        let cache = BlockCache {
            x_in,
            h1,
            q,
            k,
            v,
            o,
            x_mid,
            h2,
            u,
            act,
        };
        (cache, x_out)
    }

    /// dL/dx_in of block l given dL/dx_out, recording the block's parameter gradients.
    fn block_backward(
        &self,
        l: usize,
        cache: &BlockCache,
        d_out: Vec<f64>,
        grads: &mut BTreeMap<String, Vec<f64>>,
    ) -> Vec<f64> {
        let c = self.config;
        let attention = c.attention_kind().expect("a Model's config is valid");
        let mut put = |name: &str, g: Vec<f64>| {
            grads.insert(format!("blocks.{l}.{name}"), g);
        };
        // x_out = x_mid + fc2(gelu(fc1(h2)))
        let (d_act, dw, db) =
            linear_backward(&cache.act, self.p(l, "mlp.fc2.weight"), &d_out, c.d_model);
        put("mlp.fc2.weight", dw);
        put("mlp.fc2.bias", db);
        let d_u: Vec<f64> = d_act
            .iter()
            .zip(&cache.u)
            .map(|(g, &t)| g * gelu_derivative(t))
            .collect();
        let (d_h2, dw, db) = linear_backward(&cache.h2, self.p(l, "mlp.fc1.weight"), &d_u, c.d_ff);
        put("mlp.fc1.weight", dw);
        put("mlp.fc1.bias", db);
        let (d_ln2, dw, db) =
            layer_norm_backward(&cache.x_mid, self.p(l, "ln2.weight"), c.ln_eps, &d_h2);
        put("ln2.weight", dw);
        put("ln2.bias", db);
        let d_mid: Vec<f64> = d_out.iter().zip(&d_ln2).map(|(a, b)| a + b).collect();
        // x_mid = x_in + o Wo^T
        let (d_o, dw, _) = linear_backward(&cache.o, self.p(l, "attn.o.weight"), &d_mid, c.d_model);
        put("attn.o.weight", dw);
        let d_o_heads = self.permute(&d_o, c.d_v, true);
        let g = attention_backward(
            &self.attention_shape(),
            attention,
            &cache.q,
            &cache.k,
            &cache.v,
            &d_o_heads,
        );
        let mut d_h1 = vec![0.0; cache.h1.len()];
        for (name, d_heads, width) in [
            ("attn.q.weight", &g.dq, c.d_qk),
            ("attn.k.weight", &g.dk, c.d_qk),
            ("attn.v.weight", &g.dv, c.d_v),
        ] {
            let d_proj = self.permute(d_heads, width, false);
            let (dh, dw, _) =
                linear_backward(&cache.h1, self.p(l, name), &d_proj, c.n_heads * width);
            put(name, dw);
            d_h1.iter_mut().zip(&dh).for_each(|(a, b)| *a += b);
        }
        let (d_ln1, dw, db) =
            layer_norm_backward(&cache.x_in, self.p(l, "ln1.weight"), c.ln_eps, &d_h1);
        put("ln1.weight", dw);
        put("ln1.bias", db);
        d_mid.iter().zip(&d_ln1).map(|(a, b)| a + b).collect()
    }
}

/// Runs every block; returns their caches, the last block's output and y.
fn forward_with_caches(net: &Net, x: &[f64]) -> (Vec<BlockCache>, Vec<f64>, Vec<f64>) {
    let mut caches = Vec::new();
    let mut h = x.to_vec();
    for l in 0..net.config.n_layers {
        let (cache, next) = net.block_forward(l, h);
        caches.push(cache);
        h = next;
    }
    let eps = net.config.ln_eps;
    let y = layer_norm_forward(
        &h,
        &net.params["ln_f.weight"],
        &net.params["ln_f.bias"],
        eps,
    );
    (caches, h, y)
}

/// The loss (for mse) and dL/dy.
fn loss_gradient(y: &[f64], loss: ReferenceLoss) -> (Option<f64>, Vec<f64>) {
    match loss {
        ReferenceLoss::Vjp(dy) => (None, dy.to_vec()),
        ReferenceLoss::Mse(target) => {
            let n = y.len() as f64;
            let value = y
                .iter()
                .zip(target)
                .map(|(a, t)| (a - t).powi(2))
                .sum::<f64>()
                / n;
            (
                Some(value),
                y.iter()
                    .zip(target)
                    .map(|(a, t)| 2.0 * (a - t) / n)
                    .collect(),
            )
        }
    }
}

/// Forward and backward: y, the loss, dL/dx and dL/dparam for every parameter.
fn model_gradients(
    model: &ReferenceModel,
    x: &[f64],
    batch: usize,
    seq_len: usize,
    loss: ReferenceLoss,
) -> ReferenceGradients {
    let net = Net::new(model, batch, seq_len);
    let (caches, h, y) = forward_with_caches(&net, x);
    let (loss_value, dy) = loss_gradient(&y, loss);
    let mut grads = BTreeMap::new();
    let eps = model.config.ln_eps;
    let (mut d, dw, db) = layer_norm_backward(&h, &net.params["ln_f.weight"], eps, &dy);
    grads.insert("ln_f.weight".to_string(), dw);
    grads.insert("ln_f.bias".to_string(), db);
    for (l, cache) in caches.iter().enumerate().rev() {
        d = net.block_backward(l, cache, d, &mut grads);
    }
    ReferenceGradients {
        y,
        loss: loss_value,
        grad_x: d,
        grads,
    }
}
