//! Kernel declarations: each WGSL entry point is described once on the host (its shader, its
//! bindings, its params struct, its workgroup shape and the override constants it takes). Bind
//! group layouts, pipelines and dispatch grids are built from the declaration, bindings are
//! passed by name and checked against it, and `tests/kernels.rs` checks every declaration
//! against the WGSL with naga, without a GPU. A new variant is a new declaration.

use crate::error::{Error, Result};

/// How an entry point reaches a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<uniform>`: the params struct.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
    /// `var<uniform>` holding a [`Elem::Window`]: [`WINDOW_BYTES`] of a larger buffer, placed
    /// by a dynamic offset at each dispatch.
    Window,
}

/// The bytes of one uniform window: the largest uniform binding WebGPU guarantees (the WGSL
/// struct `Window` must be exactly this large; the declaration check compares them).
pub const WINDOW_BYTES: u64 = 65536;

/// The element type of a binding's runtime-sized array, or the params struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// The params struct (uniform).
    Params,
    /// `f32`.
    F32,
    /// `vec2<f32>`: exact attention's [high, low] pairs.
    Vec2F32,
    /// `vec4<f32>`.
    Vec4F32,
    /// `vec4<u64>`: 8 floats per load, bitcast from halves (needs SHADER_INT64).
    Vec4U64,
    /// `vec2<u64>`: 4 floats per load, the same way.
    Vec2U64,
    /// `u64`: 2 floats per load, the same way.
    U64,
    /// `u32`.
    U32,
    /// An array of the WGSL struct of this name.
    Struct(&'static str),
    /// The WGSL struct `Window`: vec4s filling [`WINDOW_BYTES`].
    Window,
    /// The WGSL struct `Window64`: `vec4<u64>`s filling [`WINDOW_BYTES`] (needs SHADER_INT64).
    Window64,
}

/// One binding of group 0.
#[derive(Clone, Copy, Debug)]
pub struct BindingDecl {
    /// The WGSL variable's name, and the name callers bind a buffer by.
    pub name: &'static str,
    /// Its `@binding` in group 0.
    pub slot: u32,
    /// How the kernel reaches it.
    pub access: Access,
    /// What its array holds.
    pub elem: Elem,
}

impl BindingDecl {
    /// A binding, for the `const` declarations of kernels.
    pub const fn new(name: &'static str, slot: u32, access: Access, elem: Elem) -> Self {
        BindingDecl {
            name,
            slot,
            access,
            elem,
        }
    }
}

/// The byte layout of a params struct: what the WGSL struct of the same name must match.
#[derive(Clone, Copy, Debug)]
pub struct ParamsLayout {
    /// The WGSL struct's name.
    pub type_name: &'static str,
    /// Its size in bytes.
    pub size: usize,
    /// Each field's name and byte offset.
    pub fields: &'static [(&'static str, usize)],
}

/// Declares a `#[repr(C)]` params struct and its [`ParamsLayout`] (as `LAYOUT`) from one list
/// of fields, so the names and offsets the declaration check compares come from the struct
/// itself.
macro_rules! gpu_params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident as $wgsl:literal { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl $name {
            pub const LAYOUT: $crate::gpu::kernel::ParamsLayout = $crate::gpu::kernel::ParamsLayout {
                type_name: $wgsl,
                size: std::mem::size_of::<$name>(),
                fields: &[$((stringify!($field), std::mem::offset_of!($name, $field))),*],
            };
        }
    };
}
pub(crate) use gpu_params;

/// The workgroup shape of an entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workgroup {
    /// `@workgroup_size(NAME)`: one dimension, sized by the override constant `NAME`.
    Override(&'static str),
    /// A fixed shape.
    Fixed([u32; 3]),
}

/// An adapter feature a kernel needs beyond core WebGPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Core WebGPU.
    Core,
    /// Subgroup builtins (wgpu's `SUBGROUP`).
    Subgroups,
    /// Subgroups and 64-bit integers (wgpu's `SHADER_INT64`).
    SubgroupsInt64,
    /// 64-bit integers.
    Int64,
}

