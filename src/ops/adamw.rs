//! Host side of shaders/adamw.wgsl: AdamW with its state on the device. One step reads the
//! gradients where [`GpuModel::backward`] left them, clips them by their global norm, and
//! updates every parameter in place; nothing crosses to the host.
//!
//! Weight decay applies to matrices (the linear layers' weights), not to biases or LayerNorm
//! parameters, as GPT-2 and nanoGPT train (rank 2 and above decayed, rank 1 not).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::{GpuContext, GpuTensor};
use crate::model::{read_named, DeviceGradients, GpuModel, Tensors};

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct AdamWParams as "Params" {
        len: u32,
        offset: u32,
        span: u32,
        flags: u32,
        beta1: f32,
        beta2: f32,
        one_minus_beta1: f32,
        one_minus_beta2: f32,
        eps: f32,
        decay: f32,
        step_size: f32,
        sqrt_bc2: f32,
        max_norm: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

const CLIP: u32 = 1;

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const GRAD: BindingDecl = BindingDecl::new("grad", 1, Access::Read, Elem::F32);
const M: BindingDecl = BindingDecl::new("m", 2, Access::ReadWrite, Elem::F32);
const V: BindingDecl = BindingDecl::new("v", 3, Access::ReadWrite, Elem::F32);
const P: BindingDecl = BindingDecl::new("p", 4, Access::ReadWrite, Elem::F32);
const PARTIALS: BindingDecl = BindingDecl::new("partials", 5, Access::ReadWrite, Elem::F32);
const NORM: BindingDecl = BindingDecl::new("norm", 6, Access::ReadWrite, Elem::F32);

/// Partial sums of the gradients' squares.
pub const SQUARE_SUMS: Kernel = Kernel {
    shader: "adamw.wgsl",
    entry: "square_sums",
    bindings: &[PARAMS, GRAD, PARTIALS],
    params: AdamWParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &[],
    needs: Needs::Core,
};

/// The global norm and the clipping factor from the partial sums.
pub const TOTAL_NORM: Kernel = Kernel {
    entry: "total_norm",
    bindings: &[PARAMS, PARTIALS, NORM],
    workgroup: Workgroup::Fixed([1, 1, 1]),
    ..SQUARE_SUMS
};

/// One tensor's AdamW update.
pub const UPDATE: Kernel = Kernel {
    entry: "update",
    bindings: &[PARAMS, GRAD, M, V, P, NORM],
    ..SQUARE_SUMS
};

/// The most elements one invocation of square_sums sums, and the most partials total_norm sums
/// (llvmpipe ends an invocation's loops after 65535 iterations in all).
const MAX_LOOP: usize = 60_000;
/// Elements per partial sum, unless the model needs longer spans to keep the partials under
/// [`MAX_LOOP`].
const SPAN: usize = 1024;

/// AdamW's settings (Loshchilov and Hutter's decoupled weight decay, PyTorch's formulas).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the second moment's root.
    pub eps: f64,
    /// Decoupled weight decay of matrices: p <- p (1 - lr weight_decay) each step.
    pub weight_decay: f64,
    /// Scale the gradients so that their global L2 norm is at most this (None: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamW {
    /// lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 (PyTorch's defaults), clipping
    /// at a global norm of 1.
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
        }
    }
}

impl AdamW {
    /// Refuses a setting outside its range, naming it.
    pub fn check(&self) -> Result<()> {
        let bad = |option: &str, message: &str| {
            Err(Error::Option {
                option: format!("AdamW {option}"),
                message: message.into(),
            })
        };
        let finite = |x: f64| x.is_finite();
        if !finite(self.lr) || self.lr < 0.0 {
            return bad("lr", &format!("{} is not a finite value >= 0", self.lr));
        }
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return bad(name, &format!("{beta} is not in [0, 1)"));
            }
        }
        if !finite(self.eps) || self.eps <= 0.0 {
            return bad("eps", &format!("{} is not a finite value > 0", self.eps));
        }
        if !finite(self.weight_decay) || self.weight_decay < 0.0 {
            let wd = self.weight_decay;
            return bad("weight_decay", &format!("{wd} is not a finite value >= 0"));
        }
        if let Some(norm) = self.max_grad_norm {
            if !finite(norm) || norm <= 0.0 {
                return bad(
                    "max_grad_norm",
                    &format!("{norm} is not a finite value > 0"),
                );
            }
        }
        Ok(())
    }

    /// Whether the parameter of this shape is decayed: matrices, not vectors.
    pub fn decays(shape: &[usize]) -> bool {
        shape.len() >= 2
    }
}

