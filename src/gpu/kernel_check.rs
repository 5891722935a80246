//! Checks a kernel declaration against its WGSL with naga, without a GPU: the entry point
//! exists; the bindings it uses are exactly the declared ones (slot, access, element type); the
//! params struct has the declared field names, offsets and size; the workgroup shape and the
//! override constants match.

use naga::{AddressSpace, Module, ScalarKind, StorageAccess, TypeInner};

use super::kernel::{Access, Elem, Kernel, Workgroup, WINDOW_BYTES};
use super::shaders;

/// Every disagreement between `kernel` and its shader, one line each (empty: they agree).
pub fn check_kernel(kernel: &Kernel) -> Vec<String> {
    // A generated shader as made for its defaults.
    let src = match shaders::specialised_source(kernel.shader, &[]) {
        Ok(src) => src,
        Err(e) => return vec![format!("{}: {e}", kernel.label())],
    };
    let src = src.as_str();
    let (module, info) = match shaders::parse_wgsl(kernel.shader, src) {
        Ok(parsed) => parsed,
        Err(e) => return vec![e],
    };
    let Some(index) = module
        .entry_points
        .iter()
        .position(|e| e.name == kernel.entry)
    else {
        return vec![format!(
            "{}: no entry point {}",
            kernel.label(),
            kernel.entry
        )];
    };
    let mut problems = Vec::new();
    let used = info.get_entry_point(index);
    let mut seen = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        if used[handle].is_empty() {
            continue;
        }
        let name = var.name.clone().unwrap_or_default();
        seen.push(name.clone());
        let Some(decl) = kernel.binding(&name) else {
            problems.push(format!("uses binding {name}, which is not declared"));
            continue;
        };
        if binding.group != 0 || binding.binding != decl.slot {
            problems.push(format!(
                "{name} is at @group({}) @binding({}), declared at slot {}",
                binding.group, binding.binding, decl.slot
            ));
        }
        let access = match var.space {
            AddressSpace::Uniform if decl.access == Access::Window => Some(Access::Window),
            AddressSpace::Uniform => Some(Access::Uniform),
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => {
                Some(Access::ReadWrite)
            }
            AddressSpace::Storage { .. } => Some(Access::Read),
            _ => None,
        };
        if access != Some(decl.access) {
            problems.push(format!(
                "{name} is {:?}, declared {:?}",
                var.space, decl.access
            ));
        }
        let elem = element_of(&module, var.ty);
        if elem != Some(decl.elem) {
            problems.push(format!("{name} holds {elem:?}, declared {:?}", decl.elem));
        }
        if decl.elem == Elem::Params {
            problems.extend(check_params(&module, var.ty, kernel));
        }
        if matches!(decl.elem, Elem::Window | Elem::Window64) {
            let size = module.types[var.ty].inner.size(module.to_ctx()) as u64;
            if size != WINDOW_BYTES {
                problems.push(format!(
                    "{name} is {size} bytes, a window is {WINDOW_BYTES}"
                ));
            }
        }
    }
    for decl in kernel.bindings {
        if !seen.iter().any(|s| s == decl.name) {
            problems.push(format!(
                "declares {}, which the entry point does not use",
                decl.name
            ));
        }
    }
    problems.extend(check_workgroup(&module, index, kernel));
    for name in kernel.constants {
        if !module
            .overrides
            .iter()
            .any(|(_, o)| o.name.as_deref() == Some(name))
        {
            problems.push(format!("declares override {name}, which the shader lacks"));
        }
    }
    for name in kernel.source_constants {
        let found = module
            .constants
            .iter()
            .any(|(_, c)| c.name.as_deref() == Some(name));
        if !found || shaders::with_source_constants(src, &[(name, 4)]).is_err() {
            problems.push(format!(
                "declares source constant {name}, which the shader lacks as `const {name}: u32`"
            ));
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", kernel.label()))
        .collect()
}

/// What a binding's type holds, in the declaration's terms.
fn element_of(module: &Module, ty: naga::Handle<naga::Type>) -> Option<Elem> {
    let scalar_or_vec4 = |inner: &TypeInner| match inner {
        TypeInner::Scalar(s) if s.kind == ScalarKind::Float && s.width == 4 => Some(Elem::F32),
        TypeInner::Scalar(s) if s.kind == ScalarKind::Uint && s.width == 4 => Some(Elem::U32),
        TypeInner::Scalar(s) if s.kind == ScalarKind::Uint && s.width == 8 => Some(Elem::U64),
        TypeInner::Vector { size, scalar }
            if *size == naga::VectorSize::Quad
                && scalar.kind == ScalarKind::Float
                && scalar.width == 4 =>
        {
            Some(Elem::Vec4F32)
        }
        TypeInner::Vector { size, scalar }
            if *size == naga::VectorSize::Quad
                && scalar.kind == ScalarKind::Uint
                && scalar.width == 8 =>
        {
            Some(Elem::Vec4U64)
        }
        TypeInner::Vector { size, scalar }
            if *size == naga::VectorSize::Bi
                && scalar.kind == ScalarKind::Float
                && scalar.width == 4 =>
        {
            Some(Elem::Vec2F32)
        }
        TypeInner::Vector { size, scalar }
            if *size == naga::VectorSize::Bi
                && scalar.kind == ScalarKind::Uint
                && scalar.width == 8 =>
        {
            Some(Elem::Vec2U64)
        }
        _ => None,
    };
    match &module.types[ty].inner {
        TypeInner::Struct { .. } if module.types[ty].name.as_deref() == Some("Window") => {
            Some(Elem::Window)
        }
        TypeInner::Struct { .. } if module.types[ty].name.as_deref() == Some("Window64") => {
            Some(Elem::Window64)
        }
        TypeInner::Struct { .. } => Some(Elem::Params),
        TypeInner::Array { base, .. } => match &module.types[*base].inner {
            TypeInner::Struct { .. } => module.types[*base]
                .name
                .as_deref()
                .and_then(|n| STRUCT_NAMES.iter().find(|s| **s == n))
                .map(|n| Elem::Struct(n)),
            inner => scalar_or_vec4(inner),
        },
        _ => None,
    }
}

/// WGSL struct names that bindings may hold arrays of.
const STRUCT_NAMES: &[&str] = &["Monomial"];

fn check_params(module: &Module, ty: naga::Handle<naga::Type>, kernel: &Kernel) -> Vec<String> {
    let TypeInner::Struct { members, span } = &module.types[ty].inner else {
        return vec!["params is not a struct".into()];
    };
    let mut problems = Vec::new();
    let wgsl_name = module.types[ty].name.as_deref().unwrap_or("");
    let layout = &kernel.params;
    if wgsl_name != layout.type_name {
        problems.push(format!(
            "params struct is {wgsl_name}, declared {}",
            layout.type_name
        ));
    }
    let wgsl: Vec<(String, usize)> = members
        .iter()
        .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
        .collect();
    let host: Vec<(String, usize)> = layout
        .fields
        .iter()
        .map(|(n, o)| (n.to_string(), *o))
        .collect();
    if wgsl != host {
        problems.push(format!("params fields {wgsl:?}, host struct {host:?}"));
    }
    if *span as usize != layout.size {
        problems.push(format!(
            "params is {span} bytes, host struct {}",
            layout.size
        ));
    }
    problems
}

fn check_workgroup(module: &Module, index: usize, kernel: &Kernel) -> Vec<String> {
    let entry = &module.entry_points[index];
    let overridden: Vec<Option<String>> = match &entry.workgroup_size_overrides {
        Some(dims) => dims
            .iter()
            .map(|d| {
                d.and_then(|e| match module.global_expressions[e] {
                    naga::Expression::Override(o) => module.overrides[o].name.clone(),
                    _ => None,
                })
            })
            .collect(),
        None => vec![None, None, None],
    };
    let ok = match kernel.workgroup {
        Workgroup::Override(name) => {
            overridden[0].as_deref() == Some(name)
                && entry.workgroup_size[1] == 1
                && entry.workgroup_size[2] == 1
        }
        Workgroup::Fixed(size) => {
            overridden.iter().all(Option::is_none) && entry.workgroup_size == size
        }
    };
    if ok {
        Vec::new()
    } else {
        vec![format!(
            "workgroup size {:?} (overrides {overridden:?}), declared {:?}",
            entry.workgroup_size, kernel.workgroup
        )]
    }
}
