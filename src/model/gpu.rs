//! The model's forward and backward pass on the GPU: the blocks in order (src/model/block.rs),
//! the final LayerNorm, then back through the final LayerNorm and the blocks in reverse.
//!
//! Every activation the backward needs stays on the GPU; nothing is read back between layers.
//! y and every gradient come back in one readback at the end (with `Loss::Mse`, y is also read
//! once before the backward, which needs it for dL/dy).

use std::collections::BTreeMap;

use crate::attention::{Attention, AttentionShape};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::certificate;
use crate::ops::cross_entropy::{cross_entropy, Targets};
use crate::ops::embedding::{embed_backward, embed_forward, TokenIndex};
use crate::ops::layer_norm::{
    layer_norm_backward, layer_norm_forward, LayerNormGrads, LayerNormParams,
};
use crate::ops::linear::{linear_backward, linear_forward, InputGrad};
use crate::ops::matmul::Activation;
use crate::ops::sampled_check::{self, PendingCheck};
use crate::ops::{AttentionFootprint, AttentionOp};

use super::auto::{self, AutoAttention, Decision, LayerInputs, OpSet};
use super::block::{attention_shape, BlockPass, BlockState, Dims};
use super::memory::MemoryEstimate;
use super::{
    ErrorChecks, HeadKind, HostTensor, LayerBound, Loss, Model, ModelConfig, Tensors, Tokens,
};

/// A model's parameters on the GPU, ready for any number of forward and backward passes.
pub struct GpuModel {
    config: ModelConfig,
    params: BTreeMap<String, GpuTensor>,
}

/// y, the loss (for a built-in loss), dL/dx and dL/dparam for every parameter, by the
/// parameter's name.
#[derive(Clone, Debug)]
pub struct ModelGradients {
    /// The output: y, or a language model's logits.
    pub y: HostTensor,
    /// The loss, for a built-in loss.
    pub loss: Option<f64>,
    /// dL/dx (of the embedded tokens for a language model).
    pub grad_x: HostTensor,
    /// dL/dparam by parameter name.
    pub grads: Tensors,
    /// Per layer, how far its attention may be from exact softmax attention.
    pub attention_bounds: Vec<LayerBound>,
}

impl ModelGradients {
    /// The first NaN or infinity in y, grad.x, then every parameter's gradient (by name), as the
    /// error naming its tensor, flat index and value; Ok when every value is finite.
    pub fn check_finite(&self) -> crate::error::Result<()> {
        self.y.check_finite("y")?;
        self.grad_x.check_finite("grad.x")?;
        for (name, g) in &self.grads {
            g.check_finite(&format!("grad.{name}"))?;
        }
        Ok(())
    }
}

/// A forward pass read back layer by layer, for saying where a NaN or infinity came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardTrace {
    /// Per block, the largest |logit| any head can reach: max_a |q_a| max_b |k_b| / sqrt(d_qk)
    /// over each batch element and head, from the layer's certificate maxima.
    pub logit_bounds: Vec<f64>,
    /// The first activation, in the order of the forward pass, that holds a NaN or an
    /// infinity: its name ("blocks.L.what", or "y") and flat index.
    pub first_nonfinite: Option<(String, usize)>,
}

/// A forward pass whose activations stay on the device: from [`GpuModel::forward_keep`], for
/// [`GpuModel::backward`].
pub struct ForwardPass {
    state: ForwardState,
    dims: Dims,
    ops: OpSet,
    /// A language model's tokens and logits.
    lm: Option<LanguageModelPass>,
}

/// What a language model's pass keeps besides the blocks'.
struct LanguageModelPass {
    index: TokenIndex,
    /// The head's output, where the model has a head.
    logits: Option<GpuTensor>,
}

/// dL/dx and every parameter's gradient on the device, from [`GpuModel::backward`], with what
/// [`Self::read_back`] needs for the certificates.
pub struct DeviceGradients {
    grad_x: GpuTensor,
    grads: BTreeMap<String, GpuTensor>,
    y: GpuTensor,
    certificates: Vec<GpuTensor>,
    attentions: Vec<Attention>,
    decisions: Vec<Option<Decision>>,
    sampled: Vec<Option<PendingCheck>>,
    shape: AttentionShape,
    /// The loss, where the pass computed it (a built-in loss).
    loss: Option<f64>,
}

/// The whole forward pass, kept for the backward.
struct ForwardState {
    blocks: Vec<BlockState>,
    /// Each layer's attention, and why where it was chosen automatically.
    attentions: Vec<Attention>,
    decisions: Vec<Option<Decision>>,
    /// The last block's output, LN_f's input.
    x_last: GpuTensor,
    lnf_stats: GpuTensor,
    y: GpuTensor,
}

