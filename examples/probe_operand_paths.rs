//! Where a product kernel's time goes on this adapter: the library's `broadcast64-km-16x8` block
//! (C = A B, B k-major, as the model's input gradients run) with op(B), and op(A), read from
//! storage buffers as the library reads them, from rgba32float textures, from a uniform buffer
//! of 64 KiB (a window, as windows64-km-16x8 reads it; one of four picked by a switch at every
//! step in another), or not read at all (values made from k: a wrong product, timed to show
//! what everything but the loads costs); and op(A) read as a weight gradient reads it (stored
//! k-major, 8 rows at a stride of M floats a load), as it is needed or one step ahead. The
//! shader is `probe_operand_paths.wgsl` beside this file; the figures are in BENCHMARKS.md.
//!
//! `cargo run --release --example probe_operand_paths -- [M N K REPS]` (default 16384 256 1024
//! 9). Each variant's product, C poisoned before it, is checked against f64 sums at 200 sampled
//! elements of C by the relative error over them (the synthesised ones are not: their operands
//! are not A and B; nor op(A) read k-major, from the row-major buffer; nor the windows, unless B
//! fits one: K x N at most 16384, else its first 64 KiB stand for it, repeated). Needs subgroups
//! and SHADER_INT64 (not on wgpu's GL backend).
use std::time::Instant;
use wgpu::util::DeviceExt;

/// The variant that picks one of 4 window bindings by a switch at every step.
const SWITCHED: &str = "op(B), 4 windows";

/// op(B) from a window and op(A) read as if stored k-major (a weight gradient's A^T).
const KMAJOR: &str = "op(A) k-major, window";
/// The same, op(A) loaded one step before its use.
const AHEAD: &str = "op(A) k-major, ahead";

/// Whether a variant reads op(A) as if stored k-major (from the row-major buffer: a wrong
/// product, timed for its access pattern).
fn reads_a_k_major(name: &str) -> bool {
    name == KMAJOR || name == AHEAD
}

/// (name, B from a texture, A from a texture, B synthesised, A synthesised, B from a window)
const VARIANTS: [(&str, bool, bool, bool, bool, bool); 9] = [
    ("storage buffers", false, false, false, false, false),
    ("op(B) from a window", false, false, false, false, true),
    (SWITCHED, false, false, false, false, false),
    ("op(B) from a texture", true, false, false, false, false),
    ("both from textures", true, true, false, false, false),
    ("op(B) not loaded", false, false, true, false, false),
    ("nothing loaded", false, false, true, true, false),
    (KMAJOR, false, false, false, false, true),
    (AHEAD, false, false, false, false, true),
];

fn entry(binding: u32, ty: wgpu::BindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    }
}

fn buffer_entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    entry(
        binding,
        wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
    )
}

fn texture_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    entry(
        binding,
        wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
    )
}

/// Pseudo-random floats in [-0.5, 0.5), from a fixed seed.
fn random(len: usize, seed: &mut u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// A `rows` x `width` row-major matrix as an rgba32float texture of width / 4 texels.
fn texture(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    data: &[f32],
    (rows, width): (usize, usize),
) -> wgpu::TextureView {
    let size = wgpu::Extent3d {
        width: (width / 4) as u32,
        height: rows as u32,
        depth_or_array_layers: 1,
    };
    let t = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    queue.write_texture(
        t.as_image_copy(),
        bytemuck::cast_slice(data),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some((width * 4) as u32),
            rows_per_image: None,
        },
        size,
    );
    t.create_view(&Default::default())
}

