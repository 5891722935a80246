//! The GPU context: instance, adapter and device, built once and reused for every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::pipeline::PipelineKey;
use super::pool::{BufferPool, Encoder};
use super::tune::{default_cache_dir, TuneMode, Tuner};

/// What a tune cache is valid for: the adapter, its driver and this version of polygrad.
fn tune_key(summary: &AdapterSummary) -> String {
    format!(
        "{} | {} | polygrad {}",
        summary.label(),
        summary.driver,
        env!("CARGO_PKG_VERSION")
    )
}

/// What `polygrad devices` prints about an adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// The adapter's name.
    pub name: String,
    /// Vulkan, Metal, Dx12 or Gl.
    pub backend: String,
    /// Cpu, DiscreteGpu, IntegratedGpu, VirtualGpu or Other.
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// The adapter's limits.
    pub limits: wgpu::Limits,
    /// f16 in shaders (wgpu's `SHADER_F16`).
    pub shader_f16: bool,
    /// GPU timestamps (wgpu's `TIMESTAMP_QUERY`).
    pub timestamp_queries: bool,
    /// Subgroup builtins (wgpu's `Features::SUBGROUP`).
    pub subgroups: bool,
    /// 64-bit integers in shaders (wgpu's `Features::SHADER_INT64`).
    pub int64: bool,
    /// The subgroup size, where the adapter's minimum and maximum agree.
    pub subgroup_size: Option<u32>,
}

impl AdapterSummary {
    /// Whether the adapter's buffers live in the machine's memory (CPU and integrated
    /// adapters), so that what they take counts against what the machine has.
    pub fn shares_host_memory(&self) -> bool {
        matches!(self.device_type.as_str(), "Cpu" | "IntegratedGpu")
    }

    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let features = adapter.features();
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            limits: adapter.limits(),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_queries: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            int64: features.contains(wgpu::Features::SHADER_INT64),
            subgroup_size: (info.subgroup_min_size == info.subgroup_max_size)
                .then_some(info.subgroup_min_size),
        }
    }

    /// "name (Backend)", how errors and tables name an adapter.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.backend)
    }
}

/// The instance wgpu's own environment variables ask for (WGPU_BACKEND and friends).
fn instance_from_env() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// The backends WGPU_BACKEND names (all when unset). A name wgpu does not know is an error
/// naming it: wgpu itself would skip it and report no adapter, which reads like a missing
/// driver.
fn backends_from_env() -> Result<wgpu::Backends> {
    let Ok(list) = std::env::var("WGPU_BACKEND") else {
        return Ok(wgpu::Backends::all());
    };
    let mut backends = wgpu::Backends::empty();
    for name in list.split(',') {
        let one = wgpu::Backends::from_comma_list(name);
        if one.is_empty() {
            return Err(Error::Option {
                option: "WGPU_BACKEND".into(),
                message: format!(
                    "{:?} is not a backend (vulkan, gl, metal, dx12, webgpu, noop; comma-separated)",
                    name.trim()
                ),
            });
        }
        backends |= one;
    }
    Ok(backends)
}

/// Every adapter wgpu finds under the current environment.
pub fn list_adapters() -> Result<Vec<AdapterSummary>> {
    let backends = backends_from_env()?;
    let instance = instance_from_env();
    Ok(pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(AdapterSummary::of)
        .collect())
}

/// The most polygrad's kernels ask of an adapter; anything below is refused up front.
const NEEDED_STORAGE_BUFFERS_PER_STAGE: u32 = 8;
const NEEDED_INVOCATIONS_PER_WORKGROUP: u32 = 64;

/// Features polygrad uses where the adapter has them (each kernel that needs one has a variant
/// that does not).
const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::SHADER_INT64);

/// What a context's tensors take: shared with every tensor, which gives its bytes back when
/// dropped.
#[derive(Debug, Default)]
pub(crate) struct AllocationMeter {
    allocated: AtomicU64,
    largest: AtomicU64,
    live: AtomicU64,
    peak: AtomicU64,
}