impl GpuModel {
    /// Uploads the parameters of `model` (already checked by [`Model::new`]).
    pub fn new(ctx: &GpuContext, model: &Model) -> Result<Self> {
        model.config().attention_kind()?;
        let mut params = BTreeMap::new();
        for (name, tensor) in model.params() {
            params.insert(
                name.clone(),
                GpuTensor::upload(ctx, name, &tensor.shape, &tensor.data)?,
            );
        }
        Ok(GpuModel {
            config: model.config().clone(),
            params,
        })
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Overwrites parameter `name` on the device with `value`, in place (no buffer is made):
    /// refused, naming the tensor, for a name the model lacks, another shape, or a NaN or
    /// infinity, and then nothing is written.
    pub fn write_param(&mut self, ctx: &GpuContext, name: &str, value: &HostTensor) -> Result<()> {
        self.checked_param(name, value)?.write(ctx, &value.data)
    }

    /// Overwrites every parameter `params` names (any subset of the model's), in place. All
    /// are checked before any is written, so a refused call changes nothing.
    pub fn write_params(&mut self, ctx: &GpuContext, params: &Tensors) -> Result<()> {
        let mut checked = Vec::with_capacity(params.len());
        for (name, value) in params {
            let tensor = self.checked_param(name, value)?;
            value.check_finite(name)?;
            checked.push((tensor, value));
        }
        for (tensor, value) in checked {
            tensor.write(ctx, &value.data)?;
        }
        Ok(())
    }

    /// Every parameter read back from the device, by name.
    pub fn read_params(&self, ctx: &GpuContext) -> Result<Tensors> {
        read_named(ctx, &self.params)
    }

    /// Parameter `name` on the device (None for a name the model lacks): for a caller that
    /// updates it with its own kernels.
    pub fn param_tensor(&self, name: &str) -> Option<&GpuTensor> {
        self.params.get(name)
    }

    /// The device tensor of parameter `name` if `value` has its shape.
    fn checked_param(&self, name: &str, value: &HostTensor) -> Result<&GpuTensor> {
        let tensor = self.params.get(name).ok_or_else(|| Error::MissingTensor {
            tensor: name.into(),
            context: "the model's parameters".into(),
        })?;
        if tensor.shape() != value.shape.as_slice() {
            return Err(Error::ShapeMismatch {
                tensor: name.into(),
                expected: tensor.shape().to_vec(),
                got: value.shape.clone(),
            });
        }
        Ok(tensor)
    }

    /// y = model(x) for x `[B, n, d_model]`.
    pub fn forward(&self, ctx: &GpuContext, x: &HostTensor) -> Result<HostTensor> {
        let (dims, mut ops, policy) = self.prepare(ctx, x)?;
        let state = self.forward_state(ctx, x, dims, &mut ops, &policy)?;
        download(ctx, &state.y)
    }

    /// Runs the forward pass and reads back every block's activations (slow: for diagnosing
    /// a result that is not finite).
    pub fn trace_forward(&self, ctx: &GpuContext, x: &HostTensor) -> Result<ForwardTrace> {
        let (dims, mut ops, policy) = self.prepare(ctx, x)?;
        let state = self.forward_state(ctx, x, dims, &mut ops, &policy)?;
        let mut trace = ForwardTrace {
            logit_bounds: Vec::new(),
            first_nonfinite: None,
        };
        for (l, block) in state.blocks.iter().enumerate() {
            let maxima = block.certificate.download(ctx)?;
            let heads = certificate::head_bounds(ops.shape(), &maxima);
            let bound = certificate::largest_logit_bound(&heads);
            trace.logit_bounds.push(bound);
            if trace.first_nonfinite.is_none() {
                for (what, t) in block.activations() {
                    if let Some(i) = t.download(ctx)?.iter().position(|v| !v.is_finite()) {
                        trace.first_nonfinite = Some((format!("blocks.{l}.{what}"), i));
                        break;
                    }
                }
            }
        }
        if trace.first_nonfinite.is_none() {
            let y = state.y.download(ctx)?;
            trace.first_nonfinite = y
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| ("y".to_string(), i));
        }
        Ok(trace)
    }

    /// One forward and backward pass: y, dL/dx and dL/dparam for every parameter, and each
    /// layer's certificate.
    pub fn gradients(
        &self,
        ctx: &GpuContext,
        x: &HostTensor,
        loss: &Loss,
    ) -> Result<ModelGradients> {
        self.gradients_checked(ctx, x, loss, ErrorChecks::default())
    }

