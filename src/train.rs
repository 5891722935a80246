//! A training loop on the device for the tasks of `polygrad train`: multi-query associative
//! recall (MQAR, as in the Zoology and Based papers) and bytes of a text. Each step's batch is
//! drawn from the run's seed and the step, so a checkpoint's seed and step are its whole RNG
//! state and a resumed run draws the batches an uninterrupted one would.

use std::time::Instant;

use rand::{Rng, SeedableRng};

use crate::attention::Attention;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::model::{AutoAttention, GpuModel, HeadKind, Loss, Model, ModelConfig, Tokens};
use crate::ops::adamw::{AdamW, AdamWState};

/// The target of positions no loss is taken at.
pub const IGNORE: i64 = -100;

/// What the model learns.
#[derive(Clone, Debug)]
pub enum Task {
    /// Multi-query associative recall: `pairs` key-value pairs (keys distinct, from the lower
    /// half of the vocabulary; values from the upper half), then queries filling the rest of
    /// the sequence, each a key of the pairs; the target at a query is its key's value, every
    /// other position is ignored.
    Mqar {
        /// Key-value pairs per sequence.
        pairs: usize,
        /// Vocabulary: keys from its lower half, values from its upper half.
        vocab: usize,
        /// Tokens per sequence.
        seq_len: usize,
    },
    /// Next-byte prediction on windows of a text: tokens are bytes (vocabulary 256).
    Text {
        /// The text.
        bytes: Vec<u8>,
        /// Tokens per sequence.
        seq_len: usize,
    },
}

impl Task {
    /// Refuses sizes the task cannot be drawn at, naming the flag.
    pub fn check(&self) -> Result<()> {
        let bad = |option: &str, message: String| {
            Err(Error::Option {
                option: option.into(),
                message,
            })
        };
        match *self {
            Task::Mqar {
                pairs,
                vocab,
                seq_len,
            } => {
                if pairs == 0 {
                    return bad("--pairs", "must be at least 1".into());
                }
                if vocab < 2 * pairs {
                    return bad("--vocab", format!("{vocab} cannot hold {pairs} distinct keys and their values (at least {})", 2 * pairs));
                }
                if seq_len <= 2 * pairs {
                    return bad("--seq-len", format!("{seq_len} leaves no room for a query after {pairs} pairs (at least {})", 2 * pairs + 1));
                }
            }
            Task::Text { ref bytes, seq_len } => {
                if seq_len == 0 {
                    return bad("--seq-len", "must be at least 1".into());
                }
                if bytes.len() <= seq_len {
                    return bad("--data", format!("holds {} bytes; a window of --seq-len {seq_len} and its next byte need at least {}", bytes.len(), seq_len + 1));
                }
            }
        }
        Ok(())
    }

    /// The task's vocabulary.
    pub fn vocab(&self) -> usize {
        match self {
            Task::Mqar { vocab, .. } => *vocab,
            Task::Text { .. } => 256,
        }
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        match self {
            Task::Mqar { seq_len, .. } | Task::Text { seq_len, .. } => *seq_len,
        }
    }

    /// The batch of step `step`: `batch` sequences and their targets (IGNORE where none).
    pub fn batch(&self, batch: usize, seed: u64, step: u64) -> (Tokens, Vec<i64>) {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let n = self.seq_len();
        let (mut ids, mut targets) = (Vec::with_capacity(batch * n), Vec::with_capacity(batch * n));
        for _ in 0..batch {
            match self {
                Task::Mqar { pairs, vocab, .. } => {
                    let half = (vocab / 2) as u32;
                    let mut keys: Vec<u32> = (0..half).collect();
                    for i in 0..*pairs {
                        keys.swap(i, rng.random_range(i..half as usize));
                    }
                    let values: Vec<u32> = (0..*pairs)
                        .map(|_| rng.random_range(half..*vocab as u32))
                        .collect();
                    for i in 0..*pairs {
                        ids.extend([keys[i], values[i]]);
                        targets.extend([IGNORE, IGNORE]);
                    }
                    for _ in 2 * pairs..n {
                        let i = rng.random_range(0..*pairs);
                        ids.push(keys[i]);
                        targets.push(values[i] as i64);
                    }
                }
                Task::Text { bytes, .. } => {
                    let start = rng.random_range(0..bytes.len() - n);
                    let window = &bytes[start..start + n + 1];
                    ids.extend(window[..n].iter().map(|&b| b as u32));
                    targets.extend(window[1..].iter().map(|&b| b as i64));
                }
            }
        }
        (
            Tokens {
                batch,
                seq_len: n,
                ids,
            },
            targets,
        )
    }

    /// A causal language model for the task: its vocabulary, positions up to its sequence
    /// length, and a tied head, on `core`'s blocks.
    pub fn model_config(&self, core: &ModelConfig) -> ModelConfig {
        ModelConfig {
            causal: true,
            vocab_size: Some(self.vocab()),
            max_seq: Some(self.seq_len()),
            head: Some(HeadKind::Tied),
            ..core.clone()
        }
    }
}

