//! Host side of shaders/poly_attention.wgsl: polynomial-method attention in time linear in n,
//! forward and backward, causal (by chunks) and not, as chunk-level matrix products on the
//! matrix-product core (ops::matmul), and the feature map phi on its own.
//!
//! The shader's header lists every step. Phi(Q) and Phi(K) are materialised per row in global
//! memory (O(n k) per head, linear in n) and kept from the forward for the backward, so that
//! every heavy step is a batched product the tuner can choose a variant for.

use crate::attention::AttentionShape;
use crate::error::{Error, Result};
use crate::gpu::kernel::{
    gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup, WINDOW_BYTES,
};
use crate::gpu::tune::{fastest_agreeing, timed, Round, TuneMode};
use crate::gpu::{GpuContext, GpuTensor, TensorData};
use crate::ops::matmul::{Activation, Epilogue, Layout, Matmul, Packing, Shape, Triangles};
use crate::ops::{
    check_inputs, check_loop_budget, check_shape, probe_inputs, AttentionFootprint,
    AttentionGradients,
};
use crate::poly::{self, MAX_D_QK};

/// ONE_SLOT in the shader: the index of the constant 1.0 in its private row arrays.
const ONE_SLOT: u8 = MAX_D_QK as u8;

gpu_params! {
    /// The shader's `Params`; each kernel reads the fields its comment in the shader names.
    pub(crate) struct PolyParams as "Params" {
        heads: u32,
        rows: u32,
        rows_pad: u32,
        d_qk: u32,
        width_in: u32,
        width_out: u32,
        features: u32,
        features_pad: u32,
        d_v: u32,
        chunk: u32,
        n_chunks: u32,
        flags: u32,
        ones_col: u32,
        logit_scale: f32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// `flags`: the phi_grad kernels add `addend`, and normalise adds the diagonal blocks' row sums
/// to Z; scan_states runs a suffix; copy_rows and the phi_grad kernels read a chunk-transposed
/// source (the phi_grad kernels' addend lies the same way).
const ADD_ADDEND: u32 = 1;
const SUFFIX: u32 = 2;
const FROM_CHUNKS_TRANSPOSED: u32 = 4;
/// `ones_col` when copy_rows sets no column to 1.
const NO_ONES: u32 = u32::MAX;

const PARAMS: BindingDecl = BindingDecl::new("params", 0, Access::Uniform, Elem::Params);
const MONOMIALS: BindingDecl =
    BindingDecl::new("monomials", 1, Access::Read, Elem::Struct("Monomial"));
const X: BindingDecl = BindingDecl::new("x", 2, Access::Read, Elem::F32);
const Y: BindingDecl = BindingDecl::new("y", 3, Access::Read, Elem::F32);
const ADDEND: BindingDecl = BindingDecl::new("addend", 4, Access::Read, Elem::F32);
const OUT: BindingDecl = BindingDecl::new("out", 5, Access::ReadWrite, Elem::F32);
const AUX: BindingDecl = BindingDecl::new("aux", 6, Access::ReadWrite, Elem::F32);
const STATES4: BindingDecl = BindingDecl::new("states4", 7, Access::ReadWrite, Elem::Vec4F32);
const OUT4: BindingDecl = BindingDecl::new("out4", 8, Access::ReadWrite, Elem::Vec4F32);
const X4: BindingDecl = BindingDecl::new("x4", 9, Access::Read, Elem::Vec4F32);
const AUX4: BindingDecl = BindingDecl::new("aux4", 10, Access::ReadWrite, Elem::Vec4F32);
const Y4: BindingDecl = BindingDecl::new("y4", 11, Access::Read, Elem::Vec4F32);
const STATES8: BindingDecl = BindingDecl::new("states8", 12, Access::ReadWrite, Elem::Vec4U64);
/// dL/dphi and the addend chunk-transposed, 2 floats an element: feature f of rows r, r + 1.
const Y2: BindingDecl = BindingDecl::new("y2", 13, Access::Read, Elem::U64);
const ADDEND2: BindingDecl = BindingDecl::new("addend2", 14, Access::Read, Elem::U64);
/// Phi's rows, 8 features an element.
const OUT8: BindingDecl = BindingDecl::new("out8", 15, Access::ReadWrite, Elem::Vec4U64);
/// A chunk-transposed tensor, 8 rows of a column an element: read, written.
const X8: BindingDecl = BindingDecl::new("x8", 16, Access::Read, Elem::Vec4U64);
const AUX8: BindingDecl = BindingDecl::new("aux8", 17, Access::ReadWrite, Elem::Vec4U64);

/// Phi of each row.
pub const PHI_ROWS: Kernel = Kernel {
    shader: "poly_attention.wgsl",
    entry: "phi_rows",
    bindings: &[PARAMS, MONOMIALS, X, OUT],
    params: PolyParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &["DEGREE"],
    source_constants: &[],
    needs: Needs::Core,
};

/// J_phi^T of each row's feature gradient.
pub const PHI_GRAD_ROWS: Kernel = Kernel {
    entry: "phi_grad_rows",
    bindings: &[PARAMS, MONOMIALS, X, Y, ADDEND, OUT],
    // Sizes its private row arrays (MAX_D_QK values and the 1.0 slot).
    source_constants: &["ONE_SLOT"],
    ..PHI_ROWS
};

/// phi_rows at degree 2, one invocation per row, the features walked as pairs: see the shader.
pub const PHI_PAIRS: Kernel = Kernel {
    entry: "phi_pairs",
    ..PHI_ROWS
};

/// phi_grad_rows at degree 2, the features walked as pairs: see the shader.
pub const PHI_GRAD_PAIRS: Kernel = Kernel {
    entry: "phi_grad_pairs",
    ..PHI_GRAD_ROWS
};

/// phi_grad_pairs for 4 rows of a chunk per invocation, from chunk-transposed feature gradients
/// loaded as vec4s: see the shader.
pub const PHI_GRAD_PAIRS4: Kernel = Kernel {
    entry: "phi_grad_pairs4",
    bindings: &[PARAMS, MONOMIALS, X, Y4, ADDEND, OUT],
    ..PHI_GRAD_ROWS
};

/// The degree whose features the pair kernels walk (they give the table kernels' results bit
/// for bit, without a table entry per feature).
const PAIRS_DEGREE: u32 = 2;

/// phi_pairs for one d_qk with no loops (`unrolled_wgsl`): each x_k and each feature a named
/// value, the row stored as vec4s at fixed offsets. Where the padded row width is a multiple
/// of 4.
pub const PHI_PAIRS_UNROLLED: Kernel = Kernel {
    shader: UNROLLED_SHADER,
    entry: "phi_pairs_unrolled",
    bindings: &[PARAMS, MONOMIALS, X, OUT4],
    source_constants: &[UNROLLED_D],
    ..PHI_ROWS
};

/// phi_grad_pairs for one d_qk with no loops: the row of x and its gradient in registers.
pub const PHI_GRAD_PAIRS_UNROLLED: Kernel = Kernel {
    shader: UNROLLED_SHADER,
    entry: "phi_grad_pairs_unrolled",
    bindings: &[PARAMS, MONOMIALS, X, Y, ADDEND, OUT],
    source_constants: &[UNROLLED_D],
    ..PHI_ROWS
};

/// phi_grad_pairs_unrolled for 2 rows of a chunk per invocation, from chunk-transposed feature
/// gradients (and addend) loaded 2 rows a u64, x loaded and dx stored as vec4s: see
/// `unrolled_phi_grad2`. Where the adapter has 64-bit integers and d_qk is a multiple of 4.
pub const PHI_GRAD_PAIRS_UNROLLED2: Kernel = Kernel {
    shader: UNROLLED_INT64_SHADER,
    entry: "phi_grad_pairs_unrolled2",
    bindings: &[PARAMS, MONOMIALS, X4, Y2, ADDEND2, OUT4],
    source_constants: &[UNROLLED_D],
    needs: Needs::Int64,
    ..PHI_ROWS
};

/// phi_pairs_unrolled storing 8 features at a time as vec4<u64>s: see `unrolled_phi64`. Where
/// the adapter has 64-bit integers and the padded row width is a multiple of 8.
pub const PHI_PAIRS_UNROLLED64: Kernel = Kernel {
    shader: UNROLLED_INT64_SHADER,
    entry: "phi_pairs_unrolled64",
    bindings: &[PARAMS, MONOMIALS, X, OUT8],
    source_constants: &[UNROLLED_D],
    needs: Needs::Int64,
    ..PHI_ROWS
};

/// The shader `unrolled_wgsl` makes (poly_attention.wgsl with the unrolled kernels appended)
/// and the source constant that says for which d_qk.
pub const UNROLLED_SHADER: &str = "poly_attention_unrolled.wgsl";
/// The shader `unrolled_int64_wgsl` makes (poly_attention_int64.wgsl with the unrolled kernels
/// that load u64s appended).
pub const UNROLLED_INT64_SHADER: &str = "poly_attention_unrolled_int64.wgsl";
const UNROLLED_D: &str = "D_QK";

/// The widest d_qk the unrolled kernels run. llvmpipe keeps a lane's values in vector
/// registers only while they fit: at d_qk = 16 the unrolled J_phi^T (2 d values live) ran
/// 1.3x phi_grad_pairs4 and the unrolled phi 1.6x phi_pairs, while J_phi^T over 4 rows at
/// once (8 d live) ran 0.6x (BENCHMARKS.md). Wider rows keep the loops.
pub const UNROLLED_MAX_D: usize = 16;

/// The unrolled kernels' WGSL for `D_QK` among `values` (4 if absent: what the declaration
/// checks parse), appended to poly_attention.wgsl by gpu::shaders. The same operations in the
/// same order as phi_pairs and phi_grad_pairs, so the same bits; only the loops are gone, and
/// with them llvmpipe's per-lane gathers of dynamically indexed private rows.
pub fn unrolled_wgsl(values: &[(&str, u32)]) -> String {
    let d = unrolled_d(values);
    let pairs = degree2_pairs(d);
    format!(
        "\n// ---- unrolled for d_qk = {d} (generated by ops::poly_attention::unrolled_wgsl) ----\n\
         const D_QK: u32 = {d}u;\n\n{}\n{}",
        unrolled_phi(d, &pairs),
        unrolled_phi_grad(d, &pairs)
    )
}

/// The unrolled kernels that load u64s, for `D_QK` among `values` (4 if absent), appended to
/// poly_attention_int64.wgsl by gpu::shaders.
pub fn unrolled_int64_wgsl(values: &[(&str, u32)]) -> String {
    let d = unrolled_d(values);
    let pairs = degree2_pairs(d);
    format!(
        "\n// ---- unrolled for d_qk = {d}, u64 loads (generated by \
         ops::poly_attention::unrolled_int64_wgsl) ----\n\
         const D_QK: u32 = {d}u;\n\n\
         @group(0) @binding(13) var<storage, read> y2: array<u64>;\n\
         @group(0) @binding(14) var<storage, read> addend2: array<u64>;\n\
         @group(0) @binding(15) var<storage, read_write> out8: array<vec4<u64>>;\n\n{}\n{}",
        unrolled_phi64(d, &pairs),
        unrolled_phi_grad2(d, &pairs)
    )
}

/// phi_pairs_unrolled64: phi_pairs_unrolled storing 8 features at a time as a vec4<u64> (half
/// the stores: llvmpipe stores lane by lane, component by component). Where the padded row
/// width is a multiple of 8 (it always is in attention: `pad8`).
fn unrolled_phi64(d: usize, pairs: &[(usize, usize)]) -> String {
    let features = phi_expressions(d, pairs, 8);
    let mut w = phi_row_prologue("phi_pairs_unrolled64", d, 8);
    for (e, eight) in features.chunks(8).enumerate() {
        w += &format!(
            "    out8[at + {e}u] = eight64(vec4<f32>({}), vec4<f32>({}));\n",
            eight[..4].join(", "),
            eight[4..].join(", ")
        );
    }
    w + &phi_row_padding(features.len() / 8, 8, "out8[at + e] = vec4<u64>(0lu)")
}

/// `D_QK` among the source-constant values (4 if absent: what the declaration checks parse).
fn unrolled_d(values: &[(&str, u32)]) -> usize {
    values
        .iter()
        .find(|(name, _)| *name == UNROLLED_D)
        .map_or(4, |&(_, v)| v.max(1) as usize)
}

/// The degree-2 pairs i <= j in phi's order (poly::monomials).
fn degree2_pairs(d: usize) -> Vec<(usize, usize)> {
    (0..d).flat_map(|i| (i..d).map(move |j| (i, j))).collect()
}

/// phi_grad_pairs_unrolled2: phi_grad_pairs_unrolled's sums for rows r (suffix a) and r + 1
/// (suffix b) of a chunk, r even, from dL/dphi chunk-transposed, where a feature's gradients for
/// the two rows are adjacent: one u64 load for both (llvmpipe loads lane by lane, component by
/// component, so a u64 costs about what an f32 does). The same operations in the same order
/// for each row, so the same bits. One invocation per (head, pair of rows); row r + 1 past the
/// last real row loads row r's x again and stores nothing.
fn unrolled_phi_grad2(d: usize, pairs: &[(usize, usize)]) -> String {
    let quads = d.div_ceil(4);
    let mut w = entry_point("phi_grad_pairs_unrolled2");
    w.push_str(
        "    let id = linear_id(wid, lid, nwg);\n\
         \x20   let row_pairs = (params.rows + 1u) / 2u;\n\
         \x20   let h = id / row_pairs;\n\
         \x20   if (h >= params.heads) {\n        return;\n    }\n\
         \x20   let r = 2u * (id % row_pairs);\n\
         \x20   let real_b = r + 1u < params.rows;\n\
         \x20   let row = h * params.rows + r;\n\
         \x20   let row_b = row + select(0u, 1u, real_b);\n\
         \x20   let padded_row = h * params.rows_pad + r;\n\
         \x20   let step = source_step();\n\
         \x20   let coef = pair_coefficients();\n\
         \x20   var at = (feature_grads_row(row) + step) / 2u;\n\
         \x20   let step2 = step / 2u;\n",
    );
    for q in 0..quads {
        w += &format!("    let quad_a{q} = x4[row * D_QK / 4u + {q}u];\n");
        w += &format!("    let quad_b{q} = x4[row_b * D_QK / 4u + {q}u];\n");
    }
    let comp = ["x", "y", "z", "w"];
    for i in 0..d {
        for s in ["a", "b"] {
            w += &format!("    let x{s}{i} = quad_{s}{}.{};\n", i / 4, comp[i % 4]);
        }
    }
    // Each row's first term added to 0.0, as phi_grad_pairs_unrolled's.
    for i in 0..d {
        w += &format!(
            "    var dxa{i} = 0.0 + coef.x * low_f32(y2[at]) * 1.0;\n\
             \x20   var dxb{i} = 0.0 + coef.x * high_f32(y2[at]) * 1.0;\n    at += step2;\n"
        );
    }
    for &(i, j) in pairs {
        let c = pair_coef(i, j);
        w += &format!(
            "    {{ let g2 = y2[at]; let ga = {c} * low_f32(g2); let gb = {c} * high_f32(g2); \
             dxa{i} += ga * xa{j}; dxa{j} += ga * xa{i}; dxb{i} += gb * xb{j}; dxb{j} += gb * xb{i}; \
             at += step2; }}\n"
        );
    }
    w += "    if ((params.flags & ADD_ADDEND) != 0u) {\n        var added = addend_row(padded_row) / 2u;\n";
    for i in 0..d {
        w += &format!(
            "        dxa{i} += low_f32(addend2[added]);\n        dxb{i} += high_f32(addend2[added]);\n        added += step2;\n"
        );
    }
    w += "    }\n";
    let quad = |s: &str, q: usize| -> String {
        let vals: Vec<String> = (0..4)
            .map(|c| {
                let i = 4 * q + c;
                if i < d {
                    format!("dx{s}{i}")
                } else {
                    "0.0".to_string()
                }
            })
            .collect();
        format!("vec4<f32>({})", vals.join(", "))
    };
    for q in 0..quads {
        w += &format!("    out4[row * D_QK / 4u + {q}u] = {};\n", quad("a", q));
    }
    w += "    if (real_b) {\n";
    for q in 0..quads {
        w += &format!(
            "        out4[(row + 1u) * D_QK / 4u + {q}u] = {};\n",
            quad("b", q)
        );
    }
    w += "    }\n}\n";
    w
}

/// The coefficient of pair (i, j) as pair_coefficients() gives it: of x_i^2, or of x_i x_j.
fn pair_coef(i: usize, j: usize) -> &'static str {
    if i == j {
        "coef.y"
    } else {
        "coef.z"
    }
}

/// The first lines of a compute entry point `name` with the family's builtins.
fn entry_point(name: &str) -> String {
    format!(
        "@compute @workgroup_size(WORKGROUP)\n\
         fn {name}(@builtin(workgroup_id) wid: vec3<u32>,\n\
         \x20   @builtin(local_invocation_index) lid: u32,\n\
         \x20   @builtin(num_workgroups) nwg: vec3<u32>) {{\n"
    )
}

/// phi_pairs' features at degree 2 as constant expressions of x0.., padded with zeros to a
/// multiple of `per_store`.
fn phi_expressions(d: usize, pairs: &[(usize, usize)], per_store: usize) -> Vec<String> {
    let mut features = vec!["select(0.0, 1.0, real)".to_string()];
    features.extend((0..d).map(|i| format!("coef.x * x{i} * 1.0")));
    features.extend(
        pairs
            .iter()
            .map(|&(i, j)| format!("{} * x{i} * x{j}", pair_coef(i, j))),
    );
    features.resize(
        features.len().next_multiple_of(per_store),
        "0.0".to_string(),
    );
    features
}

/// The first lines of the unrolled phi kernels `entry`: one invocation per (head, padded row),
/// the row's x as x0.. (zero on padding rows), and `at`, the row's first store, in stores of
/// `per_store` floats.
fn phi_row_prologue(entry: &str, d: usize, per_store: usize) -> String {
    let mut w = entry_point(entry);
    w.push_str(&format!(
        "    let padded_row = linear_id(wid, lid, nwg);\n\
         \x20   let h = padded_row / params.rows_pad;\n\
         \x20   if (h >= params.heads) {{\n        return;\n    }}\n\
         \x20   let r = padded_row % params.rows_pad;\n\
         \x20   let real = r < params.rows;\n\
         \x20   let src = (h * params.rows + min(r, params.rows - 1u)) * D_QK;\n\
         \x20   let coef = pair_coefficients();\n\
         \x20   let at = padded_row * params.features_pad / {per_store}u;\n"
    ));
    for i in 0..d {
        w += &format!("    let x{i} = select(0.0, x[src + {i}u], real);\n");
    }
    w
}

/// The unrolled phi kernels' last lines: `zero` stored at `at + e` for each whole store of
/// padding past the `stored` ones (the row width is a multiple of `per_store`).
fn phi_row_padding(stored: usize, per_store: usize, zero: &str) -> String {
    format!(
        "    for (var e = {stored}u; e < params.features_pad / {per_store}u; e++) {{\n\
         \x20       {zero};\n    }}\n}}\n"
    )
}

/// phi_pairs_unrolled: phi_pairs' features as constant expressions, stored 4 at a time.
fn unrolled_phi(d: usize, pairs: &[(usize, usize)]) -> String {
    let features = phi_expressions(d, pairs, 4);
    let mut w = phi_row_prologue("phi_pairs_unrolled", d, 4);
    for (q, quad) in features.chunks(4).enumerate() {
        w += &format!("    out4[at + {q}u] = vec4<f32>({});\n", quad.join(", "));
    }
    w + &phi_row_padding(features.len() / 4, 4, "out4[at + e] = vec4<f32>(0.0)")
}

/// phi_grad_pairs_unrolled: phi_grad_pairs' sums, in its order, on named values.
fn unrolled_phi_grad(d: usize, pairs: &[(usize, usize)]) -> String {
    let mut w = entry_point("phi_grad_pairs_unrolled");
    w.push_str(
        "    let row = linear_id(wid, lid, nwg);\n\
         \x20   if (row >= params.heads * params.rows) {\n        return;\n    }\n\
         \x20   let padded_row = (row / params.rows) * params.rows_pad + row % params.rows;\n\
         \x20   let step = source_step();\n\
         \x20   let coef = pair_coefficients();\n\
         \x20   var at = feature_grads_row(row) + step;\n",
    );
    for i in 0..d {
        w += &format!("    let x{i} = x[row * D_QK + {i}u];\n");
    }
    // phi_grad_pairs' dx[i] += ... from 0: the first term added to 0.0 (the same bits for -0).
    for i in 0..d {
        w += &format!("    var dx{i} = 0.0 + coef.x * y[at] * 1.0;\n    at += step;\n");
    }
    for &(i, j) in pairs {
        w += &format!(
            "    {{ let g = {} * y[at]; dx{i} += g * x{j}; dx{j} += g * x{i}; at += step; }}\n",
            pair_coef(i, j)
        );
    }
    w += "    if ((params.flags & ADD_ADDEND) != 0u) {\n        var added = addend_row(padded_row);\n";
    for i in 0..d {
        w += &format!(
            "        out[row * D_QK + {i}u] = dx{i} + addend[added];\n        added += step;\n"
        );
    }
    w += "    } else {\n";
    for i in 0..d {
        w += &format!("        out[row * D_QK + {i}u] = dx{i};\n");
    }
    w += "    }\n}\n";
    w
}

/// Rows copied with a padded width.
pub const COPY_ROWS: Kernel = Kernel {
    entry: "copy_rows",
    bindings: &[PARAMS, X, OUT],
    ..PHI_ROWS
};

/// copy_rows that also writes each chunk's block transposed.
pub const COPY_ROWS_TRANSPOSED_TOO: Kernel = Kernel {
    entry: "copy_rows_transposed_too",
    bindings: &[PARAMS, X, OUT, AUX],
    ..PHI_ROWS
};

/// The diagonal blocks' Taylor weights, by vec4s (blocks of a multiple of 4 rows), and their
/// row sums.
pub const TAYLOR_WEIGHTS: Kernel = Kernel {
    entry: "taylor_weights",
    bindings: &[PARAMS, X4, AUX4, OUT],
    ..PHI_ROWS
};

/// The diagonal blocks' weight gradients, by 4 x 4 tiles.
pub const TAYLOR_GRADS: Kernel = Kernel {
    entry: "taylor_grads",
    bindings: &[PARAMS, X4, OUT4],
    ..PHI_ROWS
};

/// Each output row divided by its normaliser.
pub const NORMALISE: Kernel = Kernel {
    entry: "normalise",
    bindings: &[PARAMS, X, ADDEND, OUT, AUX],
    ..PHI_ROWS
};

/// copy_rows_transposed_too for 4 rows of a chunk per invocation, as vec4s, writing only the
/// chunk-transposed copy: V' where d_v is a multiple of 4.
pub const COPY_ROWS_TO_CHUNKS4: Kernel = Kernel {
    entry: "copy_rows_to_chunks4",
    bindings: &[PARAMS, X4, AUX4],
    ..PHI_ROWS
};

/// normalise for 4 rows of a chunk per invocation, as vec4s, where d_v is a multiple of 4.
pub const NORMALISE4: Kernel = Kernel {
    entry: "normalise4",
    bindings: &[PARAMS, X4, ADDEND, OUT4, AUX],
    ..PHI_ROWS
};

/// copy_rows from a chunk-transposed source, 4 rows of a chunk per invocation as vec4s, where
/// the width is a multiple of 4 (dv from dV^T's chunks).
pub const COPY_ROWS_FROM_CHUNKS4: Kernel = Kernel {
    entry: "copy_rows_from_chunks4",
    bindings: &[PARAMS, X4, OUT4],
    ..PHI_ROWS
};

/// Each row's gradient terms.
pub const GRAD_ROWS: Kernel = Kernel {
    entry: "grad_rows",
    bindings: &[PARAMS, X, Y, ADDEND, OUT, AUX],
    ..PHI_ROWS
};

/// grad_rows for 4 rows of a chunk per invocation, o, dO and G chunk-transposed as vec4s, where
/// d_v is a multiple of 4: only G chunk-transposed, which is all the products read.
pub const GRAD_ROWS4: Kernel = Kernel {
    entry: "grad_rows4",
    bindings: &[PARAMS, X4, Y4, ADDEND, AUX4],
    ..PHI_ROWS
};

/// normalise4, copy_rows_from_chunks4, copy_rows_to_chunks4 and grad_rows4 for 8 rows of a
/// chunk per invocation, the chunk-transposed side loaded or stored 8 rows a vec4<u64>: where
/// the adapter has 64-bit integers and the chunk is a multiple of 8 rows (`by_eights`).
pub const NORMALISE8: Kernel = Kernel {
    shader: "poly_attention_int64.wgsl",
    entry: "normalise8",
    bindings: &[PARAMS, X8, ADDEND, OUT4, AUX],
    needs: Needs::Int64,
    ..PHI_ROWS
};

/// copy_rows_from_chunks4 by 8 rows (see [`NORMALISE8`]).
pub const COPY_ROWS_FROM_CHUNKS8: Kernel = Kernel {
    entry: "copy_rows_from_chunks8",
    bindings: &[PARAMS, X8, OUT4],
    ..NORMALISE8
};

/// copy_rows_to_chunks4 by 8 rows (see [`NORMALISE8`]).
pub const COPY_ROWS_TO_CHUNKS8: Kernel = Kernel {
    entry: "copy_rows_to_chunks8",
    bindings: &[PARAMS, X4, AUX8],
    ..NORMALISE8
};

/// grad_rows4 by 8 rows (see [`NORMALISE8`]).
pub const GRAD_ROWS8: Kernel = Kernel {
    entry: "grad_rows8",
    bindings: &[PARAMS, X4, Y4, ADDEND, AUX8],
    ..NORMALISE8
};

/// Prefix (or suffix) sums of the chunk states.
pub const SCAN_STATES: Kernel = Kernel {
    entry: "scan_states",
    bindings: &[PARAMS, STATES4],
    ..PHI_ROWS
};

/// scan_states by 8 floats a load (vec4<u64>), where the adapter has 64-bit integers.
pub const SCAN_STATES64: Kernel = Kernel {
    shader: "poly_attention_int64.wgsl",
    entry: "scan_states64",
    bindings: &[PARAMS, STATES8],
    needs: Needs::Int64,
    ..PHI_ROWS
};

/// The shader's `Monomial`: variables packed a byte each, coefficient, order.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Monomial {
    vars_lo: u32,
    vars_hi: u32,
    coef: f32,
    order: u32,
}

