//! Recycled tensor buffers. A dropped tensor's buffer is kept, keyed by its size and usage, and
//! the next tensor of the same size and usage takes it instead of a fresh allocation.
//!
//! Why: a fresh buffer costs more than its kernels' loads on a CPU driver. wgpu zero-fills it
//! and the operating system faults in and clears every page, serially on lavapipe's queue
//! thread while the shader threads wait. A whole-model pass at n = 16384 spent about 15% of
//! its time there (perf, BENCHMARKS.md). With recycling, the second and later passes of a
//! program allocate nothing, and within a pass later layers reuse the scratch of earlier ones.
//!
//! When a buffer may be reused: only while no encoder is open. An open encoder may have
//! recorded work that reads a dropped tensor. If its buffer were handed to a new tensor and
//! written (a queue write runs before any later submission), that recorded work would read the
//! new contents. So buffers dropped while an encoder is open wait in `pending` until the last
//! open encoder is submitted or dropped. Work submitted before then precedes any new use in
//! the queue's order.
//!
//! A fresh buffer is zero; a reused one must look the same where no tensor writes. The bytes
//! past a tensor's elements (vec4 padding, a windowable tensor's slack) are cleared at the
//! start of the next submission. Uploads and kernels only write the elements themselves.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub(crate) struct BufferPool {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    open_encoders: usize,
    /// Buffers of tensors dropped while an encoder was open.
    pending: Vec<wgpu::Buffer>,
    /// Reusable buffers by (size, usage bits).
    free: HashMap<(u64, u32), Vec<wgpu::Buffer>>,
    free_bytes: u64,
    /// (buffer, first byte past the elements) of reused buffers, to zero to their end.
    clears: Vec<(wgpu::Buffer, u64)>,
}

impl PoolState {
    fn make_free(&mut self, buffer: wgpu::Buffer) {
        self.free_bytes += buffer.size();
        self.free
            .entry((buffer.size(), buffer.usage().bits()))
            .or_default()
            .push(buffer);
    }

    fn release_pending(&mut self) {
        for buffer in std::mem::take(&mut self.pending) {
            self.make_free(buffer);
        }
    }
}

impl BufferPool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept buffer of exactly `size` bytes and `usage` for a tensor of `element_bytes`.
    /// The bytes past the elements are zeroed before the next submission's work.
    pub(crate) fn take(
        &self,
        size: u64,
        usage: wgpu::BufferUsages,
        element_bytes: u64,
    ) -> Option<wgpu::Buffer> {
        let mut state = self.lock();
        let buffer = state.free.get_mut(&(size, usage.bits()))?.pop()?;
        state.free_bytes -= size;
        if element_bytes < size {
            state.clears.push((buffer.clone(), element_bytes));
        }
        Some(buffer)
    }

    /// Keeps the buffer of a dropped tensor.
    pub(crate) fn give_back(&self, buffer: wgpu::Buffer) {
        let mut state = self.lock();
        if state.open_encoders == 0 {
            state.make_free(buffer);
        } else {
            state.pending.push(buffer);
        }
    }

    fn encoder_opened(&self) {
        self.lock().open_encoders += 1;
    }

    fn encoder_closed(&self) {
        let mut state = self.lock();
        state.open_encoders -= 1;
        if state.open_encoders == 0 {
            state.release_pending();
        }
    }

    /// The clears reused buffers need, recorded into `encoder` (nothing if none).
    pub(crate) fn record_clears(&self, encoder: &mut wgpu::CommandEncoder) -> bool {
        let clears = std::mem::take(&mut self.lock().clears);
        for (buffer, from) in &clears {
            encoder.clear_buffer(buffer, *from, None);
        }
        !clears.is_empty()
    }

    /// Bytes of buffers kept for reuse.
    pub(crate) fn cached_bytes(&self) -> u64 {
        self.lock().free_bytes
    }

    /// Frees every kept buffer (buffers still pending stay until they are free).
    pub(crate) fn release_cached(&self) {
        let mut state = self.lock();
        state.free.clear();
        state.free_bytes = 0;
    }
}

/// A command encoder from [`super::GpuContext::encoder`]: wgpu's, plus the count of open
/// encoders the buffer pool needs. Derefs to [`wgpu::CommandEncoder`], so operations record
/// into it as into wgpu's; [`super::GpuContext::submit`] consumes it.
pub struct Encoder {
    inner: Option<wgpu::CommandEncoder>,
    pool: Arc<BufferPool>,
}

impl Encoder {
    pub(crate) fn new(inner: wgpu::CommandEncoder, pool: Arc<BufferPool>) -> Self {
        pool.encoder_opened();
        Encoder {
            inner: Some(inner),
            pool,
        }
    }

    /// Finishes the recorded commands. The encoder still counts as open until it is dropped,
    /// so that [`super::GpuContext::submit`] can submit them first.
    pub(crate) fn finish(&mut self) -> Option<wgpu::CommandBuffer> {
        self.inner.take().map(wgpu::CommandEncoder::finish)
    }
}

impl Deref for Encoder {
    type Target = wgpu::CommandEncoder;
    fn deref(&self) -> &wgpu::CommandEncoder {
        self.inner
            .as_ref()
            .expect("an Encoder holds its wgpu encoder until GpuContext::submit finishes it")
    }
}

impl DerefMut for Encoder {
    fn deref_mut(&mut self) -> &mut wgpu::CommandEncoder {
        self.inner
            .as_mut()
            .expect("an Encoder holds its wgpu encoder until GpuContext::submit finishes it")
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        self.pool.encoder_closed();
    }
}
