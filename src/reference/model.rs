//! The whole transformer of shared/DESIGN.md §1 in f64 (or plain f32, for setting accuracy
//! bars), forward and backward, built from the reference linear, LayerNorm, GELU and attention
//! functions and nothing of the GPU path.

use std::collections::BTreeMap;

use crate::attention::{Attention, AttentionShape};
use crate::model::{HeadKind, Model, ModelConfig, Tokens};

use super::attention::{attention_backward, attention_forward};
use super::gelu::{gelu, gelu_derivative};
use super::layer_norm::{layer_norm_backward, layer_norm_forward};
use super::linear::{linear_backward, linear_forward};
use super::Real;

/// What the loss gives the backward pass.
#[derive(Clone, Copy, Debug)]
pub enum ReferenceLoss<'a, T = f64> {
    /// dL/dy given directly.
    Vjp(&'a [T]),
    /// L = mean((y - target)^2).
    Mse(&'a [T]),
    /// Cross-entropy of each row of y (its d_model values the logits) against a target class,
    /// averaged over the rows whose target is not `ignore_index`.
    CrossEntropy {
        /// One class per row of y.
        targets: &'a [i64],
        /// The target of rows the loss skips.
        ignore_index: i64,
    },
}

/// y, the loss (for a built-in loss), dL/dx and dL/dparam for every parameter, in f64.
#[derive(Clone, Debug)]
pub struct ReferenceGradients<T = f64> {
    /// The output.
    pub y: Vec<T>,
    /// The loss, for a built-in loss.
    pub loss: Option<f64>,
    /// dL/dx.
    pub grad_x: Vec<T>,
    /// dL/dparam by name.
    pub grads: BTreeMap<String, Vec<T>>,
}

/// A model in f64: its config and its parameters by name.
#[derive(Clone, Debug)]
pub struct ReferenceModel<T = f64> {
    /// Its config.
    pub config: ModelConfig,
    /// Its parameters by name.
    pub params: BTreeMap<String, Vec<T>>,
    /// Each layer's attention: the config's, unless set per layer (a mixed model, as
    /// automatic attention makes one).
    pub layer_attention: Vec<Attention>,
}

impl<T: Real> ReferenceModel<T> {
    /// The parameters of `model` in T (widened to f64, or kept in f32).
    pub fn from_model(model: &Model) -> Self {
        let c = model.config();
        let attention = c.attention_kind().expect("a Model's config is valid");
        ReferenceModel {
            layer_attention: vec![attention; c.n_layers],
            config: c.clone(),
            params: model
                .params()
                .iter()
                .map(|(name, t)| {
                    (
                        name.clone(),
                        t.data.iter().map(|&v| T::of(v as f64)).collect(),
                    )
                })
                .collect(),
        }
    }

    /// The same model with each layer's attention given (one per layer).
    pub fn with_layer_attention(self, layer_attention: Vec<Attention>) -> Self {
        assert_eq!(layer_attention.len(), self.config.n_layers);
        ReferenceModel {
            layer_attention,
            ..self
        }
    }

    /// y = model(x) for x `[batch, seq_len, d_model]`.
    pub fn forward(&self, x: &[T], batch: usize, seq_len: usize) -> Vec<T> {
        forward_with_caches(&Net::new(self, batch, seq_len), x).2
    }

    /// Forward and backward: y, the loss, dL/dx and dL/dparam for every parameter.
    pub fn gradients(
        &self,
        x: &[T],
        batch: usize,
        seq_len: usize,
        loss: ReferenceLoss<T>,
    ) -> ReferenceGradients<T> {
        model_gradients(self, x, batch, seq_len, loss)
    }
}

impl<T: Real> ReferenceModel<T> {
    /// A language model's output for `tokens`: the logits (with a head) or y.
    pub fn forward_tokens(&self, tokens: &Tokens) -> Vec<T> {
        let x = self.embed(tokens);
        let y = self.forward(&x, tokens.batch, tokens.seq_len);
        match self.head_matrix() {
            Some((_, w)) => linear_forward(&y, w, None, w.len() / self.config.d_model),
            None => y,
        }
    }

    /// Forward and backward of a language model: the output (logits with a head) as `y`, the
    /// loss, dL/dx of the embedded input, and dL/dparam for every parameter, the token
    /// embedding, positions and head included.
    pub fn gradients_tokens(
        &self,
        tokens: &Tokens,
        loss: ReferenceLoss<T>,
    ) -> ReferenceGradients<T> {
        let (batch, n, d) = (tokens.batch, tokens.seq_len, self.config.d_model);
        let x = self.embed(tokens);
        let net = Net::new(self, batch, n);
        let (caches, h, y) = forward_with_caches(&net, &x);
        let head = self.head_matrix();
        let out = match head {
            Some((_, w)) => linear_forward(&y, w, None, w.len() / d),
            None => y.clone(),
        };
        let (loss_value, d_out) = loss_gradient(&out, self.config.output_width(), loss);
        let mut grads = BTreeMap::new();
        let dy = match head {
            Some((name, w)) => {
                let (dy, dw, _) = linear_backward(&y, w, &d_out, w.len() / d);
                grads.insert(name.to_string(), dw);
                dy
            }
            None => d_out,
        };
        let dx = backward_from(&net, (&caches, &h), dy, &mut grads);
        // The embedding's rows and the positions gather dx, added to the tied head's part.
        let vocab = self.params["tok_emb.weight"].len() / d;
        let table = grads
            .entry("tok_emb.weight".to_string())
            .or_insert_with(|| vec![T::zero(); vocab * d]);
        for (r, &id) in tokens.ids.iter().enumerate() {
            for c in 0..d {
                table[id as usize * d + c] += dx[r * d + c];
            }
        }
        if let Some(positions) = self.params.get("pos_emb.weight") {
            let mut dp = vec![T::zero(); positions.len()];
            for r in 0..batch * n {
                for c in 0..d {
                    dp[(r % n) * d + c] += dx[r * d + c];
                }
            }
            grads.insert("pos_emb.weight".to_string(), dp);
        }
        ReferenceGradients {
            y: out,
            loss: loss_value,
            grad_x: dx,
            grads,
        }
    }

    /// `x = tok_emb[id] + pos_emb[position]` for every token, `[batch, seq_len, d_model]`.
    pub fn embed(&self, tokens: &Tokens) -> Vec<T> {
        let d = self.config.d_model;
        let table = &self.params["tok_emb.weight"];
        let positions = self.params.get("pos_emb.weight");
        let mut x = Vec::with_capacity(tokens.ids.len() * d);
        for (r, &id) in tokens.ids.iter().enumerate() {
            let p = r % tokens.seq_len;
            for c in 0..d {
                let pos = positions.map_or(T::zero(), |w| w[p * d + c]);
                x.push(table[id as usize * d + c] + pos);
            }
        }
        x
    }

    /// The head's parameter name and matrix `[vocab, d_model]`, where there is a head.
    fn head_matrix(&self) -> Option<(&'static str, &[T])> {
        let name = match self.config.head? {
            HeadKind::Tied => "tok_emb.weight",
            HeadKind::Separate => "head.weight",
        };
        Some((name, &self.params[name]))
    }
}

/// A model and the sizes of one input.
struct Net<'a, T> {
    config: &'a ModelConfig,
    layer_attention: &'a [Attention],
    params: &'a BTreeMap<String, Vec<T>>,
    batch: usize,
    seq_len: usize,
}

