//! Gradients of a random two-layer model on the GPU, through the library API, with the norm
//! of every gradient printed.
//!
//! ```text
//! cargo run --release --example gradients              # default adapter
//! cargo run --release --example gradients -- DIR       # also writes DIR/model.safetensors and
//!                                                      # DIR/input.safetensors for `polygrad grad`
//! ```
//! WGPU_ADAPTER_NAME and WGPU_BACKEND choose the adapter, as for the command line.

use std::collections::HashMap;
use std::path::PathBuf;

use polygrad::validate::random_model_input;
use polygrad::{AttentionKind, GpuContext, GpuModel, Loss, Model, ModelConfig};

fn main() -> polygrad::Result<()> {
    let config = ModelConfig {
        n_layers: 2,
        d_model: 64,
        n_heads: 4,
        d_qk: 16,
        d_v: 16,
        d_ff: 256,
        causal: true,
        attention: AttentionKind::Poly,
        degree: 2,
        ln_eps: 1e-5,
        vocab_size: None,
        max_seq: None,
        head: None,
    };
    // Parameters can come from memory (as here) or from a file: polygrad::io::read_model.
    let model = Model::random(config, 1)?;
    let (x, dy) = random_model_input(model.config(), 2, 128, 2);

    let ctx = GpuContext::new(None)?;
    println!("adapter: {}", ctx.adapter().label());
    let gpu_model = GpuModel::new(&ctx, &model)?;
    let result = gpu_model.gradients(&ctx, &x, &Loss::Vjp(dy.clone()))?;

    println!("{:<28} {:>14} {:>12}", "tensor", "shape", "norm");
    println!(
        "{:<28} {:>14} {:>12.5}",
        "y",
        format!("{:?}", result.y.shape),
        result.y.norm()
    );
    println!(
        "{:<28} {:>14} {:>12.5}",
        "grad.x",
        format!("{:?}", result.grad_x.shape),
        result.grad_x.norm()
    );
    for (name, g) in &result.grads {
        println!(
            "{:<28} {:>14} {:>12.5}",
            format!("grad.{name}"),
            format!("{:?}", g.shape),
            g.norm()
        );
    }

    if let Some(dir) = std::env::args().nth(1).map(PathBuf::from) {
        std::fs::create_dir_all(&dir).map_err(|e| polygrad::Error::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        polygrad::io::write_model(&dir.join("model.safetensors"), &model)?;
        let input = polygrad::model::Tensors::from([("x".to_string(), x), ("dy".to_string(), dy)]);
        polygrad::io::write_tensors(&dir.join("input.safetensors"), &input, HashMap::new())?;
        println!(
            "wrote {0}/model.safetensors and {0}/input.safetensors",
            dir.display()
        );
    }
    Ok(())
}
