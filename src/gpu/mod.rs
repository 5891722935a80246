//! The GPU side of polygrad: one context per process (instance, adapter, device, queue), tensors
//! with shapes, a pipeline cache, and submission with errors turned into values.

mod context;
pub mod kernel;
pub mod kernel_check;
mod pipeline;
mod pool;
pub mod profile;
pub mod shaders;
mod tensor;
pub mod tune;

pub use context::{list_adapters, AdapterSummary, GpuContext};
pub(crate) use pipeline::{WindowedDispatch, Work};
pub use pool::Encoder;
pub use tensor::{GpuTensor, TensorData};
