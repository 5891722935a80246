//! The polygrad command line: `devices`, `grad`, `validate`, `bench`, `tune`, `error`, `train`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod plot;
mod train;

use clap::{Parser, Subcommand};
use polygrad::bench::{
    benchmark_model_config, benchmark_shape, interleaved_matmuls, matmul_flops,
    median_forward_backward, median_model_forward_backward, profile_forward_backward,
    profile_matmul, profile_model_forward_backward, ModelRun, Timing,
};
use polygrad::gpu::list_adapters;
use polygrad::gpu::profile::Profile;
use polygrad::gpu::tune::{default_cache_dir, TuneMode};
use polygrad::io::LossKind;
use polygrad::ops::matmul::{choose, direct_fits, shape_class, Layout, Shape, Variant};
use polygrad::validate::{
    check_attention, check_model, model_validation_cases, random_model_input, validation_cases,
    validation_inputs, ATTENTION_TOLERANCE, MODEL_TOLERANCE,
};
use polygrad::{Attention, AttentionShape, GpuContext, GpuModel, Loss, Model};

#[derive(Parser)]
#[command(
    name = "polygrad",
    version,
    about = "Transformer gradients on any wgpu GPU, with polynomial attention in linear time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu finds (WGPU_BACKEND selects backends).
    Devices,
    /// Train a language model on the device (MQAR or the bytes of a text) with AdamW: a
    /// progress bar, --csv of every step, --plot of loss and accuracy, checkpoints, --compare.
    Train(train::TrainArgs),
    /// One forward and backward pass of a model: writes y, grad.x and grad.<name> for every
    /// parameter to a safetensors file.
    Grad(GradArgs),
    /// Run the attention kernels and whole random models on an adapter and compare every
    /// output and gradient with the f64 CPU reference; exits non-zero on any mismatch.
    Validate {
        /// Adapter whose name contains NAME (case-insensitive); default: WGPU_ADAPTER_NAME,
        /// else wgpu's default high-performance adapter.
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
        /// Seed of the random inputs (default: a fresh one, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Which attention to check (default: both).
        #[arg(long, value_enum)]
        attention: Option<AttentionKind>,
    },
    /// Time attention forward + backward (causal, one head, d_qk = 16, d_v = 64), a whole
    /// model, or the matrix-product core, at several sizes; for attention and models, exits
    /// non-zero if the polynomial time grows faster than --max-slope allows.
    Bench {
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
        /// What to time: one attention head, the whole model (L = 4, D = 256, H = 4, d_qk = 16,
        /// d_v = 64, d_ff = 1024, causal, B = 1), or one matrix product (--m, --n, --k).
        #[arg(long, value_enum, default_value_t = BenchWhat::Attention)]
        what: BenchWhat,
        /// Same as --what model.
        #[arg(long)]
        model: bool,
        /// Which attention to time (default: both, side by side, with the ratio).
        #[arg(long, value_enum)]
        attention: Option<AttentionKind>,
        /// Degree of the polynomial attention.
        #[arg(long, default_value_t = 2)]
        degree: u32,
        /// Sequence lengths, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1024usize, 4096, 16384])]
        n: Vec<usize>,
        /// Matrix product sizes (--what matmul): C [M, N] = A [M, K] B^T with B [N, K], as a
        /// linear layer's forward runs it.
        #[arg(long = "m", default_value_t = 1024)]
        mat_m: usize,
        #[arg(long = "k", default_value_t = 1024)]
        mat_k: usize,
        /// Matrix product: N (the columns of C), comma-separated for several.
        #[arg(long = "cols", value_name = "N", value_delimiter = ',', default_values_t = [1024usize])]
        mat_n: Vec<usize>,
        /// Matrix product: how the operands are stored (--what matmul).
        #[arg(long, value_enum, default_value_t = MatmulLayout::Nt)]
        layout: MatmulLayout,
        /// Matrix product: independent products of the same shape in one dispatch, as
        /// polynomial attention runs one per chunk and head (--what matmul).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Matrix product: time only these variants, comma-separated (default: every one the
        /// adapter offers, then the tuner's choice). Several are timed interleaved, repetition
        /// by repetition, with each one's speed relative to the first.
        #[arg(long, value_delimiter = ',')]
        variant: Vec<String>,
        /// Timed repetitions per size (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Largest allowed slope of log time against log n for polynomial attention, fitted by
        /// least squares over every size (1: linear; exact attention's is near 2).
        #[arg(long, default_value_t = 1.15)]
        max_slope: f64,
        /// Also write one CSV row per measurement to FILE.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// After the timings, run each measured size once more with timestamp queries and
        /// print the GPU time per kernel (attention, model, and each variant of --what matmul).
        #[arg(long)]
        profile: bool,
        /// Draw time against n, log-log, one line per attention, into FILE (.svg or .png).
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Whole model: every pass also runs the sampled check of M rows per layer and head
        /// (as `grad --sample-rows M` does), to time what it costs.
        #[arg(long, value_name = "M", default_value_t = 0)]
        sample_rows: usize,
    },
    /// Polynomial attention's error against exact softmax attention for one head, over a sweep
    /// of the largest logit and the degree: measured against the f64 reference computed in
    /// full (quadratic in n, on the CPU), beside the certified bound.
    Error(ErrorArgs),
    /// Time every matrix-product variant on the shape classes of the whole benchmark model
    /// at --n, and exact attention's tiles at its widths; keep the fastest per class in the
    /// tune cache, and print the choices.
    Tune {
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
        /// Sequence length of the model pass whose products are tuned.
        #[arg(long, default_value_t = 1024)]
        n: usize,
    },
}

/// What `polygrad bench` times.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchWhat {
    Attention,
    Model,
    Matmul,
}