/// One entry point, declared once.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// File in shaders/ (a key of `gpu::shaders::SHADERS`).
    pub shader: &'static str,
    /// The entry point's name.
    pub entry: &'static str,
    /// Every binding of group 0 it uses.
    pub bindings: &'static [BindingDecl],
    /// Its params struct.
    pub params: ParamsLayout,
    /// Its workgroup shape.
    pub workgroup: Workgroup,
    /// Override constants the host may set (besides the workgroup's).
    pub constants: &'static [&'static str],
    /// `const` declarations (u32) whose values the host writes into the source, for what WGSL
    /// sizes by constants only (private arrays); each set of values is a module of its own.
    pub source_constants: &'static [&'static str],
    /// The feature it needs beyond core WebGPU.
    pub needs: Needs,
}

/// Values of source constants, by name.
pub type SourceValues = Vec<(&'static str, u32)>;
/// Values of pipeline override constants, by name.
pub type Overrides = Vec<(&'static str, f64)>;

/// The invocations of one dispatch.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// This many invocations, each finding its flat index from a 2-D grid of workgroups.
    Invocations(u64),
    /// This many workgroups, laid out the same way.
    Workgroups(u64),
}

/// The value of the workgroup override every `Workgroup::Override` kernel gets unless the
/// caller sets it.
pub const DEFAULT_WORKGROUP: u32 = 64;

impl Kernel {
    /// "shader::entry", how errors name a kernel.
    pub fn label(&self) -> String {
        format!("{}::{}", self.shader, self.entry)
    }

    /// The binding named `name`.
    pub fn binding(&self, name: &str) -> Option<&BindingDecl> {
        self.bindings.iter().find(|b| b.name == name)
    }

    /// Its storage-buffer bindings: what `max_storage_buffers_per_shader_stage` bounds.
    pub fn storage_bindings(&self) -> u32 {
        self.bindings
            .iter()
            .filter(|b| matches!(b.access, Access::Read | Access::ReadWrite))
            .count() as u32
    }

    /// Invocations per workgroup, with `constants` applied.
    pub fn workgroup_invocations(&self, constants: &[(&'static str, f64)]) -> u32 {
        match self.workgroup {
            Workgroup::Override(name) => constants
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(DEFAULT_WORKGROUP, |(_, v)| *v as u32),
            Workgroup::Fixed([x, y, z]) => x * y * z,
        }
    }

    /// Refuses constants the kernel does not declare.
    pub fn check_constants(&self, constants: &[(&'static str, f64)]) -> Result<()> {
        for (name, _) in constants {
            let known = self.constants.contains(name)
                || self.source_constants.contains(name)
                || matches!(self.workgroup, Workgroup::Override(w) if w == *name);
            if !known {
                return Err(Error::Kernel {
                    kernel: self.label(),
                    message: format!("no override constant named {name}"),
                });
            }
        }
        Ok(())
    }

    /// `constants` split into the source constants (as u32) and the pipeline overrides.
    pub fn split_constants(&self, constants: &[(&'static str, f64)]) -> (SourceValues, Overrides) {
        let (source, overrides): (Vec<_>, Vec<_>) = constants
            .iter()
            .partition(|(name, _)| self.source_constants.contains(name));
        (
            source.into_iter().map(|(n, v)| (n, v as u32)).collect(),
            overrides,
        )
    }

    /// Whether the kernel reads uniform windows: then it runs as many dispatches in one pass,
    /// each placing its params and its windows by dynamic offsets.
    pub fn windowed(&self) -> bool {
        self.bindings.iter().any(|b| b.access == Access::Window)
    }

    /// The bindings placed by a dynamic offset at each dispatch, in slot order (the order
    /// `set_bind_group` takes their offsets in).
    pub fn dynamic_bindings(&self) -> Vec<&BindingDecl> {
        let mut dynamic: Vec<&BindingDecl> = self
            .bindings
            .iter()
            .filter(|b| self.windowed() && matches!(b.access, Access::Uniform | Access::Window))
            .collect();
        dynamic.sort_by_key(|b| b.slot);
        dynamic
    }

    /// The bind group layout entries of group 0.
    pub fn layout_entries(&self) -> Vec<wgpu::BindGroupLayoutEntry> {
        let dynamic = self.dynamic_bindings();
        self.bindings
            .iter()
            .map(|b| wgpu::BindGroupLayoutEntry {
                binding: b.slot,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b.access {
                        Access::Uniform | Access::Window => wgpu::BufferBindingType::Uniform,
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: dynamic.iter().any(|d| d.slot == b.slot),
                    min_binding_size: match b.access {
                        Access::Window => std::num::NonZeroU64::new(WINDOW_BYTES),
                        _ => None,
                    },
                },
                count: None,
            })
            .collect()
    }
}
