//! `phi_product`: the chunk products whose sum runs over the features (O'_c = Phi(Q_c) S_<c and
//! dV'_c = Phi(K_c) R_>c), with each row's degree-2 features formed in registers from its q (k)
//! row instead of loaded from a materialised Phi. A row of d_qk values loads as d_qk / 4 vec4s
//! and gives 1 + d_qk + d_qk (d_qk + 1) / 2 features, so the product loads only the states:
//! about a third of the storage loads per multiply-add of the best core variant on Phi.
//!
//! WGSL cannot say this with loops: a loop over the features indexes the private rows at run
//! time, and llvmpipe keeps such rows in memory (4x slower than the materialised product,
//! BENCHMARKS.md). So the entry point is written here for each d_qk and rows per invocation,
//! every feature a constant expression of the row's components, and appended to
//! poly_attention.wgsl ([`Kernel::generated`]); the declaration check parses its samples.

use std::fmt::Write;

use super::{PolyParams, MONOMIALS, OUT, PARAMS, STATES4};
use crate::gpu::kernel::{Access, BindingDecl, Elem, Generated, Kernel, Needs, Workgroup};

/// The widest q/k row phi_product is generated for: the feature expressions grow as d_qk^2
/// (2145 at d_qk = 64, against 153 at 16), and so do the module and its compile time.
pub const MAX_D_QK: usize = 32;
/// The most rows one invocation forms features for (each row holds d_qk / 4 vec4s and a vec4 of
/// sums in registers).
pub const MAX_ROWS: usize = 16;

const X4: BindingDecl = BindingDecl::new("x4", 8, Access::Read, Elem::Vec4F32);

/// Forms Phi of `ROWS` rows of a chunk (of `D_QK` values each) in registers and multiplies it by
/// the chunk's transposed state, for one vec4 of value columns.
pub const PHI_PRODUCT: Kernel = Kernel {
    shader: "poly_attention.wgsl",
    entry: "phi_product",
    bindings: &[PARAMS, MONOMIALS, X4, OUT, STATES4],
    params: PolyParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[],
    source_constants: &["D_QK", "ROWS"],
    generated: Some(&GENERATED),
    needs: Needs::Core,
};

const GENERATED: Generated = Generated {
    source: phi_product_wgsl,
    samples: &[
        &[("D_QK", 4), ("ROWS", 1)],
        &[("D_QK", 16), ("ROWS", 8)],
        &[("D_QK", MAX_D_QK as u32), ("ROWS", MAX_ROWS as u32)],
    ],
};

/// Whether phi_product can run rows of `d_qk` values at `degree`.
pub fn supports(d_qk: usize, degree: u32) -> bool {
    degree == super::PAIRS_DEGREE && d_qk.is_multiple_of(4) && (4..=MAX_D_QK).contains(&d_qk)
}

/// Rows per invocation: 8 rows of d_qk = 16 ran the two products fastest on llvmpipe (43 ms
/// against 106 at 4 rows and 42-65 at 16; BENCHMARKS.md); wider rows hold more registers each.
pub fn rows_per_invocation(d_qk: usize) -> usize {
    (128 / d_qk).clamp(1, MAX_ROWS)
}

/// One feature of phi_pairs' order (1, each x_i, each x_i x_j with i <= j), as phi_pairs
/// rounds it, for row `t`.
enum Feature {
    One,
    Linear(usize),
    Pair(usize, usize),
    Padding,
}

impl Feature {
    /// In phi_pairs' order, padded to a multiple of 4.
    fn all(d: usize) -> Vec<Feature> {
        let mut features = vec![Feature::One];
        features.extend((0..d).map(Feature::Linear));
        for i in 0..d {
            features.extend((i..d).map(|j| Feature::Pair(i, j)));
        }
        while features.len() % 4 != 0 {
            features.push(Feature::Padding);
        }
        features
    }

    fn wgsl(&self, t: usize) -> String {
        let x = |i: usize| format!("x{t}_{}.{}", i / 4, ['x', 'y', 'z', 'w'][i % 4]);
        match *self {
            Feature::One => format!("one{t}"),
            Feature::Linear(i) => format!("cx * {}", x(i)),
            Feature::Pair(i, j) => {
                let c = if i == j { "cy" } else { "cz" };
                format!("{c} * {} * {}", x(i), x(j))
            }
            Feature::Padding => "0.0".into(),
        }
    }
}

