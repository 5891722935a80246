//! The memory one pass needs, estimated from the config and the input's shape before anything
//! is allocated, and checked against the device's limits and the memory the machine has.
//!
//! The device estimate is an upper bound of the tensors alive at once: everything the forward
//! keeps for the backward, the parameters and their gradients, and the scratch of one block
//! (every scratch tensor of the block counted as alive together). wgpu reports no total for a
//! device's memory, so on a discrete GPU only the per-buffer limits are checked; on CPU and
//! integrated adapters, whose buffers live in the machine's memory, the device estimate counts
//! against the memory the machine has.

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::ops::{linear, AttentionFootprint};

use super::block::{BlockFootprint, Dims};
use super::ModelConfig;

/// What one forward and backward pass of a model needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Bytes of GPU buffers the pass holds at once, at most, readback staging included.
    pub device_bytes: u64,
    /// The largest single buffer of the pass.
    pub largest_buffer: u64,
    /// Host bytes of the result: y, grad.x and every parameter's gradient.
    pub result_bytes: u64,
    /// Of `device_bytes`, the parameters' (already resident once a `GpuModel` exists).
    pub parameter_bytes: u64,
}

impl MemoryEstimate {
    pub(super) fn of(
        ctx: &GpuContext,
        config: &ModelConfig,
        dims: Dims,
        attention: AttentionFootprint,
    ) -> Self {
        let block = BlockFootprint::of(ctx, config, dims, attention);
        let params: u64 = config
            .parameter_shapes_lazily()
            .map(|(_, shape)| GpuTensor::shape_bytes(&shape))
            .sum();
        let rows = dims.batch * dims.seq_len;
        let act = |width: usize| GpuTensor::shape_bytes(&[rows, width]);
        let d = config.d_model;
        // A language model's head, a linear layer d -> vocab outside the blocks: its logits
        // and their gradient, the packed operands of its products (the larger of its forward
        // and its backward), and the logits in the result (its output). The embedded tokens
        // count as x.
        let (logits, head_packing) = match config.head {
            Some(_) => {
                let layer = (rows, d, config.output_width());
                let (forward, backward) = (
                    linear::packing(ctx, layer, false),
                    linear::packing(ctx, layer, true),
                );
                let packing = (
                    forward.total.max(backward.total),
                    forward.largest.max(backward.largest),
                );
                (act(config.output_width()), packing)
            }
            None => (0, (0, 0)),
        };
        // y, grad.x and the gradients: on the host, and once more in the readback's staging.
        let result = params + 2 * act(d) + logits;
        // The last block's output, y, dy, the gradient flowing back, the final LN's stats and
        // its gradients' partials.
        let outside_blocks = 4 * act(d)
            + GpuTensor::shape_bytes(&[rows, 2])
            + linear::sum_partials_bytes(rows, d, 2)
            + 2 * logits
            + head_packing.0;
        let layers = config.n_layers as u64;
        let device_bytes = 2 * params
            + outside_blocks
            + layers.saturating_mul(block.kept)
            + block.forward_scratch.max(block.backward_scratch)
            + result;
        let widest = d
            .max(config.d_ff)
            .max(config.n_heads * config.d_qk.max(config.d_v));
        let largest_param = config
            .parameter_shapes_lazily()
            .map(|(_, shape)| GpuTensor::shape_bytes(&shape))
            .max()
            .unwrap_or(0);
        MemoryEstimate {
            device_bytes,
            largest_buffer: act(widest)
                .max(logits)
                .max(head_packing.1)
                .max(largest_param)
                .max(attention.largest)
                .max(block.largest_packed),
            result_bytes: result,
            parameter_bytes: params,
        }
    }

    /// Refuses a pass whose largest buffer is above the device's limits, or which needs more
    /// than the machine has available, `extra_host_bytes` (the caller's own copies of the
    /// result) included; parameters already uploaded (`parameters_resident`) are not counted
    /// again. The error gives the estimate.
    pub fn check(
        &self,
        ctx: &GpuContext,
        extra_host_bytes: u64,
        parameters_resident: bool,
    ) -> Result<()> {
        let limits = ctx.limits();
        for (limit, max) in [
            (
                "max_storage_buffer_binding_size",
                limits.max_storage_buffer_binding_size,
            ),
            ("max_buffer_size", limits.max_buffer_size),
        ] {
            if self.largest_buffer > max {
                return Err(Error::LimitExceeded {
                    what: format!(
                        "the pass's largest buffer (of about {} in all)",
                        format_bytes(self.device_bytes)
                    ),
                    limit,
                    needed: self.largest_buffer,
                    max,
                });
            }
        }
        let shares_host = ctx.adapter().shares_host_memory();
        let host = self.result_bytes + extra_host_bytes;
        let resident = if parameters_resident {
            self.parameter_bytes
        } else {
            0
        };
        let device = self.device_bytes - resident;
        let needed = host + if shares_host { device } else { 0 };
        // Buffers the context keeps for reuse are the pass's to take; where the pass needs
        // more than the machine has besides them, they are freed for it.
        let cached = if shares_host {
            ctx.cached_buffer_bytes()
        } else {
            0
        };
        let available = available_memory().map(|a| {
            if needed > a {
                ctx.release_cached_buffers();
            }
            a + cached
        });
        match available {
            Some(available) if needed > available => Err(Error::OutOfMemory {
                needed,
                available,
                detail: if shares_host {
                    format!(
                        "{} of device buffers on {}, which live in the machine's memory, and {} on \
                         the host",
                        format_bytes(device),
                        ctx.adapter().name,
                        format_bytes(host)
                    )
                } else {
                    format!("{} of results on the host", format_bytes(host))
                },
            }),
            _ => Ok(()),
        }
    }
}

/// Bytes the machine can still give this process: MemAvailable, or less where a cgroup
/// limits the process. None where neither can be read (not Linux).
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo.as_deref().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let read = |file: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{file}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    // cgroup v2: "max" (no limit) does not parse, and leaves MemAvailable alone.
    let cgroup =
        read("memory.max").map(|max| max.saturating_sub(read("memory.current").unwrap_or(0)));
    match (available, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// Bytes in the largest binary unit that keeps them at least 1, e.g. "3.21 GiB".
pub fn format_bytes(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}
