//! GPU tensors: a storage buffer with a name and a shape, checked against the device's limits
//! before anything is allocated.

use crate::error::{Error, Result};

use std::sync::Arc;

use super::context::AllocationMeter;
use super::pool::BufferPool;
use super::GpuContext;

/// A row-major f32 (or packed u32) tensor in a GPU storage buffer.
pub struct GpuTensor {
    pub(crate) buffer: wgpu::Buffer,
    shape: Vec<usize>,
    name: String,
    /// Whether kernels may bind it as uniform windows straight from its storage
    /// ([`Self::windowable_output`]).
    windowable: bool,
    /// The context's meter, told when this tensor is dropped.
    meter: Arc<AllocationMeter>,
    /// The context's pool, which keeps the buffer when this tensor is dropped.
    pool: Arc<BufferPool>,
}

impl Drop for GpuTensor {
    fn drop(&mut self) {
        self.meter.free(self.buffer.size());
        self.pool.give_back(self.buffer.clone());
    }
}

/// Host data that can fill a tensor.
pub enum TensorData<'a> {
    /// f32 values; refused if any is NaN or infinite.
    F32(&'a [f32]),
    /// Raw 4-byte words (tables, packed indices), taken as they are.
    Words(&'a [u8]),
}

impl GpuTensor {
    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Its name (in errors and profiles).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether matmul_windows may bind this tensor's storage directly as uniform windows.
    pub fn is_windowable(&self) -> bool {
        self.windowable
    }

    /// Uploads f32 data after checking its length, finiteness and size.
    pub fn upload(ctx: &GpuContext, name: &str, shape: &[usize], data: &[f32]) -> Result<Self> {
        Self::from_data(ctx, name, shape, TensorData::F32(data))
    }

    /// Uploads `data` after checking it against `shape`.
    pub fn from_data(
        ctx: &GpuContext,
        name: &str,
        shape: &[usize],
        data: TensorData,
    ) -> Result<Self> {
        let bytes = Self::checked_bytes(name, shape, data)?;
        let tensor = Self::allocate(ctx, name, shape)?;
        ctx.queue.write_buffer(&tensor.buffer, 0, bytes);
        Ok(tensor)
    }

    /// Overwrites the tensor's values in place (no allocation): refused, before anything is
    /// written, if `data` is not the tensor's length or holds a NaN or infinity.
    pub fn write(&self, ctx: &GpuContext, data: &[f32]) -> Result<()> {
        let bytes = Self::checked_bytes(&self.name, &self.shape, TensorData::F32(data))?;
        ctx.queue.write_buffer(&self.buffer, 0, bytes);
        Ok(())
    }

    /// The bytes of `data`, refused if they are not `shape`'s count or hold a NaN or infinity.
    fn checked_bytes<'d>(name: &str, shape: &[usize], data: TensorData<'d>) -> Result<&'d [u8]> {
        let expected: usize = shape.iter().product();
        let (bytes, count): (&[u8], usize) = match data {
            TensorData::F32(values) => {
                if let Some((index, &value)) =
                    values.iter().enumerate().find(|(_, v)| !v.is_finite())
                {
                    return Err(Error::NonFinite {
                        tensor: name.into(),
                        index,
                        value,
                    });
                }
                (bytemuck::cast_slice(values), values.len())
            }
            TensorData::Words(raw) => (raw, raw.len() / 4),
        };
        if count != expected || bytes.len() != 4 * expected {
            return Err(Error::LengthMismatch {
                tensor: name.into(),
                shape: shape.to_vec(),
                expected,
                count,
            });
        }
        Ok(bytes)
    }

    /// [`Self::output`] that matmul_windows may also bind directly as uniform windows
    /// (windows-direct-16x4): UNIFORM usage, and one window of slack past the end so that the
    /// window at its last matrix is in bounds. The slack is never part of the tensor.
    pub fn windowable_output(ctx: &GpuContext, name: &str, shape: &[usize]) -> Result<Self> {
        let mut tensor = Self::allocate_for(ctx, name, shape, wgpu::BufferUsages::UNIFORM, true)?;
        tensor.windowable = true;
        if ctx.poison_outputs() {
            let nan = vec![f32::NAN; tensor.len()];
            ctx.queue
                .write_buffer(&tensor.buffer, 0, bytemuck::cast_slice(&nan));
        }
        Ok(tensor)
    }

    /// [`Self::upload`] into a tensor made by [`Self::windowable_output`].
    pub fn upload_windowable(
        ctx: &GpuContext,
        name: &str,
        shape: &[usize],
        data: &[f32],
    ) -> Result<Self> {
        let bytes = Self::checked_bytes(name, shape, TensorData::F32(data))?;
        let tensor = Self::windowable_output(ctx, name, shape)?;
        ctx.queue.write_buffer(&tensor.buffer, 0, bytes);
        Ok(tensor)
    }

    /// The bytes of the buffer [`Self::windowable_output`] allocates for `shape`.
    pub(crate) fn windowable_bytes(shape: &[usize]) -> u64 {
        Self::shape_bytes(shape) + crate::gpu::kernel::WINDOW_BYTES
    }

    /// An output or scratch tensor; filled with NaN when the context poisons outputs.
    pub fn output(ctx: &GpuContext, name: &str, shape: &[usize]) -> Result<Self> {
        let tensor = Self::allocate(ctx, name, shape)?;
        if ctx.poison_outputs() {
            let nan = vec![f32::NAN; tensor.len()];
            ctx.queue
                .write_buffer(&tensor.buffer, 0, bytemuck::cast_slice(&nan));
        }
        Ok(tensor)
    }

    /// A scratch tensor that kernels also bind as uniform windows (`Access::Window`).
    pub(crate) fn windows(ctx: &GpuContext, name: &str, len: usize) -> Result<Self> {
        Self::allocate_for(ctx, name, &[len], wgpu::BufferUsages::UNIFORM, false)
    }

    /// Checks the size against max_buffer_size and max_storage_buffer_binding_size, then
    /// allocates, with allocation failures caught as errors.
    fn allocate(ctx: &GpuContext, name: &str, shape: &[usize]) -> Result<Self> {
        Self::allocate_for(ctx, name, shape, wgpu::BufferUsages::empty(), false)
    }

    fn allocate_for(
        ctx: &GpuContext,
        name: &str,
        shape: &[usize],
        extra_usage: wgpu::BufferUsages,
        window_slack: bool,
    ) -> Result<Self> {
        let slack = if window_slack {
            crate::gpu::kernel::WINDOW_BYTES
        } else {
            0
        };
        let bytes = Self::check_size(ctx, name, shape, slack)?;
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST
            | extra_usage;
        let element_bytes = 4 * shape.iter().product::<usize>() as u64;
        let buffer = match ctx.pool.take(bytes, usage, element_bytes) {
            Some(kept) => kept,
            None => ctx.checked(&format!("allocating tensor {name}"), || {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(name),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            })?,
        };
        ctx.meter.allocate(bytes);
        Ok(GpuTensor {
            buffer,
            shape: shape.to_vec(),
            name: name.into(),
            windowable: false,
            meter: ctx.meter.clone(),
            pool: ctx.pool.clone(),
        })
    }

    /// The bytes of the buffer of a tensor of `shape` (saturating: an estimate, not a check).
    pub(crate) fn shape_bytes(shape: &[usize]) -> u64 {
        Self::padded_bytes(
            shape
                .iter()
                .fold(1u64, |acc, &d| acc.saturating_mul(d as u64)),
        )
    }

    /// The bytes of the buffer of a tensor of `elements` f32 values.
    pub(crate) fn padded_bytes(elements: u64) -> u64 {
        // Padded to whole vec4<u64>s (32 bytes): kernels that bind tensors as vec4 or
        // vec4<u64> arrays (matmul.wgsl, matmul_int64.wgsl) then read the last partial element
        // in bounds, and a binding as vec4<u64> holds at least one. The padding is zero and
        // never part of the tensor.
        elements.saturating_mul(4).next_multiple_of(32)
    }

    /// The bytes an f32 tensor of `shape` takes, or an error naming `name` and the limit it
    /// exceeds. Lets an operation refuse a too-large job before it allocates anything.
    pub(crate) fn check_size(
        ctx: &GpuContext,
        name: &str,
        shape: &[usize],
        slack: u64,
    ) -> Result<u64> {
        let elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| {
                Error::shape(format!("tensor {name}"), format!("{shape:?} overflows"))
            })?;
        if elements == 0 {
            return Err(Error::shape(
                format!("tensor {name}"),
                format!("{shape:?} has no elements"),
            ));
        }
        let bytes = Self::padded_bytes(elements).saturating_add(slack);
        let limits = ctx.limits();
        for (limit, max) in [
            (
                "max_storage_buffer_binding_size",
                limits.max_storage_buffer_binding_size,
            ),
            ("max_buffer_size", limits.max_buffer_size),
        ] {
            if bytes > max {
                return Err(Error::TooLarge {
                    tensor: name.into(),
                    bytes,
                    limit,
                    max,
                });
            }
        }
        Ok(bytes)
    }

    /// Copies the tensor back to the host (waits for all submitted work).
    pub fn download(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        Ok(Self::download_all(ctx, &[self])?.remove(0))
    }

    /// Copies several tensors back in one readback: one staging buffer, one submission, one
    /// wait (waits for all submitted work).
    pub fn download_all(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
        let names: Vec<&str> = tensors.iter().map(|t| t.name()).collect();
        let during = format!("reading back {}", names.join(", "));
        let size: u64 = tensors.iter().map(|t| t.buffer.size()).sum();
        if size == 0 {
            return Ok(vec![Vec::new(); tensors.len()]);
        }
        let staging = ctx.checked(&during, || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut encoder = ctx.encoder("readback");
        let mut offset = 0;
        for t in tensors {
            // Every tensor is a whole number of f32, so offsets keep the 4-byte copy alignment.
            encoder.copy_buffer_to_buffer(&t.buffer, 0, &staging, offset, t.buffer.size());
            offset += t.buffer.size();
        }
        ctx.submit_and_wait(&during, encoder)?;
        let slice = staging.slice(..);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        ctx.wait(&during)?;
        receiver
            .recv()
            .map_err(|e| Error::gpu(&during, e))?
            .map_err(|e| Error::gpu(&during, e))?;
        let values = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::gpu(&during, e))?;
            let all: &[f32] = bytemuck::cast_slice(&view);
            let mut start = 0;
            tensors
                .iter()
                .map(|t| {
                    let part = all[start..start + t.len()].to_vec();
                    start += t.buffer.size() as usize / 4;
                    part
                })
                .collect()
        };
        staging.unmap();
        Ok(values)
    }
}