/// The monomials of phi for `d` variables and degree `degree`, each coefficient multiplied by
/// `input_scale^|alpha|` so that the kernels can expand unscaled rows.
fn monomial_table(d: usize, degree: u32, input_scale: f64) -> Vec<Monomial> {
    poly::monomials(d, degree)
        .iter()
        .map(|vars| {
            // Unused variable slots point at the row arrays' ONE_SLOT, which holds 1.0.
            let mut packed = [ONE_SLOT; 8];
            for (slot, &v) in packed.iter_mut().zip(vars) {
                *slot = v as u8;
            }
            Monomial {
                vars_lo: u32::from_le_bytes(packed[..4].try_into().unwrap()),
                vars_hi: u32::from_le_bytes(packed[4..].try_into().unwrap()),
                coef: (poly::monomial_coefficient(vars) * input_scale.powi(vars.len() as i32))
                    as f32,
                order: vars.len() as u32,
            }
        })
        .collect()
}

/// The feature map phi of degree `degree` over rows of width `d`, on the GPU.
pub struct FeatureMap {
    d: usize,
    degree: u32,
    features: usize,
    table: GpuTensor,
    /// Whether the degree-2 kernels run unrolled for this d (`unrolled_wgsl`).
    unrolled: bool,
}

/// Rows of a feature matrix: `rows` of `x` per head, written at a stride of `rows_pad` rows of
/// `features_pad` columns (zero beyond the real rows and features).
#[derive(Clone, Copy)]
struct FeatureRows {
    heads: usize,
    rows: usize,
    rows_pad: usize,
    features_pad: usize,
    /// The feature gradients' rows chunk-transposed in chunks of this many rows (the chunk
    /// products' dPhi^T), or as rows (None).
    grads_chunk: Option<usize>,
}