impl AllocationMeter {
    pub(crate) fn allocate(&self, bytes: u64) {
        self.allocated.fetch_add(bytes, Ordering::Relaxed);
        self.largest.fetch_max(bytes, Ordering::Relaxed);
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
    }

    pub(crate) fn free(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One adapter and its device. Create one per process and share it: creating devices
/// concurrently has crashed drivers.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    summary: AdapterSummary,
    limits: wgpu::Limits,
    pub(crate) pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Modules keyed by shader and the values of its source constants (none: the file as it is).
    pub(crate) modules: Mutex<HashMap<PipelineKey, wgpu::ShaderModule>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    poison_outputs: AtomicBool,
    pub(crate) meter: Arc<AllocationMeter>,
    /// Buffers of dropped tensors, kept for reuse.
    pub(crate) pool: Arc<BufferPool>,
    /// Scratch tensors that recorded work still reads, held until the next submit (wgpu
    /// would hold their buffers anyway; holding the tensors keeps the meter honest).
    held_until_submit: Mutex<Vec<super::GpuTensor>>,
    /// Scratch tensors kept for the context's lifetime, by name ([`Self::scratch`]).
    scratch: Mutex<HashMap<&'static str, Arc<super::GpuTensor>>>,
    pub(crate) tuner: Mutex<Tuner>,
    /// The profile being recorded, if any.
    pub(crate) profiler: Mutex<Option<super::profile::Recorder>>,
}

impl GpuContext {
    /// Opens the adapter whose name contains `adapter_name` (case-insensitive), else the one
    /// WGPU_ADAPTER_NAME names, else wgpu's default high-performance adapter. Backends follow
    /// WGPU_BACKEND.
    pub fn new(adapter_name: Option<&str>) -> Result<Self> {
        let backends = backends_from_env()?;
        let instance = instance_from_env();
        let wanted = adapter_name
            .map(str::to_string)
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .filter(|w| !w.is_empty());
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let no_adapter = |wanted: Option<String>| Error::NoAdapter {
            wanted,
            available: adapters
                .iter()
                .map(|a| AdapterSummary::of(a).label())
                .collect(),
        };
        let adapter = match &wanted {
            Some(w) => {
                let needle = w.to_lowercase();
                adapters
                    .iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                    .cloned()
                    .ok_or_else(|| no_adapter(Some(w.clone())))?
            }
            None => pollster::block_on(
                instance.request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                }),
            )
            .map_err(|_| no_adapter(None))?,
        };
        Self::from_adapter(adapter)
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let summary = AdapterSummary::of(&adapter);
        let limits = adapter.limits();
        let refuse = |message: String| Error::Adapter {
            adapter: summary.label(),
            message,
        };
        if limits.max_storage_buffers_per_shader_stage < NEEDED_STORAGE_BUFFERS_PER_STAGE {
            return Err(refuse(format!(
                "max_storage_buffers_per_shader_stage is {}, polygrad's kernels need {}",
                limits.max_storage_buffers_per_shader_stage, NEEDED_STORAGE_BUFFERS_PER_STAGE
            )));
        }
        if limits.max_compute_invocations_per_workgroup < NEEDED_INVOCATIONS_PER_WORKGROUP
            || limits.max_compute_workgroup_size_x < NEEDED_INVOCATIONS_PER_WORKGROUP
        {
            return Err(refuse(format!(
                "compute workgroups of {} invocations are not supported",
                NEEDED_INVOCATIONS_PER_WORKGROUP
            )));
        }
        // Ask for everything the adapter offers: the buffer-size limits are what bound the
        // largest sequence, and nothing else is gained by asking for less.
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("polygrad"),
            required_features: adapter.features() & OPTIONAL_FEATURES,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| refuse(format!("requesting a device failed: {e}")))?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        let key = tune_key(&summary);
        Ok(GpuContext {
            device,
            queue,
            summary,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            uncaptured,
            poison_outputs: AtomicBool::new(false),
            meter: Arc::default(),
            pool: Arc::default(),
            held_until_submit: Mutex::new(Vec::new()),
            scratch: Mutex::new(HashMap::new()),
            tuner: Mutex::new(Tuner::new(
                TuneMode::from_env(),
                default_cache_dir().as_deref(),
                &key,
            )),
            profiler: Mutex::new(None),
        })
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// The most loop iterations one invocation may run before the driver silently ends its
    /// loops, where the driver has such a limit: llvmpipe (lavapipe and its GL driver) stop
    /// every loop of an invocation after 65535 iterations in all (gallivm's
    /// LP_MAX_TGSI_LOOP_ITERATIONS). Unrolled loops do not count.
    pub fn loop_iteration_limit(&self) -> Option<u64> {
        self.summary
            .name
            .to_lowercase()
            .contains("llvmpipe")
            .then_some(65535)
    }

    /// How kernel variants are chosen from now on (POLYGRAD_TUNE sets the initial mode), and
    /// the directory of the tune cache (None: keep choices in memory only).
    pub fn set_tuning(&self, mode: TuneMode, cache_dir: Option<&std::path::Path>) {
        *self.tuner.lock().unwrap_or_else(|p| p.into_inner()) =
            Tuner::new(mode, cache_dir, &tune_key(&self.summary));
    }

    /// The tuner's choices so far, by shape class.
    pub fn tune_choices(&self) -> std::collections::BTreeMap<String, String> {
        let tuner = self.tuner.lock().unwrap_or_else(|p| p.into_inner());
        tuner.cache().choices.clone()
    }

    /// Whether the device was opened with subgroup builtins.
    pub fn has_subgroups(&self) -> bool {
        self.summary.subgroups
    }

    /// Whether the device was opened with 64-bit integers in shaders.
    pub fn has_int64(&self) -> bool {
        self.summary.int64
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// When on, every output and scratch tensor an operation allocates is filled with NaN
    /// first, so that an element a kernel forgets to write fails every comparison.
    pub fn set_poison_outputs(&self, on: bool) {
        self.poison_outputs.store(on, Ordering::Relaxed);
    }

    pub(crate) fn poison_outputs(&self) -> bool {
        self.poison_outputs.load(Ordering::Relaxed)
    }

    /// Bytes of GPU buffers allocated through this context since it was made (or since
    /// [`Self::reset_allocation_counters`]), freed or not.
    pub fn allocated_bytes(&self) -> u64 {
        self.meter.allocated.load(Ordering::Relaxed)
    }

    /// The largest single GPU buffer allocated through this context, in bytes.
    pub fn largest_allocation(&self) -> u64 {
        self.meter.largest.load(Ordering::Relaxed)
    }

    /// Bytes of polygrad's tensors alive now (allocated and not yet dropped).
    pub fn live_bytes(&self) -> u64 {
        self.meter.live.load(Ordering::Relaxed)
    }

    /// The most bytes of polygrad's tensors alive at once. A tensor counts from its
    /// allocation until it is dropped; wgpu may keep a dropped buffer until the GPU work that
    /// uses it has finished, so the device can briefly hold more.
    pub fn peak_live_bytes(&self) -> u64 {
        self.meter.peak.load(Ordering::Relaxed)
    }

    /// Restarts the counters: allocated and largest from zero, the peak from what is alive
    /// now, to measure what one piece of work allocates.
    pub fn reset_allocation_counters(&self) {
        let m = &self.meter;
        m.allocated.store(0, Ordering::Relaxed);
        m.largest.store(0, Ordering::Relaxed);
        m.peak
            .store(m.live.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Runs `work` inside validation, out-of-memory and internal error scopes and turns what
    /// they catch (or what escaped to the uncaptured handler) into an error naming `during`.
    pub(crate) fn checked<T>(&self, during: &str, work: impl FnOnce() -> T) -> Result<T> {
        let scopes = [
            self.device.push_error_scope(wgpu::ErrorFilter::Internal),
            self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            self.device.push_error_scope(wgpu::ErrorFilter::Validation),
        ];
        let value = work();
        let mut first_error = None;
        // Scopes pop in reverse order of their pushing.
        for scope in scopes.into_iter().rev() {
            if let Some(e) = pollster::block_on(scope.pop()) {
                first_error.get_or_insert(e.to_string());
            }
        }
        let escaped =
            std::mem::take(&mut *self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()));
        match first_error.or_else(|| escaped.into_iter().next()) {
            Some(message) => Err(Error::gpu(during, message)),
            None => Ok(value),
        }
    }

    /// Submits `encoder` without waiting; errors in its recording surface here. Reused
    /// buffers' padding is zeroed first (see `gpu::pool`).
    pub fn submit(&self, during: &str, mut encoder: Encoder) -> Result<()> {
        let result = self.checked(during, || {
            let mut clears = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("zero reused buffers' padding"),
                });
            let cleared = self.pool.record_clears(&mut clears);
            let commands = cleared
                .then(|| clears.finish())
                .into_iter()
                .chain(encoder.finish());
            self.queue.submit(commands);
        });
        // Closed only now: buffers dropped while it was open become reusable after its work
        // is in the queue.
        drop(encoder);
        self.held_until_submit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        result
    }

    /// Keeps a scratch tensor that work recorded into an encoder reads until that encoder
    /// is submitted.
    pub(crate) fn hold_until_submit(&self, tensor: super::GpuTensor) {
        self.held_until_submit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tensor);
    }

    /// The scratch tensor `name`, with room for at least `len` elements, kept for the
    /// context's lifetime and never handed to another tensor. Only for work that writes what
    /// it reads of it before reading, within one encoder: such work may share it with any
    /// other (wgpu orders the accesses within an encoder, the queue orders submissions). Why
    /// not a pooled tensor: one dropped while another encoder is open waits for that encoder
    /// before it is reused, so a tuner timing inside a pass being recorded paid a fresh
    /// allocation per run (BENCHMARKS.md). A larger request replaces the tensor; the old one
    /// goes back to the pool as any dropped tensor does.
    pub(crate) fn scratch(&self, name: &'static str, len: usize) -> Result<Arc<super::GpuTensor>> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tensor) = scratch.get(name).filter(|t| t.len() >= len) {
            return Ok(Arc::clone(tensor));
        }
        let tensor = Arc::new(super::GpuTensor::output(self, name, &[len])?);
        scratch.insert(name, Arc::clone(&tensor));
        Ok(tensor)
    }

    /// Submits `encoder` and waits until the GPU has finished it.
    pub(crate) fn submit_and_wait(&self, during: &str, encoder: Encoder) -> Result<()> {
        self.submit(during, encoder)?;
        self.wait(during)
    }

    /// Blocks until every submitted piece of work has finished (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.wait("synchronize")
    }

    pub(crate) fn wait(&self, during: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::gpu(during, e))
    }

    /// A command encoder labelled `label` (what errors and profiles name).
    pub fn encoder(&self, label: &str) -> Encoder {
        Encoder::new(
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) }),
            self.pool.clone(),
        )
    }

    /// Bytes of GPU buffers kept for reuse: dropped tensors' buffers, which later tensors of
    /// the same size take instead of fresh allocations (see [`Self::release_cached_buffers`]).
    pub fn cached_buffer_bytes(&self) -> u64 {
        self.pool.cached_bytes()
    }

    /// Frees the buffers kept for reuse, e.g. after a pass much larger than those to follow.
    pub fn release_cached_buffers(&self) {
        self.pool.release_cached();
    }
}