/// AdamW's state on the device: both moments of every parameter and the step count. Made for
/// one model; its steps update that model's parameters in place.
pub struct AdamWState {
    m: BTreeMap<String, GpuTensor>,
    v: BTreeMap<String, GpuTensor>,
    steps: u64,
    /// Partial sums of squares of the gradients, then [norm, clipping factor].
    partials: GpuTensor,
    norm: GpuTensor,
    span: usize,
}

impl AdamWState {
    /// Zero moments for every parameter of `model`, step 0.
    pub fn new(ctx: &GpuContext, model: &GpuModel) -> Result<Self> {
        let shapes = model.config().parameter_shapes();
        let total: usize = shapes
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        let span = SPAN.max(total.div_ceil(MAX_LOOP - shapes.len()));
        let partial_count: usize = shapes
            .iter()
            .map(|(_, s)| s.iter().product::<usize>().div_ceil(span))
            .sum();
        let zeros = |prefix: &str| -> Result<BTreeMap<String, GpuTensor>> {
            shapes
                .iter()
                .map(|(name, shape)| {
                    let len = shape.iter().product();
                    let t = GpuTensor::upload(
                        ctx,
                        &format!("{prefix}.{name}"),
                        shape,
                        &vec![0.0; len],
                    )?;
                    Ok((name.clone(), t))
                })
                .collect()
        };
        Ok(AdamWState {
            m: zeros("adamw.m")?,
            v: zeros("adamw.v")?,
            steps: 0,
            partials: GpuTensor::output(ctx, "adamw partial sums", &[partial_count.max(1)])?,
            norm: GpuTensor::output(ctx, "adamw norm", &[2])?,
            span,
        })
    }