/// Activations of one block that its backward needs.
struct BlockCache<T> {
    x_in: Vec<T>,
    h1: Vec<T>,
    /// q, k, v in attention's layout [B, H, n, d].
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    /// Attention output, heads concatenated per token [B, n, H*d_v].
    o: Vec<T>,
    x_mid: Vec<T>,
    h2: Vec<T>,
    /// fc1 output (GELU's input) and GELU's output.
    u: Vec<T>,
    act: Vec<T>,
}

impl<'a, T: Real> Net<'a, T> {
    fn new(model: &'a ReferenceModel<T>, batch: usize, seq_len: usize) -> Self {
        Net {
            config: &model.config,
            layer_attention: &model.layer_attention,
            params: &model.params,
            batch,
            seq_len,
        }
    }

    fn p(&self, layer: usize, name: &str) -> &[T] {
        &self.params[&format!("blocks.{layer}.{name}")]
    }

    fn attention_shape(&self) -> AttentionShape {
        let c = self.config;
        AttentionShape::new(self.batch, c.n_heads, self.seq_len, c.d_qk, c.d_v, c.causal)
    }

    /// [B, n, H, d] to [B, H, n, d], or back when `to_heads` is false.
    fn permute(&self, x: &[T], d: usize, to_heads: bool) -> Vec<T> {
        let (b_count, n, h_count) = (self.batch, self.seq_len, self.config.n_heads);
        let mut out = vec![T::zero(); x.len()];
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

    fn block_forward(&self, l: usize, x_in: Vec<T>) -> (BlockCache<T>, Vec<T>) {
        let c = self.config;
        let (qk, vw) = (c.n_heads * c.d_qk, c.n_heads * c.d_v);
        let attention = self.layer_attention[l];
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
        let x_mid: Vec<T> = x_in.iter().zip(&proj).map(|(&a, &b)| a + b).collect();
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
        let act: Vec<T> = u.iter().map(|&t| gelu(t)).collect();
        let mlp = linear_forward(
            &act,
            self.p(l, "mlp.fc2.weight"),
            Some(self.p(l, "mlp.fc2.bias")),
            c.d_model,
        );
        let x_out = x_mid.iter().zip(&mlp).map(|(&a, &b)| a + b).collect();
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
        cache: &BlockCache<T>,
        d_out: Vec<T>,
        grads: &mut BTreeMap<String, Vec<T>>,
    ) -> Vec<T> {
        let c = self.config;
        let attention = self.layer_attention[l];
        let mut put = |name: &str, g: Vec<T>| {
            grads.insert(format!("blocks.{l}.{name}"), g);
        };
        // x_out = x_mid + fc2(gelu(fc1(h2)))
        let (d_act, dw, db) =
            linear_backward(&cache.act, self.p(l, "mlp.fc2.weight"), &d_out, c.d_model);
        put("mlp.fc2.weight", dw);
        put("mlp.fc2.bias", db);
        let d_u: Vec<T> = d_act
            .iter()
            .zip(&cache.u)
            .map(|(&g, &t)| g * gelu_derivative(t))
            .collect();
        let (d_h2, dw, db) = linear_backward(&cache.h2, self.p(l, "mlp.fc1.weight"), &d_u, c.d_ff);
        put("mlp.fc1.weight", dw);
        put("mlp.fc1.bias", db);
        let (d_ln2, dw, db) =
            layer_norm_backward(&cache.x_mid, self.p(l, "ln2.weight"), c.ln_eps, &d_h2);
        put("ln2.weight", dw);
        put("ln2.bias", db);
        let d_mid: Vec<T> = d_out.iter().zip(&d_ln2).map(|(&a, &b)| a + b).collect();
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
        let mut d_h1 = vec![T::zero(); cache.h1.len()];
        for (name, d_heads, width) in [
            ("attn.q.weight", &g.dq, c.d_qk),
            ("attn.k.weight", &g.dk, c.d_qk),
            ("attn.v.weight", &g.dv, c.d_v),
        ] {
            let d_proj = self.permute(d_heads, width, false);
            let (dh, dw, _) =
                linear_backward(&cache.h1, self.p(l, name), &d_proj, c.n_heads * width);
            put(name, dw);
            d_h1.iter_mut().zip(&dh).for_each(|(a, &b)| *a += b);
        }
        let (d_ln1, dw, db) =
            layer_norm_backward(&cache.x_in, self.p(l, "ln1.weight"), c.ln_eps, &d_h1);
        put("ln1.weight", dw);
        put("ln1.bias", db);
        d_mid.iter().zip(&d_ln1).map(|(&a, &b)| a + b).collect()
    }
}

/// Runs every block; returns their caches, the last block's output and y.
fn forward_with_caches<T: Real>(net: &Net<T>, x: &[T]) -> (Vec<BlockCache<T>>, Vec<T>, Vec<T>) {
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

/// The loss (for a built-in loss) and dL/dy, for y of rows of `width`.
fn loss_gradient<T: Real>(y: &[T], width: usize, loss: ReferenceLoss<T>) -> (Option<f64>, Vec<T>) {
    match loss {
        ReferenceLoss::Vjp(dy) => (None, dy.to_vec()),
        ReferenceLoss::CrossEntropy {
            targets,
            ignore_index,
        } => {
            let (value, dy) = super::cross_entropy::cross_entropy(y, width, targets, ignore_index);
            (Some(value), dy)
        }
        ReferenceLoss::Mse(target) => {
            let n = T::of(y.len() as f64);
            let value = y
                .iter()
                .zip(target)
                .map(|(&a, &t)| (a - t).powi(2))
                .sum::<T>()
                / n;
            (
                Some(value.to_f64().expect("a float converts to f64")),
                y.iter()
                    .zip(target)
                    .map(|(&a, &t)| T::of(2.0) * (a - t) / n)
                    .collect(),
            )
        }
    }
}

/// Forward and backward: y, the loss, dL/dx and dL/dparam for every parameter.
fn model_gradients<T: Real>(
    model: &ReferenceModel<T>,
    x: &[T],
    batch: usize,
    seq_len: usize,
    loss: ReferenceLoss<T>,
) -> ReferenceGradients<T> {
    let net = Net::new(model, batch, seq_len);
    let (caches, h, y) = forward_with_caches(&net, x);
    let (loss_value, dy) = loss_gradient(&y, model.config.d_model, loss);
    let mut grads = BTreeMap::new();
    let grad_x = backward_from(&net, (&caches, &h), dy, &mut grads);
    ReferenceGradients {
        y,
        loss: loss_value,
        grad_x,
        grads,
    }
}

/// dL/dx from dL/dy through the final LayerNorm and the blocks, every parameter gradient
/// added to `grads`.
fn backward_from<T: Real>(
    net: &Net<'_, T>,
    (caches, h): (&[BlockCache<T>], &[T]),
    dy: Vec<T>,
    grads: &mut BTreeMap<String, Vec<T>>,
) -> Vec<T> {
    let eps = net.config.ln_eps;
    let (mut d, dw, db) = layer_norm_backward(h, &net.params["ln_f.weight"], eps, &dy);
    grads.insert("ln_f.weight".to_string(), dw);
    grads.insert("ln_f.bias".to_string(), db);
    for (l, cache) in caches.iter().enumerate().rev() {
        d = net.block_backward(l, cache, d, grads);
    }
    d
}
