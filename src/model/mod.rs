//! The transformer of shared/DESIGN.md §1: its config, its parameters on the host ([`Model`]),
//! and its forward and backward pass on the GPU ([`GpuModel`]).

mod auto;
mod block;
mod bounds;
mod config;
mod gpu;
mod memory;
mod params;

pub use auto::{AutoAttention, Decision};
pub use bounds::{bounds_report, compare_with_exact, ErrorChecks, LayerBound};
pub use config::{HeadKind, ModelConfig, ModelConfigBuilder, MAX_TABLE_ROWS};
pub(crate) use gpu::read_named;
pub use gpu::{DeviceGradients, ForwardPass, ForwardTrace, GpuModel, ModelGradients};
pub use memory::{available_memory, format_bytes, MemoryEstimate};
pub use params::{HostTensor, Model, Tensors};

/// Token ids of a batch, `[batch, seq_len]` row-major: a language model's input
/// ([`ModelConfig::vocab_size`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// The ids, sequence after sequence.
    pub ids: Vec<u32>,
}

impl Tokens {
    /// Refuses an empty batch or sequence and a count of ids other than batch x seq_len.
    pub fn new(batch: usize, seq_len: usize, ids: Vec<u32>) -> crate::error::Result<Self> {
        if batch == 0 || seq_len == 0 || ids.len() != batch * seq_len {
            return Err(crate::error::Error::LengthMismatch {
                tensor: "tokens".into(),
                shape: vec![batch, seq_len],
                expected: batch * seq_len,
                count: ids.len(),
            });
        }
        Ok(Tokens {
            batch,
            seq_len,
            ids,
        })
    }
}

/// What the backward pass starts from.
#[derive(Clone, Debug)]
pub enum Loss {
    /// dL/dy `[B, n, d_model]` given by the caller: any loss it can differentiate.
    Vjp(HostTensor),
    /// L = mean((y - target)^2) over all elements, target `[B, n, d_model]`.
    Mse(HostTensor),
    /// Cross-entropy, computed on the device: each row of y (its d_model values the logits)
    /// against its target class in `0..d_model`, one per row of `[B, n]` in order, averaged
    /// over the rows whose target is not `ignore_index`.
    CrossEntropy {
        /// One class per row of the output, `[B, n]` in order.
        targets: Vec<i64>,
        /// The target of rows the loss skips.
        ignore_index: i64,
    },
}

impl Loss {
    /// The name of what this loss is given: `dy`, `target` or `targets`.
    pub fn tensor_name(&self) -> &'static str {
        match self {
            Loss::Vjp(_) => "dy",
            Loss::Mse(_) => "target",
            Loss::CrossEntropy { .. } => "targets",
        }
    }

    /// The tensor this loss was given: dy, or the target (None for cross-entropy's classes).
    pub fn tensor(&self) -> Option<&HostTensor> {
        match self {
            Loss::Vjp(t) | Loss::Mse(t) => Some(t),
            Loss::CrossEntropy { .. } => None,
        }
    }

    /// For `Mse`: the loss and dL/dy = 2 (y - target) / N, from y computed on the GPU.
    fn mse(target: &HostTensor, y: &[f32]) -> (f64, Vec<f32>) {
        let n = y.len() as f64;
        let mut value = 0.0;
        let dy = y
            .iter()
            .zip(&target.data)
            .map(|(&a, &t)| {
                let diff = a as f64 - t as f64;
                value += diff * diff;
                (2.0 * diff / n) as f32
            })
            .collect();
        (value / n, dy)
    }
}