fn read_back(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    from: &wgpu::Buffer,
    bytes: u64,
) -> Vec<f32> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(from, 0, &staging, 0, bytes);
    queue.submit([encoder.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let view = staging.slice(..).get_mapped_range().unwrap();
    bytemuck::cast_slice::<u8, f32>(&view).to_vec()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: M N K REPS, whole numbers"))
        .collect();
    let [m, n, k, reps] = match args[..] {
        [] => [16384, 256, 1024, 9],
        [m, n, k, reps] => [m, n, k, reps],
        _ => panic!("arguments: M N K REPS, or none"),
    };
    assert!(
        m % 16 == 0 && n % 64 == 0 && k % 8 == 0 && reps > 0,
        "M must be a multiple of 16, N of 64, K of 8"
    );
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    let needed = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_INT64;
    if !adapter.features().contains(needed) {
        println!(
            "{}: no subgroups or no SHADER_INT64; nothing to time",
            adapter.get_info().name
        );
        return;
    }
    // The textures hold A as M rows of K / 4 texels and B as K rows of N / 4.
    let edge = adapter.limits().max_texture_dimension_2d as usize;
    if m.max(k) > edge || k.max(n) / 4 > edge {
        println!("M and K must be at most {edge} here (the adapter's largest texture edge)");
        return;
    }
    println!("adapter: {}", adapter.get_info().name);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: needed,
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let mut seed = 12345;
    let a = random(m * k, &mut seed);
    let b = random(k * n, &mut seed);
    let buffer = |contents: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents,
            usage,
        })
    };
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let a_buffer = buffer(bytemuck::cast_slice(&a), storage);
    let b_buffer = buffer(bytemuck::cast_slice(&b), storage);
    let mut window = b.clone();
    window.resize(window.len().max(16384), 0.0);
    let window_buffer = buffer(
        bytemuck::cast_slice(&window[..16384]),
        wgpu::BufferUsages::UNIFORM,
    );
    let c_bytes = (m * n * 4) as u64;
    let poison = vec![0xff; c_bytes as usize];
    let c_buffer = buffer(&poison, storage | wgpu::BufferUsages::COPY_DST);
    let params = buffer(
        bytemuck::cast_slice(&[m as u32, n as u32, k as u32, 0]),
        wgpu::BufferUsages::UNIFORM,
    );
    let b_texture = texture(&device, &queue, &b, (k, n));
    let a_texture = texture(&device, &queue, &a, (m, k));
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("probe_operand_paths.wgsl"),
        source: wgpu::ShaderSource::Wgsl(
            concat!(
                include_str!("../shaders/floats64.wgsl"),
                include_str!("probe_operand_paths.wgsl")
            )
            .into(),
        ),
    });
    let group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &[
            buffer_entry(0, wgpu::BufferBindingType::Uniform),
            buffer_entry(1, wgpu::BufferBindingType::Storage { read_only: true }),
            buffer_entry(2, wgpu::BufferBindingType::Storage { read_only: true }),
            buffer_entry(3, wgpu::BufferBindingType::Storage { read_only: false }),
            texture_entry(4),
            texture_entry(5),
            buffer_entry(6, wgpu::BufferBindingType::Uniform),
            buffer_entry(7, wgpu::BufferBindingType::Uniform),
            buffer_entry(8, wgpu::BufferBindingType::Uniform),
            buffer_entry(9, wgpu::BufferBindingType::Uniform),
        ],
    });
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &group_layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: a_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: b_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: c_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 4,
                resource: wgpu::BindingResource::TextureView(&b_texture),
            },
            wgpu::BindGroupEntry {
                binding: 5,
                resource: wgpu::BindingResource::TextureView(&a_texture),
            },
            wgpu::BindGroupEntry {
                binding: 6,
                resource: window_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 7,
                resource: window_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 8,
                resource: window_buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 9,
                resource: window_buffer.as_entire_binding(),
            },
        ],
    });
    let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&group_layout)],
        immediate_size: 0,
    });
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let pipelines: Vec<wgpu::ComputePipeline> = VARIANTS
        .iter()
        .map(|&(name, b_tex, a_tex, b_none, a_none, b_window)| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[
                        ("B_FROM_TEXTURE", flag(b_tex)),
                        ("A_FROM_TEXTURE", flag(a_tex)),
                        ("B_SYNTHESISED", flag(b_none)),
                        ("A_SYNTHESISED", flag(a_none)),
                        ("B_FROM_WINDOW", flag(b_window)),
                        ("B_WINDOW_SWITCH", flag(name == SWITCHED)),
                        ("A_K_MAJOR", flag(reads_a_k_major(name))),
                        ("A_AHEAD", flag(name == AHEAD)),
                    ],
                    ..Default::default()
                },
                cache: None,
            })
        })
        .collect();
    // One subgroup of 8 lanes per 16 x 64 block, 8 subgroups a workgroup.
    let workgroups = ((m / 16) * (n / 64)).div_ceil(8) as u32;
    let run = |pipeline: &wgpu::ComputePipeline| -> f64 {
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(workgroups, 1, 1);
        }
        let start = Instant::now();
        queue.submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        start.elapsed().as_secs_f64() * 1e3
    };
    for (&(name, _, _, b_none, a_none, b_window), pipeline) in VARIANTS.iter().zip(&pipelines) {
        // NaN everywhere first, so that a variant that stores nothing fails the check.
        queue.write_buffer(&c_buffer, 0, &poison);
        run(pipeline);
        if b_none
            || a_none
            || (b_window && k * n > 16384)
            || name == SWITCHED
            || reads_a_k_major(name)
        {
            println!("{name:>22}: not checked (synthesised operands)");
            continue;
        }
        let c = read_back(&device, &queue, &c_buffer, c_bytes);
        // Relative error over the sample as a whole (norm of the difference over norm of C).
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for s in 0..200 {
            let (row, col) = ((s * 7919) % m, (s * 104729) % n);
            let want: f64 = (0..k)
                .map(|j| a[row * k + j] as f64 * b[j * n + col] as f64)
                .sum();
            diff += (c[row * n + col] as f64 - want).powi(2);
            norm += want * want;
        }
        let error = (diff / norm).sqrt();
        assert!(error < 1e-5, "{name}: relative error {error:.2e}");
        println!("{name:>22}: relative error at 200 sampled elements of C {error:.1e}");
    }
    let mut times = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..reps {
        for (t, pipeline) in times.iter_mut().zip(&pipelines) {
            t.push(run(pipeline));
        }
    }
    let flops = 2.0 * (m * n * k) as f64;
    println!("C [{m}, {n}] = A [{m}, {k}] B [{k}, {n}], variants alternated, median of {reps}:");
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let base = medians[0];
    for ((name, ..), median) in VARIANTS.iter().zip(medians) {
        println!(
            "{name:>22}: {median:8.2} ms {:6.1} GFLOP/s  {:.2}x the storage buffers",
            flops / median / 1e6,
            base / median
        );
    }
}