impl FeatureMap {
    /// phi with coefficients 1/sqrt(alpha!) * input_scale^|alpha|; checks degree, width and
    /// the table's size against the device.
    pub fn new(ctx: &GpuContext, d: usize, degree: u32, input_scale: f64) -> Result<Self> {
        poly::check_degree(degree)?;
        if d == 0 || d > MAX_D_QK {
            return Err(Error::shape(
                "d_qk",
                format!("is {d}; the feature kernels take 1 to {MAX_D_QK}"),
            ));
        }
        let features = poly::feature_dim(d, degree)
            .filter(|&k| k <= u32::MAX as usize / 4)
            .ok_or_else(|| {
                Error::shape(
                    "feature dimension",
                    format!("C({d} + {degree}, {degree}) is beyond the kernels' 32-bit indexing"),
                )
            })?;
        GpuTensor::check_size(ctx, "phi monomial table", &[features, 4], 0)?;
        let table = monomial_table(d, degree, input_scale);
        let table = GpuTensor::from_data(
            ctx,
            "phi monomial table",
            &[features, 4],
            TensorData::Words(bytemuck::cast_slice(&table)),
        )?;
        Ok(FeatureMap {
            d,
            degree,
            features,
            table,
            unrolled: degree == PAIRS_DEGREE && d <= UNROLLED_MAX_D,
        })
    }

