//! `polygrad train`: a language model trained on the device on MQAR or the bytes of a text,
//! with a progress bar, a CSV of every step, a plot of the curves, checkpoints and
//! `--compare` (exact, poly g = 2 and poly g = 4 from the same seed and data).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use polygrad::train::{StepReport, Task, Trainer};
use polygrad::{AdamW, Attention, Checkpoint, GpuContext, Model, ModelConfig};

use crate::{option_error, plot};

/// The CSV header, one row per step.
const CSV_HEADER: &str = "step,loss,accuracy,tokens_per_s,elapsed_s,device_bytes";
/// The checkpoint's file in `--checkpoint DIR`.
const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskKind {
    /// Multi-query associative recall (--pairs, --vocab, --seq-len).
    Mqar,
    /// Next-byte prediction on --data FILE.
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TrainAttention {
    Exact,
    Poly,
    /// Each layer's attention chosen every step from its certificate (--tolerance,
    /// --max-degree): the lowest degree certified within the tolerance, else exact.
    Auto,
}

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value = "mqar")]
    task: TaskKind,
    /// The text of --task text (its bytes are the tokens).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// MQAR: key-value pairs per sequence.
    #[arg(long, default_value_t = 8)]
    pairs: usize,
    /// MQAR: vocabulary (keys from its lower half, values from its upper half).
    #[arg(long, default_value_t = 64)]
    vocab: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long, value_enum, default_value = "poly")]
    attention: TrainAttention,
    /// Degree of the polynomial attention.
    #[arg(long, default_value_t = 2)]
    degree: u32,
    /// --attention auto: the certified error each layer must meet.
    #[arg(long, default_value_t = 1e-2)]
    tolerance: f64,
    /// --attention auto: the highest degree tried.
    #[arg(long, default_value_t = polygrad::AutoAttention::DEFAULT_MAX_DEGREE)]
    max_degree: u32,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// d_model.
    #[arg(long, default_value_t = 64)]
    width: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// d_qk and d_v of each head.
    #[arg(long, default_value_t = 16)]
    head_dim: usize,
    /// d_ff.
    #[arg(long, default_value_t = 256)]
    mlp: usize,
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// AdamW's learning rate, by default AdamW's (1e-3; at 3e-3 MQAR stayed on its plateau
    /// where 1e-3 learned it, in polygrad and in JAX: BENCHMARKS.md).
    #[arg(long, default_value_t = AdamW::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = AdamW::default().weight_decay)]
    weight_decay: f64,
    /// Clip gradients to this global norm (0: no clipping).
    #[arg(long, default_value_t = AdamW::default().max_grad_norm.unwrap_or(0.0))]
    clip: f64,
    /// Sequences per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Seed of the initialisation and of the batches (default: a fresh one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Save a checkpoint into DIR every --checkpoint-every steps and at the end.
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Go on from the checkpoint in --checkpoint DIR (its model, optimizer, step and seed).
    #[arg(long)]
    resume: bool,
    /// Write one row per step to FILE (with --compare, one file per run: FILE's stem and the
    /// attention).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Draw loss and accuracy against the step into FILE (.svg or .png), each point the mean of
    /// a block of steps (about 100 blocks).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Train exact, poly g = 2 and poly g = 4 from the same seed and data, one after the other.
    #[arg(long)]
    compare: bool,
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
}

/// Refuses flags that cannot train, before anything runs.
fn check_flags(args: &TrainArgs) -> polygrad::Result<()> {
    if args.steps == 0 {
        return Err(option_error("--steps", "must be at least 1".into()));
    }
    if args.checkpoint_every == 0 {
        return Err(option_error(
            "--checkpoint-every",
            "must be at least 1".into(),
        ));
    }
    if args.resume && args.checkpoint.is_none() {
        return Err(option_error("--resume", "needs --checkpoint DIR".into()));
    }
    if args.resume && args.compare {
        return Err(option_error(
            "--resume",
            "resumes one run; --compare trains three".into(),
        ));
    }
    if args.task == TaskKind::Text && args.data.is_none() {
        return Err(option_error(
            "--data",
            "--task text needs --data FILE".into(),
        ));
    }
    if args.task == TaskKind::Mqar && args.data.is_some() {
        return Err(option_error("--data", "is read by --task text only".into()));
    }
    if !(args.clip.is_finite() && args.clip >= 0.0) {
        return Err(option_error(
            "--clip",
            format!("{} is not a finite value >= 0", args.clip),
        ));
    }
    if let Some(Err(message)) = args.plot.as_deref().map(plot::check) {
        return Err(polygrad::Error::File {
            path: args
                .plot
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
                .to_string(),
            message,
        });
    }
    Ok(())
}

