//! Every kernel declaration against its WGSL, with naga; no GPU needed.

use polygrad::gpu::kernel_check::check_kernel;
use polygrad::ops::DECLARED_KERNELS;

#[test]
fn every_declaration_matches_its_shader() {
    let problems: Vec<String> = DECLARED_KERNELS
        .iter()
        .flat_map(|k| check_kernel(k))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_wrong_declaration_is_caught() {
    use polygrad::gpu::kernel::{Access, BindingDecl, Elem, Kernel, Workgroup};
    let mut kernel: Kernel = polygrad::ops::linear::BIAS_GRAD;
    // A slot moved, an access widened, a params field renamed, a workgroup changed.
    const WRONG: &[BindingDecl] = &[
        BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
        BindingDecl::new("dy", 5, Access::ReadWrite, Elem::F32),
        BindingDecl::new("db", 2, Access::ReadWrite, Elem::Vec4F32),
        BindingDecl::new("unused", 3, Access::Read, Elem::F32),
    ];
    kernel.bindings = WRONG;
    kernel.params.fields = &[("rows", 0), ("columns", 4)];
    kernel.workgroup = Workgroup::Fixed([16, 16, 1]);
    kernel.constants = &["NO_SUCH_OVERRIDE"];
    let problems = check_kernel(&kernel).join("\n");
    for expected in [
        "dy is at",
        "dy is Storage",
        "db holds",
        "declares unused",
        "params fields",
        "workgroup size",
        "NO_SUCH_OVERRIDE",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

#[test]
fn a_wrong_window_declaration_is_caught() {
    use polygrad::gpu::kernel::{Access, BindingDecl, Elem, Kernel};
    let mut kernel: Kernel = polygrad::ops::matmul::MATMUL_WINDOWS;
    // A window declared as a storage array, and a storage array declared as a window.
    let mut bindings: Vec<BindingDecl> = kernel.bindings.to_vec();
    for b in &mut bindings {
        match b.name {
            "a0" => *b = BindingDecl::new("a0", b.slot, Access::Read, Elem::Vec4F32),
            "c" => *b = BindingDecl::new("c", b.slot, Access::Window, Elem::Window),
            _ => {}
        }
    }
    kernel.bindings = Box::leak(bindings.into_boxed_slice());
    let problems = check_kernel(&kernel).join("\n");
    for expected in [
        "a0 is Uniform",
        "a0 holds Some(Window)",
        "c is Storage",
        "c holds",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

/// Every compute entry point of every shader has a declaration (so that the check above sees
/// it).
#[test]
fn every_entry_point_is_declared() {
    let mut missing = Vec::new();
    use polygrad::gpu::shaders::SHADERS;
    for (file, source) in SHADERS {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{file} does not parse: {e}"));
        for entry in &module.entry_points {
            // matmul_subgroup.wgsl carries matmul.wgsl's entry points, declared under that file.
            let declared = DECLARED_KERNELS.iter().any(|k| {
                let declared_in = SHADERS.iter().find(|(f, _)| *f == k.shader);
                k.entry == entry.name && declared_in.is_some_and(|(_, src)| source.contains(src))
            });
            if !declared {
                missing.push(format!("{file}::{}", entry.name));
            }
        }
    }
    // A generated shader: its own entry points declared under its name, its base's under the
    // file whose source carries them.
    for generated in polygrad::gpu::shaders::GENERATED {
        let source = polygrad::gpu::shaders::specialised_source(generated.name, &[]).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", generated.name));
        for entry in &module.entry_points {
            let declared = DECLARED_KERNELS.iter().any(|k| {
                let declared_in = SHADERS.iter().find(|(f, _)| *f == k.shader);
                k.entry == entry.name
                    && (k.shader == generated.name
                        || declared_in.is_some_and(|(_, src)| source.contains(src)))
            });
            if !declared {
                missing.push(format!("{}::{}", generated.name, entry.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undeclared kernels: {}",
        missing.join(", ")
    );
}

/// The loop budget of exact attention counts the rows its kernels hold in registers, up to
/// `MAX_HELD_WIDTH`; the shader sizes them by `MAX_ROW_VEC4S` (two elements per vec4).
#[test]
fn exact_attention_holds_the_rows_its_loop_budget_counts() {
    use polygrad::gpu::shaders::SHADERS;
    let (_, source) = SHADERS
        .iter()
        .find(|(f, _)| *f == "exact_attention.wgsl")
        .unwrap();
    let module = naga::front::wgsl::parse_str(source).unwrap();
    let value = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some("MAX_ROW_VEC4S"))
        .map(|(_, c)| module.global_expressions[c.init].clone());
    let Some(naga::Expression::Literal(naga::Literal::U32(vec4s))) = value else {
        panic!("no u32 const MAX_ROW_VEC4S in exact_attention.wgsl: {value:?}");
    };
    assert_eq!(
        2 * vec4s as u64,
        polygrad::ops::exact_attention::MAX_HELD_WIDTH
    );
}