/// How `polygrad bench --what matmul` stores its operands: C = op(A) op(B).
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum MatmulLayout {
    /// C = A B^T, A [M, K], B [N, K]: a linear layer's forward (X W^T).
    Nt,
    /// C = A B, A [M, K], B [K, N]: its input gradient (dY W).
    Nn,
    /// C = A^T B, A [K, M], B [K, N]: its weight gradient (dY^T X), K the tokens.
    Tn,
    /// C = A^T B^T, A [K, M], B [N, K]: as polynomial attention's feature gradients.
    Tt,
}

impl MatmulLayout {
    /// (trans_a, trans_b) of [`Layout::dense`].
    fn transposes(self) -> (bool, bool) {
        match self {
            MatmulLayout::Nt => (false, true),
            MatmulLayout::Nn => (false, false),
            MatmulLayout::Tn => (true, false),
            MatmulLayout::Tt => (true, true),
        }
    }

    fn formula(self) -> &'static str {
        match self {
            MatmulLayout::Nt => "C [M, N] = A [M, K] B^T, B [N, K] (a linear layer's forward)",
            MatmulLayout::Nn => "C [M, N] = A [M, K] B, B [K, N] (a linear layer's input gradient)",
            MatmulLayout::Tn => {
                "C [M, N] = A^T B, A [K, M], B [K, N] (a linear layer's weight gradient)"
            }
            MatmulLayout::Tt => "C [M, N] = A^T B^T, A [K, M], B [N, K]",
        }
    }
}

/// The loss setting of the command line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LossArg {
    Vjp,
    Mse,
}

/// The attention setting of the command line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AttentionKind {
    Exact,
    Poly,
}

/// `polygrad grad --attention`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GradAttention {
    Exact,
    Poly,
    /// Per layer, the cheapest attention that meets --tolerance.
    Auto,
}

