//! What one memory access costs a kernel on this adapter, in core-nanoseconds per 8 lanes
//! (the machine's 2 cores assumed): a vec4 and an f32 load from a storage buffer, a vec4 load
//! from a uniform buffer,
//! a store of an f32, of a vec4 and of a vec4 as two u64s, a texel of an rgba32float texture,
//! against a loop with no access. llvmpipe loads storage lane by
//! lane and uniforms by a gather, which is why the windows-16x4 product packs its operands into
//! uniform windows (BENCHMARKS.md has the figures).
//!
//! `cargo run --release --example probe_loads` (`WGPU_BACKEND=gl` for the GL driver).
use std::time::Instant;

const ITERS: u32 = 1024;
const GROUPS: u32 = 512;

fn shader(kind: &str) -> String {
    let decl = match kind {
        "storage" => "@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;",
        "storage_f32" => "@group(0) @binding(0) var<storage, read> src: array<f32>;",
        "store_f32" => "@group(0) @binding(0) var<storage, read_write> dst: array<f32>;",
        "store_vec4" => "@group(0) @binding(0) var<storage, read_write> dst: array<vec4<f32>>;",
        "uniform" | "uniform_same" => {
            "@group(0) @binding(0) var<uniform> src: array<vec4<f32>, 4096>;"
        }
        "storage_same" | "storage_x2" => {
            "@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;"
        }
        // 8 floats per load: vec4<u64> split into halves and bitcast (SHADER_INT64).
        "storage_u64" => {
            "@group(0) @binding(0) var<storage, read> src: array<vec4<u64>>;
fn f(w: u64) -> f32 { return bitcast<f32>(u32(w & 0xfffffffflu)); }
fn g(w: u64) -> f32 { return bitcast<f32>(u32(w >> 32u)); }
fn unpack(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(f(w.x), g(w.x), f(w.y), g(w.y)) + vec4<f32>(f(w.z), g(w.z), f(w.w), g(w.w));
}"
        }
        // 8 floats per load from a uniform buffer, as storage_u64 (SHADER_INT64).
        "uniform_u64" => {
            "@group(0) @binding(0) var<uniform> src: array<vec4<u64>, 2048>;
fn f(w: u64) -> f32 { return bitcast<f32>(u32(w & 0xfffffffflu)); }
fn g(w: u64) -> f32 { return bitcast<f32>(u32(w >> 32u)); }
fn unpack(w: vec4<u64>) -> vec4<f32> {
    return vec4<f32>(f(w.x), g(w.x), f(w.y), g(w.y)) + vec4<f32>(f(w.z), g(w.z), f(w.w), g(w.w));
}"
        }
        // 4 floats per load: vec2<u64> halves, bitcast (SHADER_INT64).
        "storage_u64x2" => {
            "@group(0) @binding(0) var<storage, read> src: array<vec2<u64>>;
fn f(w: u64) -> f32 { return bitcast<f32>(u32(w & 0xfffffffflu)); }
fn g(w: u64) -> f32 { return bitcast<f32>(u32(w >> 32u)); }
fn unpack(w: vec2<u64>) -> vec4<f32> { return vec4<f32>(f(w.x), g(w.x), f(w.y), g(w.y)); }"
        }
        "texture" => "@group(0) @binding(0) var src: texture_2d<f32>;",
        // A private array indexed at run time, by an index the same in every lane (as the row
        // kernels walk their rows): one store and one load per access.
        "private" => {
            "var<private> row: array<f32, 65>;
fn touch(i: u32, lid: u32) -> vec4<f32> {
    row[(i * 5u) & 63u] = f32(lid);
    return vec4<f32>(row[(i * 7u + 3u) & 63u]);
}"
        }
        "store_u64x2" => {
            "@group(0) @binding(0) var<storage, read_write> dst: array<vec2<u64>>;
fn pack(v: vec4<f32>) -> vec2<u64> {
    return vec2<u64>(u64(bitcast<u32>(v.x)) | (u64(bitcast<u32>(v.y)) << 32u),
                     u64(bitcast<u32>(v.z)) | (u64(bitcast<u32>(v.w)) << 32u));
}"
        }
        // 8 floats per store: vec4<u64> (SHADER_INT64), to set beside a vec4<f32> store.
        "store_u64x4" => {
            "@group(0) @binding(0) var<storage, read_write> dst: array<vec4<u64>>;
fn word(a: f32, b: f32) -> u64 { return u64(bitcast<u32>(a)) | (u64(bitcast<u32>(b)) << 32u); }
fn pack(v: vec4<f32>) -> vec4<u64> {
    return vec4<u64>(word(v.x, v.y), word(v.z, v.w), word(v.y, v.x), word(v.w, v.z));
}"
        }
        _ => "",
    };
    let load = match kind {
        "texture" => "textureLoad(src, vec2<u32>((lid * 33u + i * 4u + wid.x) & 63u, ((lid * 33u + i * 4u + wid.x) >> 6u) & 63u), 0)",
        "storage" | "uniform" => "src[(lid * 33u + i * 4u + wid.x) & 4095u]",
        // The same address in every lane of the workgroup.
        "storage_same" | "uniform_same" => "src[(i * 4u + wid.x) & 4095u]",
        "none" => "vec4<f32>(f32(i), f32(lid), 1.0, 2.0)",
        // One float, as the row kernels load their rows.
        "storage_f32" => "vec4<f32>(src[(lid * 33u + i * 4u + wid.x) & 16383u])",
        // Two vec4<f32> loads (8 floats), to set beside one vec4<u64> load.
        "storage_x2" => {
            "src[(lid * 33u + i * 4u + wid.x) & 4095u] + src[(lid * 33u + i * 4u + wid.x + 1u) & 4095u]"
        }
        "storage_u64" | "uniform_u64" => "unpack(src[(lid * 33u + i * 4u + wid.x) & 2047u])",
        "storage_u64x2" => "unpack(src[(lid * 33u + i * 4u + wid.x) & 4095u])",
        "private" => "touch(i, lid)",
        "store_f32" => "vec4<f32>(f32(i)); dst[(lid * 33u + i * 4u + wid.x) & 4095u] = acc.x",
        "store_vec4" => "vec4<f32>(f32(i)); dst[(lid * 33u + i * 4u + wid.x) & 4095u] = acc",
        "store_u64x2" => "vec4<f32>(f32(i)); dst[(lid * 33u + i * 4u + wid.x) & 4095u] = pack(acc)",
        "store_u64x4" => "vec4<f32>(f32(i)); dst[(lid * 33u + i * 4u + wid.x) & 2047u] = pack(acc)",
        _ => unreachable!(),
    };
    format!(
        "{decl}
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {{
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < {ITERS}u; i++) {{
        let v = {load};
        acc = fma(acc, vec4<f32>(1.0001), v);
    }}
    out[wid.x * 64u + lid] = acc;
}}"
    )
}

