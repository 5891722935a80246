//! Timing of attention and whole-model forward + backward, shared by `polygrad bench` and the criterion bench.
//! Wall time with the GPU synchronised after each iteration, after a warm-up iteration that
//! compiles the pipelines; two input sets alternate so no cache sees the same data twice.

use std::time::{Duration, Instant};

use crate::attention::{Attention, AttentionShape};
use crate::error::Result;
use crate::gpu::profile::Profile;
use crate::gpu::{GpuContext, GpuTensor};
use crate::model::{ErrorChecks, GpuModel, HostTensor, Loss, Model, ModelConfig};
use crate::ops::matmul::{
    direct_fits, Activation, Epilogue, Layout, Matmul, Shape, Triangles, Variant,
};
use crate::ops::{upload_inputs, AttentionInputs, AttentionOp};
use crate::validate::{random_attention_inputs, random_model_input};
use rand::{Rng, SeedableRng};

/// The shape of the attention benchmark: one head, d_qk = 16, d_v = 64, causal.
pub fn benchmark_shape(seq_len: usize) -> AttentionShape {
    AttentionShape {
        batch: 1,
        heads: 1,
        seq_len,
        d_qk: 16,
        d_v: 64,
        causal: true,
    }
}

/// A prepared forward + backward on the GPU: the op and two uploaded input sets.
pub struct AttentionRun {
    op: AttentionOp,
    inputs: Vec<(GpuTensor, GpuTensor, GpuTensor, GpuTensor)>,
    next: usize,
}

impl AttentionRun {
    /// Inputs for one attention call of `shape`, uploaded, and the op built.
    pub fn new(ctx: &GpuContext, attention: Attention, shape: AttentionShape) -> Result<Self> {
        let op = AttentionOp::new(ctx, attention, shape)?;
        let inputs = (0..2u64)
            .map(|seed| {
                let host = random_attention_inputs(&shape, 1.0, seed);
                upload_inputs(ctx, &shape, AttentionInputs::from_array(&host))
            })
            .collect::<Result<_>>()?;
        Ok(AttentionRun {
            op,
            inputs,
            next: 0,
        })
    }

    /// One forward + backward, waited for; returns its wall time.
    pub fn run_once(&mut self, ctx: &GpuContext) -> Result<Duration> {
        let (q, k, v, d_o) = &self.inputs[self.next];
        self.next = (self.next + 1) % self.inputs.len();
        let start = Instant::now();
        let saved = self.op.forward(ctx, q, k, v)?;
        let _grads = self.op.backward(ctx, (q, k, v), &saved, d_o)?;
        ctx.synchronize()?;
        Ok(start.elapsed())
    }
}

/// Median, fastest and slowest of a set of timed runs.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The median time.
    pub median: Duration,
    /// The fastest.
    pub min: Duration,
    /// The slowest.
    pub max: Duration,
    /// GPU memory the last timed run allocated (buffers created during it), where measured.
    pub memory_bytes: Option<u64>,
}

impl Timing {
    fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        Timing {
            median: times[times.len() / 2],
            min: times[0],
            max: times[times.len() - 1],
            memory_bytes: None,
        }
    }
}