impl AttentionKind {
    fn name(self) -> &'static str {
        match self {
            AttentionKind::Exact => "exact",
            AttentionKind::Poly => "poly",
        }
    }

    fn matches(self, attention: Attention) -> bool {
        matches!(
            (self, attention),
            (AttentionKind::Exact, Attention::Exact)
                | (AttentionKind::Poly, Attention::Poly { .. })
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    polygrad::io::remove_partial_on_signal();
    let result = match cli.command {
        Command::Devices => devices(),
        Command::Train(args) => train::train(args),
        Command::Grad(args) => grad(args),
        Command::Validate {
            adapter,
            seed,
            attention,
        } => validate(adapter.as_deref(), seed, attention),
        Command::Bench {
            adapter,
            what,
            model,
            attention,
            degree,
            n,
            mat_m,
            mat_k,
            mat_n,
            layout,
            batch,
            variant,
            reps,
            max_slope,
            csv,
            profile,
            plot,
            sample_rows,
        } => {
            let what = if model { BenchWhat::Model } else { what };
            let csv = csv.as_deref();
            if reps == 0 {
                Err(option_error("--reps", "must be at least 1".into()))
            } else if !max_slope.is_finite() || max_slope <= 0.0 {
                Err(option_error(
                    "--max-slope",
                    format!("{max_slope} is not a positive number"),
                ))
            } else if what != BenchWhat::Model && sample_rows > 0 {
                Err(option_error(
                    "--sample-rows",
                    "the sampled check runs in whole-model passes: use it with --model".into(),
                ))
            } else if what == BenchWhat::Matmul && plot.is_some() {
                Err(option_error(
                    "--plot",
                    "draws attention and model sweeps against n; --what matmul has none".into(),
                ))
            } else if let Some(Err(message)) = plot.as_deref().map(plot::check) {
                // Refused before any measurement, not after minutes of it.
                Err(polygrad::Error::File {
                    path: plot.unwrap_or_default().display().to_string(),
                    message,
                })
            } else if what == BenchWhat::Matmul {
                bench_matmul(
                    adapter.as_deref(),
                    (batch as usize, mat_m, &mat_n, mat_k),
                    layout,
                    &variant,
                    (reps, profile),
                    csv,
                )
            } else {
                bench(
                    adapter.as_deref(),
                    BenchTarget {
                        model: what == BenchWhat::Model,
                        checks: polygrad::ErrorChecks::sampled(sample_rows, 0),
                        only: attention,
                        degree,
                        profile,
                        plot: plot.as_deref(),
                    },
                    &n,
                    reps,
                    max_slope,
                    csv,
                )
            }
        }
        Command::Tune { adapter, n } => tune(adapter.as_deref(), n),
        Command::Error(args) => error_table(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn devices() -> polygrad::Result<ExitCode> {
    let adapters = list_adapters()?;
    if adapters.is_empty() {
        println!("no adapters found (on a CPU-only machine install Mesa's software Vulkan driver: mesa-vulkan-drivers)");
    }
    for (i, a) in adapters.iter().enumerate() {
        let l = &a.limits;
        println!("[{i}] {}", a.name);
        println!(
            "    backend {}, type {}, driver {}",
            a.backend, a.device_type, a.driver
        );
        println!(
            "    max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB, storage buffers per stage {}",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage
        );
        println!(
            "    workgroup storage {} KiB, invocations per workgroup {}, workgroups per dimension {}",
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        );
        println!(
            "    shader f16: {}, timestamp queries: {}",
            yes_no(a.shader_f16),
            yes_no(a.timestamp_queries)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `polygrad grad`'s options.
#[derive(clap::Args)]
struct GradArgs {
    /// The model: a safetensors file with the parameters and a "config" metadata key.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The input: a safetensors file with x [B, n, d_model] and dy (or target, with
    /// --loss mse) of the same shape.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Where to write the gradients (replaced whole, never left half-written).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Override the config's attention; auto picks each layer's (with --tolerance).
    #[arg(long, value_enum)]
    attention: Option<GradAttention>,
    /// --attention auto: the largest error allowed of a layer's attention output, relative
    /// to max |v|. Per layer, the smallest even degree up to --max-degree whose certified
    /// bound is within it; else the smallest whose error sampled on --sample-rows rows is
    /// (o and dq); else exact attention.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    tolerance: Option<f64>,
    /// --attention auto: the largest degree tried (even, 2 to 8).
    #[arg(long, value_name = "G")]
    max_degree: Option<u32>,
    /// Override the config's degree of polynomial attention (even, 2 to 8).
    #[arg(long, value_name = "G")]
    degree: Option<u32>,
    /// vjp: the input's dy is dL/dy; mse: L = mean((y - target)^2).
    #[arg(long, value_enum, default_value_t = LossArg::Vjp)]
    loss: LossArg,
    /// Write the output even if y or a gradient holds a NaN or an infinity (otherwise
    /// that exits with status 3 and writes nothing).
    #[arg(long)]
    allow_nonfinite: bool,
    /// Also write each layer's attention report as JSON: its attention and degree, logit
    /// bound, eps, certified output bound, sampled errors and why (replaced whole, like
    /// --out).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Query rows per layer and head whose exact attention and dq are computed (in O(m n d))
    /// to measure polynomial attention's error on them; 0 turns the check off.
    #[arg(long, value_name = "M", default_value_t = polygrad::ErrorChecks::DEFAULT_SAMPLE_ROWS)]
    sample_rows: usize,
    /// Seed of the sampled rows (each layer draws its own from it).
    #[arg(long, value_name = "SEED", default_value_t = 0)]
    sample_seed: u64,
    /// Also run the whole pass with exact attention (quadratic in n: for validation) and
    /// report the relative error of y, grad.x and every parameter gradient between the two
    /// (on stderr, and under "compare_exact" in --report).
    #[arg(long)]
    compare_exact: bool,
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
}

/// `polygrad error`'s options.
#[derive(clap::Args)]
struct ErrorArgs {
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
    /// Sequence length (the f64 reference's time grows as its square).
    #[arg(long, default_value_t = 512)]
    n: usize,
    #[arg(long, default_value_t = 8)]
    d_qk: usize,
    #[arg(long, default_value_t = 16)]
    d_v: usize,
    /// Causal attention (default: full).
    #[arg(long)]
    causal: bool,
    /// The largest |logit| of each point, comma-separated (q is scaled to reach it).
    #[arg(long, value_name = "S", value_delimiter = ',', default_values_t = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0])]
    max_logits: Vec<f64>,
    /// Degrees of polynomial attention, comma-separated (even, 2 to 8).
    #[arg(long, value_name = "G", value_delimiter = ',', default_values_t = [2u32, 4, 6])]
    degrees: Vec<u32>,
    /// Seed of the random q, k, v and dL/do (default: a fresh one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Draw the error against the largest logit, one colour per degree, measured solid and
    /// certified dashed, on log axes, into FILE (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// Exit status of `grad` when the result holds a NaN or an infinity.
const EXIT_NONFINITE: u8 = 3;

/// The largest magnitude in a tensor, for saying where an overflow may come from.
fn largest(t: &polygrad::HostTensor) -> f32 {
    t.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Says where a non-finite result came from: the first forward activation that holds one (or
/// that the forward is finite and the backward overflowed), each layer's logit bound, and
/// the largest magnitudes going in.
fn explain_nonfinite(
    ctx: &GpuContext,
    gpu_model: &GpuModel,
    model: &polygrad::Model,
    x: &polygrad::HostTensor,
    loss: &Loss,
) -> polygrad::Result<()> {
    let trace = gpu_model.trace_forward(ctx, x)?;
    match &trace.first_nonfinite {
        Some((tensor, index)) => eprintln!(
            "  cause: the forward pass first overflows in {tensor} (flat index {index})"
        ),
        None => eprintln!(
            "  cause: the forward pass is finite; f32 overflowed in the backward pass (|{}| up to {:e})",
            loss.tensor_name(),
            loss.tensor().map_or(0.0, largest)
        ),
    }
    let bounds: Vec<String> = trace
        .logit_bounds
        .iter()
        .enumerate()
        .map(|(l, b)| format!("block {l}: {b:.3e}"))
        .collect();
    eprintln!("  logit bound per layer: {}", bounds.join(", "));
    let (param, magnitude) = model
        .params()
        .iter()
        .map(|(name, t)| (name.as_str(), largest(t)))
        .fold(("", 0.0f32), |a, b| if b.1 > a.1 { b } else { a });
    eprintln!(
        "  inputs: the largest |x| is {:e}, the largest parameter |{param}| {magnitude:e}",
        largest(x)
    );
    if let Attention::Poly { degree } = model.config().attention_kind()? {
        // P_g grows like s^g / g! where exp(s) would saturate softmax: far from exact, and
        // where the bound is large, the normaliser overflows.
        if trace.logit_bounds.iter().any(|&b| b > POLY_TRUSTED_LOGITS) {
            eprintln!(
                "  polynomial attention of degree {degree} is far from softmax where logits pass                  about {POLY_TRUSTED_LOGITS}: try --attention exact"
            );
        }
    }
    Ok(())
}

/// The logit magnitude past which the hint to use exact attention is given: P_2 is then
/// already 3x below e^s (P_2(4) = 13 against e^4 = 55), worse for every larger s.
const POLY_TRUSTED_LOGITS: f64 = 4.0;

/// Prints each layer's attention, certificate (shared/DESIGN.md §3) and sampled errors, and
/// automatic attention's reasons; warns of the polynomial layers where no bound holds and
/// none was measured against the tolerance. Silent where every layer is exact by request.
fn report_bounds(bounds: &[polygrad::LayerBound]) {
    let given_exact =
        |b: &polygrad::LayerBound| b.attention == Attention::Exact && b.decision.is_none();
    if bounds.iter().all(given_exact) {
        return;
    }
    eprintln!("how far from exact softmax attention:");
    eprintln!(
        "  {:>5}  {:>9}  {:>12}  {:>9}  {:>24}  {:>26}",
        "layer",
        "attention",
        "logit bound",
        "eps",
        "certified err(o)/max|v|",
        "measured on m rows: o, dq"
    );
    for b in bounds {
        let certified = match (b.attention, b.output_bound) {
            (Attention::Exact, _) => "(exact)".to_string(),
            (_, Some(bound)) => format!("{bound:.2e}"),
            (_, None) => "none (eps >= 1)".to_string(),
        };
        let measured = match b.sampled {
            Some(s) => format!(
                "m={}: {:.2e}, {}",
                s.rows,
                s.o_rel_err,
                s.dq_rel_err.map_or("-".to_string(), |e| format!("{e:.2e}"))
            ),
            None => "not sampled".to_string(),
        };
        eprintln!(
            "  {:>5}  {:>9}  {:>12.3e}  {:>9.2e}  {certified:>24}  {measured:>26}",
            b.layer,
            b.attention.to_string(),
            b.logit_bound,
            b.eps
        );
    }
    for b in bounds {
        if let Some(d) = &b.decision {
            eprintln!("  layer {} chose {}: {}", b.layer, d.attention, d.reason);
        }
    }
    let unbounded: Vec<String> = bounds
        .iter()
        .filter(|b| b.output_bound.is_none() && b.decision.is_none())
        .map(|b| b.layer.to_string())
        .collect();
    if !unbounded.is_empty() {
        eprintln!(
            "warning: no bound holds for layer(s) {} (eps >= 1): their gradients may be far from \
             exact softmax attention; use --attention auto --tolerance T, or --attention exact",
            unbounded.join(", ")
        );
    }
}

/// `polygrad error`: the sweep as a table on stdout, and its plot.
fn error_table(args: ErrorArgs) -> polygrad::Result<ExitCode> {
    if let Some(&bad) = args
        .max_logits
        .iter()
        .find(|s| !(s.is_finite() && **s > 0.0))
    {
        return Err(option_error(
            "--max-logits",
            format!("{bad} is not a positive number"),
        ));
    }
    for &g in &args.degrees {
        polygrad::poly::check_degree(g).map_err(|e| option_error("--degrees", e.to_string()))?;
    }
    if let Some(Err(message)) = args.plot.as_deref().map(plot::check) {
        let path = args.plot.unwrap_or_default().display().to_string();
        return Err(polygrad::Error::File { path, message });
    }
    let shape = AttentionShape::new(1, 1, args.n, args.d_qk, args.d_v, args.causal);
    shape.validate()?;
    let ctx = GpuContext::new(args.adapter.as_deref())?;
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("adapter: {}   seed: {seed}", ctx.adapter().label());
    println!("polynomial attention against exact softmax attention (f64, in full), {shape}");
    let points = polygrad::sweep::error_sweep(&ctx, shape, &args.max_logits, &args.degrees, seed)?;
    println!(
        "{:>3} {:>9} {:>11} {:>24} {:>24} {:>9} {:>9} {:>9} {:>9}",
        "g",
        "max |s|",
        "logit bound",
        "certified err(o)/max|v|",
        "measured err(o)/max|v|",
        "o",
        "dq",
        "dk",
        "dv"
    );
    for p in &points {
        let certified = p
            .certified
            .map_or("none (eps >= 1)".into(), |b| format!("{b:.3e}"));
        println!(
            "{:>3} {:>9.3} {:>11.3} {certified:>24} {:>24.3e} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e}",
            p.degree, p.max_logit, p.logit_bound, p.o_max_error, p.o, p.dq, p.dk, p.dv
        );
    }
    println!(
        "err(o) is max |o(poly) - o(exact)|; o, dq, dk, dv are relative errors over the tensor"
    );
    if let Some(path) = &args.plot {
        plot_errors(path, &ctx, &shape, &points)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `polygrad error --plot`: per degree, the measured error solid and the certified dashed.
fn plot_errors(
    path: &Path,
    ctx: &GpuContext,
    shape: &AttentionShape,
    points: &[polygrad::sweep::ErrorPoint],
) -> polygrad::Result<()> {
    let mut degrees: Vec<u32> = points.iter().map(|p| p.degree).collect();
    degrees.sort_unstable();
    degrees.dedup();
    let mut series = Vec::new();
    for (i, &g) in degrees.iter().enumerate() {
        let of_g = || points.iter().filter(move |p| p.degree == g);
        let measured = of_g().map(|p| (p.max_logit, p.o_max_error));
        let certified = of_g().filter_map(|p| p.certified.map(|b| (p.max_logit, b)));
        for (label, dashed, line) in [
            (
                format!("g={g} measured"),
                false,
                measured.collect::<Vec<_>>(),
            ),
            (format!("g={g} certified"), true, certified.collect()),
        ] {
            let points: Vec<_> = line.into_iter().filter(|&(_, e)| e > 0.0).collect();
            if !points.is_empty() {
                series.push(plot::Series {
                    label,
                    points,
                    color: i,
                    dashed,
                });
            }
        }
    }
    let title = format!(
        "poly against exact attention: n={} d_qk={} d_v={}{}, {}",
        shape.seq_len,
        shape.d_qk,
        shape.d_v,
        if shape.causal { " causal" } else { "" },
        ctx.adapter().name
    );
    let axes = plot::Axes {
        x: "largest |logit|, max |s|",
        y: "max |o(poly) - o(exact)| / max |v|",
    };
    plot::plot(path, (&title, axes), &series).map_err(|message| polygrad::Error::File {
        path: path.display().to_string(),
        message,
    })?;
    println!("plot written to {}", path.display());
    Ok(())
}

/// `--attention auto` with its --tolerance and --max-degree, checked; None for another
/// attention, where those two options are refused.
fn auto_attention(args: &GradArgs) -> polygrad::Result<Option<polygrad::AutoAttention>> {
    if args.attention != Some(GradAttention::Auto) {
        for (option, given) in [
            ("--tolerance", args.tolerance.is_some()),
            ("--max-degree", args.max_degree.is_some()),
        ] {
            if given {
                return Err(option_error(option, "goes with --attention auto".into()));
            }
        }
        return Ok(None);
    }
    if args.degree.is_some() {
        return Err(option_error(
            "--degree",
            "--attention auto picks each layer's degree; use --max-degree to bound it".into(),
        ));
    }
    let tolerance = args.tolerance.ok_or_else(|| {
        option_error(
            "--tolerance",
            "--attention auto needs one: the largest error allowed of a layer's attention \
             output, relative to max |v| (e.g. 1e-3)"
                .into(),
        )
    })?;
    let max_degree = args
        .max_degree
        .unwrap_or(polygrad::AutoAttention::DEFAULT_MAX_DEGREE);
    polygrad::AutoAttention::new(tolerance, max_degree).map(Some)
}

/// `grad --compare-exact`: the same pass with exact attention, and the relative error of y,
/// grad.x and every parameter gradient between the two, printed as a table on stderr.
fn compare_exact(
    ctx: &GpuContext,
    model: &polygrad::Model,
    (x, loss): (&polygrad::HostTensor, &polygrad::Loss),
    result: &polygrad::ModelGradients,
) -> polygrad::Result<Vec<(String, f64)>> {
    let exact = model.with_config(model.config().with_attention(Attention::Exact))?;
    let (batch, seq_len) = (x.shape[0], x.shape[1]);
    GpuModel::memory_estimate(ctx, exact.config(), batch, seq_len)?.check(ctx, 0, false)?;
    if seq_len >= EXACT_TIME_ESTIMATE_FROM {
        warn_of_exact_time(ctx, exact.config(), batch, seq_len)?;
    }
    let exact_result = GpuModel::new(ctx, &exact)?.gradients(ctx, x, loss)?;
    let errors = polygrad::compare_with_exact(result, &exact_result);
    eprintln!("against the same pass with exact attention (relative error):");
    for (name, e) in &errors {
        eprintln!("  {name:<32} {e:.3e}");
    }
    Ok(errors)
}

/// From this n on, `grad` with exact attention first estimates how long the quadratic part
/// will take (the estimate costs about 2 s on llvmpipe, under 1% of such a pass).
const EXACT_TIME_ESTIMATE_FROM: usize = 16384;

/// Estimates it, and warns where it is over a minute.
fn warn_of_exact_time(
    ctx: &GpuContext,
    c: &polygrad::ModelConfig,
    batch: usize,
    seq_len: usize,
) -> polygrad::Result<()> {
    let shape = AttentionShape::new(batch, c.n_heads, seq_len, c.d_qk, c.d_v, c.causal);
    let time = polygrad::bench::exact_attention_time(ctx, &shape, c.n_layers)?;
    eprintln!(
        "{}exact attention is quadratic in n: at n = {seq_len}, attention in {} layer{} takes \
         about {} on {} (timed at n = {} and scaled by n^2); --attention poly is linear in n",
        if time.as_secs() >= 60 {
            "warning: "
        } else {
            ""
        },
        c.n_layers,
        if c.n_layers == 1 { "" } else { "s" },
        human_duration(time),
        ctx.adapter().name,
        polygrad::bench::EXACT_CALIBRATION_N,
    );
    Ok(())
}

/// "41 s", "12.5 min", "3.2 h", "5.1 days".
fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    match s {
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{:.1} min", s / 60.0),
        s if s < 86400.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86400.0),
    }
}

fn grad(args: GradArgs) -> polygrad::Result<ExitCode> {
    // Before reading anything: a bad --out must not cost a whole pass.
    polygrad::io::check_output_path(&args.out, &[&args.model, &args.input])?;
    if let Some(report) = &args.report {
        if report == &args.out {
            return Err(option_error(
                "--report",
                format!("{} is also --out", report.display()),
            ));
        }
        polygrad::io::check_output_path(report, &[&args.model, &args.input])?;
    }
    let mut model = polygrad::io::read_model(&args.model)?;
    let auto = auto_attention(&args)?;
    if auto.is_none() && (args.attention.is_some() || args.degree.is_some()) {
        let kind = match args.attention {
            Some(GradAttention::Exact) => polygrad::AttentionKind::Exact,
            Some(GradAttention::Poly) => polygrad::AttentionKind::Poly,
            _ => model.config().attention,
        };
        let degree = args.degree.unwrap_or(model.config().degree);
        let attention = Attention::of_kind(kind, degree)?;
        model = model.with_config(model.config().with_attention(attention))?;
    }
    let kind = match args.loss {
        LossArg::Vjp => LossKind::Vjp,
        LossArg::Mse => LossKind::Mse,
    };
    let (x, loss) = polygrad::io::read_input(&args.input, kind)?;
    model.config().check_input("x", &x)?;
    let attention = model.config().attention_kind()?;
    if args.compare_exact && attention == Attention::Exact && auto.is_none() {
        return Err(option_error(
            "--compare-exact",
            "the pass already runs exact attention: there is nothing to compare it with (use \
             --attention poly)"
                .into(),
        ));
    }
    let ctx = GpuContext::new(args.adapter.as_deref())?;
    let (batch, seq_len) = (x.shape[0], x.shape[1]);
    let estimate = GpuModel::memory_estimate(&ctx, model.config(), batch, seq_len)?;
    // Writing the result copies it twice: into the file's tensors, then into its bytes.
    estimate.check(&ctx, 2 * estimate.result_bytes, false)?;
    if matches!(attention, Attention::Exact)
        && seq_len >= EXACT_TIME_ESTIMATE_FROM
        && auto.is_none()
    {
        warn_of_exact_time(&ctx, model.config(), batch, seq_len)?;
    }
    let gpu_model = GpuModel::new(&ctx, &model)?;
    let checks = polygrad::ErrorChecks::sampled(args.sample_rows, args.sample_seed);
    let result = match auto {
        Some(auto) => gpu_model.gradients_auto(&ctx, &x, &loss, (auto, checks))?,
        None => gpu_model.gradients_checked(&ctx, &x, &loss, checks)?,
    };
    if let Err(e) = result.check_finite() {
        eprintln!("error: {e}.");
        explain_nonfinite(&ctx, &gpu_model, &model, &x, &loss)?;
        if !args.allow_nonfinite {
            eprintln!("Nothing was written (--allow-nonfinite writes it anyway).");
            return Ok(ExitCode::from(EXIT_NONFINITE));
        }
    }
    polygrad::io::write_gradients(&args.out, &result)?;
    report_bounds(&result.attention_bounds);
    let compared = if args.compare_exact {
        Some(compare_exact(&ctx, &model, (&x, &loss), &result)?)
    } else {
        None
    };
    if let Some(report) = &args.report {
        let json = polygrad::bounds_report(&result.attention_bounds, compared.as_deref());
        polygrad::io::write_json(report, &json)?;
        eprintln!("{}: the per-layer attention report", report.display());
    }
    let attention = match auto {
        Some(auto) => format!("auto (tolerance {:e})", auto.tolerance()),
        None => attention.to_string(),
    };
    eprintln!(
        "{}: {} layers, {attention} attention, x {:?}, on {}{}",
        args.out.display(),
        model.config().n_layers,
        x.shape,
        ctx.adapter().label(),
        result
            .loss
            .map(|l| format!(", loss {l:e}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn validate(
    adapter: Option<&str>,
    seed: Option<u64>,
    only: Option<AttentionKind>,
) -> polygrad::Result<ExitCode> {
    let ctx = GpuContext::new(adapter)?;
    let seed = seed.unwrap_or_else(rand::random);
    println!(
        "adapter: {}   seed: {seed}   tolerance: {ATTENTION_TOLERANCE:e} relative",
        ctx.adapter().label()
    );
    println!(
        "{:<10} {:<44} {:<6} {:>10}  result",
        "attention", "shape", "tensor", "error"
    );
    let mut failures = 0;
    let cases = validation_cases().into_iter().enumerate();
    for (i, (attention, shape)) in cases.filter(|(_, (a, _))| only.is_none_or(|k| k.matches(*a))) {
        let inputs = validation_inputs(attention, &shape, seed.wrapping_add(i as u64));
        match check_attention(&ctx, attention, shape, &inputs) {
            Ok(checks) => {
                for c in checks {
                    let pass = c.passed(ATTENTION_TOLERANCE);
                    failures += !pass as usize;
                    let shape = shape.to_string();
                    let result = if pass { "pass" } else { "FAIL" };
                    println!(
                        "{:<10} {shape:<44} {:<6} {:>10.2e}  {result}",
                        attention.to_string(),
                        c.tensor,
                        c.error
                    );
                }
            }
            Err(e) => {
                failures += 1;
                println!(
                    "{:<10} {:<44} error: {e}",
                    attention.to_string(),
                    shape.to_string()
                );
            }
        }
    }
    failures += validate_models(&ctx, seed, only);
    if failures > 0 {
        println!("{failures} check(s) FAILED on {}", ctx.adapter().label());
        return Ok(ExitCode::FAILURE);
    }
    println!("all checks passed on {}", ctx.adapter().label());
    Ok(ExitCode::SUCCESS)
}

/// Whole random models against the reference: one line per model with its worst tensor, then
/// the worst relative error of each tensor over all models. Returns the number of failures.
fn validate_models(ctx: &GpuContext, seed: u64, only: Option<AttentionKind>) -> usize {
    println!();
    println!("whole models, tolerance {MODEL_TOLERANCE:e} relative");
    let mut failures = 0;
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    let cases = model_validation_cases().into_iter().enumerate();
    for (i, (config, batch, seq_len)) in cases {
        let Ok(attention) = config.attention_kind() else {
            continue;
        };
        if only.is_some_and(|k| !k.matches(attention)) {
            continue;
        }
        let label = format!(
            "L={} H={} B={batch} n={seq_len} causal={} {attention}",
            config.n_layers, config.n_heads, config.causal
        );
        let case_seed = seed.wrapping_add(1000 + i as u64);
        let checks = Model::random(config, case_seed).and_then(|model| {
            let (x, dy) = random_model_input(model.config(), batch, seq_len, case_seed + 1);
            check_model(ctx, &model, &x, &Loss::Vjp(dy))
        });
        match checks {
            Ok(checks) => {
                let bad = checks.iter().filter(|c| !c.passed(MODEL_TOLERANCE)).count();
                failures += bad;
                let top = checks.iter().max_by(|a, b| a.error.total_cmp(&b.error));
                if let Some(top) = top {
                    let result = if bad == 0 { "pass" } else { "FAIL" };
                    println!(
                        "{label:<44} worst {:<32} {:>10.2e}  {result}",
                        top.tensor, top.error
                    );
                }
                for c in checks {
                    let entry = worst.entry(c.tensor).or_insert(0.0);
                    *entry = if c.error.is_nan() {
                        f64::NAN
                    } else {
                        entry.max(c.error)
                    };
                }
            }
            Err(e) => {
                failures += 1;
                println!("{label:<44} error: {e}");
            }
        }
    }
    println!();
    println!("{:<40} {:>10}", "worst over all models", "error");
    for (tensor, error) in &worst {
        let result = if *error <= MODEL_TOLERANCE {
            "pass"
        } else {
            "FAIL"
        };
        println!("{tensor:<40} {error:>10.2e}  {result}");
    }
    failures
}

/// What `polygrad bench` times.
struct BenchTarget<'a> {
    model: bool,
    /// The model's passes also run these checks.
    checks: polygrad::ErrorChecks,
    only: Option<AttentionKind>,
    degree: u32,
    profile: bool,
    plot: Option<&'a Path>,
}

fn bench(
    adapter: Option<&str>,
    target: BenchTarget<'_>,
    sizes: &[usize],
    reps: usize,
    max_slope: f64,
    csv: Option<&Path>,
) -> polygrad::Result<ExitCode> {
    let ctx = GpuContext::new(adapter)?;
    let mut rows = Vec::new();
    let kinds = match target.only {
        Some(kind) => vec![kind],
        None => vec![AttentionKind::Exact, AttentionKind::Poly],
    };
    let attentions = kinds
        .iter()
        .map(|k| Attention::from_setting(k.name(), target.degree))
        .collect::<polygrad::Result<Vec<_>>>()?;
    println!("adapter: {}", ctx.adapter().label());
    if target.model {
        println!("whole model forward + backward (upload, passes, every gradient read back), L=4 D=256 H=4 d_qk=16 d_v=64 d_ff=1024, causal, B=1, median of {reps}");
        if target.checks.sample_rows > 0 {
            println!(
                "each pass also runs the sampled check: {} rows per layer and head",
                target.checks.sample_rows
            );
        }
    } else {
        println!("attention forward + backward, causal, B=1 H=1 d_qk=16 d_v=64, median of {reps}");
    }
    let mut header = format!("{:>8}", "n");
    for a in &attentions {
        header += &format!(" {:>14}", a.to_string());
    }
    if attentions.len() == 2 {
        header += &format!(" {:>14}", "exact / poly");
    }
    println!("{header}");
    // times[i][j]: attention i at size j.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); attentions.len()];
    let progress = progress_bar((sizes.len() * attentions.len()) as u64);
    for &n in sizes {
        let mut line = format!("{n:>8}");
        for (i, &attention) in attentions.iter().enumerate() {
            progress.set_message(format!("{attention}, n = {n}"));
            let timing = if target.model {
                let config = (benchmark_model_config(attention), target.checks);
                median_model_forward_backward(&ctx, config, n, reps)?
            } else {
                median_forward_backward(&ctx, attention, benchmark_shape(n), reps)?
            };
            let t = timing.median;
            line += &format!(" {:>11.2} ms", t.as_secs_f64() * 1e3);
            times[i].push(t);
            rows.push(csv_row(target.model, attention, n, &timing));
            progress.inc(1);
        }
        if attentions.len() == 2 {
            let ratio =
                times[0].last().unwrap().as_secs_f64() / times[1].last().unwrap().as_secs_f64();
            line += &format!(" {ratio:>14.2}");
        }
        progress.suspend(|| println!("{line}"));
    }
    progress.finish_and_clear();
    let mut failed = false;
    for (attention, t) in attentions.iter().zip(&times) {
        let Some(slope) = growth_slope(sizes, t) else {
            continue;
        };
        print!(
            "{attention}: slope of log time against log n over n = {}..{}: {slope:.3} (linear: 1, quadratic: 2)",
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0)
        );
        if matches!(attention, Attention::Poly { .. }) {
            println!(", allowed: {max_slope}");
            if slope > max_slope {
                println!("FAIL: polynomial attention's time grows faster than allowed");
                failed = true;
            }
        } else {
            println!();
        }
    }
    if let Some(path) = csv {
        write_csv(path, &rows)?;
    }
    if let Some(path) = target.plot {
        let series: Vec<plot::Series> = attentions
            .iter()
            .zip(&times)
            .enumerate()
            .map(|(i, (a, t))| plot::Series {
                label: a.to_string(),
                points: sizes
                    .iter()
                    .zip(t)
                    .map(|(&n, d)| (n as f64, d.as_secs_f64() * 1e3))
                    .collect(),
                color: i,
                dashed: false,
            })
            .collect();
        let what = if target.model {
            "whole model"
        } else {
            "attention"
        };
        let title = format!("{what} forward + backward, {}", ctx.adapter().name);
        let axes = plot::Axes {
            x: "n (sequence length)",
            y: "forward + backward, ms",
        };
        plot::plot(path, (&title, axes), &series).map_err(|message| polygrad::Error::File {
            path: path.display().to_string(),
            message,
        })?;
        println!("plot written to {}", path.display());
    }
    if target.profile {
        for &n in sizes {
            for &attention in &attentions {
                let profile = if target.model {
                    let config = (benchmark_model_config(attention), target.checks);
                    profile_model_forward_backward(&ctx, config, n)?
                } else {
                    profile_forward_backward(&ctx, attention, benchmark_shape(n))?
                };
                println!();
                println!("GPU time per kernel, {attention}, n = {n}, one forward + backward:");
                print_profile(&profile);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The least-squares slope of log time against log n, where there are two distinct sizes.
fn growth_slope(sizes: &[usize], times: &[Duration]) -> Option<f64> {
    let points: Vec<(f64, f64)> = sizes
        .iter()
        .zip(times)
        .map(|(&n, t)| ((n as f64).ln(), t.as_secs_f64().ln()))
        .collect();
    let count = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// A progress bar on stderr for a sweep of `len` measurements; indicatif hides it when stderr
/// is not a terminal.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
    {
        bar.set_style(style);
    }
    bar
}

/// The per-kernel table of `polygrad bench --profile`.
fn print_profile(profile: &Profile) {
    let total = profile.total_millis();
    println!(
        "{:<44} {:>6} {:>11} {:>7} {:>9}",
        "kernel", "calls", "total ms", "share", "GFLOP/s"
    );
    for k in &profile.kernels {
        let gflops = k.gflops().map_or("-".into(), |g| format!("{g:.2}"));
        println!(
            "{:<44} {:>6} {:>11.3} {:>6.1}% {:>9}",
            k.name,
            k.calls,
            k.millis,
            100.0 * k.millis / total.max(f64::MIN_POSITIVE),
            gflops
        );
    }
    println!("{:<44} {:>6} {:>11.3}", "all kernels", "", total);
    if profile.untimed_passes > 0 {
        println!(
            "({} passes after the first 2048 were not timed)",
            profile.untimed_passes
        );
    }
}

/// The columns of `polygrad bench --csv`, in order.
const CSV_HEADER: &str = "what,attention,degree,n,batch,heads,d_qk,d_v,layers,causal,m,k,variant,forward_ms,backward_ms,total_ms,total_min_ms,total_max_ms,memory_bytes,gflops,timer";

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// One CSV row of an attention or whole-model measurement (forward and backward are timed
/// together, so their own columns stay empty).
fn csv_row(model: bool, attention: Attention, n: usize, t: &Timing) -> String {
    let degree = match attention {
        Attention::Poly { degree } => degree.to_string(),
        Attention::Exact => String::new(),
    };
    let kind = if matches!(attention, Attention::Exact) {
        "exact"
    } else {
        "poly"
    };
    let (what, heads, d_v, layers) = if model {
        ("model", 4, 64, 4)
    } else {
        ("attention", 1, 64, 1)
    };
    format!(
        "{what},{kind},{degree},{n},1,{heads},16,{d_v},{layers},true,,,,,,{},{},{},{},,host",
        ms(t.median),
        ms(t.min),
        ms(t.max),
        t.memory_bytes.map_or(String::new(), |b| b.to_string())
    )
}

/// Writes the header and rows to `path` (replaced whole).
fn write_csv(path: &Path, rows: &[String]) -> polygrad::Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| polygrad::Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// `polygrad bench --what matmul`: GFLOP/s of every variant (or those named), timed
/// interleaved, then the tuner's choice.
fn bench_matmul(
    adapter: Option<&str>,
    (batch, m, cols, k): (usize, usize, &[usize], usize),
    matmul_layout: MatmulLayout,
    only: &[String],
    (reps, profile): (usize, bool),
    csv: Option<&Path>,
) -> polygrad::Result<ExitCode> {
    let ctx = GpuContext::new(adapter)?;
    let named = only
        .iter()
        .map(|name| {
            name.parse::<Variant>()
                .map_err(|e: String| option_error("--variant", e))
        })
        .collect::<polygrad::Result<Vec<_>>>()?;
    let all = named.is_empty();
    println!("adapter: {}", ctx.adapter().label());
    let batched = if batch > 1 {
        format!(", {batch} products a dispatch")
    } else {
        String::new()
    };
    println!(
        "{}{batched}, median of {reps}, the variants interleaved",
        matmul_layout.formula()
    );
    println!(
        "{:>6} {:>6} {:>6} {:>22} {:>11} {:>9} {:>8}",
        "M", "N", "K", "variant", "ms", "GFLOP/s", "x first"
    );
    let mut rows = Vec::new();
    for &n in cols {
        let shape = Shape { batch, m, n, k };
        let (trans_a, trans_b) = matmul_layout.transposes();
        let layout = Layout::dense(&shape, trans_a, trans_b);
        let direct = direct_fits(&ctx, &shape, &layout);
        let variants: Vec<Variant> = if all {
            Variant::candidates(&ctx)
                .into_iter()
                .filter(|v| v.suits(&ctx, &shape, &layout, direct))
                .collect()
        } else {
            named.clone()
        };
        let timings = interleaved_matmuls(&ctx, shape, (trans_a, trans_b), &variants, reps)?;
        for (variant, t) in variants.iter().zip(&timings) {
            let median = t.timing.median;
            let gflops = matmul_flops(&shape) / median.as_secs_f64() / 1e9;
            println!(
                "{m:>6} {n:>6} {k:>6} {variant:>22} {:>11.2} {gflops:>9.2} {:>8.3}",
                median.as_secs_f64() * 1e3,
                t.speed_vs_first
            );
            rows.push(format!(
                "matmul,,,{n},{batch},,,,,,{m},{k},{variant},,,{},{},{},,{gflops:.3},host",
                ms(median),
                ms(t.timing.min),
                ms(t.timing.max)
            ));
        }
        if profile {
            for &variant in &variants {
                print_profile(&profile_matmul(&ctx, shape, (trans_a, trans_b), variant)?);
            }
        }
        if all {
            let chosen = choose(&ctx, &shape, &layout, direct)?;
            println!(
                "tuner's choice for {}: {chosen}",
                shape_class(&shape, &layout)
            );
        }
    }
    if let Some(path) = csv {
        write_csv(path, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `polygrad tune`: one whole-model pass at n with every product class measured afresh.
fn tune(adapter: Option<&str>, n: usize) -> polygrad::Result<ExitCode> {
    let ctx = GpuContext::new(adapter)?;
    ctx.set_tuning(TuneMode::Retune, default_cache_dir().as_deref());
    println!("adapter: {}", ctx.adapter().label());
    let config = benchmark_model_config(Attention::Poly { degree: 2 });
    let attention = AttentionShape::new(1, config.n_heads, n, config.d_qk, config.d_v, true);
    ModelRun::new(&ctx, config, n)?.run_once(&ctx)?;
    polygrad::ops::exact_attention::choose_tiles(&ctx, &attention)?;
    println!("{:<40} variant", "shape class");
    for (class, variant) in ctx.tune_choices() {
        println!("{class:<40} {variant}");
    }
    match default_cache_dir() {
        Some(dir) => println!("cached in {}", dir.join("tune.json").display()),
        None => println!("no cache directory (set POLYGRAD_CACHE_DIR or HOME)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn option_error(option: &str, message: String) -> polygrad::Error {
    polygrad::Error::Option {
        option: option.into(),
        message,
    }
}
