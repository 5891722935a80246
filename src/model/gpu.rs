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
use crate::ops::layer_norm::{
    layer_norm_backward, layer_norm_forward, LayerNormGrads, LayerNormParams,
};
use crate::ops::sampled_check::{self, PendingCheck};
use crate::ops::{AttentionFootprint, AttentionOp};

use super::auto::{self, AutoAttention, Decision, LayerInputs, OpSet};
use super::block::{attention_shape, BlockPass, BlockState, Dims};
use super::memory::MemoryEstimate;
use super::{ErrorChecks, HostTensor, LayerBound, Loss, Model, ModelConfig, Tensors};

/// A model's parameters on the GPU, ready for any number of forward and backward passes.
pub struct GpuModel {
    config: ModelConfig,
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

    pub fn config(&self) -> &ModelConfig {
        &self.config
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
        let mut ops = OpSet::new(attention_shape(&self.config, dims));
        let footprint = with_check(auto_footprint(ctx, &auto, &mut ops), ops.shape(), checks);
        MemoryEstimate::of(ctx, &self.config, dims, footprint).check(ctx, 0, true)?;

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
        check_upstream(x, loss)?;
        let state = self.forward_state(ctx, x, dims, ops, policy)?;
        // dL/dy: given (no readback before the backward), or from y for a built-in loss.
        let (loss_value, dy) = match loss {
            Loss::Vjp(dy) => (None, dy.data.clone()),
            Loss::Mse(target) => {
                let (value, dy) = Loss::mse(target, &state.y.download(ctx)?);
                (Some(value), dy)
            }
        };
        let dy = GpuTensor::upload(ctx, "dy", &x.shape, &dy)?;
        let (grad_x, grads, sampled) = self.backward(ctx, &state, (dims, checks), ops, dy)?;
        let results = (&grad_x, &grads, loss_value);
        read_back(ctx, (&state, &sampled), results, ops.shape())
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
        let attention = attention_op(ctx, &self.config, batch, seq_len)?;
        let dims = Dims { batch, seq_len };
        let mut footprint = attention.footprint(ctx);
        if let AttentionOp::Poly(_) = &attention {
            footprint = with_check(footprint, attention.shape(), checks);
        }
        let estimate = MemoryEstimate::of(ctx, &self.config, dims, footprint);
        estimate.check(ctx, 0, true)?;
        let kind = self.config.attention_kind()?;
        Ok((dims, OpSet::of(attention, kind), Policy::Fixed(kind)))
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
        let mut h = GpuTensor::upload(ctx, "x", &x.shape, &x.data)?;
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
        let y = GpuTensor::output(ctx, "y", &x.shape)?;
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
    /// check where `checks` asks for one.
    fn backward(
        &self,
        ctx: &GpuContext,
        state: &ForwardState,
        (dims, checks): (Dims, ErrorChecks),
        ops: &OpSet,
        dy: GpuTensor,
    ) -> Result<Backward> {
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
        Ok((d, grads, sampled))
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

/// Refuses a `dy` or `target` whose shape is not x's, or which holds a NaN or infinity.
fn check_upstream(x: &HostTensor, loss: &Loss) -> Result<()> {
    let upstream = loss.tensor();
    if upstream.shape != x.shape {
        return Err(Error::ShapeMismatch {
            tensor: loss.tensor_name().into(),
            expected: x.shape.clone(),
            got: upstream.shape.clone(),
        });
    }
    upstream.check_finite(loss.tensor_name())
}

/// dL/dx, the parameter gradients by name, and each layer's sampled check (if any), on the GPU.
type Backward = (
    GpuTensor,
    BTreeMap<String, GpuTensor>,
    Vec<Option<PendingCheck>>,
);

/// y, every gradient, each layer's certificate and sampled check, in one readback.
fn read_back(
    ctx: &GpuContext,
    (state, sampled): (&ForwardState, &[Option<PendingCheck>]),
    (grad_x, grads, loss): (&GpuTensor, &BTreeMap<String, GpuTensor>, Option<f64>),
    shape: &AttentionShape,
) -> Result<ModelGradients> {
    let mut wanted = vec![&state.y, grad_x];
    wanted.extend(grads.values());
    wanted.extend(state.blocks.iter().map(|b| &b.certificate));
    wanted.extend(sampled.iter().flatten().flat_map(|c| c.outputs()));
    let mut values = GpuTensor::download_all(ctx, &wanted)?.into_iter();
    let mut host = |t: &GpuTensor| HostTensor {
        shape: t.shape().to_vec(),
        data: values
            .next()
            .expect("download_all returns one vector per tensor"),
    };
    Ok(ModelGradients {
        y: host(&state.y),
        loss,
        grad_x: host(grad_x),
        grads: grads
            .iter()
            .map(|(name, g)| (name.clone(), host(g)))
            .collect(),
        attention_bounds: {
            let heads: Vec<_> = (state.blocks.iter())
                .map(|b| certificate::head_bounds(shape, &host(&b.certificate).data))
                .collect();
            let measured = sampled.iter().map(|check| {
                check.as_ref().map(|c| {
                    let [combined, picked] = c.outputs().map(|t| host(t).data);
                    c.finish(&combined, &picked)
                })
            });
            let chosen = state.attentions.iter().zip(&state.decisions);
            (heads.into_iter().zip(measured).zip(chosen).enumerate())
                .map(|(l, ((heads, measured), (&attention, decision)))| {
                    LayerBound::of(l, heads, attention, measured).decided(decision.clone())
                })
                .collect()
        },
    })
}

fn download(ctx: &GpuContext, t: &GpuTensor) -> Result<HostTensor> {
    Ok(HostTensor {
        shape: t.shape().to_vec(),
        data: t.download(ctx)?,
    })
}