    /// The same map on the kernels with loops, wherever it would run unrolled ones: for tests
    /// that compare the two, bit for bit.
    pub fn with_loops(mut self) -> Self {
        self.unrolled = false;
        self
    }

    /// The feature dimension k = C(d + g, g).
    pub fn features(&self) -> usize {
        self.features
    }

    /// The constants `kernel` takes: the degree (an override of every kernel of the family)
    /// and, where it sizes private rows, ONE_SLOT (a source constant).
    fn constants(&self, kernel: &Kernel) -> Vec<(&'static str, f64)> {
        let mut constants = vec![("DEGREE", self.degree as f64)];
        if kernel.source_constants.contains(&"ONE_SLOT") {
            constants.push(("ONE_SLOT", ONE_SLOT as f64));
        }
        if kernel.source_constants.contains(&UNROLLED_D) {
            constants.push((UNROLLED_D, self.d as f64));
        }
        constants
    }

    /// Loop iterations of one invocation of the kernels that walk a whole row (phi_pairs,
    /// phi_grad_rows, phi_grad_pairs), at most: the feature loop or the pair loops (features),
    /// the loops over the row (3 d) and the padding columns (at most 7: `pad8`).
    fn row_loop_iterations(&self) -> u64 {
        (self.features + 3 * self.d + 7) as u64
    }

    fn rows_of(&self, x: &GpuTensor) -> Result<usize> {
        match x.shape() {
            [rows, d] if *d == self.d => Ok(*rows),
            _ => Err(Error::ShapeMismatch {
                tensor: x.name().into(),
                expected: vec![x.len() / self.d.max(1), self.d],
                got: x.shape().to_vec(),
            }),
        }
    }

    /// The params every kernel of the family shares for these rows.
    fn params(&self, rows: FeatureRows) -> PolyParams {
        let chunk = rows.grads_chunk.unwrap_or(rows.rows_pad);
        PolyParams {
            heads: rows.heads as u32,
            rows: rows.rows as u32,
            rows_pad: rows.rows_pad as u32,
            d_qk: self.d as u32,
            features: self.features as u32,
            features_pad: rows.features_pad as u32,
            chunk: chunk as u32,
            n_chunks: rows.rows_pad.div_ceil(chunk) as u32,
            ..Default::default()
        }
    }

    /// Records out = phi(x) row by row, padded as `rows` says.
    fn record_forward(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        rows: FeatureRows,
        out: &GpuTensor,
    ) -> Result<()> {
        let elements = rows.heads * rows.rows_pad * rows.features_pad;
        check_len(out, elements)?;
        let (kernel, out_binding, invocations) = if self.degree != PAIRS_DEGREE {
            (&PHI_ROWS, OUT, elements)
        } else if self.unrolled && rows.features_pad.is_multiple_of(8) && ctx.has_int64() {
            (&PHI_PAIRS_UNROLLED64, OUT8, rows.heads * rows.rows_pad)
        } else if self.unrolled && rows.features_pad.is_multiple_of(4) {
            (&PHI_PAIRS_UNROLLED, OUT4, rows.heads * rows.rows_pad)
        } else {
            check_loop_budget(ctx, "phi_pairs", self.row_loop_iterations())?;
            (&PHI_PAIRS, OUT, rows.heads * rows.rows_pad)
        };
        let buffers = [
            (MONOMIALS.name, &self.table.buffer),
            (X.name, &x.buffer),
            (out_binding.name, &out.buffer),
        ];
        ctx.run(
            encoder,
            kernel,
            &self.constants(kernel),
            &self.params(rows),
            &buffers,
            Grid::Invocations(invocations as u64),
        )
    }

    /// Records out = J_phi(x)^T feature_grads (+ addend, `[heads, rows_pad, addend width]`)
    /// row by row.
    fn record_backward(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        (x, rows): (&GpuTensor, FeatureRows),
        feature_grads: &GpuTensor,
        addend: Option<(&GpuTensor, usize)>,
        out: &GpuTensor,
    ) -> Result<()> {
        check_loop_budget(ctx, "phi_grad_rows", self.row_loop_iterations())?;
        let chunked = if rows.grads_chunk.is_some() {
            FROM_CHUNKS_TRANSPOSED
        } else {
            0
        };
        let params = PolyParams {
            flags: chunked | if addend.is_some() { ADD_ADDEND } else { 0 },
            width_out: addend.map_or(0, |(_, width)| width as u32),
            ..self.params(rows)
        };
        // Without an addend the slot still needs a buffer; the kernel does not read it.
        let addend = addend.map_or(feature_grads, |(t, _)| t);
        // Four rows an invocation where a chunk's rows come in whole vec4s.
        let by_quads = self.degree == PAIRS_DEGREE
            && rows
                .grads_chunk
                .is_some_and(|chunk| chunk.is_multiple_of(4));
        // Two rows an invocation, a u64 load for both, where a chunk's rows come in pairs.
        let by_pairs = self.unrolled
            && self.d.is_multiple_of(4)
            && ctx.has_int64()
            && rows
                .grads_chunk
                .is_some_and(|chunk| chunk.is_multiple_of(2));
        let plain = [X, Y, ADDEND, OUT];
        let (kernel, [x_in, y, added, dx], invocations) = if by_pairs {
            let row_pairs = rows.heads * rows.rows.div_ceil(2);
            (
                &PHI_GRAD_PAIRS_UNROLLED2,
                [X4, Y2, ADDEND2, OUT4],
                row_pairs,
            )
        } else if self.unrolled {
            (&PHI_GRAD_PAIRS_UNROLLED, plain, rows.heads * rows.rows)
        } else if by_quads {
            (
                &PHI_GRAD_PAIRS4,
                [X, Y4, ADDEND, OUT],
                rows.heads * rows.rows_pad / 4,
            )
        } else if self.degree == PAIRS_DEGREE {
            (&PHI_GRAD_PAIRS, plain, rows.heads * rows.rows)
        } else {
            (&PHI_GRAD_ROWS, plain, rows.heads * rows.rows)
        };
        ctx.run(
            encoder,
            kernel,
            &self.constants(kernel),
            &params,
            &[
                (MONOMIALS.name, &self.table.buffer),
                (x_in.name, &x.buffer),
                (y.name, &feature_grads.buffer),
                (added.name, &addend.buffer),
                (dx.name, &out.buffer),
            ],
            Grid::Invocations(invocations as u64),
        )
    }

    /// The rows of an unpadded `[rows, d]` tensor.
    fn plain_rows(&self, rows: usize) -> FeatureRows {
        FeatureRows {
            heads: 1,
            rows,
            rows_pad: rows,
            features_pad: self.features,
            grads_chunk: None,
        }
    }

    /// phi of every row of `x` `[rows, d]`: `[rows, k]`.
    pub fn forward(&self, ctx: &GpuContext, x: &GpuTensor) -> Result<GpuTensor> {
        let rows = self.rows_of(x)?;
        let out = GpuTensor::output(ctx, "phi(x)", &[rows, self.features])?;
        let mut encoder = ctx.encoder("phi_rows");
        ctx.checked("phi_rows", || {
            self.record_forward(ctx, &mut encoder, x, self.plain_rows(rows), &out)
        })??;
        ctx.submit("phi_rows", encoder)?;
        Ok(out)
    }

    /// J_phi(x)^T g for every row: `x` `[rows, d]`, `feature_grads` `[rows, k]` -> `[rows, d]`.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        feature_grads: &GpuTensor,
    ) -> Result<GpuTensor> {
        let rows = self.rows_of(x)?;
        check_shape(feature_grads, &[rows, self.features])?;
        let out = GpuTensor::output(ctx, "dx", &[rows, self.d])?;
        let mut encoder = ctx.encoder("phi_grad_rows");
        ctx.checked("phi_grad_rows", || {
            let rows = self.plain_rows(rows);
            self.record_backward(ctx, &mut encoder, (x, rows), feature_grads, None, &out)
        })??;
        ctx.submit("phi_grad_rows", encoder)?;
        Ok(out)
    }
}

/// Refuses an internal buffer whose length differs from what a kernel writes, naming it.
fn check_len(tensor: &GpuTensor, len: usize) -> Result<()> {
    if tensor.len() != len {
        return Err(Error::shape(
            format!("tensor {}", tensor.name()),
            format!("holds {} elements where {len} are written", tensor.len()),
        ));
    }
    Ok(())
}

/// C = A B, nothing added.
const PLAIN: Epilogue = Epilogue {
    alpha: 1.0,
    add_into_c: false,
};

/// The diagonal blocks' products as their zeros make them (P_c and dL/ds are zero above the
/// diagonal): what each declares to the matrix-product core.
const C_LOWER: Triangles = Triangles {
    c_lower: true,
    ..Triangles::NONE
};
const B_UPPER: Triangles = Triangles {
    b_upper: true,
    ..Triangles::NONE
};
const B_LOWER: Triangles = Triangles {
    b_lower: true,
    ..Triangles::NONE
};

/// A multiple of 4 at least `x`: padded widths let the products load whole vec4s.
fn pad4(x: usize) -> usize {
    x.div_ceil(4) * 4
}

/// A multiple of 8 at least `x`: the widths the chunk products sum over, so that the 64-bit
/// variants (`broadcast64-16x4`, `broadcast64-km-16x4`, 8 floats a load) may run them.
fn pad8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