fn task(args: &TrainArgs) -> polygrad::Result<Task> {
    let task = match args.task {
        TaskKind::Mqar => Task::Mqar {
            pairs: args.pairs,
            vocab: args.vocab,
            seq_len: args.seq_len,
        },
        TaskKind::Text => {
            let path = args.data.as_deref().expect("checked by check_flags");
            let bytes = std::fs::read(path).map_err(|e| polygrad::Error::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            Task::Text {
                bytes,
                seq_len: args.seq_len,
            }
        }
    };
    task.check()?;
    Ok(task)
}

fn adamw(args: &TrainArgs) -> AdamW {
    AdamW {
        lr: args.lr,
        weight_decay: args.weight_decay,
        max_grad_norm: (args.clip > 0.0).then_some(args.clip),
        ..AdamW::default()
    }
}

/// The blocks the flags ask for, with `attention`.
fn core_config(args: &TrainArgs, attention: Attention) -> polygrad::Result<ModelConfig> {
    ModelConfig::builder()
        .layers(args.layers)
        .width(args.width)
        .heads(args.heads, args.head_dim, args.head_dim)
        .mlp(args.mlp)
        .attention(attention)
        .build()
}

pub fn train(args: TrainArgs) -> polygrad::Result<ExitCode> {
    check_flags(&args)?;
    let task = task(&args)?;
    let ctx = GpuContext::new(args.adapter.as_deref())?;
    let seed = args.seed.unwrap_or_else(rand::random);
    eprintln!("adapter: {}; seed {seed}", ctx.adapter().label());
    let runs: Vec<(String, Attention)> = if args.compare {
        vec![
            ("exact".into(), Attention::Exact),
            ("poly g=2".into(), Attention::Poly { degree: 2 }),
            ("poly g=4".into(), Attention::Poly { degree: 4 }),
        ]
    } else {
        let attention = match args.attention {
            TrainAttention::Exact => Attention::Exact,
            TrainAttention::Poly => Attention::Poly {
                degree: args.degree,
            },
            // Auto: the config names the highest degree tried; each layer's attention is
            // chosen every step.
            TrainAttention::Auto => Attention::Poly {
                degree: args.max_degree,
            },
        };
        let label = match args.attention {
            TrainAttention::Auto => format!("auto (tolerance {})", args.tolerance),
            _ => attention.to_string(),
        };
        vec![(label, attention)]
    };
    let auto = match (args.attention, args.compare) {
        (TrainAttention::Auto, false) => Some(polygrad::AutoAttention::new(
            args.tolerance,
            args.max_degree,
        )?),
        _ => None,
    };
    let mut curves = Vec::new();
    for (label, attention) in runs {
        let csv = args
            .csv
            .as_deref()
            .map(|p| csv_path(p, args.compare.then_some(&label)));
        let points = run(&ctx, &args, (&task, attention, auto), seed, csv.as_deref())?;
        curves.push(plot::Curves {
            label,
            points: block_means(&points),
        });
    }
    if let Some(path) = &args.plot {
        let title = match &task {
            Task::Mqar {
                pairs,
                vocab,
                seq_len,
            } => {
                format!("MQAR: {pairs} pairs, vocabulary {vocab}, sequences of {seq_len}")
            }
            Task::Text { seq_len, .. } => format!(
                "bytes of {}, sequences of {seq_len}",
                args.data.as_deref().unwrap_or(Path::new("")).display()
            ),
        };
        plot::plot_training(path, &title, &curves).map_err(|message| polygrad::Error::File {
            path: path.display().to_string(),
            message,
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The points averaged over consecutive blocks of steps, about 100 blocks in all (one step's
/// loss and accuracy over a small batch are too noisy to read), each at its last step.
fn block_means(points: &[(f64, f64, f64)]) -> Vec<(f64, f64, f64)> {
    let size = points.len().div_ceil(100).max(1);
    points
        .chunks(size)
        .map(|block| {
            let n = block.len() as f64;
            let step = block.last().expect("chunks are not empty").0;
            let loss = block.iter().map(|p| p.1).sum::<f64>() / n;
            let accuracy = block.iter().map(|p| p.2).sum::<f64>() / n;
            (step, loss, accuracy)
        })
        .collect()
}

/// FILE, or with --compare FILE's stem, the run's label and FILE's extension.
fn csv_path(path: &Path, label: Option<&String>) -> PathBuf {
    let Some(label) = label else {
        return path.to_path_buf();
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.{tag}{ext}"))
}

/// One run to --steps: its (step, loss, accuracy) points.
fn run(
    ctx: &GpuContext,
    args: &TrainArgs,
    (task, attention, auto): (&Task, Attention, Option<polygrad::AutoAttention>),
    seed: u64,
    csv: Option<&Path>,
) -> polygrad::Result<Vec<(f64, f64, f64)>> {
    let checkpoint = args.checkpoint.as_deref().map(|d| d.join(CHECKPOINT_FILE));
    let mut trainer = if args.resume {
        let path = checkpoint.as_deref().expect("checked by check_flags");
        let saved = Checkpoint::load(path)?;
        eprintln!("resuming from step {} of {}", saved.step, path.display());
        Trainer::resume(ctx, &saved, task.clone(), args.batch)?
    } else {
        let config = task.model_config(&core_config(args, attention)?);
        let model = Model::init(config, seed)?;
        Trainer::new(ctx, &model, (adamw(args), task.clone()), args.batch, seed)?
    };
    if let Some(auto) = auto {
        trainer = trainer.with_auto(auto);
    }
    if let Some(dir) = &args.checkpoint {
        std::fs::create_dir_all(dir).map_err(|e| polygrad::Error::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let mut csv_file = match csv {
        Some(path) => Some(open_csv(path, args.resume)?),
        None => None,
    };
    let bar = progress_bar(args.steps, &attention.to_string());
    bar.set_position(trainer.steps());
    let mut points = Vec::new();
    let mut last_attentions = Vec::new();
    while trainer.steps() < args.steps {
        let r = trainer.step(ctx)?;
        if !r.loss.is_finite() {
            return Err(polygrad::Error::NonFinite {
                tensor: format!("the loss at step {}", r.step),
                index: 0,
                value: r.loss as f32,
            });
        }
        points.push((r.step as f64, r.loss, r.accuracy));
        if let Some(file) = csv_file.as_mut() {
            write_row(file, csv.expect("open"), &r)?;
        }
        bar.set_position(r.step);
        let mut message = format!(
            "loss {:.4} accuracy {:.3} {:.0} tokens/s",
            r.loss, r.accuracy, r.tokens_per_s
        );
        if auto.is_some() {
            message += &format!(" layers: {}", names(&r.attentions));
        }
        bar.set_message(message);
        last_attentions = r.attentions.clone();
        let last = r.step == args.steps;
        if let Some(path) = checkpoint
            .as_deref()
            .filter(|_| last || r.step % args.checkpoint_every == 0)
        {
            trainer.checkpoint(ctx)?.save(path)?;
        }
    }
    bar.finish();
    if let Some(&(step, loss, accuracy)) = points.last() {
        eprintln!("{attention}: step {step} loss {loss:.4} accuracy {accuracy:.3}");
    }
    if auto.is_some() {
        eprintln!(
            "automatic attention at the last step: {}",
            names(&last_attentions)
        );
    }
    Ok(points)
}

fn file_error(path: &Path, e: std::io::Error) -> polygrad::Error {
    polygrad::Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The CSV, with its header; appended to when resuming a run that wrote it.
fn open_csv(path: &Path, resume: bool) -> polygrad::Result<std::fs::File> {
    let append = resume && path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    if !append {
        writeln!(file, "{CSV_HEADER}").map_err(|e| file_error(path, e))?;
    }
    Ok(file)
}

fn write_row(file: &mut std::fs::File, path: &Path, r: &StepReport) -> polygrad::Result<()> {
    writeln!(
        file,
        "{},{},{},{:.1},{:.3},{}",
        r.step, r.loss, r.accuracy, r.tokens_per_s, r.elapsed_s, r.device_bytes
    )
    .map_err(|e| file_error(path, e))
}

/// A bar on stderr with the step and the last loss; indicatif hides it off a terminal.
fn progress_bar(steps: u64, label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{label} {{bar:30}} {{pos}}/{{len}} {{msg}} ({{elapsed}})"
        ))
        .expect("a valid template"),
    );
    bar
}

/// "poly g=2, exact": each layer's attention.
fn names(attentions: &[Attention]) -> String {
    let names: Vec<String> = attentions.iter().map(|a| a.to_string()).collect();
    names.join(", ")
}
