//! The polygrad command line: `devices`, `grad`, `validate`, `bench`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use polygrad::bench::{
    benchmark_model_config, benchmark_shape, median_forward_backward, median_model_forward_backward,
};
use polygrad::gpu::list_adapters;
use polygrad::io::LossKind;
use polygrad::validate::{
    check_attention, check_model, model_validation_cases, random_model_input, validation_cases,
    validation_inputs, ATTENTION_TOLERANCE, MODEL_TOLERANCE,
};
use polygrad::{Attention, GpuContext, GpuModel, Loss, Model};

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
    /// One forward and backward pass of a model: writes y, grad.x and grad.<name> for every
    /// parameter to a safetensors file.
    Grad {
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
        /// Override the config's attention.
        #[arg(long, value_enum)]
        attention: Option<AttentionKind>,
        /// Override the config's degree of polynomial attention (even, 2 to 8).
        #[arg(long, value_name = "G")]
        degree: Option<u32>,
        /// vjp: the input's dy is dL/dy; mse: L = mean((y - target)^2).
        #[arg(long, value_enum, default_value_t = LossArg::Vjp)]
        loss: LossArg,
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
    },
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
    /// Time attention forward + backward (causal, one head, d_qk = 16, d_v = 64), or with
    /// --model a whole model, at several n; exits non-zero if the polynomial time grows faster
    /// than --max-ratio allows.
    Bench {
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
        /// Time the whole model (L = 4, D = 256, H = 4, d_qk = 16, d_v = 64, d_ff = 1024,
        /// causal, B = 1) instead of one attention head.
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
        /// Timed repetitions per n (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Largest allowed time(n_max) / time(n_min), for n_max / n_min = 16 by default.
        #[arg(long, default_value_t = 20.0)]
        max_ratio: f64,
    },
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
    let result = match cli.command {
        Command::Devices => devices(),
        Command::Grad {
            model,
            input,
            out,
            attention,
            degree,
            loss,
            adapter,
        } => grad(GradArgs {
            model,
            input,
            out,
            attention,
            degree,
            loss,
            adapter,
        }),
        Command::Validate {
            adapter,
            seed,
            attention,
        } => validate(adapter.as_deref(), seed, attention),
        Command::Bench {
            adapter,
            model,
            attention,
            degree,
            n,
            reps,
            max_ratio,
        } => bench(
            adapter.as_deref(),
            BenchTarget {
                model,
                only: attention,
                degree,
            },
            &n,
            reps,
            max_ratio,
        ),
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
    let adapters = list_adapters();
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

struct GradArgs {
    model: PathBuf,
    input: PathBuf,
    out: PathBuf,
    attention: Option<AttentionKind>,
    degree: Option<u32>,
    loss: LossArg,
    adapter: Option<String>,
}

fn grad(args: GradArgs) -> polygrad::Result<ExitCode> {
    let mut model = polygrad::io::read_model(&args.model)?;
    if args.attention.is_some() || args.degree.is_some() {
        let kind = args
            .attention
            .map_or(model.config().attention.clone(), |k| k.name().to_string());
        let degree = args.degree.unwrap_or(model.config().degree);
        let attention = Attention::from_setting(&kind, degree)?;
        model = model.with_config(model.config().with_attention(attention))?;
    }
    let kind = match args.loss {
        LossArg::Vjp => LossKind::Vjp,
        LossArg::Mse => LossKind::Mse,
    };
    let (x, loss) = polygrad::io::read_input(&args.input, kind)?;
    model.config().check_input("x", &x)?;
    let ctx = GpuContext::new(args.adapter.as_deref())?;
    let attention = model.config().attention_kind()?;
    let result = GpuModel::new(&ctx, &model)?.gradients(&ctx, &x, &loss)?;
    polygrad::io::write_gradients(&args.out, &result)?;
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
struct BenchTarget {
    model: bool,
    only: Option<AttentionKind>,
    degree: u32,
}

fn bench(
    adapter: Option<&str>,
    target: BenchTarget,
    sizes: &[usize],
    reps: usize,
    max_ratio: f64,
) -> polygrad::Result<ExitCode> {
    let ctx = GpuContext::new(adapter)?;
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
    for &n in sizes {
        let mut line = format!("{n:>8}");
        for (i, &attention) in attentions.iter().enumerate() {
            let t = if target.model {
                median_model_forward_backward(&ctx, benchmark_model_config(attention), n, reps)?
            } else {
                median_forward_backward(&ctx, attention, benchmark_shape(n), reps)?
            };
            line += &format!(" {:>11.2} ms", t.as_secs_f64() * 1e3);
            times[i].push(t);
        }
        if attentions.len() == 2 {
            let ratio =
                times[0].last().unwrap().as_secs_f64() / times[1].last().unwrap().as_secs_f64();
            line += &format!(" {ratio:>14.2}");
        }
        println!("{line}");
    }
    let mut failed = false;
    for (attention, t) in attentions.iter().zip(&times) {
        let (Some(first), Some(last)) = (t.first(), t.last()) else {
            continue;
        };
        if sizes.len() < 2 || sizes[sizes.len() - 1] <= sizes[0] {
            continue;
        }
        let ratio = last.as_secs_f64() / first.as_secs_f64();
        let linear = sizes[sizes.len() - 1] as f64 / sizes[0] as f64;
        print!(
            "{attention}: time(n={}) / time(n={}) = {ratio:.2} (linear: {linear:.0})",
            sizes[sizes.len() - 1],
            sizes[0]
        );
        if matches!(attention, Attention::Poly { .. }) {
            println!(", allowed: {max_ratio}");
            if ratio > max_ratio {
                println!("FAIL: polynomial attention's time grows faster than allowed");
                failed = true;
            }
        } else {
            println!(" (quadratic: {:.0})", linear * linear);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