/// What the forward pass keeps for the backward pass.
pub struct PolyForward {
    /// The attention output, `[B, H, n, d_v]`.
    pub o: GpuTensor,
    /// The normaliser Z per row, `[B*H, n]`.
    z: GpuTensor,
    /// Phi(Q), Phi(K): `[B*H, n_pad, k_pad]`.
    phi_q: GpuTensor,
    phi_k: GpuTensor,
    /// V' = [V, 1] chunk-transposed (each chunk's block as V'_c^T, `[v_width, C]`), `[B*H,
    /// n_pad, v_width]` in all: the backward's products read V'_c^T k-major as op(B).
    v_ones_t: GpuTensor,
    /// S_<c^T (causal) or S^T (full), transposed: `[B*H * n_chunks, v_width, k_pad]`.
    states: GpuTensor,
    /// Q and K padded, `[B*H, n_pad, qk_width]`, where the diagonal blocks need them (causal)
    /// and they differ from Q and K ([`PolyAttention::pads_qk`]).
    q_pad: Option<GpuTensor>,
    k_pad: Option<GpuTensor>,
    /// The diagonal blocks' scores Q_c K_c^T, `[B*H * n_chunks, C, C]` (causal only), kept so
    /// that the backward need not compute them again.
    scores: Option<GpuTensor>,
    /// The diagonal blocks' Taylor weights P_c, `[B*H * n_chunks, C, C]` (causal only): the
    /// backward's dV'^T = G^T P reads them, rather than taylor_grads storing them again.
    weights: Option<GpuTensor>,
}

impl PolyForward {
    /// Q and K as the diagonal blocks' products read them: the padded copies where the forward
    /// made them, else the inputs themselves.
    fn qk_rows<'a>(&'a self, q: &'a GpuTensor, k: &'a GpuTensor) -> (&'a GpuTensor, &'a GpuTensor) {
        match (&self.q_pad, &self.k_pad) {
            (Some(q_pad), Some(k_pad)) => (q_pad, k_pad),
            _ => (q, k),
        }
    }
}

/// Polynomial attention of degree `degree` for one shape, with its tables built once.
/// At least the number of products either half records into its one encoder (whose packed
/// operands, where windows-16x4 runs them, live until that encoder has run): the forward
/// records 4, the backward 8 (4, and 4 for the diagonal blocks).
const PRODUCTS_PER_HALF: u64 = 8;

/// Polynomial attention built for one shape: its kernels, chunking and footprint.
pub struct PolyAttention {
    shape: AttentionShape,
    /// The chunk size asked for.
    chunk: usize,
    /// Rows per chunk as run: the chunk size (causal, at most n) or every row (full), rounded
    /// up to a multiple of 4.
    block: usize,
    n_chunks: usize,
    phi: FeatureMap,
}

/// An operand of a product and whether it is stored transposed.
type Operand<'a> = (&'a GpuTensor, bool);

impl PolyAttention {
    /// Rows per chunk of the causal decomposition; any value gives the same result up to
    /// rounding.
    pub const DEFAULT_CHUNK: usize = 64;

    /// Causal attention with the chunk size the tuner chooses for this adapter (or
    /// [`Self::DEFAULT_CHUNK`] with tuning off); full attention has no chunks.
    pub fn new(ctx: &GpuContext, shape: AttentionShape, degree: u32) -> Result<Self> {
        shape.validate()?;
        let chunk = if shape.causal && shape.seq_len > CHUNK_CANDIDATES[0] {
            choose_chunk(ctx, &shape, degree)?
        } else {
            Self::DEFAULT_CHUNK
        };
        Self::with_chunk(ctx, shape, degree, chunk)
    }

    /// Checks the shape, the degree and every buffer's size against the device before
    /// allocating anything large.
    pub fn with_chunk(
        ctx: &GpuContext,
        shape: AttentionShape,
        degree: u32,
        chunk: usize,
    ) -> Result<Self> {
        shape.validate()?;
        if chunk == 0 {
            return Err(Error::shape("chunk size", "must be at least 1"));
        }
        if shape.total_heads().max(shape.seq_len).max(shape.d_v) > u32::MAX as usize / 4 {
            return Err(Error::shape(
                format!("attention {shape}"),
                "has a dimension beyond u32 indexing",
            ));
        }
        let phi = FeatureMap::new(ctx, shape.d_qk, degree, (shape.d_qk as f64).powf(-0.25))?;
        // The taylor kernels move whole vec4s: a multiple of 4 rows per chunk.
        let block = if shape.causal {
            pad4(chunk.min(shape.seq_len))
        } else {
            pad4(shape.seq_len)
        };
        let op = PolyAttention {
            shape,
            chunk,
            block,
            n_chunks: shape.seq_len.div_ceil(block),
            phi,
        };
        let slack = WINDOW_BYTES;
        GpuTensor::check_size(
            ctx,
            "poly attention chunk states",
            &op.states_shape(),
            slack,
        )?;
        for (name, width) in [
            ("phi(q)", op.features_pad()),
            ("v'", op.v_width()),
            ("q padded", op.qk_width()),
        ] {
            GpuTensor::check_size(ctx, name, &op.rows_shape(width), slack)?;
        }
        if shape.causal {
            GpuTensor::check_size(ctx, "poly attention scores", &op.scores_shape(), slack)?;
        }
        check_loop_budget(
            ctx,
            &format!("poly attention {shape} g={degree} chunk={chunk}"),
            op.loop_iterations(),
        )?;
        for (name, s) in [("q", shape.qk_shape()), ("v", shape.v_shape())] {
            GpuTensor::check_size(ctx, name, &s, 0)?;
        }
        Ok(op)
    }

    /// The shape it runs.
    pub fn shape(&self) -> &AttentionShape {
        &self.shape
    }

    /// Rows per chunk of the causal decomposition.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// The feature dimension k.
    pub fn features(&self) -> usize {
        self.phi.features
    }

    /// An upper bound on the loop iterations any one invocation of this shape's kernels runs,
    /// counting only loops whose trip count is not a compile-time constant: the kernels that
    /// walk a row's features (phi_pairs, phi_grad_rows, phi_grad_pairs), grad_rows (the value
    /// columns), scan_states (the chunks) and, causal, the taylor kernels (a block row). The
    /// products bound their own loops (ops::matmul::K_SPAN).
    pub fn loop_iterations(&self) -> u64 {
        let rows = (self.shape.d_v + self.v_width()) as u64;
        self.phi
            .row_loop_iterations()
            .max(rows)
            .max(self.n_chunks as u64)
            .max(if self.shape.causal {
                self.block as u64
            } else {
                0
            })
    }

    fn heads(&self) -> usize {
        self.shape.total_heads()
    }

    /// Rows of the padded tensors: a whole number of chunks.
    fn rows_pad(&self) -> usize {
        self.n_chunks * self.block
    }

    fn features_pad(&self) -> usize {
        pad8(self.phi.features)
    }

    /// Columns of V' (d_v values and the ones column), padded.
    fn v_width(&self) -> usize {
        pad8(self.shape.d_v + 1)
    }

    fn qk_width(&self) -> usize {
        pad4(self.shape.d_qk)
    }

    /// Whether the diagonal blocks need padded copies of Q and K: causal, and Q and K not
    /// already a whole number of chunks of vec4 rows (where they are, the products read them
    /// as they lie).
    fn pads_qk(&self) -> bool {
        self.shape.causal
            && (self.rows_pad() != self.shape.seq_len || self.qk_width() != self.shape.d_qk)
    }

    fn rows_shape(&self, width: usize) -> [usize; 3] {
        [self.heads(), self.rows_pad(), width]
    }

    /// Chunk states are kept transposed, S_c^T = V'_c^T Phi(K_c): every product that makes or
    /// reads them then runs with dense rows on windows-direct-16x4 (op(B) k-major or not),
    /// without chunk-transposed copies of Phi, and their 68 value columns (d_v + 1, padded)
    /// are rows of C, cut into blocks of 16 rather than 32.
    fn states_shape(&self) -> [usize; 3] {
        [
            self.heads() * self.n_chunks,
            self.v_width(),
            self.features_pad(),
        ]
    }

    fn row_sums_shape(&self) -> [usize; 2] {
        [self.heads(), self.rows_pad()]
    }

    fn scores_shape(&self) -> [usize; 3] {
        [self.heads() * self.n_chunks, self.block, self.block]
    }

    fn feature_rows(&self) -> FeatureRows {
        FeatureRows {
            heads: self.heads(),
            rows: self.shape.seq_len,
            rows_pad: self.rows_pad(),
            features_pad: self.features_pad(),
            grads_chunk: Some(self.block),
        }
    }

    /// The params of the layout kernels for this shape.
    fn params(&self) -> PolyParams {
        PolyParams {
            d_v: self.shape.d_v as u32,
            chunk: self.block as u32,
            n_chunks: self.n_chunks as u32,
            logit_scale: (1.0 / (self.shape.d_qk as f64).sqrt()) as f32,
            ones_col: NO_ONES,
            ..self.phi.params(self.feature_rows())
        }
    }