    /// The state of a run resumed after `steps` steps with moments `m` and `v` (as
    /// [`Self::moments`] read them): every parameter of `model` must have both, of its shape.
    pub fn restore(
        ctx: &GpuContext,
        model: &GpuModel,
        (m, v): (&Tensors, &Tensors),
        steps: u64,
    ) -> Result<Self> {
        let state = Self::new(ctx, model)?;
        for (set, given, what) in [(&state.m, m, "first"), (&state.v, v, "second")] {
            for (name, tensor) in set {
                let value = given.get(name).ok_or_else(|| Error::MissingTensor {
                    tensor: name.clone(),
                    context: format!("AdamW's {what} moments"),
                })?;
                if value.shape != tensor.shape() {
                    return Err(Error::ShapeMismatch {
                        tensor: format!("AdamW's {what} moment of {name}"),
                        expected: tensor.shape().to_vec(),
                        got: value.shape.clone(),
                    });
                }
                tensor.write(ctx, &value.data)?;
            }
        }
        Ok(AdamWState { steps, ..state })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One AdamW step: every parameter of `model` updated in place from `grads` (of a pass of
    /// the same model), clipped first where `opt` asks. Submitted, not waited for.
    pub fn step(
        &mut self,
        ctx: &GpuContext,
        opt: &AdamW,
        model: &mut GpuModel,
        grads: &DeviceGradients,
    ) -> Result<()> {
        opt.check()?;
        let mut enc = ctx.encoder("AdamW step");
        if let Some(max_norm) = opt.max_grad_norm {
            self.record_norm(ctx, &mut enc, grads, max_norm as f32)?;
        }
        let t = self.steps as f64 + 1.0;
        let base = AdamWParams {
            flags: if opt.max_grad_norm.is_some() { CLIP } else { 0 },
            beta1: opt.beta1 as f32,
            beta2: opt.beta2 as f32,
            one_minus_beta1: (1.0 - opt.beta1) as f32,
            one_minus_beta2: (1.0 - opt.beta2) as f32,
            eps: opt.eps as f32,
            step_size: (opt.lr / (1.0 - opt.beta1.powf(t))) as f32,
            sqrt_bc2: (1.0 - opt.beta2.powf(t)).sqrt() as f32,
            ..Default::default()
        };
        for (name, m) in &self.m {
            let (g, p) = (gradient(grads, name)?, parameter(model, name)?);
            for t in [g, p] {
                if t.shape() != m.shape() {
                    return Err(Error::ShapeMismatch {
                        tensor: t.name().into(),
                        expected: m.shape().to_vec(),
                        got: t.shape().to_vec(),
                    });
                }
            }
            let decay = if AdamW::decays(p.shape()) {
                1.0 - opt.lr * opt.weight_decay
            } else {
                1.0
            };
            let params = AdamWParams {
                len: p.len() as u32,
                decay: decay as f32,
                ..base
            };
            let buffers = [
                (GRAD.name, &g.buffer),
                (M.name, &m.buffer),
                (V.name, &self.v[name].buffer),
                (P.name, &p.buffer),
                (NORM.name, &self.norm.buffer),
            ];
            ctx.run(
                &mut enc,
                &UPDATE,
                &[],
                &params,
                &buffers,
                Grid::Invocations(p.len() as u64),
            )?;
        }
        ctx.submit("AdamW step", enc)?;
        self.steps += 1;
        Ok(())
    }

    /// The global norm of the gradients the last clipped step saw (reads the device).
    pub fn last_grad_norm(&self, ctx: &GpuContext) -> Result<f64> {
        Ok(self.norm.download(ctx)?[0] as f64)
    }

    /// Both moments read back, by parameter name: (first, second).
    pub fn moments(&self, ctx: &GpuContext) -> Result<(Tensors, Tensors)> {
        Ok((read_named(ctx, &self.m)?, read_named(ctx, &self.v)?))
    }

    /// The partial sums of every gradient's squares, then their total and clipping factor.
    fn record_norm(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        grads: &DeviceGradients,
        max_norm: f32,
    ) -> Result<()> {
        let mut offset = 0;
        for name in self.m.keys() {
            let g = gradient(grads, name)?;
            let partials = g.len().div_ceil(self.span);
            let params = AdamWParams {
                len: g.len() as u32,
                offset: offset as u32,
                span: self.span as u32,
                ..Default::default()
            };
            let buffers = [
                (GRAD.name, &g.buffer),
                (PARTIALS.name, &self.partials.buffer),
            ];
            ctx.run(
                enc,
                &SQUARE_SUMS,
                &[],
                &params,
                &buffers,
                Grid::Invocations(partials as u64),
            )?;
            offset += partials;
        }
        let params = AdamWParams {
            offset: offset as u32,
            max_norm,
            ..Default::default()
        };
        let buffers = [
            (PARTIALS.name, &self.partials.buffer),
            (NORM.name, &self.norm.buffer),
        ];
        ctx.run(
            enc,
            &TOTAL_NORM,
            &[],
            &params,
            &buffers,
            Grid::Workgroups(1),
        )
    }
}

fn gradient<'g>(grads: &'g DeviceGradients, name: &str) -> Result<&'g GpuTensor> {
    grads.grad(name).ok_or_else(|| Error::MissingTensor {
        tensor: format!("grad.{name}"),
        context: "the gradients given to AdamW".into(),
    })
}

fn parameter<'p>(model: &'p GpuModel, name: &str) -> Result<&'p GpuTensor> {
    model
        .param_tensor(name)
        .ok_or_else(|| Error::MissingTensor {
            tensor: name.into(),
            context: "the model given to AdamW".into(),
        })
}