/// One step's figures: the CSV row of `polygrad train`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The step just taken, from 1.
    pub step: u64,
    /// The mean cross-entropy over the positions with a target.
    pub loss: f64,
    /// Of the positions with a target, the share whose largest logit is the target.
    pub accuracy: f64,
    /// Tokens of the batch per second of the step.
    pub tokens_per_s: f64,
    /// Since the trainer was made (or resumed).
    pub elapsed_s: f64,
    /// Bytes of polygrad's tensors alive on the device after the step.
    pub device_bytes: u64,
    /// The attention each layer ran (with automatic attention, chosen this step).
    pub attentions: Vec<Attention>,
}

/// A model, its AdamW state and a task, stepping on the device.
pub struct Trainer {
    model: GpuModel,
    state: AdamWState,
    opt: AdamW,
    task: Task,
    batch: usize,
    seed: u64,
    started: Instant,
    /// Automatic attention, decided per layer and step from the certificates; None: the
    /// config's.
    auto: Option<AutoAttention>,
}

impl Trainer {
    /// A fresh run of `model` on `task`.
    pub fn new(
        ctx: &GpuContext,
        model: &Model,
        (opt, task): (AdamW, Task),
        batch: usize,
        seed: u64,
    ) -> Result<Self> {
        opt.check()?;
        task.check()?;
        if batch == 0 {
            return Err(Error::Option {
                option: "--batch".into(),
                message: "must be at least 1".into(),
            });
        }
        let gpu = GpuModel::new(ctx, model)?;
        let state = AdamWState::new(ctx, &gpu)?;
        Ok(Trainer {
            model: gpu,
            state,
            opt,
            task,
            batch,
            seed,
            started: Instant::now(),
            auto: None,
        })
    }

    /// The run `checkpoint` holds, going on with `task` (which must fit its model).
    pub fn resume(
        ctx: &GpuContext,
        checkpoint: &Checkpoint,
        task: Task,
        batch: usize,
    ) -> Result<Self> {
        task.check()?;
        let config = checkpoint.model.config();
        if config.vocab_size != Some(task.vocab())
            || config.max_seq.is_some_and(|m| m < task.seq_len())
        {
            return Err(Error::Option {
                option: "--resume".into(),
                message: format!(
                    "the checkpoint's model (vocab_size {:?}, max_seq {:?}) does not fit the task (vocabulary {}, sequences of {})",
                    config.vocab_size, config.max_seq, task.vocab(), task.seq_len()
                ),
            });
        }
        let (model, state) = checkpoint.resume(ctx)?;
        Ok(Trainer {
            model,
            state,
            opt: checkpoint.adamw,
            task,
            batch,
            seed: checkpoint.seed,
            started: Instant::now(),
            auto: None,
        })
    }

    /// Every step from now on chooses each layer's attention from its certificate
    /// ([`GpuModel::forward_keep_tokens_auto`]).
    pub fn with_auto(self, auto: AutoAttention) -> Self {
        Trainer {
            auto: Some(auto),
            ..self
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.state.steps()
    }

    /// One step: the batch of this step, forward, cross-entropy, backward and AdamW, all on
    /// the device; the logits are read back for the accuracy.
    pub fn step(&mut self, ctx: &GpuContext) -> Result<StepReport> {
        let tick = Instant::now();
        let (tokens, targets) = self.task.batch(self.batch, self.seed, self.state.steps());
        let pass = match self.auto {
            Some(auto) => self.model.forward_keep_tokens_auto(ctx, &tokens, auto)?,
            None => self.model.forward_keep_tokens(ctx, &tokens)?,
        };
        let logits = pass.y(ctx)?;
        let accuracy = accuracy(&logits.data, self.task.vocab(), &targets);
        let loss = Loss::CrossEntropy {
            targets,
            ignore_index: IGNORE,
        };
        let grads = self.model.backward_loss(ctx, pass, &loss)?;
        self.state.step(ctx, &self.opt, &mut self.model, &grads)?;
        let value = grads.loss().expect("cross-entropy has a value");
        let attentions = grads.attentions().to_vec();
        drop(grads);
        ctx.wait("a training step")?;
        Ok(StepReport {
            step: self.state.steps(),
            loss: value,
            accuracy,
            tokens_per_s: tokens.ids.len() as f64 / tick.elapsed().as_secs_f64(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            device_bytes: ctx.live_bytes(),
            attentions,
        })
    }

    /// The run's state, for [`Checkpoint::save`].
    pub fn checkpoint(&self, ctx: &GpuContext) -> Result<Checkpoint> {
        Checkpoint::capture(ctx, &self.model, (&self.state, self.opt), self.seed)
    }

    /// The model on the device.
    pub fn model(&self) -> &GpuModel {
        &self.model
    }
}

/// The share of rows with a target whose largest logit (the first, on ties) is the target.
pub fn accuracy(logits: &[f32], classes: usize, targets: &[i64]) -> f64 {
    let (mut hits, mut counted) = (0usize, 0usize);
    for (row, &t) in logits.chunks_exact(classes).zip(targets) {
        if t == IGNORE {
            continue;
        }
        counted += 1;
        let best = (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        hits += (best as i64 == t) as usize;
    }
    hits as f64 / counted.max(1) as f64
}