    /// Records c = alpha op(a) op(b) (+ c), m x k by k x n, batched over every chunk of
    /// every head.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        a: Operand,
        b: Operand,
        c: &GpuTensor,
        dims: [usize; 3],
        epilogue: Epilogue,
    ) -> Result<()> {
        let general = (epilogue, Triangles::NONE);
        self.product_with_zeros(ctx, enc, a, b, c, dims, general)
    }

    /// [`Self::product`] with the zeros `triangles` declares: the diagonal blocks', where P
    /// and dL/ds are lower triangular.
    #[allow(clippy::too_many_arguments)]
    fn product_with_zeros(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        a: Operand,
        b: Operand,
        c: &GpuTensor,
        dims: [usize; 3],
        zeros: (Epilogue, Triangles),
    ) -> Result<()> {
        self.product_of_rows(ctx, enc, (a, dims[0]), b, (c, dims[0]), dims, zeros)
    }

    /// [`Self::product_with_zeros`] where each matrix of op(A) has `a_rows` rows stored and
    /// each of C `c_rows`, of which the product computes the first m: the rows of dV'^T that
    /// dv keeps, the value rows of O'^T that the diagonal blocks add to.
    #[allow(clippy::too_many_arguments)]
    fn product_of_rows(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        (a, a_rows): (Operand, usize),
        b: Operand,
        (c, c_rows): (&GpuTensor, usize),
        [m, n, k]: [usize; 3],
        (epilogue, triangles): (Epilogue, Triangles),
    ) -> Result<()> {
        let shape = Shape {
            batch: self.heads() * self.n_chunks,
            m,
            n,
            k,
        };
        let stored_a = Shape { m: a_rows, ..shape };
        let dense_a = Layout::dense(&stored_a, a.1, b.1);
        Matmul {
            shape,
            layout: Layout {
                ldc: n,
                stride_c: c_rows * n,
                ..dense_a
            },
            epilogue,
            a: a.0,
            b: b.0,
            c,
            bias: None,
            triangles,
            activation: Activation::None,
        }
        .run(ctx, enc)
    }

    /// Records one of the family's elementwise or per-row kernels.
    fn kernel(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        params: PolyParams,
        buffers: &[(&str, &GpuTensor)],
        invocations: usize,
    ) -> Result<()> {
        let buffers: Vec<(&str, &wgpu::Buffer)> =
            buffers.iter().map(|(n, t)| (*n, &t.buffer)).collect();
        ctx.run(
            enc,
            kernel,
            &self.phi.constants(kernel),
            &params,
            &buffers,
            Grid::Invocations(invocations as u64),
        )
    }

    /// Records dst = src `[heads, rows, width_in]` copied into `[heads, rows_dst, width_out]`,
    /// with column `ones_col` set to 1 on the source's rows.
    #[allow(clippy::too_many_arguments)]
    fn copy_rows(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        src: (&GpuTensor, usize, usize),
        dst: (&GpuTensor, usize, usize),
        ones_col: u32,
        transposed: Option<&GpuTensor>,
    ) -> Result<()> {
        let ((src, rows, width_in), (dst, rows_dst, width_out)) = (src, dst);
        check_len(src, self.heads() * rows * width_in)?;
        check_len(dst, self.heads() * rows_dst * width_out)?;
        let params = PolyParams {
            rows: rows as u32,
            rows_pad: rows_dst as u32,
            width_in: width_in as u32,
            width_out: width_out as u32,
            ones_col,
            ..self.params()
        };
        match transposed {
            None => self.kernel(
                ctx,
                enc,
                &COPY_ROWS,
                params,
                &[("x", src), ("out", dst)],
                self.heads() * rows_dst,
            ),
            Some(t) => {
                // Its chunk layout is the padded rows': the destination must be padded.
                check_len(t, dst.len())?;
                let buffers = [("x", src), ("out", dst), ("aux", t)];
                let invocations = self.heads() * rows_dst;
                self.kernel(
                    ctx,
                    enc,
                    &COPY_ROWS_TRANSPOSED_TOO,
                    params,
                    &buffers,
                    invocations,
                )
            }
        }
    }

    /// Records V' = [V, 1] chunk-transposed into `v_ones_t`: by vec4s of 4 rows where d_v is a
    /// multiple of 4, else through V' as rows (a scratch tensor: nothing reads V' so).
    fn copy_v_ones(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        v: &GpuTensor,
        v_ones_t: &GpuTensor,
    ) -> Result<()> {
        let s = &self.shape;
        let (vw, rows_pad) = (self.v_width(), self.rows_pad());
        let src = (v, s.seq_len, s.d_v);
        let ones = s.d_v as u32;
        if !s.d_v.is_multiple_of(4) {
            let rows = GpuTensor::output(ctx, "v'", &self.rows_shape(vw))?;
            self.copy_rows(ctx, enc, src, (&rows, rows_pad, vw), ones, Some(v_ones_t))?;
            // Written by the recorded kernel: not the pool's again before the submit.
            ctx.hold_until_submit(rows);
            return Ok(());
        }
        check_len(v, self.heads() * s.seq_len * s.d_v)?;
        check_len(v_ones_t, self.heads() * rows_pad * vw)?;
        let params = PolyParams {
            rows: s.seq_len as u32,
            rows_pad: rows_pad as u32,
            width_in: s.d_v as u32,
            width_out: vw as u32,
            ones_col: ones,
            ..self.params()
        };
        let (kernel, aux, rows_each) = if self.by_eights(ctx) {
            (&COPY_ROWS_TO_CHUNKS8, AUX8, 8)
        } else {
            (&COPY_ROWS_TO_CHUNKS4, AUX4, 4)
        };
        let buffers = [(X4.name, v), (aux.name, v_ones_t)];
        let invocations = self.heads() * rows_pad / rows_each;
        self.kernel(ctx, enc, kernel, params, &buffers, invocations)
    }

    /// Whether the kernels of 4 rows of a chunk that load or store it chunk-transposed run 8
    /// rows at a time (NORMALISE8 and the rest): with 64-bit integers, chunks of 8 rows.
    fn by_eights(&self, ctx: &GpuContext) -> bool {
        ctx.has_int64() && self.block.is_multiple_of(8)
    }

    /// Records the exclusive prefix (forward) or suffix (backward) of chunk states.
    fn scan(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        states: &GpuTensor,
        flags: u32,
    ) -> Result<()> {
        // A whole number of vec4s, and of 8 floats: features_pad and v_width are multiples of 8.
        let per_chunk = self.features_pad() * self.v_width();
        let params = PolyParams {
            width_in: per_chunk as u32,
            flags,
            ..self.params()
        };
        let (kernel, binding, floats_each) = if ctx.has_int64() {
            (&SCAN_STATES64, STATES8, 8)
        } else {
            (&SCAN_STATES, STATES4, 4)
        };
        let invocations = self.heads() * per_chunk / floats_each;
        self.kernel(
            ctx,
            enc,
            kernel,
            params,
            &[(binding.name, states)],
            invocations,
        )
    }

    /// Records scores_c = Q_c K_c^T for every chunk.
    fn scores(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        (q_pad, k_pad): (&GpuTensor, &GpuTensor),
        scores: &GpuTensor,
    ) -> Result<()> {
        let c = self.block;
        let dims = [c, c, self.qk_width()];
        // taylor_weights and taylor_grads read them on and below the diagonal only.
        let lower = (PLAIN, C_LOWER);
        self.product_with_zeros(ctx, enc, (q_pad, false), (k_pad, true), scores, dims, lower)
    }

    /// The bytes [`Self::forward`] and [`Self::backward`] allocate (kept next to them: a
    /// tensor added there belongs here, and the model's memory test checks the sum). Packed
    /// operands are bounded by PRODUCTS_PER_HALF times those of the largest product.
    pub fn footprint(&self, ctx: &GpuContext) -> AttentionFootprint {
        let s = &self.shape;
        let bytes = GpuTensor::shape_bytes;
        // The chunk products' operands, allocated with a window of slack.
        let scratch = GpuTensor::windowable_bytes;
        let (kp, vw, qw, c) = (
            self.features_pad(),
            self.v_width(),
            self.qk_width(),
            self.block,
        );
        let rows = |width: usize| scratch(&self.rows_shape(width));
        let causal = |b: u64| if s.causal { b } else { 0 };
        let widest = kp.max(vw).max(qw).max(c);
        let largest_product = Shape {
            batch: self.heads() * self.n_chunks,
            m: widest,
            n: widest,
            k: widest,
        };
        let packing = Packing::of(ctx, &largest_product).times(PRODUCTS_PER_HALF);
        AttentionFootprint {
            saved: bytes(&s.v_shape())
                + bytes(&[self.heads(), s.seq_len])
                // Phi(Q), Phi(K).
                + 2 * rows(kp)
                + rows(vw)
                + scratch(&self.states_shape())
                + causal(scratch(&self.scores_shape()))
                + if self.pads_qk() { 2 * rows(qw) } else { 0 },
            // O', V' chunk-transposed, and the diagonal blocks' weights P.
            forward_scratch: 2 * rows(vw)
                + causal(scratch(&self.scores_shape()) + bytes(&self.row_sums_shape()))
                + packing.total,
            // G and G chunk-transposed, dV.
            backward_scratch: 2 * rows(vw)
                + rows(s.d_v)
                + scratch(&self.states_shape())
                + rows(kp)
                + 2 * bytes(&s.qk_shape())
                + bytes(&s.v_shape())
                + causal(2 * scratch(&self.scores_shape()) + 2 * rows(qw))
                + packing.total,
            largest: rows(kp.max(vw))
                .max(scratch(&self.states_shape()))
                .max(causal(scratch(&self.scores_shape())))
                .max(packing.largest),
        }
    }

    /// o = attention(q, k, v), keeping what the backward needs. Submits without waiting.
    pub fn forward(
        &self,
        ctx: &GpuContext,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
    ) -> Result<PolyForward> {
        check_inputs(&self.shape, q, k, v)?;
        let s = &self.shape;
        let (kp, vw, qw, c) = (
            self.features_pad(),
            self.v_width(),
            self.qk_width(),
            self.block,
        );
        let out = |name: &str, shape: &[usize]| GpuTensor::output(ctx, name, shape);
        // Operands of the chunk products: windows-direct-16x4 may bind them as windows.
        let scratch = |name: &str, shape: &[usize]| GpuTensor::windowable_output(ctx, name, shape);
        let padded = |name: &str| -> Result<Option<GpuTensor>> {
            self.pads_qk()
                .then(|| scratch(name, &self.rows_shape(qw)))
                .transpose()
        };
        let saved = PolyForward {
            o: out("o", &s.v_shape())?,
            z: out("poly attention normaliser", &[self.heads(), s.seq_len])?,
            phi_q: scratch("phi(q)", &self.rows_shape(kp))?,
            phi_k: scratch("phi(k)", &self.rows_shape(kp))?,
            v_ones_t: scratch("v' chunks transposed", &self.rows_shape(vw))?,
            states: scratch("poly attention chunk states", &self.states_shape())?,
            q_pad: padded("q padded")?,
            k_pad: padded("k padded")?,
            scores: s
                .causal
                .then(|| scratch("poly attention scores", &self.scores_shape()))
                .transpose()?,
            weights: s
                .causal
                .then(|| scratch("poly attention weights", &self.scores_shape()))
                .transpose()?,
        };
        // O' chunk-transposed (the products' rows are its columns: see the shader).
        let o_ones_t = scratch("o' chunks transposed", &self.rows_shape(vw))?;
        // P's row sums: the diagonal blocks' share of Z, which normalise adds.
        let row_sums = s
            .causal
            .then(|| out("poly attention diagonal row sums", &self.row_sums_shape()))
            .transpose()?;
        let mut enc = ctx.encoder("poly attention forward");
        ctx.checked("recording poly attention forward", || -> Result<()> {
            let enc = &mut enc;
            let rows = self.feature_rows();
            let (n, n_pad) = (s.seq_len, self.rows_pad());
            self.phi.record_forward(ctx, enc, q, rows, &saved.phi_q)?;
            self.phi.record_forward(ctx, enc, k, rows, &saved.phi_k)?;
            let v_ones_t = &saved.v_ones_t;
            self.copy_v_ones(ctx, enc, v, v_ones_t)?;
            // S_c^T = V'_c^T Phi(K_c) (from V' chunk-transposed), then S_<c^T.
            let states = &saved.states;
            let phi_k = (&saved.phi_k, false);
            let v1_t = (v_ones_t, false);
            self.product(ctx, enc, v1_t, phi_k, states, [vw, kp, c], PLAIN)?;
            if s.causal {
                self.scan(ctx, enc, states, 0)?;
            }
            // O'_c^T = S_<c^T Phi(Q_c)^T.
            let (s_prev, phi_q_t) = ((states, false), (&saved.phi_q, true));
            self.product(ctx, enc, s_prev, phi_q_t, &o_ones_t, [vw, c, kp], PLAIN)?;
            if let (Some(scores), Some(weights), Some(row_sums)) =
                (&saved.scores, &saved.weights, &row_sums)
            {
                if let (Some(q_pad), Some(k_pad)) = (&saved.q_pad, &saved.k_pad) {
                    self.copy_rows(ctx, enc, (q, n, s.d_qk), (q_pad, n_pad, qw), NO_ONES, None)?;
                    self.copy_rows(ctx, enc, (k, n, s.d_qk), (k_pad, n_pad, qw), NO_ONES, None)?;
                }
                self.scores(ctx, enc, saved.qk_rows(q, k), scores)?;
                let p = [
                    (X4.name, scores),
                    (AUX4.name, weights),
                    (OUT.name, row_sums),
                ];
                let block_rows = scores.len() / c;
                self.kernel(ctx, enc, &TAYLOR_WEIGHTS, self.params(), &p, block_rows)?;
                // O'_c^T's d_v value rows += V'_c^T P_c^T: the ones row's share is P's row sums,
                // so the product's rows of C are d_v, not the 72 of V' padded (5 blocks of 16).
                let add = Epilogue {
                    add_into_c: true,
                    ..PLAIN
                };
                // op(B) = P_c^T: zero where k > j.
                let (p_t, zeros) = ((weights, true), B_UPPER);
                let dims = [s.d_v, c, c];
                let (a, c_rows) = ((v1_t, vw), (&o_ones_t, vw));
                self.product_of_rows(ctx, enc, a, p_t, c_rows, dims, (add, zeros))?;
            }
            let outputs = (&saved.o, &saved.z);
            self.normalise(ctx, enc, &o_ones_t, row_sums.as_ref(), outputs)
        })??;
        ctx.submit("poly attention forward", enc)?;
        Ok(saved)
    }

    /// dq, dk, dv given dL/do, from the inputs and what [`Self::forward`] kept.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        saved: &PolyForward,
        d_o: &GpuTensor,
    ) -> Result<AttentionGradients> {
        check_inputs(&self.shape, q, k, v)?;
        check_shape(d_o, &self.shape.v_shape())?;
        check_shape(&saved.o, &self.shape.v_shape())?;
        check_shape(&saved.states, &self.states_shape())?;
        let s = &self.shape;
        let (kp, vw, qw, c) = (
            self.features_pad(),
            self.v_width(),
            self.qk_width(),
            self.block,
        );
        let out = |name: &str, shape: &[usize]| GpuTensor::output(ctx, name, shape);
        let scratch = |name: &str, shape: &[usize]| GpuTensor::windowable_output(ctx, name, shape);
        let g_t = scratch("poly attention G chunks transposed", &self.rows_shape(vw))?;
        let r = scratch("poly attention gradient states", &self.states_shape())?;
        // dL/dPhi chunk-transposed: the products make dPhi^T.
        let d_phi_t = scratch("dL/dphi chunks transposed", &self.rows_shape(kp))?;
        // dV chunk-transposed, as O' in the forward: dV' without its ones column, which
        // nothing reads (the products that make it compute only the first d_v rows of dV'^T).
        let dv_t = scratch("dv chunks transposed", &self.rows_shape(s.d_v))?;
        let grads = AttentionGradients {
            dq: out("dq", &s.qk_shape())?,
            dk: out("dk", &s.qk_shape())?,
            dv: out("dv", &s.v_shape())?,
        };
        let (q_rows, k_rows) = saved.qk_rows(q, k);
        let diagonal = match &saved.scores {
            Some(scores) => Some(Diagonal {
                q: q_rows,
                k: k_rows,
                scores,
                weights: saved.weights.as_ref().ok_or_else(|| {
                    Error::shape("poly attention", "the forward kept scores but no weights")
                })?,
                d_scores: scratch("poly attention score gradients", &self.scores_shape())?,
                dq: scratch("dq diagonal", &self.rows_shape(qw))?,
                dk: scratch("dk diagonal", &self.rows_shape(qw))?,
            }),
            _ => None,
        };
        let mut enc = ctx.encoder("poly attention backward");
        ctx.checked("recording poly attention backward", || -> Result<()> {
            let enc = &mut enc;
            let rows = self.feature_rows();
            let params = PolyParams {
                width_out: vw as u32,
                ..self.params()
            };
            // By vec4s of 4 rows where d_v allows (the padded width is a multiple of 8, the
            // chunk of 4), G chunk-transposed only; else G's rows too, which nothing reads.
            let inputs = [(X.name, &saved.o), (Y.name, d_o), (ADDEND.name, &saved.z)];
            if s.d_v.is_multiple_of(4) {
                let (kernel, aux, rows_each) = if self.by_eights(ctx) {
                    (&GRAD_ROWS8, AUX8, 8)
                } else {
                    (&GRAD_ROWS4, AUX4, 4)
                };
                let buffers = [
                    (X4.name, &saved.o),
                    (Y4.name, d_o),
                    (ADDEND.name, &saved.z),
                    (aux.name, &g_t),
                ];
                let invocations = rows.heads * rows.rows_pad / rows_each;
                self.kernel(ctx, enc, kernel, params, &buffers, invocations)?;
            } else {
                let g = GpuTensor::output(ctx, "poly attention G", &self.rows_shape(vw))?;
                let buffers = [
                    inputs[0],
                    inputs[1],
                    inputs[2],
                    (OUT.name, &g),
                    (AUX.name, &g_t),
                ];
                let invocations = rows.heads * rows.rows_pad;
                self.kernel(ctx, enc, &GRAD_ROWS, params, &buffers, invocations)?;
                // Written by the recorded kernel: not the pool's again before the submit.
                ctx.hold_until_submit(g);
            }
            // R_c^T = G_c^T Phi(Q_c) (from G chunk-transposed), then R_>c^T.
            let phi_q = (&saved.phi_q, false);
            self.product(ctx, enc, (&g_t, false), phi_q, &r, [vw, kp, c], PLAIN)?;
            if s.causal {
                self.scan(ctx, enc, &r, SUFFIX)?;
            }
            if let Some(diag) = &diagonal {
                self.diagonal_backward(ctx, enc, diag, &g_t, &saved.v_ones_t, &dv_t)?;
            }
            // dPhi(Q_c)^T = S_<c G_c^T, both operands k-major (op(A) = (S_<c^T)^T, op(B) = G_c^T
            // chunk-transposed: broadcast64-km-16x8 reads that layout at 8 columns a load, where
            // G's rows took the 4-column kernel); dq = J_phi(q)^T dPhi(Q) (+ the diagonal's).
            let (states, g_t_op) = ((&saved.states, true), (&g_t, false));
            self.product(ctx, enc, states, g_t_op, &d_phi_t, [kp, c, vw], PLAIN)?;
            let dq_diag = diagonal.as_ref().map(|d| (&d.dq, qw));
            let dq = &grads.dq;
            self.phi
                .record_backward(ctx, enc, (q, rows), &d_phi_t, dq_diag, dq)?;
            // dPhi(K_c)^T = R_>c V'_c^T likewise; dk likewise.
            let (r_op, v1_t) = ((&r, true), (&saved.v_ones_t, false));
            self.product(ctx, enc, r_op, v1_t, &d_phi_t, [kp, c, vw], PLAIN)?;
            let dk_diag = diagonal.as_ref().map(|d| (&d.dk, qw));
            let dk = &grads.dk;
            self.phi
                .record_backward(ctx, enc, (k, rows), &d_phi_t, dk_diag, dk)?;
            // dV_c^T (+)= the first d_v rows of R_>c^T Phi(K_c)^T.
            let add = Epilogue {
                add_into_c: s.causal,
                ..PLAIN
            };
            let (r_rows, phi_k_t) = ((&r, false), (&saved.phi_k, true));
            let dims = [s.d_v, c, kp];
            self.product_of_rows(
                ctx,
                enc,
                (r_rows, vw),
                phi_k_t,
                (&dv_t, s.d_v),
                dims,
                (add, Triangles::NONE),
            )?;
            self.copy_dv(ctx, enc, &dv_t, &grads.dv)
        })??;
        ctx.submit("poly attention backward", enc)?;
        Ok(grads)
    }

    /// Records o and Z from O' chunk-transposed, plus the diagonal blocks' row sums of P
    /// (causal) in Z.
    fn normalise(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        o_ones_t: &GpuTensor,
        row_sums: Option<&GpuTensor>,
        (o, z): (&GpuTensor, &GpuTensor),
    ) -> Result<()> {
        let vw = self.v_width();
        let params = PolyParams {
            width_in: vw as u32,
            flags: if row_sums.is_some() { ADD_ADDEND } else { 0 },
            ..self.params()
        };
        if let Some(sums) = row_sums {
            check_len(sums, self.heads() * self.rows_pad())?;
        }
        // Without row sums the slot still needs a buffer (read-only, as O' is): not read.
        let addend = (ADDEND.name, row_sums.unwrap_or(o_ones_t));
        if self.shape.d_v.is_multiple_of(4) {
            // By 4 rows of a chunk per invocation; row_quad reads O'^T's width as width_out.
            let params = PolyParams {
                width_out: vw as u32,
                ..params
            };
            let (kernel, x, rows_each) = if self.by_eights(ctx) {
                (&NORMALISE8, X8, 8)
            } else {
                (&NORMALISE4, X4, 4)
            };
            let buffers = [(x.name, o_ones_t), addend, (OUT4.name, o), (AUX.name, z)];
            let invocations = self.heads() * self.rows_pad() / rows_each;
            return self.kernel(ctx, enc, kernel, params, &buffers, invocations);
        }
        let buffers = [(X.name, o_ones_t), addend, (OUT.name, o), (AUX.name, z)];
        let rows = self.heads() * self.shape.seq_len;
        self.kernel(ctx, enc, &NORMALISE, params, &buffers, rows)
    }

    /// Records dv from dV chunk-transposed.
    fn copy_dv(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        dv_t: &GpuTensor,
        dv: &GpuTensor,
    ) -> Result<()> {
        let (n, d_v) = (self.shape.seq_len, self.shape.d_v);
        check_len(dv_t, self.heads() * self.rows_pad() * d_v)?;
        check_len(dv, self.heads() * n * d_v)?;
        let params = PolyParams {
            rows: n as u32,
            rows_pad: n as u32,
            width_in: d_v as u32,
            width_out: d_v as u32,
            flags: FROM_CHUNKS_TRANSPOSED,
            ..self.params()
        };
        if d_v.is_multiple_of(4) {
            // By 4 rows of a chunk (a multiple of 4) per invocation, over the padded rows.
            let params = PolyParams {
                rows_pad: self.rows_pad() as u32,
                ..params
            };
            let (kernel, x, rows_each) = if self.by_eights(ctx) {
                (&COPY_ROWS_FROM_CHUNKS8, X8, 8)
            } else {
                (&COPY_ROWS_FROM_CHUNKS4, X4, 4)
            };
            let buffers = [(x.name, dv_t), (OUT4.name, dv)];
            let invocations = self.heads() * self.rows_pad() / rows_each;
            return self.kernel(ctx, enc, kernel, params, &buffers, invocations);
        }
        let buffers = [("x", dv_t), ("out", dv)];
        self.kernel(ctx, enc, &COPY_ROWS, params, &buffers, self.heads() * n)
    }

    /// Records the diagonal blocks' share of the backward: dQ', dK' into `diag` and dV^T = the
    /// first d_v rows of G_c^T P_c into `dv_t`, from G as rows and chunk-transposed.
    fn diagonal_backward(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        diag: &Diagonal,
        g_t: &GpuTensor,
        v_ones_t: &GpuTensor,
        dv_t: &GpuTensor,
    ) -> Result<()> {
        let (vw, qw, c) = (self.v_width(), self.qk_width(), self.block);
        let (scores, d_scores) = (diag.scores, &diag.d_scores);
        // dL/dP_c = G_c V'_c^T from both chunk-transposed (k-major), then dL/ds in its place
        // and P_c^T beside it.
        self.product_with_zeros(
            ctx,
            enc,
            (g_t, true),
            (v_ones_t, false),
            d_scores,
            [c, c, vw],
            (PLAIN, C_LOWER),
        )?;
        let buffers = [("x4", scores), ("out4", d_scores)];
        let quads = scores.len() / c / 4;
        self.kernel(ctx, enc, &TAYLOR_GRADS, self.params(), &buffers, quads)?;
        let scaled = Epilogue {
            alpha: self.params().logit_scale,
            ..PLAIN
        };
        // dQ'_c^T = K_c^T (dL/ds_c)^T and dK'_c^T = Q_c^T dL/ds_c, chunk-transposed as dL/dphi
        // is (the feature map adds them as they lie): qk_width rows of C, one block of 16,
        // where dQ'_c would be C's 16 columns of a block of 32. op(B) = (dL/ds)^T: zero where
        // k > j; then dL/ds itself, zero where k < j.
        let dims = [qw, c, c];
        self.product_with_zeros(
            ctx,
            enc,
            (diag.k, true),
            (d_scores, true),
            &diag.dq,
            dims,
            (scaled, B_UPPER),
        )?;
        self.product_with_zeros(
            ctx,
            enc,
            (diag.q, true),
            (d_scores, false),
            &diag.dk,
            dims,
            (scaled, B_LOWER),
        )?;
        // op(B) = P_c as the forward kept it (k-major), zero where k < j.
        let dims = [self.shape.d_v, c, c];
        self.product_of_rows(
            ctx,
            enc,
            ((g_t, false), vw),
            (diag.weights, false),
            (dv_t, self.shape.d_v),
            dims,
            (PLAIN, B_LOWER),
        )
    }
}

