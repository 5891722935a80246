//! The polygrad command line: `devices`, `validate`, `bench`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use polygrad::bench::{benchmark_shape, median_forward_backward};
use polygrad::gpu::list_adapters;
use polygrad::validate::{
    check_attention, validation_cases, validation_inputs, ATTENTION_TOLERANCE,
};
use polygrad::{Attention, GpuContext};

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
    /// Run the attention kernels on an adapter and compare every output and gradient with the
    /// f64 CPU reference; exits non-zero on any mismatch.
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
    /// Time attention forward + backward (causal, one head, d_qk = 16, d_v = 64) at several n;
    /// exits non-zero if polynomial attention's time grows faster than --max-ratio allows.
    Bench {
        #[arg(long, value_name = "NAME")]
        adapter: Option<String>,
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
        Command::Validate {
            adapter,
            seed,
            attention,
        } => validate(adapter.as_deref(), seed, attention),
        Command::Bench {
            adapter,
            attention,
            degree,
            n,
            reps,
            max_ratio,
        } => bench(adapter.as_deref(), attention, degree, &n, reps, max_ratio),
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
    if failures > 0 {
        println!("{failures} check(s) FAILED on {}", ctx.adapter().label());
        return Ok(ExitCode::FAILURE);
    }
    println!("all checks passed on {}", ctx.adapter().label());
    Ok(ExitCode::SUCCESS)
}

fn bench(
    adapter: Option<&str>,
    only: Option<AttentionKind>,
    degree: u32,
    sizes: &[usize],
    reps: usize,
    max_ratio: f64,
) -> polygrad::Result<ExitCode> {
    let ctx = GpuContext::new(adapter)?;
    let kinds = match only {
        Some(kind) => vec![kind],
        None => vec![AttentionKind::Exact, AttentionKind::Poly],
    };
    let attentions = kinds
        .iter()
        .map(|k| Attention::from_setting(k.name(), degree))
        .collect::<polygrad::Result<Vec<_>>>()?;
    println!("adapter: {}", ctx.adapter().label());
    println!("forward + backward, causal, B=1 H=1 d_qk=16 d_v=64, median of {reps}");
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
            let t = median_forward_backward(&ctx, attention, benchmark_shape(n), reps)?;
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