    /// [`Self::gradients`] that also measures what `checks` asks for (the sampled check of
    /// polynomial attention), returned in each layer's [`LayerBound`].
    pub fn gradients_checked(
        &self,
        ctx: &GpuContext,
        x: &HostTensor,
        loss: &Loss,
        checks: ErrorChecks,
    ) -> Result<ModelGradients> {
        let (dims, mut ops, policy) = self.prepare_checked(ctx, x, checks)?;
        self.pass(ctx, (x, loss), (dims, checks), &mut ops, &policy)
    }

    /// One pass with automatic attention (see `model::auto`): each layer gets the cheapest
    /// attention that meets `auto`'s tolerance, decided from its own logits, and says why in
    /// its [`LayerBound`]. With `checks.sample_rows` of 0 only certificates decide (a layer
    /// with none gets exact attention); otherwise a layer chosen by its sampled o error has
    /// its dq measured in the backward, and where that misses the tolerance the pass runs
    /// again with the layer's next candidate (at most once per layer and degree).
    pub fn gradients_auto(
        &self,
        ctx: &GpuContext,
        x: &HostTensor,
        loss: &Loss,
        (auto, checks): (AutoAttention, ErrorChecks),
    ) -> Result<ModelGradients> {
        let (batch, seq_len) = self.config.check_input("x", x)?;
        let dims = Dims { batch, seq_len };
        let mut ops = self.auto_ops(ctx, dims, (&auto, checks))?;

        let mut floors = vec![0; self.config.n_layers];
        let mut missed: Vec<Vec<String>> = vec![Vec::new(); self.config.n_layers];
        loop {
            let policy = Policy::Auto {
                auto,
                floors: floors.clone(),
                checks,
            };
            let mut result = self.pass(ctx, (x, loss), (dims, checks), &mut ops, &policy)?;
            let misses = dq_misses(&result.attention_bounds, auto.tolerance());
            if misses.is_empty() {
                for (b, notes) in result.attention_bounds.iter_mut().zip(&missed) {
                    if let (Some(d), false) = (&mut b.decision, notes.is_empty()) {
                        d.reason =
                            format!("{} (in earlier passes: {})", d.reason, notes.join("; "));
                    }
                }
                return Ok(result);
            }
            for (layer, next_candidate, note) in misses {
                floors[layer] = next_candidate;
                missed[layer].push(note);
            }
        }
    }

    /// Forward, backward and readback of one pass whose ops and policy are set.
    fn pass(
        &self,
        ctx: &GpuContext,
        (x, loss): (&HostTensor, &Loss),
        (dims, checks): (Dims, ErrorChecks),
        ops: &mut OpSet,
        policy: &Policy,
    ) -> Result<ModelGradients> {
        let targets = check_upstream(&x.shape, loss)?;
        let state = self.forward_state(ctx, x, dims, ops, policy)?;
        let (loss_value, dy) = loss_gradient(ctx, &state.y, (loss, targets))?;
        let mut grads = self.backward_state(ctx, state, (dims, checks), ops, dy)?;
        grads.loss = loss_value;
        grads.read_back(ctx)
    }

    /// [`Self::backward`] from a loss of y: dL/dy given (`Loss::Vjp`), or formed from y for a
    /// built-in loss (cross-entropy on the device, mse on the host); the loss's value is kept
    /// with the gradients ([`DeviceGradients::loss`]).
    pub fn backward_loss(
        &self,
        ctx: &GpuContext,
        pass: ForwardPass,
        loss: &Loss,
    ) -> Result<DeviceGradients> {
        let targets = check_upstream(pass.y_tensor().shape(), loss)?;
        let (loss_value, d_out) = loss_gradient(ctx, pass.y_tensor(), (loss, targets))?;
        let ForwardPass {
            state,
            dims,
            ops,
            lm,
        } = pass;
        let grads = self.gradient_tensors(ctx)?;
        let head = self.head_matrix().filter(|_| lm.is_some());
        // The head is a linear layer without bias: dL/dy and its weight's gradient (written
        // into the embedding's when tied, which the embedding's backward then adds to).
        let dy = match head {
            Some((name, w)) => {
                let dy = GpuTensor::output(ctx, "dL/dy through the head", state.y.shape())?;
                let mut enc = ctx.encoder("backward of the output head");
                let dx = Some(InputGrad {
                    dx: &dy,
                    add: false,
                    activation: Activation::None,
                });
                linear_backward(ctx, &mut enc, (&state.y, w, &d_out), dx, &grads[name], None)?;
                ctx.submit("backward of the output head", enc)?;
                dy
            }
            None => d_out,
        };
        let checks = (dims, ErrorChecks::default());
        let mut grads = self.backward_into(ctx, state, checks, &ops, (dy, grads))?;
        grads.loss = loss_value;
        if let Some(lm) = lm {
            let mut enc = ctx.encoder("backward of the token embedding");
            let tied = head.is_some_and(|(name, _)| name == "tok_emb.weight");
            let tables = (
                (&grads.grads["tok_emb.weight"], tied),
                grads.grads.get("pos_emb.weight"),
            );
            embed_backward(ctx, &mut enc, &lm.index, &grads.grad_x, tables)?;
            ctx.submit("backward of the token embedding", enc)?;
            if let Some(logits) = lm.logits {
                grads.y = logits;
            }
        }
        Ok(grads)
    }

