//! Compute pipelines, cached by (shader, entry point, override constants), and dispatch of a
//! flat number of invocations over a 2-D grid of workgroups.

use std::sync::Arc;

use crate::error::{Error, Result};

use super::kernel::{Access, Grid, Kernel, Needs, WINDOW_BYTES};
use super::shaders;
use super::GpuContext;

/// What one dispatch of a declared kernel does, for profiles.
#[derive(Clone, Debug, Default)]
pub(crate) struct Work {
    /// Floating-point operations (a multiply-add counts 2), where the kernel declares them.
    pub flops: Option<u64>,
    /// What distinguishes this dispatch in a profile (a product's layout and shape class).
    pub detail: Option<String>,
}

impl Work {
    fn profile_name(&self, kernel: &Kernel) -> String {
        match &self.detail {
            Some(detail) => format!("{} {detail}", kernel.label()),
            None => kernel.label(),
        }
    }
}

/// What wgpu checks inside polygrad's shaders: every index (the default), but no loop counters.
const SHADER_CHECKS: wgpu::ShaderRuntimeChecks = wgpu::ShaderRuntimeChecks {
    bounds_checks: true,
    force_loop_bounding: false,
    ..wgpu::ShaderRuntimeChecks::checked()
};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    /// Override constants by name, values as f64 bits (f64 is not Hash).
    constants: Vec<(&'static str, u64)>,
}

/// The buffer given for the binding `name`, or an error naming the kernel and the binding.
fn given<'b>(
    kernel: &Kernel,
    buffers: &[(&str, &'b wgpu::Buffer)],
    name: &str,
) -> Result<&'b wgpu::Buffer> {
    buffers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .ok_or_else(|| Error::Kernel {
            kernel: kernel.label(),
            message: format!("binding {name} was not given"),
        })
}

/// Refuses a given buffer whose name the kernel does not declare.
fn refuse_unknown_names(kernel: &Kernel, buffers: &[(&str, &wgpu::Buffer)]) -> Result<()> {
    match buffers.iter().find(|(n, _)| kernel.binding(n).is_none()) {
        Some((name, _)) => Err(Error::Kernel {
            kernel: kernel.label(),
            message: format!("no binding named {name}"),
        }),
        None => Ok(()),
    }
}