/// The value of source constant `name`.
fn value(values: &[(&'static str, u32)], name: &str) -> Result<usize, String> {
    values
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v as usize)
        .ok_or_else(|| format!("phi_product needs a value for {name}"))
}

/// The WGSL of `phi_product` for `D_QK` and `ROWS`.
///
/// One invocation per (head, chunk, block of ROWS rows, vec4 of value columns); params as the
/// other kernels: width_in the value width (a multiple of 4), flags ADD_ADDEND to add into
/// `out`. Rows past the sequence give zero features (as phi_pairs writes them); rows past the
/// chunk's end are not stored.
fn phi_product_wgsl(values: &[(&'static str, u32)]) -> Result<String, String> {
    let (d, rows) = (value(values, "D_QK")?, value(values, "ROWS")?);
    if !d.is_multiple_of(4) || !(4..=MAX_D_QK).contains(&d) {
        return Err(format!(
            "D_QK {d} is not a multiple of 4 from 4 to {MAX_D_QK}"
        ));
    }
    if !(1..=MAX_ROWS).contains(&rows) {
        return Err(format!("ROWS {rows} is not from 1 to {MAX_ROWS}"));
    }
    let quads = d / 4;
    let mut w = String::new();
    // Writing into a String cannot fail.
    let mut line = |text: String| writeln!(w, "{text}").unwrap();
    line(format!(
        "// Generated for D_QK = {d}, ROWS = {rows} (src/ops/poly_attention/phi_product.rs).
@compute @workgroup_size(WORKGROUP)
fn phi_product(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {{
    let col_quads = params.width_in / 4u;
    let blocks_per_chunk = (params.chunk + {rows}u - 1u) / {rows}u;
    let id = linear_id(wid, lid, nwg);
    let jq = id % col_quads;
    let block = id / col_quads;
    let h = block / (params.n_chunks * blocks_per_chunk);
    if (h >= params.heads) {{
        return;
    }}
    let c = block / blocks_per_chunk % params.n_chunks;
    let first = c * params.chunk + block % blocks_per_chunk * {rows}u;
    let end = min(first + {rows}u, (c + 1u) * params.chunk);
    let coef = pair_coefficients();
    let cx = coef.x;
    let cy = coef.y;
    let cz = coef.z;
    let f_quads = params.features_pad / 4u;
    let states = (h * params.n_chunks + c) * params.width_in + 4u * jq;"
    ));
    for t in 0..rows {
        line(format!(
            "    let real{t} = first + {t}u < min(end, params.rows);
    let row{t} = select(0u, (h * params.rows + first + {t}u) * {quads}u, real{t});
    let one{t} = select(0.0, 1.0, real{t});
    var acc{t} = vec4<f32>(0.0);"
        ));
        for q in 0..quads {
            line(format!(
                "    let x{t}_{q} = select(vec4<f32>(0.0), x4[row{t} + {q}u], real{t});"
            ));
        }
    }
    for (q, group) in Feature::all(d).chunks(4).enumerate() {
        line(format!("    {{ // features {}..{}", 4 * q, 4 * q + 3));
        for i in 0..4 {
            line(format!(
                "        let s{i} = states4[(states + {i}u) * f_quads + {q}u];"
            ));
        }
        for t in 0..rows {
            let p: Vec<String> = group.iter().map(|f| f.wgsl(t)).collect();
            line(format!(
                "        let p{t} = vec4<f32>({});
        acc{t} += vec4<f32>(dot(p{t}, s0), dot(p{t}, s1), dot(p{t}, s2), dot(p{t}, s3));",
                p.join(", ")
            ));
        }
        line("    }".into());
    }
    line("    let add = (params.flags & ADD_ADDEND) != 0u;".into());
    for t in 0..rows {
        line(format!(
            "    if (first + {t}u < end) {{
        let at = (h * params.rows_pad + first + {t}u) * params.width_in + 4u * jq;
        out[at] = select(0.0, out[at], add) + acc{t}.x;
        out[at + 1u] = select(0.0, out[at + 1u], add) + acc{t}.y;
        out[at + 2u] = select(0.0, out[at + 2u], add) + acc{t}.z;
        out[at + 3u] = select(0.0, out[at + 3u], add) + acc{t}.w;
    }}"
        ));
    }
    line("}".into());
    Ok(w)
}