    /// The forward pass of x `[B, n, d_model]`, its activations kept on the device for
    /// [`Self::backward`]: the first half of [`Self::gradients`], for a caller that needs y
    /// (to form a loss of its own) before it has dL/dy.
    pub fn forward_keep(&self, ctx: &GpuContext, x: &HostTensor) -> Result<ForwardPass> {
        let (dims, mut ops, policy) = self.prepare(ctx, x)?;
        let state = self.forward_state(ctx, x, dims, &mut ops, &policy)?;
        Ok(ForwardPass {
            state,
            dims,
            ops,
            lm: None,
        })
    }

    /// [`Self::forward_keep`] of a language model (config `vocab_size`): the tokens embedded
    /// (and their positions added) on the device, the blocks, and the head's logits where the
    /// model has a head. The pass's output ([`ForwardPass::y`]) is the logits `[B, n,
    /// vocab_size]`, or y without a head.
    pub fn forward_keep_tokens(&self, ctx: &GpuContext, tokens: &Tokens) -> Result<ForwardPass> {
        self.config.check_tokens(tokens)?;
        let dims = Dims {
            batch: tokens.batch,
            seq_len: tokens.seq_len,
        };
        let (ops, policy) = self.prepare_dims(ctx, dims, ErrorChecks::default())?;
        self.forward_tokens_with(ctx, tokens, dims, (ops, policy))
    }

    /// [`Self::forward_keep_tokens`] with automatic attention decided from the certificates
    /// alone (see `model::auto`: each layer gets the lowest degree whose certified error meets
    /// `auto`'s tolerance, else exact attention), as the forward reaches each layer. Which
    /// attention each layer ran is in [`DeviceGradients::attentions`].
    pub fn forward_keep_tokens_auto(
        &self,
        ctx: &GpuContext,
        tokens: &Tokens,
        auto: AutoAttention,
    ) -> Result<ForwardPass> {
        self.config.check_tokens(tokens)?;
        let dims = Dims {
            batch: tokens.batch,
            seq_len: tokens.seq_len,
        };
        let ops = self.auto_ops(ctx, dims, (&auto, ErrorChecks::default()))?;
        let policy = Policy::Auto {
            auto,
            floors: vec![0; self.config.n_layers],
            checks: ErrorChecks::default(),
        };
        self.forward_tokens_with(ctx, tokens, dims, (ops, policy))
    }

    /// The ops automatic attention may choose among for `dims`, after refusing a pass whose
    /// largest candidate (and `checks`) the device or the machine cannot hold.
    fn auto_ops(
        &self,
        ctx: &GpuContext,
        dims: Dims,
        (auto, checks): (&AutoAttention, ErrorChecks),
    ) -> Result<OpSet> {
        let mut ops = OpSet::new(attention_shape(&self.config, dims));
        let footprint = with_check(auto_footprint(ctx, auto, &mut ops), ops.shape(), checks);
        MemoryEstimate::of(ctx, &self.config, dims, footprint).check(ctx, 0, true)?;
        Ok(ops)
    }

    /// The embedding, the blocks with `ops` and `policy`, and the head.
    fn forward_tokens_with(
        &self,
        ctx: &GpuContext,
        tokens: &Tokens,
        dims: Dims,
        (mut ops, policy): (OpSet, Policy),
    ) -> Result<ForwardPass> {
        let vocab = self.params["tok_emb.weight"].shape()[0];
        let index = TokenIndex::new(ctx, tokens, vocab)?;
        let x_shape = [dims.batch, dims.seq_len, self.config.d_model];
        let x = GpuTensor::output(ctx, "embedded tokens", &x_shape)?;
        let mut enc = ctx.encoder("token embedding");
        let tables = (
            &self.params["tok_emb.weight"],
            self.params.get("pos_emb.weight"),
        );
        embed_forward(ctx, &mut enc, &index, tables, &x)?;
        ctx.submit("token embedding", enc)?;
        let state = self.forward_from(ctx, x, dims, (&mut ops, &policy))?;
        let logits = match self.head_matrix() {
            Some((_, w)) => {
                let mut shape = state.y.shape().to_vec();
                *shape.last_mut().expect("y has a shape") = w.shape()[0];
                let logits = GpuTensor::output(ctx, "logits", &shape)?;
                let mut enc = ctx.encoder("output head");
                linear_forward(ctx, &mut enc, &state.y, w, None, &logits, false)?;
                ctx.submit("output head", enc)?;
                Some(logits)
            }
            None => None,
        };
        Ok(ForwardPass {
            state,
            dims,
            ops,
            lm: Some(LanguageModelPass { index, logits }),
        })
    }