/// Wall times of `reps` forward + backward passes after one warm-up pass.
pub fn median_forward_backward(
    ctx: &GpuContext,
    attention: Attention,
    shape: AttentionShape,
    reps: usize,
) -> Result<Timing> {
    ctx.set_poison_outputs(false);
    let mut run = AttentionRun::new(ctx, attention, shape)?;
    run.run_once(ctx)?;
    let times = (0..reps.max(1))
        .map(|_| {
            ctx.reset_allocation_counters();
            run.run_once(ctx)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Timing {
        memory_bytes: Some(ctx.allocated_bytes()),
        ..Timing::of(times)
    })
}

/// GPU time per kernel of one forward + backward, after a warm-up pass (needs timestamp
/// queries).
pub fn profile_forward_backward(
    ctx: &GpuContext,
    attention: Attention,
    shape: AttentionShape,
) -> Result<Profile> {
    let mut run = AttentionRun::new(ctx, attention, shape)?;
    profile_pass(ctx, || run.run_once(ctx))
}

/// Runs `pass` once to warm up, then once more with timestamp queries; the profile is finished
/// (its query set released) whether the pass succeeds or not.
fn profile_pass(ctx: &GpuContext, mut pass: impl FnMut() -> Result<Duration>) -> Result<Profile> {
    ctx.set_poison_outputs(false);
    pass()?;
    ctx.start_profile()?;
    let ran = pass();
    let profile = ctx.finish_profile();
    ran?;
    profile
}

/// The whole-model benchmark: L = 4, D = 256, H = 4, d_qk = 16, d_v = 64, d_ff = 1024,
/// causal, with `attention`.
pub fn benchmark_model_config(attention: Attention) -> ModelConfig {
    ModelConfig {
        n_layers: 4,
        d_model: 256,
        n_heads: 4,
        d_qk: 16,
        d_v: 64,
        d_ff: 1024,
        causal: true,
        attention: crate::attention::AttentionKind::Poly,
        degree: 2,
        ln_eps: 1e-5,
        vocab_size: None,
        max_seq: None,
        head: None,
    }
    .with_attention(attention)
}

/// A prepared whole-model forward + backward: the model on the GPU and two inputs (B = 1).
pub struct ModelRun {
    model: GpuModel,
    inputs: Vec<(HostTensor, Loss)>,
    next: usize,
    checks: ErrorChecks,
}

impl ModelRun {
    /// A model of `config` and its input of `seq_len` tokens, uploaded.
    pub fn new(ctx: &GpuContext, config: ModelConfig, seq_len: usize) -> Result<Self> {
        let model = GpuModel::new(ctx, &Model::random(config, 7)?)?;
        let inputs = (0..2u64)
            .map(|seed| {
                let (x, dy) = random_model_input(model.config(), 1, seq_len, seed);
                (x, Loss::Vjp(dy))
            })
            .collect();
        Ok(ModelRun {
            model,
            inputs,
            next: 0,
            checks: ErrorChecks::default(),
        })
    }

    /// The same run with `checks` measured in every pass (the sampled check's cost).
    pub fn checked(self, checks: ErrorChecks) -> Self {
        ModelRun { checks, ..self }
    }

    /// One [`GpuModel::gradients_checked`] call, as a program linking polygrad makes it: x and dy
    /// uploaded, forward, backward, y and every gradient read back. Returns its wall time.
    pub fn run_once(&mut self, ctx: &GpuContext) -> Result<Duration> {
        let (x, loss) = &self.inputs[self.next];
        self.next = (self.next + 1) % self.inputs.len();
        let start = Instant::now();
        let _gradients = self.model.gradients_checked(ctx, x, loss, self.checks)?;
        Ok(start.elapsed())
    }
}

/// Wall times of `reps` whole-model forward + backward passes. The warm-up pass compiles every
/// pipeline and lets the tuner measure every product's shape class (classes stop growing at 512
/// rows, so a 512-long pass meets them all); it is no longer than that, since one pass of exact
/// attention at large n takes minutes on a software driver.
pub fn median_model_forward_backward(
    ctx: &GpuContext,
    (config, checks): (ModelConfig, ErrorChecks),
    seq_len: usize,
    reps: usize,
) -> Result<Timing> {
    ctx.set_poison_outputs(false);
    let warm_up = ModelRun::new(ctx, config.clone(), seq_len.min(512))?;
    warm_up.checked(checks).run_once(ctx)?;
    let mut run = ModelRun::new(ctx, config, seq_len)?.checked(checks);
    let times = (0..reps.max(1))
        .map(|_| run.run_once(ctx))
        .collect::<Result<Vec<_>>>()?;
    Ok(Timing::of(times))
}

/// GPU time per kernel of one whole-model forward + backward, after a warm-up pass.
pub fn profile_model_forward_backward(
    ctx: &GpuContext,
    (config, checks): (ModelConfig, ErrorChecks),
    seq_len: usize,
) -> Result<Profile> {
    let mut run = ModelRun::new(ctx, config, seq_len)?.checked(checks);
    profile_pass(ctx, || run.run_once(ctx))
}

/// Floating-point operations of one product (a multiply-add counts 2).
pub fn matmul_flops(shape: &Shape) -> f64 {
    2.0 * shape.batch as f64 * shape.m as f64 * shape.n as f64 * shape.k as f64
}

/// A prepared product of `shape` (dense operands with the given transposes), run on any
/// variant, with two input sets that alternate. The operands are windowable tensors where
/// windows-direct-16x4 can run the product, as attention's are.
struct MatmulRun {
    shape: Shape,
    layout: Layout,
    operands: Vec<(GpuTensor, GpuTensor)>,
    c: GpuTensor,
    next: usize,
}

impl MatmulRun {
    fn new(ctx: &GpuContext, shape: Shape, (trans_a, trans_b): (bool, bool)) -> Result<Self> {
        let layout = Layout::dense(&shape, trans_a, trans_b);
        let len_a = shape.batch * shape.m * shape.k;
        let len_b = shape.batch * shape.k * shape.n;
        let windowable = direct_fits(ctx, &shape, &layout);
        let upload = |name: &str, len: usize, values: Vec<f32>| {
            if windowable {
                GpuTensor::upload_windowable(ctx, name, &[len], &values)
            } else {
                GpuTensor::upload(ctx, name, &[len], &values)
            }
        };
        let operands = (0..2u64)
            .map(|seed| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut values = |len: usize| -> Vec<f32> {
                    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
                };
                Ok((
                    upload("a", len_a, values(len_a))?,
                    upload("b", len_b, values(len_b))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let c = GpuTensor::output(ctx, "c", &[shape.batch * shape.m * shape.n])?;
        Ok(MatmulRun {
            shape,
            layout,
            operands,
            c,
            next: 0,
        })
    }

    /// One product on `variant`, waited for; returns its wall time.
    fn run_once(&mut self, ctx: &GpuContext, variant: Variant) -> Result<Duration> {
        let (a, b) = &self.operands[self.next];
        self.next = (self.next + 1) % self.operands.len();
        let start = Instant::now();
        let mut encoder = ctx.encoder("matmul bench");
        Matmul {
            shape: self.shape,
            layout: self.layout,
            epilogue: Epilogue::default(),
            a,
            b,
            c: &self.c,
            bias: None,
            triangles: Triangles::NONE,
            activation: Activation::None,
        }
        .record(ctx, &mut encoder, variant)?;
        ctx.submit_and_wait("matmul bench", encoder)?;
        Ok(start.elapsed())
    }
}

/// One variant's times from [`interleaved_matmuls`].
#[derive(Clone, Copy, Debug)]
pub struct VariantTiming {
    /// Its own median, fastest and slowest.
    pub timing: Timing,
    /// The median, over repetitions, of the first variant's time in that repetition divided by
    /// this one's: its speed relative to the first, each pair timed within seconds of each
    /// other, so a slow spell of the machine (up to 1.6x on the shared CPUs of BENCHMARKS.md)
    /// weighs on both alike.
    pub speed_vs_first: f64,
}

/// Wall times of `reps` products of `shape` (dense operands with the given transposes) on
/// each of `variants`, interleaved: every repetition runs each variant once, the order rotated
/// from one repetition to the next, after one warm-up run of each.
pub fn interleaved_matmuls(
    ctx: &GpuContext,
    shape: Shape,
    transposes: (bool, bool),
    variants: &[Variant],
    reps: usize,
) -> Result<Vec<VariantTiming>> {
    ctx.set_poison_outputs(false);
    let mut run = MatmulRun::new(ctx, shape, transposes)?;
    for &variant in variants {
        run.run_once(ctx, variant)?;
    }
    let reps = reps.max(1);
    // times[v][r]: variant v in repetition r.
    let mut times = vec![Vec::with_capacity(reps); variants.len()];
    for r in 0..reps {
        for i in 0..variants.len() {
            let v = (r + i) % variants.len();
            times[v].push(run.run_once(ctx, variants[v])?);
        }
    }
    Ok(times
        .iter()
        .map(|mine| {
            let mut ratios: Vec<f64> = times[0]
                .iter()
                .zip(mine)
                .map(|(first, t)| first.as_secs_f64() / t.as_secs_f64())
                .collect();
            ratios.sort_by(f64::total_cmp);
            VariantTiming {
                timing: Timing::of(mine.clone()),
                speed_vs_first: ratios[ratios.len() / 2],
            }
        })
        .collect())
}

/// GPU time per kernel of one product (as [`interleaved_matmuls`] runs it), after a warm-up run.
pub fn profile_matmul(
    ctx: &GpuContext,
    shape: Shape,
    transposes: (bool, bool),
    variant: Variant,
) -> Result<Profile> {
    let mut run = MatmulRun::new(ctx, shape, transposes)?;
    profile_pass(ctx, || run.run_once(ctx, variant))
}

/// The sequence length exact attention is timed at to extrapolate a longer pass.
pub const EXACT_CALIBRATION_N: usize = 1024;

/// How long exact attention (forward + backward) over `shape` should take on `ctx`, times
/// `layers`: one pass timed at [`EXACT_CALIBRATION_N`] rows (one head, one batch element,
/// the same widths and masking), scaled by (n / 1024)^2 and by the heads and batch. Costs
/// one warm-up and one timed pass at n = 1024 (about 2 s on llvmpipe, milliseconds on a GPU):
/// worth it only where the pass itself is long.
pub fn exact_attention_time(
    ctx: &GpuContext,
    shape: &AttentionShape,
    layers: usize,
) -> Result<Duration> {
    let small = AttentionShape {
        batch: 1,
        heads: 1,
        seq_len: EXACT_CALIBRATION_N,
        ..*shape
    };
    let poison = ctx.poison_outputs();
    let measured = median_forward_backward(ctx, Attention::Exact, small, 1);
    ctx.set_poison_outputs(poison);
    let per_head = measured?.median.as_secs_f64();
    let scale = (shape.seq_len as f64 / EXACT_CALIBRATION_N as f64).powi(2);
    let heads = (shape.total_heads() * layers) as f64;
    Ok(Duration::from_secs_f64(per_head * scale * heads))
}