fn main() {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    println!(
        "{:?} uniform range {} align {} ubos/stage {} dyn ubos {}",
        adapter.get_info().name,
        adapter.limits().max_uniform_buffer_binding_size,
        adapter.limits().min_uniform_buffer_offset_alignment,
        adapter.limits().max_uniform_buffers_per_shader_stage,
        adapter
            .limits()
            .max_dynamic_uniform_buffers_per_pipeline_layout
    );
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        required_features: adapter.features() & wgpu::Features::SHADER_INT64,
        ..Default::default()
    }))
    .unwrap();
    let data: Vec<f32> = (0..16384).map(|i| (i % 7) as f32 * 0.1).collect();
    let src = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 65536,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::UNIFORM
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&src, 0, bytemuck::cast_slice(&data));
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: 64,
            height: 64,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    queue.write_texture(
        texture.as_image_copy(),
        bytemuck::cast_slice(&data),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(64 * 16),
            rows_per_image: None,
        },
        wgpu::Extent3d {
            width: 64,
            height: 64,
            depth_or_array_layers: 1,
        },
    );
    let texture_view = texture.create_view(&Default::default());
    let src2 = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 65536,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (GROUPS * 64 * 16) as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    for kind in [
        "none",
        "storage",
        "storage_f32",
        "storage_same",
        "uniform",
        "uniform_same",
        "store_f32",
        "store_vec4",
        "storage_x2",
        "storage_u64",
        "uniform_u64",
        "storage_u64x2",
        "texture",
        "store_u64x2",
        "store_u64x4",
        "private",
    ] {
        if kind.contains("_u64") && !device.features().contains(wgpu::Features::SHADER_INT64) {
            println!("{kind:14} skipped: the adapter has no SHADER_INT64");
            continue;
        }
        let module = unsafe {
            device.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor {
                    label: None,
                    source: wgpu::ShaderSource::Wgsl(shader(kind).into()),
                },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 1,
            resource: out.as_entire_binding(),
        }];
        match kind {
            "none" | "private" => {}
            "texture" => entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(&texture_view),
            }),
            "store_f32" | "store_vec4" | "store_u64x2" | "store_u64x4" => {
                entries.push(wgpu::BindGroupEntry {
                    binding: 0,
                    resource: src2.as_entire_binding(),
                })
            }
            _ => entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: src.as_entire_binding(),
            }),
        }
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        let mut best = f64::MAX;
        for _ in 0..4 {
            let mut enc = device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(GROUPS, 1, 1);
            }
            let t = Instant::now();
            queue.submit([enc.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        let lane_loads = (GROUPS * 64 * ITERS) as f64;
        // 2 cores: core-ns per 8-lane load = time * 2 / (lane_loads / 8)
        println!(
            "{kind:14} {:8.2} ms  {:6.2} core-ns per 8-lane access",
            best * 1e3,
            best * 2e9 / (lane_loads / 8.0)
        );
    }

    // Dispatch overhead: 1000 dispatches of 8 workgroups of 8 lanes with a dynamic offset each.
    let src_text = "struct W { v: array<vec4<f32>, 64> }
@group(0) @binding(0) var<uniform> w: W;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(8)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    out[wid.x * 8u + lid] += w.v[lid];
}";
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(src_text.into()),
    });
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: None,
                },
                count: None,
            },
            wgpu::BindGroupLayoutEntry {
                binding: 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: false },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            },
        ],
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: Some(&pl),
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &bgl,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &src,
                    offset: 0,
                    size: std::num::NonZeroU64::new(1024),
                }),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: out.as_entire_binding(),
            },
        ],
    });
    for dispatches in [10u32, 1000] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut enc = device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                for d in 0..dispatches {
                    pass.set_bind_group(0, &group, &[(d % 60) * 1024]);
                    pass.dispatch_workgroups(8, 1, 1);
                }
            }
            let t = Instant::now();
            queue.submit([enc.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{dispatches} dispatches: {:.2} ms, {:.1} us each",
            best * 1e3,
            best * 1e6 / dispatches as f64
        );
    }
}