    /// One forward and backward pass of a language model from `tokens`: the output (logits
    /// with a head) as y, the loss, dL/dx of the embedded input, and every parameter's
    /// gradient (the embedding, positions and head included), read back.
    pub fn gradients_tokens(
        &self,
        ctx: &GpuContext,
        tokens: &Tokens,
        loss: &Loss,
    ) -> Result<ModelGradients> {
        let pass = self.forward_keep_tokens(ctx, tokens)?;
        self.backward_loss(ctx, pass, loss)?.read_back(ctx)
    }

    /// The head's parameter name and matrix `[vocab, d_model]`, where the model has a head.
    fn head_matrix(&self) -> Option<(&'static str, &GpuTensor)> {
        let name = match self.config.head? {
            HeadKind::Tied => "tok_emb.weight",
            HeadKind::Separate => "head.weight",
        };
        Some((name, &self.params[name]))
    }

    /// The backward pass from `pass` given dL/dy `[B, n, d_model]`: dL/dx and every parameter's
    /// gradient, left on the device (read them back with [`DeviceGradients::read_back`], or
    /// use them there). The pass's activations are freed. The same kernels in the same order
    /// as [`Self::gradients`], so the same gradients bit for bit.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        pass: ForwardPass,
        dy: &HostTensor,
    ) -> Result<DeviceGradients> {
        self.backward_loss(ctx, pass, &Loss::Vjp(dy.clone()))
    }

    /// The memory a pass of `config` over an input of `batch` x `seq_len` needs on `ctx`,
    /// before anything of it (the parameters included) is allocated.
    /// [`MemoryEstimate::check`] compares it with the device and the machine.
    pub fn memory_estimate(
        ctx: &GpuContext,
        config: &ModelConfig,
        batch: usize,
        seq_len: usize,
    ) -> Result<MemoryEstimate> {
        let attention = attention_op(ctx, config, batch, seq_len)?;
        let dims = Dims { batch, seq_len };
        Ok(MemoryEstimate::of(
            ctx,
            config,
            dims,
            attention.footprint(ctx),
        ))
    }

    /// Checks x, builds the attention for its shape, and refuses a pass the device or the
    /// machine cannot hold before allocating any of it.
    fn prepare(&self, ctx: &GpuContext, x: &HostTensor) -> Result<(Dims, OpSet, Policy)> {
        self.prepare_checked(ctx, x, ErrorChecks::default())
    }

    /// [`Self::prepare`] for a pass that also runs `checks`.
    fn prepare_checked(
        &self,
        ctx: &GpuContext,
        x: &HostTensor,
        checks: ErrorChecks,
    ) -> Result<(Dims, OpSet, Policy)> {
        let (batch, seq_len) = self.config.check_input("x", x)?;
        let dims = Dims { batch, seq_len };
        let (ops, policy) = self.prepare_dims(ctx, dims, checks)?;
        Ok((dims, ops, policy))
    }

    /// [`Self::prepare_checked`] for an input of `dims` already checked.
    fn prepare_dims(
        &self,
        ctx: &GpuContext,
        dims: Dims,
        checks: ErrorChecks,
    ) -> Result<(OpSet, Policy)> {
        let Dims { batch, seq_len } = dims;
        let attention = attention_op(ctx, &self.config, batch, seq_len)?;
        let mut footprint = attention.footprint(ctx);
        if let AttentionOp::Poly(_) = &attention {
            footprint = with_check(footprint, attention.shape(), checks);
        }
        let estimate = MemoryEstimate::of(ctx, &self.config, dims, footprint);
        estimate.check(ctx, 0, true)?;
        let kind = self.config.attention_kind()?;
        Ok((OpSet::of(attention, kind), Policy::Fixed(kind)))
    }

    fn final_ln(&self) -> LayerNormParams<'_> {
        LayerNormParams {
            weight: &self.params["ln_f.weight"],
            bias: &self.params["ln_f.bias"],
            eps: self.config().ln_eps,
        }
    }

    fn block<'a>(&'a self, ctx: &'a GpuContext, layer: usize, dims: Dims) -> BlockPass<'a> {
        BlockPass {
            ctx,
            config: self.config(),
            params: &self.params,
            layer,
            dims,
        }
    }

    fn forward_state(
        &self,
        ctx: &GpuContext,
        x: &HostTensor,
        dims: Dims,
        ops: &mut OpSet,
        policy: &Policy,
    ) -> Result<ForwardState> {
        let h = GpuTensor::upload(ctx, "x", &x.shape, &x.data)?;
        self.forward_from(ctx, h, dims, (ops, policy))
    }

    /// The forward pass from the first block's input, already on the device.
    fn forward_from(
        &self,
        ctx: &GpuContext,
        mut h: GpuTensor,
        dims: Dims,
        (ops, policy): (&mut OpSet, &Policy),
    ) -> Result<ForwardState> {
        let shape = h.shape().to_vec();
        let mut blocks = Vec::new();
        let mut attentions = Vec::new();
        let mut decisions = Vec::new();
        for l in 0..self.config().n_layers {
            let block = self.block(ctx, l, dims);
            let stage = block.forward_qkv(h, ops.shape())?;
            let (attention, saved, decision) = match policy {
                Policy::Fixed(attention) => (*attention, None, None),
                Policy::Auto {
                    auto,
                    floors,
                    checks,
                } => {
                    let maxima = stage.certificate.download(ctx)?;
                    let heads = certificate::head_bounds(ops.shape(), &maxima);
                    let rows = checks.layer_rows(l, dims.seq_len);
                    let inputs = LayerInputs {
                        heads: &heads,
                        qkv: stage.qkv(),
                        rows: rows.as_deref(),
                    };
                    let (decision, saved) = auto::decide(ctx, auto, ops, inputs, floors[l])?;
                    (decision.attention, saved, Some(decision))
                }
            };
            let op = ops.get(ctx, attention)?;
            let (state, next) = block.forward_rest(stage, op, saved)?;
            blocks.push(state);
            attentions.push(attention);
            decisions.push(decision);
            h = next;
        }
        let mut encoder = ctx.encoder("final LayerNorm");
        let y = GpuTensor::output(ctx, "y", &shape)?;
        let lnf_stats = layer_norm_forward(ctx, &mut encoder, &h, self.final_ln(), &y)?;
        ctx.submit("final LayerNorm", encoder)?;
        Ok(ForwardState {
            blocks,
            attentions,
            decisions,
            x_last: h,
            lnf_stats,
            y,
        })
    }

    /// dL/dx and the parameter gradients (on the GPU) given dy, and each layer's sampled
    /// check where `checks` asks for one. Consumes the forward state: its activations are
    /// freed, what the readback needs is kept.
    fn backward_state(
        &self,
        ctx: &GpuContext,
        state: ForwardState,
        (dims, checks): (Dims, ErrorChecks),
        ops: &OpSet,
        dy: GpuTensor,
    ) -> Result<DeviceGradients> {
        self.backward_into(
            ctx,
            state,
            (dims, checks),
            ops,
            (dy, self.gradient_tensors(ctx)?),
        )
    }

    /// A gradient tensor for every parameter, by name.
    fn gradient_tensors(&self, ctx: &GpuContext) -> Result<BTreeMap<String, GpuTensor>> {
        let mut grads = BTreeMap::new();
        for (name, shape) in self.config().parameter_shapes() {
            let g = GpuTensor::output(ctx, &format!("grad.{name}"), &shape)?;
            grads.insert(name, g);
        }
        Ok(grads)
    }

    /// [`Self::backward_state`] into gradient tensors already made (a language model's head
    /// has written its own).
    fn backward_into(
        &self,
        ctx: &GpuContext,
        state: ForwardState,
        (dims, checks): (Dims, ErrorChecks),
        ops: &OpSet,
        (dy, grads): (GpuTensor, BTreeMap<String, GpuTensor>),
    ) -> Result<DeviceGradients> {
        let mut enc = ctx.encoder("backward of the final LayerNorm");
        let mut d = GpuTensor::output(ctx, "grad of the last block's output", dy.shape())?;
        layer_norm_backward(
            ctx,
            &mut enc,
            (&state.x_last, &state.lnf_stats, &dy),
            self.final_ln(),
            LayerNormGrads {
                dx: &d,
                add_into_dx: false,
                d_weight: &grads["ln_f.weight"],
                d_bias: &grads["ln_f.bias"],
            },
        )?;
        ctx.submit("backward of the final LayerNorm", enc)?;
        let mut sampled: Vec<Option<PendingCheck>> = Vec::new();
        for (l, block) in state.blocks.iter().enumerate().rev() {
            let rows = checks.layer_rows(l, dims.seq_len);
            let upstream = (&d, rows.as_deref());
            let attention = ops.built(state.attentions[l]);
            let (d_in, check) = self
                .block(ctx, l, dims)
                .backward(block, attention, upstream, &grads)?;
            d = d_in;
            sampled.push(check);
        }
        sampled.reverse();
        Ok(DeviceGradients {
            grad_x: d,
            grads,
            y: state.y,
            certificates: (state.blocks.into_iter())
                .map(|b| b.into_certificate())
                .collect(),
            attentions: state.attentions,
            decisions: state.decisions,
            sampled,
            shape: *ops.shape(),
            loss: None,
        })
    }
}

