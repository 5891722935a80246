//! Every WGSL file of shaders/, compiled into the library. One file per operation family.

/// (file name, source) for every shader; tests check that this list matches shaders/.
pub const SHADERS: &[(&str, &str)] = &[
    ("adamw.wgsl", include_str!("../../shaders/adamw.wgsl")),
    (
        "certificate.wgsl",
        include_str!("../../shaders/certificate.wgsl"),
    ),
    (
        "cross_entropy.wgsl",
        include_str!("../../shaders/cross_entropy.wgsl"),
    ),
    (
        "embedding.wgsl",
        include_str!("../../shaders/embedding.wgsl"),
    ),
    (
        "exact_attention.wgsl",
        include_str!("../../shaders/exact_attention.wgsl"),
    ),
    // Not a module of its own: floats read and written as u64s, prepended to the int64 shaders.
    ("floats64.wgsl", include_str!("../../shaders/floats64.wgsl")),
    // gelu_math.wgsl prepended (see its header).
    (
        "gelu.wgsl",
        concat!(
            include_str!("../../shaders/gelu_math.wgsl"),
            include_str!("../../shaders/gelu.wgsl")
        ),
    ),
    // Not a module of its own: prepended to gelu.wgsl and matmul.wgsl (see its header).
    (
        "gelu_math.wgsl",
        include_str!("../../shaders/gelu_math.wgsl"),
    ),
    ("heads.wgsl", include_str!("../../shaders/heads.wgsl")),
    (
        "layer_norm.wgsl",
        include_str!("../../shaders/layer_norm.wgsl"),
    ),
    // Not a module of its own: appended to layer_norm.wgsl, floats64.wgsl between them.
    (
        "layer_norm_int64.wgsl",
        concat!(
            include_str!("../../shaders/layer_norm.wgsl"),
            include_str!("../../shaders/floats64.wgsl"),
            include_str!("../../shaders/layer_norm_int64.wgsl")
        ),
    ),
    ("linear.wgsl", include_str!("../../shaders/linear.wgsl")),
    // Not a module of its own: appended to linear.wgsl, floats64.wgsl between them.
    (
        "linear_int64.wgsl",
        concat!(
            include_str!("../../shaders/linear.wgsl"),
            include_str!("../../shaders/floats64.wgsl"),
            include_str!("../../shaders/linear_int64.wgsl")
        ),
    ),
    // gelu_math.wgsl prepended (the epilogue's activation).
    (
        "matmul.wgsl",
        concat!(
            include_str!("../../shaders/gelu_math.wgsl"),
            include_str!("../../shaders/matmul.wgsl")
        ),
    ),
    // Not a module of its own: appended to matmul.wgsl (see its header).
    (
        "matmul_subgroup.wgsl",
        concat!(
            include_str!("../../shaders/gelu_math.wgsl"),
            include_str!("../../shaders/matmul.wgsl"),
            include_str!("../../shaders/matmul_subgroup.wgsl")
        ),
    ),
    // Not a module of its own: appended to matmul.wgsl and matmul_subgroup.wgsl, floats64.wgsl
    // between them (see its header).
    (
        "matmul_int64.wgsl",
        concat!(
            include_str!("../../shaders/gelu_math.wgsl"),
            include_str!("../../shaders/matmul.wgsl"),
            include_str!("../../shaders/matmul_subgroup.wgsl"),
            include_str!("../../shaders/floats64.wgsl"),
            include_str!("../../shaders/matmul_int64.wgsl")
        ),
    ),
    (
        "poly_attention.wgsl",
        include_str!("../../shaders/poly_attention.wgsl"),
    ),
    // Not a module of its own: appended to poly_attention.wgsl, floats64.wgsl between them.
    (
        "poly_attention_int64.wgsl",
        concat!(
            include_str!("../../shaders/poly_attention.wgsl"),
            include_str!("../../shaders/floats64.wgsl"),
            include_str!("../../shaders/poly_attention_int64.wgsl")
        ),
    ),
    (
        "sampled_check.wgsl",
        include_str!("../../shaders/sampled_check.wgsl"),
    ),
    // Not a module of its own: appended to sampled_check.wgsl (see its header).
    (
        "sampled_check_subgroup.wgsl",
        concat!(
            include_str!("../../shaders/sampled_check.wgsl"),
            include_str!("../../shaders/sampled_check_subgroup.wgsl")
        ),
    ),
];

/// A shader made for the values of its source constants: poly_attention's kernels unrolled for
/// one d_qk. It extends a registered shader: `base`'s source with what `append` makes for
/// the values (its defaults where a value is absent, as the declaration checks parse it).
pub struct Generated {
    /// The name kernels give as their shader.
    pub name: &'static str,
    /// The file of [`SHADERS`] it extends.
    pub base: &'static str,
    /// WGSL appended to `base` for the given source-constant values.
    pub append: fn(&[(&str, u32)]) -> String,
}

/// Every generated shader; kernels name them like the files of [`SHADERS`].
pub const GENERATED: &[Generated] = &[
    Generated {
        name: crate::ops::poly_attention::UNROLLED_SHADER,
        base: "poly_attention.wgsl",
        append: crate::ops::poly_attention::unrolled_wgsl,
    },
    Generated {
        name: crate::ops::poly_attention::UNROLLED_INT64_SHADER,
        base: "poly_attention_int64.wgsl",
        append: crate::ops::poly_attention::unrolled_int64_wgsl,
    },
];

/// The source of shader `name` (a file of [`SHADERS`] or one of [`GENERATED`]) for these
/// source-constant values: each `const NAME: u32` given its value. Refuses a name that is
/// neither.
pub fn specialised_source(name: &str, values: &[(&str, u32)]) -> Result<String, String> {
    let file = |name: &str| {
        SHADERS
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, src)| *src)
            .ok_or_else(|| format!("no shader {name}"))
    };
    match GENERATED.iter().find(|g| g.name == name) {
        Some(g) => {
            let src = format!("{}{}", file(g.base)?, (g.append)(values));
            with_source_constants(&src, values)
        }
        None => with_source_constants(file(name)?, values),
    }
}

/// `src` with each `const NAME: u32 = ...;` of `values` given the new value. Refuses a name
/// the source does not declare that way.
pub fn with_source_constants(src: &str, values: &[(&str, u32)]) -> Result<String, String> {
    let mut out = src.to_string();
    for (name, value) in values {
        let head = format!("const {name}: u32 = ");
        let start = out
            .find(&head)
            .ok_or_else(|| format!("no `const {name}: u32` in the shader"))?;
        let end = start + out[start..].find(';').ok_or("unterminated const")?;
        out.replace_range(start..end, &format!("{head}{value}u"));
    }
    Ok(out)
}

/// Parses and validates WGSL with naga, as wgpu would before building a pipeline. Needs no GPU.
pub fn validate_wgsl(name: &str, src: &str) -> Result<naga::valid::ModuleInfo, String> {
    parse_wgsl(name, src).map(|(_, info)| info)
}

/// The naga module of a shader and its validation info; subgroup builtins and 64-bit integers
/// are allowed (wgpu refuses them at run time on devices without the feature).
pub fn parse_wgsl(
    name: &str,
    src: &str,
) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let caps = naga::valid::Capabilities::default()
        | naga::valid::Capabilities::SUBGROUP
        | naga::valid::Capabilities::SUBGROUP_BARRIER
        | naga::valid::Capabilities::SHADER_INT64;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .map_err(|e| format!("{name}: {}", e.emit_to_string(src)))?;
    Ok((module, info))
}
