//! polygrad: transformer gradients on any GPU that wgpu reaches, with softmax attention
//! replaced by its polynomial-method approximation so that forward and backward cost time
//! linear in the sequence length. See README.md and shared/DESIGN.md.

#![warn(missing_docs)]

pub mod attention;
pub mod bench;
pub mod checkpoint;
pub mod error;
pub mod gpu;
pub mod io;
pub mod model;
pub mod ops;
pub mod poly;
pub mod reference;
pub mod sweep;
pub mod train;
pub mod validate;

pub use attention::{Attention, AttentionKind, AttentionShape};
pub use checkpoint::Checkpoint;
pub use error::{Error, Result};
pub use gpu::{GpuContext, GpuTensor};
pub use model::{
    bounds_report, compare_with_exact, AutoAttention, DeviceGradients, ErrorChecks, ForwardPass,
    GpuModel, HeadKind, HostTensor, LayerBound, Loss, Model, ModelConfig, ModelConfigBuilder,
    ModelGradients, Tensors, Tokens,
};
pub use ops::adamw::{AdamW, AdamWState};
