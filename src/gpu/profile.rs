//! GPU time per kernel, from timestamp queries written at the start and end of every compute
//! pass a declared kernel records while a profile is running (`GpuContext::start_profile`).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// Queries in one profile: wgpu's largest query set, two per pass.
const QUERIES: u32 = 4096;

/// One kernel's share of a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// `shader::entry`.
    pub name: String,
    /// Dispatches.
    pub calls: u64,
    /// GPU time over every call, in milliseconds.
    pub millis: f64,
    /// Floating-point operations over every call, where the kernel declares them.
    pub flops: Option<u64>,
}

impl KernelTime {
    /// GFLOP/s, where the kernel declares its FLOPs and took measurable time.
    pub fn gflops(&self) -> Option<f64> {
        self.flops
            .filter(|_| self.millis > 0.0)
            .map(|f| f as f64 / (self.millis * 1e6))
    }
}

/// A finished profile: kernels by total time, longest first.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Every kernel's time, in the order first seen.
    pub kernels: Vec<KernelTime>,
    /// Passes recorded after the query set was full, so not timed.
    pub untimed_passes: u64,
}

impl Profile {
    /// The GPU time of every kernel together.
    pub fn total_millis(&self) -> f64 {
        self.kernels.iter().map(|k| k.millis).sum()
    }
}

/// The profile being recorded: the query set and, per timed pass, its kernel and FLOPs.
pub(crate) struct Recorder {
    queries: wgpu::QuerySet,
    passes: Vec<(String, Option<u64>)>,
    untimed: u64,
}

impl Recorder {
    /// The timestamp writes for the next pass of `kernel`, or none once the set is full.
    pub(crate) fn next_pass(
        &mut self,
        kernel: String,
        flops: Option<u64>,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let index = self.passes.len() as u32 * 2;
        if index + 2 > QUERIES {
            self.untimed += 1;
            return None;
        }
        self.passes.push((kernel, flops));
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(index),
            end_of_pass_write_index: Some(index + 1),
        })
    }
}

impl GpuContext {
    /// Starts timing every declared kernel's passes on the GPU. Needs timestamp queries.
    pub fn start_profile(&self) -> Result<()> {
        if !self.adapter().timestamp_queries {
            return Err(Error::Adapter {
                adapter: self.adapter().label(),
                message: "has no timestamp queries, so no GPU time per kernel".into(),
            });
        }
        let queries = self.checked("creating the profile's query set", || {
            self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES,
            })
        })?;
        *self.profiler.lock().unwrap_or_else(|p| p.into_inner()) = Some(Recorder {
            queries,
            passes: Vec::new(),
            untimed: 0,
        });
        Ok(())
    }

    /// Waits for the GPU, reads the timestamps back and sums them per kernel.
    pub fn finish_profile(&self) -> Result<Profile> {
        let Some(recorder) = self
            .profiler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Err(Error::gpu("finishing a profile", "no profile was started"));
        };
        let count = recorder.passes.len() as u32 * 2;
        if count == 0 {
            return Ok(Profile::default());
        }
        let ticks = self.resolve(&recorder.queries, count)?;
        let period_ns = self.queue.get_timestamp_period() as f64;
        let mut by_kernel: BTreeMap<&str, KernelTime> = BTreeMap::new();
        for (i, (name, flops)) in recorder.passes.iter().enumerate() {
            let (start, end) = (ticks[2 * i], ticks[2 * i + 1]);
            let entry = by_kernel.entry(name).or_insert_with(|| KernelTime {
                name: name.clone(),
                calls: 0,
                millis: 0.0,
                flops: Some(0),
            });
            entry.calls += 1;
            entry.millis += end.saturating_sub(start) as f64 * period_ns / 1e6;
            entry.flops = entry.flops.zip(*flops).map(|(a, b)| a + b);
        }
        let mut kernels: Vec<KernelTime> = by_kernel.into_values().collect();
        kernels.sort_by(|a, b| b.millis.total_cmp(&a.millis));
        Ok(Profile {
            kernels,
            untimed_passes: recorder.untimed,
        })
    }

    /// The first `count` timestamps of `queries`, after all submitted work.
    fn resolve(&self, queries: &wgpu::QuerySet, count: u32) -> Result<Vec<u64>> {
        let during = "reading back the profile's timestamps";
        let bytes = count as u64 * 8;
        let buffer = |usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile timestamps"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let (resolved, staging) = self.checked(during, || {
            (
                buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
                buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            )
        })?;
        let mut encoder = self.encoder(during);
        encoder.resolve_query_set(queries, 0..count, &resolved, 0);
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        self.submit_and_wait(during, encoder)?;
        let slice = staging.slice(..);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.wait(during)?;
        receiver
            .recv()
            .map_err(|e| Error::gpu(during, e))?
            .map_err(|e| Error::gpu(during, e))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::gpu(during, e))?;
        Ok(bytemuck::cast_slice::<u8, u64>(&view).to_vec())
    }
}