/// Chunk sizes the tuner times. Larger chunks make the diagonal blocks dearer (O(n C d) time),
/// smaller ones the state scan (O(n k d_v / C)); on llvmpipe 64 won on a Zen 3 EPYC and 128 on
/// an Intel Xeon and a Zen 5 EPYC, where the two measured within 10% of each other
/// (BENCHMARKS.md).
pub const CHUNK_CANDIDATES: [usize; 3] = [32, 64, 128];
/// Rows of the probe the chunk tuner times: enough chunks of every candidate for both costs to
/// show above the noise. At 2048 rows 32 and 64 traded places from run to run on llvmpipe
/// (73-87 ms against 75-117), and the tuner kept 32, which is 1.15-1.4x slower than 64 at
/// n = 16384 and 65536; at 8192 rows 64 won each time (291-307 ms against 338-370), at about
/// 4 s of tuning once per widths and degree (BENCHMARKS.md).
const CHUNK_PROBE_ROWS: usize = 8192;

/// The tune-cache class of a chunk choice: the chunk trades costs that depend on the widths and
/// the degree, not on n or the number of heads.
pub fn chunk_class(shape: &AttentionShape, degree: u32) -> String {
    format!(
        "poly_attention chunk g{degree} d_qk{} d_v{}",
        shape.d_qk, shape.d_v
    )
}

