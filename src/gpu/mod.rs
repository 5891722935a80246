//! The GPU side of polygrad: one context per process (instance, adapter, device, queue), tensors
//! with shapes, a pipeline cache, and submission with errors turned into values.

mod context;
mod pipeline;
pub mod shaders;
mod tensor;

pub use context::{list_adapters, AdapterSummary, GpuContext};
pub use pipeline::Binding;
pub use tensor::{GpuTensor, TensorData};