/// How a pass gives each layer its attention.
enum Policy {
    /// The same for every layer.
    Fixed(Attention),
    /// Chosen per layer as the pass reaches it, skipping the first `floors[l]` candidates of
    /// layer l; `checks` gives the rows a sampled decision measures.
    Auto {
        auto: AutoAttention,
        floors: Vec<usize>,
        checks: ErrorChecks,
    },
}

/// The most any candidate of `auto` (every degree that fits, and exact attention) needs.
fn auto_footprint(ctx: &GpuContext, auto: &AutoAttention, ops: &mut OpSet) -> AttentionFootprint {
    let mut footprint = AttentionFootprint::default();
    let kinds = auto.degrees().map(|degree| Attention::Poly { degree });
    for attention in kinds.chain([Attention::Exact]) {
        // A degree that does not fit is no candidate (auto::decide says so per layer).
        if let Ok(op) = ops.get(ctx, attention) {
            footprint = footprint.max(op.footprint(ctx));
        }
    }
    footprint
}

/// The layers chosen on their sampled o error whose dq, measured in the backward, missed the
/// tolerance: (layer, the candidate to start from in the next pass, a note saying so).
fn dq_misses(bounds: &[LayerBound], tolerance: f64) -> Vec<(usize, usize, String)> {
    let mut misses = Vec::new();
    for b in bounds {
        let candidate = b.decision.as_ref().and_then(|d| d.sampled_candidate);
        let dq = b.sampled.and_then(|s| s.dq_rel_err);
        if let (Some(i), Some(dq)) = (candidate, dq) {
            if dq.is_nan() || dq > tolerance {
                let note = format!(
                    "{}'s sampled dq error {dq:.2e} missed the tolerance",
                    b.attention
                );
                misses.push((b.layer, i + 1, note));
            }
        }
    }
    misses
}