/// The chunk size for causal attention of this shape's widths: cached, measured, or the default
/// with tuning off.
pub fn choose_chunk(ctx: &GpuContext, shape: &AttentionShape, degree: u32) -> Result<usize> {
    let class = chunk_class(shape, degree);
    {
        let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
        if tuner.mode == TuneMode::Off {
            return Ok(PolyAttention::DEFAULT_CHUNK);
        }
        if let Some(value) = tuner.cached(&class).map(str::to_string) {
            match value.parse::<usize>() {
                Ok(chunk) if CHUNK_CANDIDATES.contains(&chunk) => return Ok(chunk),
                _ => tuner.forget(&class, "not one of the chunk sizes polygrad times"),
            }
        }
    }
    let chosen = measure_chunk(ctx, shape, degree)?;
    let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
    tuner.record(&class, &chosen.to_string());
    Ok(chosen)
}

/// Times forward + backward of one head of CHUNK_PROBE_ROWS rows with each candidate and
/// returns the fastest whose output agrees with the others (`tune::fastest_agreeing`). A
/// candidate the device refuses (states too large) is skipped.
fn measure_chunk(ctx: &GpuContext, shape: &AttentionShape, degree: u32) -> Result<usize> {
    let probe = AttentionShape::new(1, 1, CHUNK_PROBE_ROWS, shape.d_qk, shape.d_v, true);
    let (q, k, v, d_o) = probe_inputs(ctx, &probe)?;
    let chosen = fastest_agreeing("poly attention chunk", &CHUNK_CANDIDATES, |chunk, round| {
        let Ok(op) = PolyAttention::with_chunk(ctx, probe, degree, chunk) else {
            return Ok(None);
        };
        let (time, o) = timed(|| {
            let saved = op.forward(ctx, &q, &k, &v)?;
            op.backward(ctx, &q, &k, &v, &saved, &d_o)?;
            ctx.synchronize()?;
            Ok(saved.o)
        })?;
        Ok(Some((
            time,
            (round == Round::Check)
                .then(|| o.download(ctx))
                .transpose()?,
        )))
    })?;
    Ok(chosen.unwrap_or(PolyAttention::DEFAULT_CHUNK))
}

/// The causal backward's buffers for the diagonal blocks.
struct Diagonal<'a> {
    /// Q and K as the products read them ([`PolyForward::qk_rows`]).
    q: &'a GpuTensor,
    k: &'a GpuTensor,
    scores: &'a GpuTensor,
    /// P_c for every chunk, `[B*H * n_chunks, C, C]`, as the forward kept it.
    weights: &'a GpuTensor,
    d_scores: GpuTensor,
    /// dq and dk from the diagonal blocks, `[B*H, n_pad, qk_width]` chunk-transposed (as dL/dphi).
    dq: GpuTensor,
    dk: GpuTensor,
}
