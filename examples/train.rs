//! Training a small language model on the device through the library, step by step, as a
//! program linking polygrad as its backend would: the pass in two halves, cross-entropy and
//! AdamW on the device, parameters written in place, a checkpoint at the end.
//!
//! ```text
//! cargo run --release --example train              # MQAR, 200 steps, poly attention g = 2
//! cargo run --release --example train -- exact     # the same with exact attention
//! ```

use polygrad::train::{accuracy, Task, IGNORE};
use polygrad::{
    AdamW, AdamWState, Attention, Checkpoint, GpuContext, GpuModel, HeadKind, Loss, Model,
    ModelConfig,
};

fn main() -> polygrad::Result<()> {
    let attention = match std::env::args().nth(1).as_deref() {
        Some("exact") => Attention::Exact,
        _ => Attention::Poly { degree: 2 },
    };
    // MQAR: 4 key-value pairs, then queries; vocabulary 32, sequences of 32.
    let task = Task::Mqar {
        pairs: 4,
        vocab: 32,
        seq_len: 32,
    };
    let config = ModelConfig::builder()
        .layers(2)
        .width(64)
        .heads(4, 16, 16)
        .mlp(128)
        .attention(attention)
        .language_model(task.vocab(), Some(task.seq_len()), Some(HeadKind::Tied))
        .build()?;
    let seed = 7;
    let model = Model::init(config, seed)?;

    let ctx = GpuContext::new(None)?;
    println!("adapter: {}, {attention}", ctx.adapter().label());
    let mut gpu = GpuModel::new(&ctx, &model)?;
    let mut state = AdamWState::new(&ctx, &gpu)?;
    // lr 1e-3: MQAR stays on its plateau at 3e-3 (BENCHMARKS.md, "Training").
    let opt = AdamW::default();
    for step in 0..200u64 {
        let (tokens, targets) = task.batch(16, seed, step);
        // Forward, keeping the activations on the device; the logits are read for accuracy.
        let pass = gpu.forward_keep_tokens(&ctx, &tokens)?;
        let logits = pass.y(&ctx)?;
        let acc = accuracy(&logits.data, task.vocab(), &targets);
        let loss = Loss::CrossEntropy {
            targets,
            ignore_index: IGNORE,
        };
        // Backward from the cross-entropy computed on the device; gradients stay there.
        let grads = gpu.backward_loss(&ctx, pass, &loss)?;
        // AdamW updates the parameters in place; nothing returns to the host.
        state.step(&ctx, &opt, &mut gpu, &grads)?;
        if (step + 1) % 20 == 0 {
            let value = grads.loss().unwrap_or(f64::NAN);
            println!("step {:>4}  loss {value:.4}  accuracy {acc:.3}", step + 1);
        }
    }
    // The whole run's state (parameters, moments, step, seed), for Checkpoint::resume.
    let path = std::env::temp_dir().join("polygrad-example-train.safetensors");
    Checkpoint::capture(&ctx, &gpu, (&state, opt), seed)?.save(&path)?;
    println!("checkpoint: {}", path.display());
    Ok(())
}