/// `footprint` with that of the sampled check `checks` asks for added.
fn with_check(
    mut footprint: AttentionFootprint,
    shape: &AttentionShape,
    checks: ErrorChecks,
) -> AttentionFootprint {
    if let Some(rows) = checks.layer_rows(0, shape.seq_len) {
        let check = sampled_check::footprint(shape, rows.len());
        footprint.saved += check.kept;
        footprint.backward_scratch += check.scratch;
        footprint.largest = footprint.largest.max(check.largest);
    }
    footprint
}

/// The config's attention for an input of `batch` x `seq_len`.
fn attention_op(
    ctx: &GpuContext,
    c: &ModelConfig,
    batch: usize,
    seq_len: usize,
) -> Result<AttentionOp> {
    let shape = attention_shape(c, Dims { batch, seq_len });
    AttentionOp::new(ctx, c.attention_kind()?, shape)
}

/// Refuses a `dy` or `target` whose shape is not y's (`shape`), or which holds a NaN or
/// infinity, and cross-entropy targets that are not one class per row of y; returns the
/// cross-entropy's targets checked, for [`loss_gradient`].
fn check_upstream(shape: &[usize], loss: &Loss) -> Result<Option<Targets>> {
    if let Loss::CrossEntropy {
        targets,
        ignore_index,
    } = loss
    {
        let (classes, rows) = shape.split_last().expect("y has a shape");
        let checked = Targets::new(targets, *ignore_index, rows.iter().product(), *classes)?;
        return Ok(Some(checked));
    }
    let upstream = loss.tensor().expect("every other loss is given a tensor");
    if upstream.shape != shape {
        return Err(Error::ShapeMismatch {
            tensor: loss.tensor_name().into(),
            expected: shape.to_vec(),
            got: upstream.shape.clone(),
        });
    }
    upstream.check_finite(loss.tensor_name())?;
    Ok(None)
}