/// One dispatch of a windowed kernel: its params, the byte offset of each window binding (by
/// name) in its buffer, and its workgroups.
pub(crate) struct WindowedDispatch<P> {
    pub params: P,
    pub windows: Vec<(&'static str, u64)>,
    pub workgroups: u64,
}

impl GpuContext {
    /// The pipeline of a declared kernel with `constants`, compiled on first use, with the bind
    /// group layout built from the declaration.
    pub(crate) fn kernel_pipeline(
        &self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        kernel.check_constants(constants)?;
        let lacking = match kernel.needs {
            Needs::Core => None,
            Needs::Subgroups => (!self.has_subgroups()).then_some("subgroups"),
            Needs::SubgroupsInt64 => (!self.has_subgroups() || !self.has_int64())
                .then_some("subgroups and 64-bit integers"),
            Needs::Int64 => (!self.has_int64()).then_some("64-bit integers"),
        };
        if let Some(lacking) = lacking {
            return Err(Error::Adapter {
                adapter: self.adapter().label(),
                message: format!("{} needs {lacking}, which it lacks", kernel.label()),
            });
        }
        let key = PipelineKey {
            shader: kernel.shader,
            entry: kernel.entry,
            constants: constants.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
        };
        self.cached_pipeline(key, || {
            let (source_constants, overrides) = kernel.split_constants(constants);
            let module = self.specialised_module(kernel.shader, &source_constants)?;
            let label = kernel.label();
            self.checked(&format!("building pipeline {label}"), || {
                let group =
                    self.device
                        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                            label: Some(kernel.entry),
                            entries: &kernel.layout_entries(),
                        });
                let layout = self
                    .device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(kernel.entry),
                        bind_group_layouts: &[Some(&group)],
                        immediate_size: 0,
                    });
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(kernel.entry),
                        layout: Some(&layout),
                        module: &module,
                        entry_point: Some(kernel.entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &overrides,
                            ..Default::default()
                        },
                        cache: None,
                    })
            })
            .map_err(|e| Error::Shader {
                shader: label,
                message: e.to_string(),
            })
        })
    }

    /// Records one dispatch of a declared kernel: `params` in a uniform buffer, `buffers` bound
    /// by the names the declaration gives them (every declared binding must be given).
    pub(crate) fn run<P: bytemuck::Pod>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &P,
        buffers: &[(&str, &wgpu::Buffer)],
        grid: Grid,
    ) -> Result<()> {
        self.run_counted(
            encoder,
            kernel,
            constants,
            params,
            buffers,
            grid,
            Work::default(),
        )
    }

    /// [`Self::run`] for a kernel that declares the work of this dispatch (a profile reports
    /// GFLOP/s from it, and lists each detail on a line of its own).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_counted<P: bytemuck::Pod>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &P,
        buffers: &[(&str, &wgpu::Buffer)],
        grid: Grid,
        work: Work,
    ) -> Result<()> {
        if std::mem::size_of::<P>() != kernel.params.size {
            return Err(Error::Kernel {
                kernel: kernel.label(),
                message: format!(
                    "params of {} bytes given, {} declared",
                    std::mem::size_of::<P>(),
                    kernel.params.size
                ),
            });
        }
        let pipeline = self.kernel_pipeline(kernel, constants)?;
        let uniform = self.uniform(kernel.entry, params);
        let mut entries = Vec::with_capacity(kernel.bindings.len());
        for decl in kernel.bindings {
            let buffer = if decl.access == Access::Uniform {
                &uniform
            } else {
                given(kernel, buffers, decl.name)?
            };
            entries.push(wgpu::BindGroupEntry {
                binding: decl.slot,
                resource: buffer.as_entire_binding(),
            });
        }
        refuse_unknown_names(kernel, buffers)?;
        let per_group = kernel.workgroup_invocations(constants) as u64;
        let groups = match grid {
            Grid::Invocations(n) => n.div_ceil(per_group),
            Grid::Workgroups(n) => n,
        };
        let (x, y) = self.grid_of(groups, per_group)?;
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = self.begin_pass(encoder, Some(kernel.entry), || {
            (work.profile_name(kernel), work.flops)
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        Ok(())
    }

    /// Records the dispatches of a windowed kernel ([`Kernel::windowed`]) in one pass, with one
    /// bind group: each dispatch's params sit in one uniform buffer at their own aligned
    /// offset, and its windows at the byte offsets it gives per window binding. `buffers` binds
    /// every other binding, and the buffers windows are taken from, by name.
    pub(crate) fn run_windowed<P: bytemuck::Pod>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        dispatches: &[WindowedDispatch<P>],
        buffers: &[(&str, &wgpu::Buffer)],
        work: Work,
    ) -> Result<()> {
        let fail = |message: String| Error::Kernel {
            kernel: kernel.label(),
            message,
        };
        if std::mem::size_of::<P>() != kernel.params.size || !kernel.windowed() {
            return Err(fail(format!(
                "params of {} bytes given, {} declared, for a windowed run",
                std::mem::size_of::<P>(),
                kernel.params.size
            )));
        }
        let pipeline = self.kernel_pipeline(kernel, constants)?;
        let align = self.limits().min_uniform_buffer_offset_alignment as usize;
        let stride = std::mem::size_of::<P>().next_multiple_of(align);
        let mut bytes = vec![0u8; stride * dispatches.len().max(1)];
        for (i, d) in dispatches.iter().enumerate() {
            bytes[i * stride..][..std::mem::size_of::<P>()]
                .copy_from_slice(bytemuck::bytes_of(&d.params));
        }
        let uniform = self.uniform_bytes(kernel.entry, &bytes);
        refuse_unknown_names(kernel, buffers)?;
        let named = |name: &str| given(kernel, buffers, name);
        let mut entries = Vec::with_capacity(kernel.bindings.len());
        for decl in kernel.bindings {
            let resource = match decl.access {
                Access::Uniform => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniform,
                    offset: 0,
                    size: std::num::NonZeroU64::new(std::mem::size_of::<P>() as u64),
                }),
                Access::Window => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: named(decl.name)?,
                    offset: 0,
                    size: std::num::NonZeroU64::new(WINDOW_BYTES),
                }),
                Access::Read | Access::ReadWrite => named(decl.name)?.as_entire_binding(),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: decl.slot,
                resource,
            });
        }
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let dynamic = kernel.dynamic_bindings();
        let per_group = kernel.workgroup_invocations(constants) as u64;
        let mut pass = self.begin_pass(encoder, Some(kernel.entry), || {
            (work.profile_name(kernel), work.flops)
        });
        pass.set_pipeline(&pipeline);
        for (i, d) in dispatches.iter().enumerate() {
            let mut offsets = Vec::with_capacity(dynamic.len());
            for decl in &dynamic {
                let offset = match decl.access {
                    Access::Window => {
                        let offset = d
                            .windows
                            .iter()
                            .find(|(n, _)| *n == decl.name)
                            .map(|(_, o)| *o)
                            .ok_or_else(|| fail(format!("window {} was not placed", decl.name)))?;
                        let size = named(decl.name)?.size();
                        if offset % align as u64 != 0 || offset + WINDOW_BYTES > size {
                            return Err(fail(format!(
                                "window {} at byte {offset} of a {size}-byte buffer is unaligned or past its end",
                                decl.name
                            )));
                        }
                        offset
                    }
                    _ => (i * stride) as u64,
                };
                offsets.push(
                    u32::try_from(offset)
                        .map_err(|_| fail(format!("window offset {offset} exceeds 32 bits")))?,
                );
            }
            let (x, y) = self.grid_of(d.workgroups, per_group)?;
            pass.set_bind_group(0, &group, &offsets);
            pass.dispatch_workgroups(x, y, 1);
        }
        Ok(())
    }

    /// A compute pass, with timestamps around it while a profile is recording; `profiled` names
    /// the pass in the profile and gives its FLOPs (called only then).
    fn begin_pass<'e>(
        &self,
        encoder: &'e mut wgpu::CommandEncoder,
        label: Option<&str>,
        profiled: impl FnOnce() -> (String, Option<u64>),
    ) -> wgpu::ComputePass<'e> {
        let mut profiler = self.profiler.lock().unwrap_or_else(|p| p.into_inner());
        let timestamp_writes = profiler.as_mut().and_then(|p| {
            let (name, flops) = profiled();
            p.next_pass(name, flops)
        });
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label,
            timestamp_writes,
        })
    }

    /// The pipeline cached under `key`, or the one `build` makes, then cached.
    fn cached_pipeline(
        &self,
        key: PipelineKey,
        build: impl FnOnce() -> Result<wgpu::ComputePipeline>,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let pipeline = Arc::new(build()?);
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// A uniform buffer holding `value` (a shader's `Params`).
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.uniform_bytes(label, bytemuck::bytes_of(value))
    }

    /// A uniform buffer holding `bytes` (several params at aligned offsets, for windowed runs).
    fn uniform_bytes(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// The module of `shader` with source constants set (the file as it is without any),
    /// compiled once per set of values.
    fn specialised_module(
        &self,
        shader: &'static str,
        values: &[(&'static str, u32)],
    ) -> Result<wgpu::ShaderModule> {
        let key = PipelineKey {
            shader,
            entry: "",
            constants: values.iter().map(|(n, v)| (*n, *v as u64)).collect(),
        };
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(m.clone());
        }
        let fail = |message: String| Error::Shader {
            shader: format!("{shader} with {values:?}"),
            message,
        };
        let source = shaders::specialised_source(shader, values).map_err(fail)?;
        let module = self
            .checked(
                &format!("compiling shader {shader} with {values:?}"),
                || {
                    // SAFETY: bounds checks stay on; only naga's loop bounding is off. It
                    // adds a counter and a break to every loop in case a loop never ends; every
                    // loop of polygrad's shaders ends after a count the host has checked
                    // (loop budgets, K spans). On llvmpipe the counters cost 30-50% of the
                    // matrix products' speed (BENCHMARKS.md).
                    unsafe {
                        self.device.create_shader_module_trusted(
                            wgpu::ShaderModuleDescriptor {
                                label: Some(shader),
                                source: wgpu::ShaderSource::Wgsl(source.into()),
                            },
                            SHADER_CHECKS,
                        )
                    }
                },
            )
            .map_err(|e| fail(e.to_string()))?;
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, module.clone());
        Ok(module)
    }

    /// A 2-D grid of at least `groups` workgroups of `per_group` invocations.
    fn grid_of(&self, groups: u64, per_group: u64) -> Result<(u32, u32)> {
        let groups = groups.max(1);
        let side = self.limits().max_compute_workgroups_per_dimension as u64;
        let x = groups.min(side);
        let y = groups.div_ceil(x);
        // Kernels index invocations with u32.
        if y > side || x * y * per_group > u32::MAX as u64 {
            return Err(Error::LimitExceeded {
                what: format!("a dispatch of {groups} workgroups of {per_group}"),
                limit: "max_compute_workgroups_per_dimension (squared)",
                needed: groups,
                max: side * side,
            });
        }
        Ok((x as u32, y as u32))
    }
}