/// The loss's value (for a built-in loss) and dL/dy on the device, from y (already checked
/// against the loss by [`check_upstream`], which gave `targets` for cross-entropy).
fn loss_gradient(
    ctx: &GpuContext,
    y: &GpuTensor,
    (loss, targets): (&Loss, Option<Targets>),
) -> Result<(Option<f64>, GpuTensor)> {
    let upload = |dy: &[f32]| GpuTensor::upload(ctx, "dy", y.shape(), dy);
    match (loss, targets) {
        (_, Some(targets)) => {
            let (value, dy) = cross_entropy(ctx, y, &targets)?;
            Ok((Some(value), dy))
        }
        // Given: no readback before the backward.
        (Loss::Vjp(dy), None) => Ok((None, upload(&dy.data)?)),
        (Loss::Mse(target), None) => {
            let (value, dy) = Loss::mse(target, &y.download(ctx)?);
            Ok((Some(value), upload(&dy)?))
        }
        (Loss::CrossEntropy { .. }, None) => unreachable!("check_upstream checks the targets"),
    }
}

impl ForwardPass {
    /// The pass's output on the device: y, or a language model's logits.
    pub fn y_tensor(&self) -> &GpuTensor {
        match &self.lm {
            Some(LanguageModelPass {
                logits: Some(logits),
                ..
            }) => logits,
            _ => &self.state.y,
        }
    }

    /// The pass's output read back.
    pub fn y(&self, ctx: &GpuContext) -> Result<HostTensor> {
        download(ctx, self.y_tensor())
    }
}

impl DeviceGradients {
    /// dL/dx on the device.
    pub fn grad_x(&self) -> &GpuTensor {
        &self.grad_x
    }

    /// dL/dparam of the parameter `name` on the device, None for a name the model lacks.
    pub fn grad(&self, name: &str) -> Option<&GpuTensor> {
        self.grads.get(name)
    }

    /// Every parameter's gradient on the device, by name.
    pub fn grads(&self) -> &BTreeMap<String, GpuTensor> {
        &self.grads
    }

    /// The loss's value, where the backward formed dL/dy from a built-in loss.
    pub fn loss(&self) -> Option<f64> {
        self.loss
    }

    /// The attention each layer ran, in layer order.
    pub fn attentions(&self) -> &[Attention] {
        &self.attentions
    }

    /// y, every gradient, each layer's certificate and sampled check, in one readback.
    pub fn read_back(&self, ctx: &GpuContext) -> Result<ModelGradients> {
        let mut wanted = vec![&self.y, &self.grad_x];
        wanted.extend(self.grads.values());
        wanted.extend(&self.certificates);
        wanted.extend(self.sampled.iter().flatten().flat_map(|c| c.outputs()));
        let mut values = GpuTensor::download_all(ctx, &wanted)?.into_iter();
        let mut host = |t: &GpuTensor| HostTensor {
            shape: t.shape().to_vec(),
            data: values
                .next()
                .expect("download_all returns one vector per tensor"),
        };
        Ok(ModelGradients {
            y: host(&self.y),
            loss: self.loss,
            grad_x: host(&self.grad_x),
            grads: (self.grads.iter())
                .map(|(name, g)| (name.clone(), host(g)))
                .collect(),
            attention_bounds: {
                let heads: Vec<_> = (self.certificates.iter())
                    .map(|c| certificate::head_bounds(&self.shape, &host(c).data))
                    .collect();
                let measured = self.sampled.iter().map(|check| {
                    check.as_ref().map(|c| {
                        let [combined, picked] = c.outputs().map(|t| host(t).data);
                        c.finish(&combined, &picked)
                    })
                });
                let chosen = self.attentions.iter().zip(&self.decisions);
                (heads.into_iter().zip(measured).zip(chosen).enumerate())
                    .map(|(l, ((heads, measured), (&attention, decision)))| {
                        LayerBound::of(l, heads, attention, measured).decided(decision.clone())
                    })
                    .collect()
            },
        })
    }
}

/// Device tensors read back in one readback, by the same names.
pub(crate) fn read_named(ctx: &GpuContext, set: &BTreeMap<String, GpuTensor>) -> Result<Tensors> {
    let tensors: Vec<&GpuTensor> = set.values().collect();
    let values = GpuTensor::download_all(ctx, &tensors)?;
    Ok((set.iter().zip(values))
        .map(|((name, t), data)| {
            let shape = t.shape().to_vec();
            (name.clone(), HostTensor { shape, data })
        })
        .collect())
}

fn download(ctx: &GpuContext, t: &GpuTensor) -> Result<HostTensor> {
    Ok(HostTensor {
        shape: t.shape().to_vec(),
        data: t.download(ctx)?,
    })
}
