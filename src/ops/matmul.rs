//! Host side of shaders/matmul.wgsl and matmul_subgroup.wgsl: the one matrix-product core,
//! `C[b] = alpha op(A[b]) op(B[b]) (+ C[b]) (+ bias)`, batched and strided, in the variants the
//! tuner chooses between. Records into the caller's encoder; nothing is submitted here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::kernel::{
    gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup, DEFAULT_WORKGROUP,
    WINDOW_BYTES,
};
use crate::gpu::tune::{fastest_agreeing, probe_values, timed, Round, TuneMode};
use crate::gpu::{GpuContext, GpuTensor};
use crate::gpu::{WindowedDispatch, Work};
use crate::ops::gelu::{gelu_backward, gelu_forward};

gpu_params! {
    /// The shader's `Params`.
    pub(crate) struct MatmulParams as "Params" {
        m: u32,
        n: u32,
        k_begin: u32,
        k_end: u32,
        lda: u32,
        ldb: u32,
        ldc: u32,
        batch: u32,
        stride_a: u32,
        stride_b: u32,
        stride_c: u32,
        alpha: f32,
        window_k: u32,
        window_lines_a: u32,
        window_lines_b: u32,
        window_stride: u32,
        windows: u32,
        row0: u32,
        col0: u32,
        batch0: u32,
        window_batch: u32,
        triangles: u32,
        _pad2: u32,
        _pad3: u32,
    }
}

/// The most k one dispatch sums over. Longer sums run span after span, adding into C in a fixed
/// order: a two-level sum (rounding grows with K_SPAN + K / K_SPAN terms, not K), and each
/// invocation stays far inside llvmpipe's 65535 loop iterations (K_SPAN / 4).
pub const K_SPAN: usize = 2048;

/// The largest block edge a register-blocked variant may have. Compile time grows fast with the
/// block: on llvmpipe 1 s at 4 x 4, 5 s at 16 x 16, 63 s at 32 x 32 (which ran 1.4x faster than
/// 16 x 16 at 1024^3, not enough to pay for a minute per layout).
pub const MAX_BLOCK: u32 = 16;

const BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("a", 1, Access::Read, Elem::Vec4F32),
    BindingDecl::new("b", 2, Access::Read, Elem::Vec4F32),
    BindingDecl::new("bias", 3, Access::Read, Elem::F32),
    BindingDecl::new("c", 4, Access::ReadWrite, Elem::F32),
    // The activation's operands (`Activation`).
    BindingDecl::new("gate4", 18, Access::Read, Elem::Vec4F32),
    BindingDecl::new("act4", 19, Access::ReadWrite, Elem::Vec4F32),
];

/// The override constants of the core products (matmul_reg, matmul_tiled): the layout's and
/// the epilogue's.
const CORE_CONSTANTS: &[&str] = &[
    "TRANS_A",
    "TRANS_B",
    "TRANS_C",
    "VEC4",
    "ADD_INTO_C",
    "ADD_BIAS",
    "ACTIVATION",
];

/// matmul_reg: a TM x TN block of C per invocation.
pub const MATMUL_REG: Kernel = Kernel {
    shader: "matmul.wgsl",
    entry: "matmul_reg",
    bindings: BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: CORE_CONSTANTS,
    source_constants: &["TM", "TN"],
    needs: Needs::Core,
};

/// matmul_tiled: 64 x 64 per workgroup through workgroup memory.
pub const MATMUL_TILED: Kernel = Kernel {
    shader: "matmul.wgsl",
    entry: "matmul_tiled",
    bindings: BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Fixed([16, 16, 1]),
    constants: CORE_CONSTANTS,
    source_constants: &[],
    needs: Needs::Core,
};

/// The override constants of the subgroup products (matmul_broadcast, matmul_subgroup and the
/// 64-bit ones).
const SUBGROUP_CONSTANTS: &[&str] = &[
    "TRANS_A",
    "TRANS_B",
    "TRANS_C",
    "VEC4",
    "SUBGROUP",
    "C_VEC4",
    "ADD_INTO_C",
    "ADD_BIAS",
    "ACTIVATION",
];

/// matmul_broadcast: 16 x 4 per lane, rows of op(A) broadcast.
pub const MATMUL_BROADCAST: Kernel = Kernel {
    shader: "matmul_subgroup.wgsl",
    entry: "matmul_broadcast",
    bindings: SUBGROUP_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: SUBGROUP_CONSTANTS,
    source_constants: &[],
    needs: Needs::Subgroups,
};

/// The subgroup size matmul_broadcast and matmul_windows are written for (their lanes are
/// spelled out).
const BROADCAST_LANES: u32 = 8;

/// matmul_broadcast's and matmul_subgroup's: BINDINGS and C again as vec4s (C_VEC4).
const SUBGROUP_BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("a", 1, Access::Read, Elem::Vec4F32),
    BindingDecl::new("b", 2, Access::Read, Elem::Vec4F32),
    BindingDecl::new("bias", 3, Access::Read, Elem::F32),
    BindingDecl::new("c", 4, Access::ReadWrite, Elem::F32),
    BindingDecl::new("c4", 14, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("gate4", 18, Access::Read, Elem::Vec4F32),
    BindingDecl::new("act4", 19, Access::ReadWrite, Elem::Vec4F32),
];

const PACK_BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("a", 1, Access::Read, Elem::Vec4F32),
    BindingDecl::new("b", 2, Access::Read, Elem::Vec4F32),
    BindingDecl::new("packed", 5, Access::ReadWrite, Elem::Vec4F32),
];

/// pack_windows: op(A) or op(B) into uniform windows.
pub const PACK_WINDOWS: Kernel = Kernel {
    shader: "matmul.wgsl",
    entry: "pack_windows",
    bindings: PACK_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &["TRANS_A", "TRANS_B", "VEC4", "PACK_B"],
    source_constants: &[],
    needs: Needs::Core,
};

/// pack_k_contiguous: one K span of op(A) or op(B), dense and k-contiguous, for
/// broadcast64-packed-16x4.
pub const PACK_K_CONTIGUOUS: Kernel = Kernel {
    entry: "pack_k_contiguous",
    ..PACK_WINDOWS
};

/// The window bindings of matmul_windows: k windows 0..3 of op(A), then of op(B).
const WINDOW_NAMES: [[&str; WINDOWS_PER_DISPATCH]; 2] =
    [["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"]];
/// Window bindings per operand of matmul_windows: k windows it sums over, or (windows-direct)
/// matrices side by side.
const WINDOWS_PER_DISPATCH: usize = 4;

const WINDOWED_BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("bias", 3, Access::Read, Elem::F32),
    BindingDecl::new("c", 4, Access::ReadWrite, Elem::F32),
    BindingDecl::new("a0", 6, Access::Window, Elem::Window),
    BindingDecl::new("a1", 7, Access::Window, Elem::Window),
    BindingDecl::new("a2", 8, Access::Window, Elem::Window),
    BindingDecl::new("a3", 9, Access::Window, Elem::Window),
    BindingDecl::new("b0", 10, Access::Window, Elem::Window),
    BindingDecl::new("b1", 11, Access::Window, Elem::Window),
    BindingDecl::new("b2", 12, Access::Window, Elem::Window),
    BindingDecl::new("b3", 13, Access::Window, Elem::Window),
    // C again, as vec4s (C_VEC4 in the shader).
    BindingDecl::new("c4", 14, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("gate4", 18, Access::Read, Elem::Vec4F32),
    BindingDecl::new("act4", 19, Access::ReadWrite, Elem::Vec4F32),
];

/// matmul_windows: products from uniform windows.
pub const MATMUL_WINDOWS: Kernel = Kernel {
    shader: "matmul_subgroup.wgsl",
    entry: "matmul_windows",
    bindings: WINDOWED_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Fixed([BROADCAST_LANES, 1, 1]),
    constants: &[
        "B_K_MAJOR",
        "BATCH_WINDOWS",
        "TRANS_C",
        "C_VEC4",
        "ADD_INTO_C",
        "ADD_BIAS",
        "ACTIVATION",
    ],
    source_constants: &[],
    needs: Needs::Subgroups,
};

const BROADCAST64_BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("bias", 3, Access::Read, Elem::F32),
    BindingDecl::new("c", 4, Access::ReadWrite, Elem::F32),
    BindingDecl::new("c4", 14, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("gate4", 18, Access::Read, Elem::Vec4F32),
    BindingDecl::new("act4", 19, Access::ReadWrite, Elem::Vec4F32),
    // A and B again, as 8 floats per element.
    BindingDecl::new("a8", 15, Access::Read, Elem::Vec4U64),
    BindingDecl::new("b8", 16, Access::Read, Elem::Vec4U64),
];

/// matmul_broadcast64: matmul_broadcast with 64-bit loads.
pub const MATMUL_BROADCAST64: Kernel = Kernel {
    shader: "matmul_int64.wgsl",
    entry: "matmul_broadcast64",
    bindings: BROADCAST64_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: SUBGROUP_CONSTANTS,
    source_constants: &[],
    needs: Needs::SubgroupsInt64,
};

const BROADCAST64_KM_BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("bias", 3, Access::Read, Elem::F32),
    BindingDecl::new("c", 4, Access::ReadWrite, Elem::F32),
    BindingDecl::new("c4", 14, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("gate4", 18, Access::Read, Elem::Vec4F32),
    BindingDecl::new("act4", 19, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("a8", 15, Access::Read, Elem::Vec4U64),
    // B as 8 floats per element: named by the shared loads, bound but not read.
    BindingDecl::new("b8", 16, Access::Read, Elem::Vec4U64),
    // B as 4 floats per element.
    BindingDecl::new("b4", 17, Access::Read, Elem::Vec2U64),
];

/// matmul_broadcast64_km: matmul_broadcast64 with op(B) stored k-major.
pub const MATMUL_BROADCAST64_KM: Kernel = Kernel {
    shader: "matmul_int64.wgsl",
    entry: "matmul_broadcast64_km",
    bindings: BROADCAST64_KM_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: SUBGROUP_CONSTANTS,
    source_constants: &[],
    needs: Needs::SubgroupsInt64,
};

/// matmul_broadcast64_km8's bindings: broadcast64's, and C, GELU's pre-activation and its
/// output again as 8 floats per element (C_VEC8).
const BROADCAST64_KM8_BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("bias", 3, Access::Read, Elem::F32),
    BindingDecl::new("c", 4, Access::ReadWrite, Elem::F32),
    BindingDecl::new("c4", 14, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("gate4", 18, Access::Read, Elem::Vec4F32),
    BindingDecl::new("act4", 19, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("a8", 15, Access::Read, Elem::Vec4U64),
    BindingDecl::new("b8", 16, Access::Read, Elem::Vec4U64),
    BindingDecl::new("c8", 24, Access::ReadWrite, Elem::Vec4U64),
    BindingDecl::new("gate8", 25, Access::Read, Elem::Vec4U64),
    BindingDecl::new("act8", 26, Access::ReadWrite, Elem::Vec4U64),
];

/// The override constants of the 16 x 8 kernels: the subgroup kernels' and C_VEC8.
const KM8_CONSTANTS: &[&str] = &[
    "TRANS_A",
    "TRANS_B",
    "TRANS_C",
    "VEC4",
    "SUBGROUP",
    "C_VEC4",
    "C_VEC8",
    "ADD_INTO_C",
    "ADD_BIAS",
    "ACTIVATION",
];

/// matmul_broadcast64_km8: matmul_broadcast64_km with 8 columns of C per lane, op(B) loaded as
/// 8 floats per element only.
pub const MATMUL_BROADCAST64_KM8: Kernel = Kernel {
    entry: "matmul_broadcast64_km8",
    bindings: BROADCAST64_KM8_BINDINGS,
    constants: KM8_CONSTANTS,
    ..MATMUL_BROADCAST64_KM
};

/// matmul_windows64_km8's bindings: broadcast64-km-16x8's (b8 is bound but not read: the
/// shared loads name it), and the windows of op(B) it sums over.
const WINDOWS64_BINDINGS: &[BindingDecl] = &[
    BindingDecl::new("params", 0, Access::Uniform, Elem::Params),
    BindingDecl::new("bias", 3, Access::Read, Elem::F32),
    BindingDecl::new("c", 4, Access::ReadWrite, Elem::F32),
    BindingDecl::new("c4", 14, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("gate4", 18, Access::Read, Elem::Vec4F32),
    BindingDecl::new("act4", 19, Access::ReadWrite, Elem::Vec4F32),
    BindingDecl::new("a8", 15, Access::Read, Elem::Vec4U64),
    BindingDecl::new("b8", 16, Access::Read, Elem::Vec4U64),
    BindingDecl::new("c8", 24, Access::ReadWrite, Elem::Vec4U64),
    BindingDecl::new("gate8", 25, Access::Read, Elem::Vec4U64),
    BindingDecl::new("act8", 26, Access::ReadWrite, Elem::Vec4U64),
    BindingDecl::new(WINDOW64_NAMES[0], 20, Access::Window, Elem::Window64),
    BindingDecl::new(WINDOW64_NAMES[1], 21, Access::Window, Elem::Window64),
    BindingDecl::new(WINDOW64_NAMES[2], 22, Access::Window, Elem::Window64),
    BindingDecl::new(WINDOW64_NAMES[3], 23, Access::Window, Elem::Window64),
];
/// The window bindings of matmul_windows64_km8, in k order.
const WINDOW64_NAMES: [&str; 4] = ["bw0", "bw1", "bw2", "bw3"];
/// Columns of op(B) per window of matmul_windows64_km8, and of C per subgroup: 8 lanes of 8.
const WINDOW64_COLS: usize = 64;
/// k per window of op(B) in matmul_windows64_km8: WINDOW_BYTES of 64-column rows. The shader's
/// WINDOW64_K sizes its `Window64`, which the declaration check holds to WINDOW_BYTES, so the
/// two agree.
const WINDOW64_K: usize = WINDOW_BYTES as usize / (4 * WINDOW64_COLS);

/// matmul_windows64_km8: broadcast64-km-16x8 with op(B) from uniform windows.
pub const MATMUL_WINDOWS64_KM8: Kernel = Kernel {
    shader: "matmul_int64.wgsl",
    entry: "matmul_windows64_km8",
    bindings: WINDOWS64_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &[
        "TRANS_A",
        "TRANS_C",
        "C_VEC4",
        "C_VEC8",
        "SUBGROUP",
        "WINDOWS",
        "WINDOW_COLUMNS",
        "ADD_INTO_C",
        "ADD_BIAS",
        "ACTIVATION",
    ],
    source_constants: &[],
    needs: Needs::SubgroupsInt64,
};

/// pack_windows64: op(B) into matmul_windows64_km8's windows.
pub const PACK_WINDOWS64: Kernel = Kernel {
    shader: "matmul_int64.wgsl",
    entry: "pack_windows64",
    bindings: PACK_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &["TRANS_B", "VEC4"],
    source_constants: &[],
    needs: Needs::Int64,
};

/// Rows and columns of C one subgroup of matmul_windows computes.
const WINDOW_BLOCK: (usize, usize) = (16, 32);
/// The most k one window holds: more k per window means fewer lines, so smaller blocks of C
/// per dispatch and more dispatches (about 23 us each on llvmpipe); less means more groups of
/// k windows, each adding into C (a load of C costs several stores there).
const WINDOW_K_MAX: usize = 256;
/// Products of more matrices than this are "batched": windows-16x4 does not run them
/// ([`windows_fit`]), and their shape class is timed apart, batched.
const BATCHED: usize = 4;

/// matmul_subgroup: operands shared by subgroupShuffle.
pub const MATMUL_SUBGROUP: Kernel = Kernel {
    shader: "matmul_subgroup.wgsl",
    entry: "matmul_subgroup",
    bindings: SUBGROUP_BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: SUBGROUP_CONSTANTS,
    source_constants: &["LANE_ROWS"],
    needs: Needs::Subgroups,
};

/// Edge of the block of C one workgroup of matmul_tiled computes.
const TILE: u64 = 64;

/// One way of running the product; all give the same result up to f32 rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// matmul_reg: a `tm` x `tn` block of C per invocation, in registers.
    Registers {
        /// Rows of C per invocation.
        tm: u32,
        /// Columns of C per invocation.
        tn: u32,
    },
    /// matmul_tiled: 64 x 64 per workgroup through workgroup memory.
    Tiled,
    /// matmul_subgroup: `lane_rows` x 4 of C per lane (4 or 8), operands shared by shuffles.
    Subgroup {
        /// Rows of C per lane.
        lane_rows: u32,
    },
    /// matmul_broadcast: 16 x 4 of C per lane, rows of A shared by broadcasts (8-lane
    /// subgroups only).
    Broadcast,
    /// matmul_broadcast with 64-bit loads, 8 floats each (8-lane subgroups and SHADER_INT64;
    /// C = A B^T with every operand run a multiple of 8: [`Layout::vec8`]).
    Broadcast64,
    /// matmul_broadcast64 for op(B) stored k-major (C = A B or A^T B), or both operands
    /// stored transposed (C = A^T B^T), 64-bit loads of op(A) and of op(B)'s rows
    /// ([`Layout::k_major8`]).
    Broadcast64Km,
    /// matmul_broadcast64_km with 8 columns of C per lane (16 x 64 per subgroup), op(B)
    /// stored k-major, loaded 8 columns at a time, or k-contiguous (C = A B^T, A^T B^T), 8 k
    /// of each column at a time ([`Layout::aligned8`]).
    Broadcast64Km8,
    /// matmul_broadcast64 on k-contiguous copies of op(A) and op(B), copied one K span at a
    /// time (pack_k_contiguous): for products of at most 4 matrices in layouts
    /// broadcast64-16x4 cannot read, where the copy may cost less than k-major loads of 4
    /// floats (a linear layer's weight gradient, K its tokens).
    Packed64,
    /// broadcast64-km-16x8 with op(B) copied into uniform windows first (pack_windows64,
    /// then matmul_windows64_km8): llvmpipe gathers a uniform buffer's elements without its
    /// per-lane loop. Up to [`BATCHED`] matrices, op(A) read as broadcast64-km-16x8 reads it
    /// ([`Layout::a_aligned8`]).
    Windows64Km8,
    /// windows64-km-16x8 in the other order where k spans several windows: a dispatch per k
    /// window, binding 4 consecutive column blocks at that window (each subgroup computes them
    /// in turn, its 16 rows of op(A) read again from cache), every window after the first
    /// adding into C. op(A) streams from memory once per k window rather than once per column
    /// block, and C is read and written once per k window rather than once per 4: the tuner
    /// weighs the two per shape (BENCHMARKS.md: 1.3-1.4x at 1024 x 256 x 2048 on a Zen 4, a
    /// tie or slower on an Intel Xeon).
    Windows64Km8ByK,
    /// matmul_broadcast's blocks with both operands packed into uniform windows first
    /// (pack_windows, then matmul_windows; 8-lane subgroups only).
    Windows,
    /// matmul_windows with its windows bound straight onto the operands, no packing: for
    /// products in a linear layer's layout whose tensors were made windowable (see
    /// `direct_geometry`).
    Direct,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // f.pad honours a width (`{:>22}`): bench's tables align the names.
        let name = match self {
            Variant::Registers { tm, tn } => format!("registers-{tm}x{tn}"),
            Variant::Tiled => "tiled-64x64".to_string(),
            Variant::Subgroup { lane_rows } => format!("subgroup-{lane_rows}x4"),
            Variant::Broadcast => "broadcast-16x4".to_string(),
            Variant::Broadcast64 => "broadcast64-16x4".to_string(),
            Variant::Broadcast64Km => "broadcast64-km-16x4".to_string(),
            Variant::Broadcast64Km8 => "broadcast64-km-16x8".to_string(),
            Variant::Packed64 => "broadcast64-packed-16x4".to_string(),
            Variant::Windows64Km8 => "windows64-km-16x8".to_string(),
            Variant::Windows64Km8ByK => "windows64-by-k-km-16x8".to_string(),
            Variant::Windows => "windows-16x4".to_string(),
            Variant::Direct => "windows-direct-16x4".to_string(),
        };
        f.pad(&name)
    }
}

impl Variant {
    /// Every variant worth timing on this adapter.
    pub fn candidates(ctx: &GpuContext) -> Vec<Variant> {
        let mut all = vec![
            Variant::Registers { tm: 4, tn: 4 },
            Variant::Registers { tm: 8, tn: 8 },
            Variant::Registers { tm: 16, tn: 8 },
            Variant::Registers { tm: 16, tn: 16 },
            Variant::Tiled,
        ];
        all.push(Variant::Subgroup { lane_rows: 4 });
        all.push(Variant::Subgroup { lane_rows: 8 });
        all.push(Variant::Broadcast);
        all.push(Variant::Broadcast64);
        all.push(Variant::Broadcast64Km);
        all.push(Variant::Broadcast64Km8);
        all.push(Variant::Packed64);
        all.push(Variant::Windows64Km8);
        all.push(Variant::Windows64Km8ByK);
        all.push(Variant::Windows);
        all.push(Variant::Direct);
        all.retain(|v| v.available(ctx));
        all
    }

    /// Whether the variant can run on this adapter: its features and limits, and as many
    /// storage buffers as its kernel binds.
    pub fn available(&self, ctx: &GpuContext) -> bool {
        let storage = ctx.limits().max_storage_buffers_per_shader_stage;
        self.kernel().storage_bindings() <= storage && self.adapter_has(ctx)
    }

    /// What the variant needs of the adapter besides its storage buffers.
    fn adapter_has(&self, ctx: &GpuContext) -> bool {
        match *self {
            Variant::Registers { tm, tn } => {
                tm % 4 == 0 && tn % 4 == 0 && tm <= MAX_BLOCK && tn <= MAX_BLOCK
            }
            Variant::Tiled => ctx.limits().max_compute_invocations_per_workgroup >= 256,
            Variant::Broadcast => {
                ctx.has_subgroups() && ctx.adapter().subgroup_size == Some(BROADCAST_LANES)
            }
            Variant::Broadcast64
            | Variant::Broadcast64Km
            | Variant::Broadcast64Km8
            | Variant::Packed64 => Variant::Broadcast.available(ctx) && ctx.has_int64(),
            Variant::Windows64Km8 | Variant::Windows64Km8ByK => {
                let limits = ctx.limits();
                // The params and the windows, all bound at offsets.
                let uniforms = 1 + WINDOW64_NAMES.len() as u32;
                Variant::Broadcast64Km8.available(ctx)
                    && limits.max_uniform_buffer_binding_size >= WINDOW_BYTES
                    && limits.max_uniform_buffers_per_shader_stage >= uniforms
                    && limits.max_dynamic_uniform_buffers_per_pipeline_layout >= uniforms
            }
            Variant::Windows | Variant::Direct => {
                let limits = ctx.limits();
                let uniforms = 1 + 2 * WINDOWS_PER_DISPATCH as u32;
                Variant::Broadcast.available(ctx)
                    && limits.max_uniform_buffer_binding_size >= WINDOW_BYTES
                    && limits.max_uniform_buffers_per_shader_stage >= uniforms
                    && limits.max_dynamic_uniform_buffers_per_pipeline_layout >= uniforms
            }
            Variant::Subgroup { lane_rows } => {
                matches!(lane_rows, 4 | 8)
                    && ctx.has_subgroups()
                    && ctx
                        .adapter()
                        .subgroup_size
                        .is_some_and(|s| s.is_power_of_two() && (4..=64).contains(&s))
            }
        }
    }

    /// Whether the variant may run this product: windows-16x4 only where `windows_fit`,
    /// windows-direct-16x4 only where `direct` says its operands can be bound where they lie
    /// ([`Matmul::runs_direct`]), broadcast64-16x4 only where [`Layout::vec8`].
    pub fn suits(&self, ctx: &GpuContext, shape: &Shape, layout: &Layout, direct: bool) -> bool {
        match self {
            Variant::Windows => windows_fit(ctx, shape),
            Variant::Broadcast64 => layout.vec8(shape),
            Variant::Broadcast64Km => layout.k_major8(shape),
            Variant::Broadcast64Km8 => layout.aligned8(shape),
            Variant::Packed64 => !layout.vec8(shape) && packed_fits(ctx, shape),
            Variant::Windows64Km8 => windows64_fit(ctx, shape, layout),
            // Where k fits one window, or C one column block, the two orders are one.
            Variant::Windows64Km8ByK => {
                windows64_fit(ctx, shape, layout) && shape.k > WINDOW64_K && shape.n > WINDOW64_COLS
            }
            Variant::Direct => direct,
            _ => true,
        }
    }

    fn kernel(&self) -> &'static Kernel {
        match self {
            Variant::Registers { .. } => &MATMUL_REG,
            Variant::Tiled => &MATMUL_TILED,
            Variant::Subgroup { .. } => &MATMUL_SUBGROUP,
            Variant::Broadcast => &MATMUL_BROADCAST,
            Variant::Broadcast64 | Variant::Packed64 => &MATMUL_BROADCAST64,
            Variant::Broadcast64Km => &MATMUL_BROADCAST64_KM,
            Variant::Broadcast64Km8 => &MATMUL_BROADCAST64_KM8,
            Variant::Windows | Variant::Direct => &MATMUL_WINDOWS,
            Variant::Windows64Km8 | Variant::Windows64Km8ByK => &MATMUL_WINDOWS64_KM8,
        }
    }

    /// Columns of C each lane of the broadcast kernels owns.
    fn lane_cols(&self) -> u64 {
        match self {
            Variant::Broadcast64Km8 => 8,
            _ => 4,
        }
    }

    /// The override constants of this variant (besides the layout's), and its grid.
    fn constants_and_grid(
        &self,
        ctx: &GpuContext,
        shape: &Shape,
    ) -> (Vec<(&'static str, f64)>, Grid) {
        let (m, n, batch) = (shape.m as u64, shape.n as u64, shape.batch as u64);
        match *self {
            Variant::Registers { tm, tn } => (
                vec![("TM", tm as f64), ("TN", tn as f64)],
                Grid::Invocations(batch * m.div_ceil(tm as u64) * n.div_ceil(tn as u64)),
            ),
            Variant::Tiled => (
                vec![],
                Grid::Workgroups(batch * m.div_ceil(TILE) * n.div_ceil(TILE)),
            ),
            // Dispatched window by window (Matmul::record_windowed, record_windows64).
            Variant::Windows
            | Variant::Direct
            | Variant::Windows64Km8
            | Variant::Windows64Km8ByK => (vec![], Grid::Workgroups(0)),
            Variant::Broadcast
            | Variant::Broadcast64
            | Variant::Broadcast64Km
            | Variant::Broadcast64Km8
            | Variant::Packed64 => {
                let lanes = BROADCAST_LANES as u64;
                let block_cols = lanes * self.lane_cols();
                (
                    vec![("SUBGROUP", lanes as f64)],
                    Grid::Invocations(batch * m.div_ceil(16) * n.div_ceil(block_cols) * lanes),
                )
            }
            Variant::Subgroup { lane_rows } => {
                let size = ctx.adapter().subgroup_size.unwrap_or(4) as u64;
                let blocks = m.div_ceil(size / 4 * lane_rows as u64) * n.div_ceil(16);
                (
                    vec![("SUBGROUP", size as f64), ("LANE_ROWS", lane_rows as f64)],
                    Grid::Invocations(batch * blocks * size),
                )
            }
        }
    }
}

/// Whether C may be stored a vec4 at a time (C_VEC4 in the shaders): stored as it is read, its
/// row stride, matrix stride and width multiples of 4, so that every lane's 4 columns start at
/// a multiple of 4 and lie all in C or all past it.
fn c_vec4(shape: &Shape, l: &Layout) -> bool {
    !l.trans_c && [l.ldc, l.stride_c, shape.n].iter().all(|v| v % 4 == 0)
}

/// Whether the 16 x 8 kernels may store C 8 floats at a time (C_VEC8): as `c_vec4`, with
/// multiples of 8, so that a lane's 8 columns of a row are one aligned `vec4<u64>`.
fn c_vec8(shape: &Shape, l: &Layout) -> bool {
    !l.trans_c && [l.ldc, l.stride_c, shape.n].iter().all(|v| v % 8 == 0)
}

/// The sizes of a product: op(A) is m x k, op(B) is k x n, `batch` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Matrices.
    pub batch: usize,
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// The summed length.
    pub k: usize,
}

/// How the operands are stored: A is m x k (or k x m with `trans_a`), B is k x n (or n x k
/// with `trans_b`), C is m x n (or n x m with `trans_c`); row strides and batch strides in
/// elements (a batch stride of 0 reuses one matrix for every batch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    /// A stored k x m.
    pub trans_a: bool,
    /// B stored n x k.
    pub trans_b: bool,
    /// C stored n x m: element (i, j) at j ldc + i.
    pub trans_c: bool,
    /// A's row stride.
    pub lda: usize,
    /// B's row stride.
    pub ldb: usize,
    /// C's row stride.
    pub ldc: usize,
    /// A's matrix stride (0: one A for every matrix).
    pub stride_a: usize,
    /// B's matrix stride (0: one B for every matrix).
    pub stride_b: usize,
    /// C's matrix stride.
    pub stride_c: usize,
}

impl Layout {
    /// Dense operands: each matrix's rows packed, the batch's matrices packed.
    pub fn dense(shape: &Shape, trans_a: bool, trans_b: bool) -> Self {
        let Shape { m, n, k, .. } = *shape;
        Layout {
            trans_a,
            trans_b,
            trans_c: false,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
        }
    }

    /// This layout with C stored transposed and dense: n rows of m.
    pub fn with_c_transposed(self, shape: &Shape) -> Self {
        Layout {
            trans_c: true,
            ldc: shape.m,
            stride_c: shape.m * shape.n,
            ..self
        }
    }

    /// Whether every operand run is 4-aligned, so that the kernels may load whole vec4s.
    fn vec4(&self, shape: &Shape) -> bool {
        [shape.k, self.lda, self.ldb, self.stride_a, self.stride_b]
            .iter()
            .all(|v| v % 4 == 0)
    }

    /// Whether matmul_broadcast64 may run it: both operands k-contiguous (C = A B^T), and K,
    /// their row strides and batch strides multiples of 8 floats, so that every load of 8
    /// floats is one aligned `vec4<u64>` (K spans are multiples of 8 too: [`K_SPAN`]).
    pub fn vec8(&self, shape: &Shape) -> bool {
        !self.trans_a && self.trans_b && self.aligned8(shape)
    }

    /// Whether matmul_broadcast64_km may run it: op(B) stored k-major (C = A B or A^T B), its
    /// row and batch strides multiples of 4 floats (a lane's 4 columns at one k are one
    /// `vec2<u64>`), K and op(A)'s strides multiples of 8 (its loads are 8 floats, along k or
    /// along its lines); or both stored transposed (C = A^T B^T), every run a multiple of 8
    /// (op(B)'s loads are 8 floats along k, as broadcast64's).
    pub fn k_major8(&self, shape: &Shape) -> bool {
        if self.trans_b {
            return self.trans_a && self.aligned8(shape);
        }
        [shape.k, self.lda, self.stride_a]
            .iter()
            .all(|v| v % 8 == 0)
            && [self.ldb, self.stride_b].iter().all(|v| v % 4 == 0)
    }

    /// Whether every operand run is a multiple of 8 floats: where matmul_broadcast64_km8 may
    /// run it, whatever the transposes (a lane's 8 columns at one k are one `vec4<u64>` where
    /// op(B) is stored k-major, each column's 8 k one where it is stored k-contiguous).
    pub fn aligned8(&self, shape: &Shape) -> bool {
        [shape.k, self.lda, self.ldb, self.stride_a, self.stride_b]
            .iter()
            .all(|v| v % 8 == 0)
    }

    /// Whether op(A) may be read as broadcast64-km-16x8 reads it, whatever op(B)'s layout: K
    /// and A's row and batch strides multiples of 8 floats (windows64-km-16x8 copies op(B)).
    pub fn a_aligned8(&self, shape: &Shape) -> bool {
        [shape.k, self.lda, self.stride_a]
            .iter()
            .all(|v| v % 8 == 0)
    }

    /// Elements a tensor must hold for `lines` lines of `len` along a row stride `ld`, one
    /// matrix per batch at `stride`.
    fn extent(batch: usize, stride: usize, rows: usize, ld: usize, cols: usize) -> u64 {
        (batch as u64 - 1) * stride as u64 + (rows as u64 - 1) * ld as u64 + cols as u64
    }
}

/// What is done with the product: C = alpha op(A) op(B), plus C's old value and a bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epilogue {
    /// The product's factor.
    pub alpha: f32,
    /// Whether C's old value is added.
    pub add_into_c: bool,
}

impl Default for Epilogue {
    fn default() -> Self {
        Epilogue {
            alpha: 1.0,
            add_into_c: false,
        }
    }
}

/// What the epilogue applies last, to the finished sum (C's old value and the bias added):
/// the shader's ACTIVATION. Its tensors are shaped as C.
#[derive(Clone, Copy, Default)]
pub enum Activation<'a> {
    /// C as it is.
    #[default]
    None,
    /// C keeps the sum (a linear layer's pre-activation) and `out` gets gelu of it.
    Gelu {
        /// gelu(C).
        out: &'a GpuTensor,
    },
    /// C gets the sum times gelu'(`pre`): the product makes GELU's upstream gradient, and C
    /// the gradient at the pre-activation.
    GeluGrad {
        /// The pre-activation GELU was applied to.
        pre: &'a GpuTensor,
    },
}

impl Activation<'_> {
    /// The shader's ACTIVATION value.
    fn constant(&self) -> f64 {
        match self {
            Activation::None => 0.0,
            Activation::Gelu { .. } => 1.0,
            Activation::GeluGrad { .. } => 2.0,
        }
    }

    /// The tensor it reads or writes beside C, if any.
    fn tensor(&self) -> Option<&GpuTensor> {
        match self {
            Activation::None => None,
            Activation::Gelu { out } => Some(out),
            Activation::GeluGrad { pre } => Some(pre),
        }
    }
}

/// Zeros known in every matrix of a batch of square products (causal attention's diagonal
/// blocks), and whether C above the diagonal is read. A hint: the broadcast and subgroup
/// kernels skip the terms and blocks it names, the others compute everything, and C agrees
/// wherever it is read (skipped terms are exact zeros). Indices are each matrix's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Triangles {
    /// op(A)[i][k] = 0 for k > i.
    pub a_lower: bool,
    /// op(A)[i][k] = 0 for k < i.
    pub a_upper: bool,
    /// op(B)[k][j] = 0 for k > j.
    pub b_upper: bool,
    /// op(B)[k][j] = 0 for k < j.
    pub b_lower: bool,
    /// Only C[i][j] with j <= i is read; the rest may be left as it was.
    pub c_lower: bool,
}

impl Triangles {
    /// No zeros known: every term is summed, all of C written.
    pub const NONE: Triangles = Triangles {
        a_lower: false,
        a_upper: false,
        b_upper: false,
        b_lower: false,
        c_lower: false,
    };

    /// Terms of one m x n matrix's sums over `span` that are read and not declared zero.
    fn terms(&self, m: usize, n: usize, span: std::ops::Range<usize>) -> u64 {
        if *self == Triangles::NONE {
            return (m * n * span.len()) as u64;
        }
        let mut terms = 0;
        for i in 0..m {
            let columns = if self.c_lower { n.min(i + 1) } else { n };
            for j in 0..columns {
                let mut lo = span.start;
                let mut hi = span.end;
                if self.a_upper {
                    lo = lo.max(i);
                }
                if self.b_lower {
                    lo = lo.max(j);
                }
                if self.a_lower {
                    hi = hi.min(i + 1);
                }
                if self.b_upper {
                    hi = hi.min(j + 1);
                }
                terms += hi.saturating_sub(lo) as u64;
            }
        }
        terms
    }

    /// The shader's `triangles` flags (TRIANGLE_* in matmul.wgsl, in this order; a bit out of
    /// place fails tests/matmul_gpu.rs's `declared_triangles_change_nothing_where_c_is_read`).
    fn flags(&self) -> u32 {
        [
            self.a_lower,
            self.a_upper,
            self.b_upper,
            self.b_lower,
            self.c_lower,
        ]
        .iter()
        .enumerate()
        .map(|(bit, &on)| (on as u32) << bit)
        .sum()
    }
}

/// One product to record.
#[derive(Clone, Copy)]
pub struct Matmul<'a> {
    /// The sizes.
    pub shape: Shape,
    /// How the operands are stored.
    pub layout: Layout,
    /// What is done with the product.
    pub epilogue: Epilogue,
    /// op(A)'s tensor.
    pub a: &'a GpuTensor,
    /// op(B)'s tensor.
    pub b: &'a GpuTensor,
    /// C's tensor.
    pub c: &'a GpuTensor,
    /// Added to every row of C, `[n]`.
    pub bias: Option<&'a GpuTensor>,
    /// Zeros the kernels may skip ([`Triangles::NONE`] for a general product).
    pub triangles: Triangles,
    /// Applied last, on the finished sum ([`Activation::None`] for a plain product).
    pub activation: Activation<'a>,
}

impl<'a> Matmul<'a> {
    /// The epilogue's override constants for one dispatch: `summed_on` when it adds into what an
    /// earlier dispatch stored (a later span or group of k), which adds C but not the bias again.
    /// `last` when no later dispatch adds into what it stores (the activation applies there).
    fn epilogue_constants(&self, summed_on: bool, last: bool) -> [(&'static str, f64); 3] {
        let add_into_c = self.epilogue.add_into_c || summed_on;
        let add_bias = self.bias.is_some() && !summed_on;
        let activation = if last {
            self.activation.constant()
        } else {
            0.0
        };
        [
            ("ADD_INTO_C", add_into_c as u8 as f64),
            ("ADD_BIAS", add_bias as u8 as f64),
            ("ACTIVATION", activation),
        ]
    }

    /// The tensor bound to the storage slot `name` of the product kernels (A, B, C and the
    /// activation's tensors may be bound under several element types), or None for a window or
    /// a slot they do not have. Without a bias, or an activation, the slot still needs a buffer
    /// with its access, never read or written: A for the bias, B for the pre-activation, C for
    /// GELU's output.
    fn bound(&self, name: &str) -> Option<&'a GpuTensor> {
        let (gate, act) = match self.activation {
            Activation::None => (self.b, self.c),
            Activation::Gelu { out } => (self.b, out),
            Activation::GeluGrad { pre } => (pre, self.c),
        };
        Some(match name {
            "a" | "a8" => self.a,
            "b" | "b8" | "b4" => self.b,
            "bias" => self.bias.unwrap_or(self.a),
            "c" | "c4" | "c8" => self.c,
            "gate4" | "gate8" => gate,
            "act4" | "act8" => act,
            _ => return None,
        })
    }

    /// Every storage binding of `kernel`, by the tensor [`Self::bound`] gives it.
    fn storage_buffers(&self, kernel: &Kernel) -> Vec<(&'static str, &'a wgpu::Buffer)> {
        kernel
            .bindings
            .iter()
            .filter(|decl| matches!(decl.access, Access::Read | Access::ReadWrite))
            .filter_map(|decl| self.bound(decl.name).map(|t| (decl.name, &t.buffer)))
            .collect()
    }

    /// Refuses operands too small for the shape and layout, naming the tensor, and shapes the
    /// kernels cannot index.
    fn check(&self) -> Result<()> {
        let Shape { batch, m, n, k } = self.shape;
        let l = &self.layout;
        if batch == 0 || m == 0 || n == 0 || k == 0 {
            return Err(Error::shape(
                "matmul",
                format!("{batch} x {m} x {n} x {k} (batch, m, n, k) has an empty side"),
            ));
        }
        let (a_rows, a_cols) = if l.trans_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if l.trans_b { (n, k) } else { (k, n) };
        let (c_rows, c_cols) = if l.trans_c { (n, m) } else { (m, n) };
        let needs = [
            (
                self.a,
                Layout::extent(batch, l.stride_a, a_rows, l.lda, a_cols),
                a_cols,
                l.lda,
            ),
            (
                self.b,
                Layout::extent(batch, l.stride_b, b_rows, l.ldb, b_cols),
                b_cols,
                l.ldb,
            ),
            (
                self.c,
                Layout::extent(batch, l.stride_c, c_rows, l.ldc, c_cols),
                c_cols,
                l.ldc,
            ),
        ];
        for (tensor, extent, cols, ld) in needs {
            if ld < cols {
                return Err(Error::shape(
                    format!("matmul operand {}", tensor.name()),
                    format!("row stride {ld} is below its row length {cols}"),
                ));
            }
            if extent > tensor.len() as u64 {
                return Err(Error::shape(
                    format!("matmul operand {}", tensor.name()),
                    format!(
                        "{:?} holds {} elements; {batch} x {m} x {n} x {k} needs {extent}",
                        tensor.shape(),
                        tensor.len()
                    ),
                ));
            }
        }
        if let Some(bias) = self.bias {
            if bias.len() < n {
                return Err(Error::shape(
                    format!("matmul bias {}", bias.name()),
                    format!("has {} elements, C has {n} columns", bias.len()),
                ));
            }
        }
        if let Some(tensor) = self.activation.tensor() {
            // Read or written where C is: the same elements, and one buffer each.
            if tensor.shape() != self.c.shape() {
                return Err(Error::shape(
                    format!("matmul activation operand {}", tensor.name()),
                    format!("is {:?}, C is {:?}", tensor.shape(), self.c.shape()),
                ));
            }
            if self.epilogue.add_into_c {
                return Err(Error::shape(
                    "matmul",
                    "an activation applies to a finished product; it cannot add into C",
                ));
            }
        }
        Ok(())
    }

    /// Whether `variant` applies the activation in its own epilogue: every variant does except
    /// windows-16x4 where k takes more than one group of windows (later dispatches add into C,
    /// and the activation must wait for the last).
    fn fuses_activation(&self, ctx: &GpuContext, variant: Variant) -> bool {
        matches!(self.activation, Activation::None)
            || variant != Variant::Windows
            || !windows_sum_in_groups(ctx, &self.shape)
    }

    /// The product with no activation, then the activation by its elementwise kernel.
    fn record_then_activate(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        variant: Variant,
    ) -> Result<()> {
        let plain = Matmul {
            activation: Activation::None,
            ..*self
        };
        match self.activation {
            Activation::None => plain.record(ctx, encoder, variant),
            Activation::Gelu { out } => {
                plain.record(ctx, encoder, variant)?;
                gelu_forward(ctx, encoder, self.c, out)
            }
            Activation::GeluGrad { pre } => {
                let upstream = GpuTensor::output(ctx, "gelu's upstream gradient", self.c.shape())?;
                Matmul {
                    c: &upstream,
                    ..plain
                }
                .record(ctx, encoder, variant)?;
                gelu_backward(ctx, encoder, pre, &upstream, self.c)?;
                ctx.hold_until_submit(upstream);
                Ok(())
            }
        }
    }

    /// Records the product with `variant`.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        variant: Variant,
    ) -> Result<()> {
        self.check()?;
        if !variant.available(ctx) {
            return Err(Error::Adapter {
                adapter: ctx.adapter().label(),
                message: format!("matmul variant {variant} cannot run here"),
            });
        }
        if variant == Variant::Broadcast64 && !self.layout.vec8(&self.shape) {
            return Err(Error::shape(
                "matmul",
                format!("{variant} needs C = A B^T with k, row and batch strides multiples of 8"),
            ));
        }
        if variant == Variant::Broadcast64Km8 && !self.layout.aligned8(&self.shape) {
            return Err(Error::shape(
                "matmul",
                format!(
                    "{variant} needs k and both operands' row and batch strides multiples of 8"
                ),
            ));
        }
        if variant == Variant::Broadcast64Km && !self.layout.k_major8(&self.shape) {
            return Err(Error::shape(
                "matmul",
                format!(
                    "{variant} needs B stored k-major with row and batch strides multiples of 4, \
                     k and A's strides multiples of 8, or A and B both stored transposed with \
                     every stride multiples of 8"
                ),
            ));
        }
        if !self.fuses_activation(ctx, variant) {
            return self.record_then_activate(ctx, encoder, variant);
        }
        match variant {
            Variant::Windows => return self.record_windowed(ctx, encoder),
            Variant::Direct => return self.record_direct(ctx, encoder),
            Variant::Packed64 => return self.record_packed(ctx, encoder),
            Variant::Windows64Km8 | Variant::Windows64Km8ByK => {
                return self.record_windows64(ctx, encoder, variant);
            }
            _ => {}
        }
        let detail = format!("{variant}, {}", shape_class(&self.shape, &self.layout));
        self.record_spans(ctx, encoder, variant, detail)
    }

    /// Records `variant`'s kernel over every K span (the checks done), the profile naming it
    /// by `detail`.
    fn record_spans(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        variant: Variant,
        detail: String,
    ) -> Result<()> {
        let (shape, l) = (&self.shape, &self.layout);
        let (mut constants, grid) = variant.constants_and_grid(ctx, shape);
        constants.extend([
            ("TRANS_A", l.trans_a as u8 as f64),
            ("TRANS_B", l.trans_b as u8 as f64),
            ("TRANS_C", l.trans_c as u8 as f64),
            ("VEC4", l.vec4(shape) as u8 as f64),
        ]);
        let kernel = variant.kernel();
        if kernel.constants.contains(&"C_VEC4") {
            constants.push(("C_VEC4", c_vec4(shape, l) as u8 as f64));
        }
        if kernel.constants.contains(&"C_VEC8") {
            constants.push(("C_VEC8", c_vec8(shape, l) as u8 as f64));
        }
        for (i, start) in (0..shape.k).step_by(K_SPAN).enumerate() {
            // Later spans add into what the first stored; only the first adds the bias.
            let last = start + K_SPAN >= shape.k;
            let epilogue = self.epilogue_constants(i > 0, last);
            let span_constants = [constants.as_slice(), &epilogue].concat();
            let params = MatmulParams {
                m: shape.m as u32,
                n: shape.n as u32,
                k_begin: start as u32,
                k_end: (start + K_SPAN).min(shape.k) as u32,
                lda: l.lda as u32,
                ldb: l.ldb as u32,
                ldc: l.ldc as u32,
                batch: shape.batch as u32,
                stride_a: l.stride_a as u32,
                stride_b: l.stride_b as u32,
                stride_c: l.stride_c as u32,
                alpha: self.epilogue.alpha,
                triangles: self.triangles.flags(),
                ..Default::default()
            };
            // Declared FLOPs: a multiply and an add per term of every sum that is read and not
            // declared zero (what a profile's GFLOP/s should count, whatever the kernel skips).
            let span = start..params.k_end as usize;
            let terms = shape.batch as u64 * self.triangles.terms(shape.m, shape.n, span);
            let buffers = self.storage_buffers(kernel);
            ctx.run_counted(
                encoder,
                kernel,
                &span_constants,
                &params,
                &buffers,
                grid,
                Work {
                    flops: Some(2 * terms),
                    detail: Some(detail.clone()),
                },
            )?;
        }
        Ok(())
    }

    /// broadcast64-packed-16x4: per K span, op(A) and op(B) copied k-contiguous (each matrix
    /// `packed_geometry`'s lines by the span's k rounded up to 8, zeros past k), then
    /// matmul_broadcast64 on the copies, each span after the first adding into C: the same
    /// two-level sum as the other variants. The copies hold one span, whatever K.
    fn record_packed(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let shape = &self.shape;
        if !packed_fits(ctx, shape) {
            return Err(Error::shape(
                "matmul",
                format!(
                    "{} x {} x {} x {} (batch, m, n, k) does not run on broadcast64-packed-16x4 \
                     (more than {BATCHED} matrices, or copies of a K span above \
                     max_storage_buffer_binding_size)",
                    shape.batch, shape.m, shape.n, shape.k
                ),
            ));
        }
        let detail = format!(
            "{}, {}",
            Variant::Packed64,
            shape_class(shape, &self.layout)
        );
        let l = &self.layout;
        // One copy per operand, the context's scratch (`GpuContext::scratch`: every use packs
        // it before reading it), at least as long as the longest span, packed again for each
        // span: later packs wait for the product before them (wgpu orders the dispatches'
        // accesses). Where the whole sum is one span, an operand already k-contiguous in runs
        // of 8 floats is read where it lies (its k then counts as the copy's does): a linear
        // layer's input gradient (C = dY W) copies only the weight, not the activations'
        // gradient.
        let one_span = shape.k <= K_SPAN && shape.k.is_multiple_of(8);
        let in_place = [
            one_span && !l.trans_a && l.lda.is_multiple_of(8) && l.stride_a.is_multiple_of(8),
            one_span && l.trans_b && l.ldb.is_multiple_of(8) && l.stride_b.is_multiple_of(8),
        ];
        let widest = packed_geometry(shape, shape.k.min(K_SPAN));
        let [packed_a, packed_b] = [false, true].map(|operand_b| {
            let name = if operand_b {
                "k-contiguous op(B)"
            } else {
                "k-contiguous op(A)"
            };
            (!in_place[operand_b as usize])
                .then(|| ctx.scratch(name, packed_len(&widest, operand_b)))
                .transpose()
        });
        let (packed_a, packed_b) = (packed_a?, packed_b?);
        for (i, start) in (0..shape.k).step_by(K_SPAN).enumerate() {
            let end = (start + K_SPAN).min(shape.k);
            let g = packed_geometry(shape, end - start);
            let base = MatmulParams {
                k_begin: start as u32,
                k_end: end as u32,
                ..self.window_params(&g)
            };
            if let Some(packed_a) = &packed_a {
                self.pack_span(ctx, encoder, (&g, &base), false, packed_a)?;
            }
            if let Some(packed_b) = &packed_b {
                self.pack_span(ctx, encoder, (&g, &base), true, packed_b)?;
            }
            let span = Matmul {
                shape: Shape { k: g.k, ..*shape },
                layout: Layout {
                    trans_a: false,
                    trans_b: true,
                    lda: if packed_a.is_some() { g.k } else { l.lda },
                    ldb: if packed_b.is_some() { g.k } else { l.ldb },
                    stride_a: if packed_a.is_some() {
                        g.lines_a * g.k
                    } else {
                        l.stride_a
                    },
                    stride_b: if packed_b.is_some() {
                        g.lines_b * g.k
                    } else {
                        l.stride_b
                    },
                    ..self.layout
                },
                epilogue: Epilogue {
                    add_into_c: self.epilogue.add_into_c || i > 0,
                    ..self.epilogue
                },
                bias: self.bias.filter(|_| i == 0),
                a: packed_a.as_deref().unwrap_or(self.a),
                b: packed_b.as_deref().unwrap_or(self.b),
                c: self.c,
                // The copies' k starts at each span's: the span's indices are not the matrix's.
                triangles: Triangles::NONE,
                activation: if end == shape.k {
                    self.activation
                } else {
                    Activation::None
                },
            };
            span.record_spans(ctx, encoder, Variant::Broadcast64, detail.clone())?;
        }
        Ok(())
    }
}

/// broadcast64-packed-16x4's copies of one K span of `k` values: op(A) and op(B) each as
/// dense k-contiguous matrices of lines rounded up to 4 (pack_windows packs 4 lines at once;
/// lines past m or n repeat the last) by k rounded up to 8 (one window per matrix).
fn packed_geometry(shape: &Shape, k: usize) -> WindowGeometry {
    let k = k.next_multiple_of(8);
    let (lines_a, lines_b) = (shape.m.next_multiple_of(4), shape.n.next_multiple_of(4));
    let strides = |lines: usize| {
        let matrix = (lines * k * 4) as u64;
        WindowStrides {
            group: matrix,
            line: matrix,
            k: matrix,
        }
    };
    WindowGeometry {
        k,
        lines_a,
        lines_b,
        batch: 1,
        batch_groups: shape.batch,
        line_windows_a: 1,
        line_windows_b: 1,
        k_windows: 1,
        strides_a: strides(lines_a),
        strides_b: strides(lines_b),
    }
}

/// Floats of broadcast64-packed-16x4's copy of op(A) (op(B)) in `g`: every matrix, dense (no
/// uniform window is bound on it, so no window's slack past the last).
fn packed_len(g: &WindowGeometry, operand_b: bool) -> usize {
    let lines = if operand_b { g.lines_b } else { g.lines_a };
    g.batch_groups * lines * g.k
}

/// Whether broadcast64-packed-16x4 may run this product here: few matrices (as for
/// windows-16x4: a batch of small products reads each operand a few times, so copying it costs
/// about what the copy saves), and copies of a K span that fit a storage binding.
fn packed_fits(ctx: &GpuContext, shape: &Shape) -> bool {
    let g = packed_geometry(shape, shape.k.min(K_SPAN));
    let max = ctx.limits().max_storage_buffer_binding_size;
    shape.batch <= BATCHED
        && [false, true]
            .iter()
            .all(|&b| (packed_len(&g, b) as u64 * 4) <= max)
}

/// How matmul_windows sees a product: k per window, lines of op(A) and of op(B) per matrix in
/// a window, matrices per window, and the windows of each packed operand.
#[derive(Clone, Copy, Debug)]
struct WindowGeometry {
    k: usize,
    lines_a: usize,
    lines_b: usize,
    /// Matrices of the batch per window: several where whole matrices fit, so that a batch of
    /// small products takes few dispatches.
    batch: usize,
    /// Windows along the batch (groups of `batch` matrices), op(A)'s lines, op(B)'s lines, k.
    batch_groups: usize,
    line_windows_a: usize,
    line_windows_b: usize,
    k_windows: usize,
    /// Where the windows of op(A) and op(B) lie, in bytes.
    strides_a: WindowStrides,
    strides_b: WindowStrides,
}

/// Bytes from a window to the next along the batch groups, the lines and k, each a multiple of
/// the adapter's dynamic-offset alignment wherever it is used.
#[derive(Clone, Copy, Debug)]
struct WindowStrides {
    group: u64,
    line: u64,
    k: u64,
}

impl WindowGeometry {
    fn of(ctx: &GpuContext, shape: &Shape) -> Self {
        let floats = (WINDOW_BYTES / 4) as usize;
        // The whole sum in one dispatch where k windows of up to WINDOW_K_MAX allow: C is
        // then written once, never read back.
        let k = shape
            .k
            .div_ceil(WINDOWS_PER_DISPATCH)
            .next_multiple_of(4)
            .min(WINDOW_K_MAX);
        let fit = floats / k;
        let (block_rows, block_cols) = WINDOW_BLOCK;
        let (whole_a, whole_b) = (
            shape.m.next_multiple_of(block_rows),
            shape.n.next_multiple_of(block_cols),
        );
        let lines_a = (fit / block_rows * block_rows).min(whole_a);
        let lines_b = (fit / block_cols * block_cols).min(whole_b);
        let batch = (fit / whole_a).min(fit / whole_b).clamp(1, shape.batch);
        let align = ctx.limits().min_uniform_buffer_offset_alignment as u64;
        let (line_windows_a, line_windows_b, k_windows) = (
            shape.m.div_ceil(lines_a),
            shape.n.div_ceil(lines_b),
            shape.k.div_ceil(k),
        );
        // Packed window after window: k fastest, then lines, then batch groups.
        let strides = |lines: usize, line_windows: usize| {
            let window = ((batch * lines * k * 4) as u64).next_multiple_of(align);
            WindowStrides {
                group: window * (line_windows * k_windows) as u64,
                line: window * k_windows as u64,
                k: window,
            }
        };
        WindowGeometry {
            k,
            lines_a,
            lines_b,
            batch,
            batch_groups: shape.batch.div_ceil(batch),
            line_windows_a,
            line_windows_b,
            k_windows,
            strides_a: strides(lines_a, line_windows_a),
            strides_b: strides(lines_b, line_windows_b),
        }
    }

    /// (line windows, window stride) of the packed op(A) or op(B).
    fn operand(&self, operand_b: bool) -> (usize, u64) {
        if operand_b {
            (self.line_windows_b, self.strides_b.k)
        } else {
            (self.line_windows_a, self.strides_a.k)
        }
    }

    /// Floats of the packed copy of op(A) (op(B)): every window, and a whole window's binding
    /// past the last one's offset.
    fn packed_len(&self, operand_b: bool) -> usize {
        let (line_windows, stride) = self.operand(operand_b);
        let windows = self.batch_groups * line_windows * self.k_windows;
        ((windows as u64 - 1) * stride + WINDOW_BYTES) as usize / 4
    }

    /// Byte offset of window (batch group, line window, k window) of op(A) (op(B)).
    fn offset(&self, operand_b: bool, group: usize, line_window: usize, k_window: usize) -> u64 {
        let s = if operand_b {
            self.strides_b
        } else {
            self.strides_a
        };
        group as u64 * s.group + line_window as u64 * s.line + k_window as u64 * s.k
    }
}

/// Whether windows-direct-16x4 can run a product of this shape and layout, given windowable
/// operand tensors ([`GpuTensor::windowable_output`]).
pub fn direct_fits(ctx: &GpuContext, shape: &Shape, layout: &Layout) -> bool {
    direct_geometry(ctx, shape, layout).is_some()
}

/// windows-direct-16x4's view of a product whose windows can lie on the operands themselves:
/// A `[m, k]` rows dense (op(A)'s rows run along k), k a multiple of 4 and small enough that 32
/// lines fit a window (k <= 512), one matrix per window, and every matrix and line window at an
/// offset the adapter can bind; B either `[n, k]` rows dense (C = A B^T: a linear layer's
/// layout) or `[k, ldb]` k-major (C = A B, [`b_k_major`]) with all of it in one window. Lines
/// past m (n) in a window are the next matrix's or the tensor's slack: they feed only rows
/// (columns) of C that are never stored.
fn direct_geometry(ctx: &GpuContext, shape: &Shape, layout: &Layout) -> Option<WindowGeometry> {
    let floats = (WINDOW_BYTES / 4) as usize;
    let k = shape.k;
    let (block_rows, block_cols) = WINDOW_BLOCK;
    let a_dense = !layout.trans_a && layout.lda == k;
    let b_dense = layout.trans_b && layout.ldb == k;
    let k_major = b_k_major(shape, layout);
    if !a_dense
        || !(b_dense || k_major)
        || k == 0
        || !k.is_multiple_of(4)
        || block_cols * k > floats
    {
        return None;
    }
    let fit = floats / k;
    let lines_a = (fit / block_rows * block_rows).min(shape.m.next_multiple_of(block_rows));
    let lines_b = if k_major {
        shape.n.next_multiple_of(block_cols)
    } else {
        (fit / block_cols * block_cols).min(shape.n.next_multiple_of(block_cols))
    };
    let (line_windows_a, line_windows_b) = (shape.m.div_ceil(lines_a), shape.n.div_ceil(lines_b));
    let align = ctx.limits().min_uniform_buffer_offset_alignment as u64;
    let bytes = |floats: usize| (floats * 4) as u64;
    let strides_a = WindowStrides {
        group: bytes(layout.stride_a),
        line: bytes(lines_a * k),
        k: 0,
    };
    let strides_b = WindowStrides {
        group: bytes(layout.stride_b),
        line: bytes(lines_b * k),
        k: 0,
    };
    let bindable = |s: &WindowStrides, line_windows: usize| {
        (shape.batch == 1 || s.group.is_multiple_of(align))
            && (line_windows == 1 || s.line.is_multiple_of(align))
    };
    (bindable(&strides_a, line_windows_a) && bindable(&strides_b, line_windows_b)).then_some(
        WindowGeometry {
            k,
            lines_a,
            lines_b,
            batch: 1,
            batch_groups: shape.batch,
            line_windows_a,
            line_windows_b,
            k_windows: 1,
            strides_a,
            strides_b,
        },
    )
}

/// Whether windows-direct-16x4 reads op(B) k-major: B stored `[k, ldb]` (C = A B), every
/// k's row 4-aligned, and the whole matrix in one window, the lanes' columns past n included
/// (the kernel reads up to the last k's row plus a 32-column block; those columns of C are
/// never stored). Polynomial attention's O'_c = Phi(Q_c) S_<c is such a product.
fn b_k_major(shape: &Shape, layout: &Layout) -> bool {
    let floats = (WINDOW_BYTES / 4) as usize;
    let read = (shape.k.max(1) - 1) * layout.ldb + shape.n.next_multiple_of(WINDOW_BLOCK.1);
    !layout.trans_b && layout.ldb.is_multiple_of(4) && layout.ldb >= shape.n && read <= floats
}

/// Whether windows-16x4 sums this product's k over more than one group of k windows (more
/// than WINDOWS_PER_DISPATCH windows): later dispatches add into what the first stored.
fn windows_sum_in_groups(ctx: &GpuContext, shape: &Shape) -> bool {
    shape.k > WINDOWS_PER_DISPATCH * WindowGeometry::of(ctx, shape).k
}

/// Bytes a product with an activation allocates beside its own tensors: where windows-16x4
/// may run it over several groups of k windows (`Matmul::record_then_activate`), C's values
/// before the activation.
pub(crate) fn activation_scratch_bytes(ctx: &GpuContext, shape: &Shape) -> u64 {
    let split = Variant::Windows.available(ctx)
        && windows_fit(ctx, shape)
        && windows_sum_in_groups(ctx, shape);
    if split {
        GpuTensor::shape_bytes(&[shape.batch * shape.m * shape.n])
    } else {
        0
    }
}

/// Whether windows-16x4 may run this product here: few matrices, and packed copies the device
/// can bind (it runs on other variants otherwise). Batches of many small products (polynomial
/// attention's chunks) read each operand only a few times, so packing them costs about what it
/// saves: at n = 16384 their attention pass took 1578 ms with windows-16x4 pinned against 1392
/// with subgroup-8x4 (BENCHMARKS.md).
fn windows_fit(ctx: &GpuContext, shape: &Shape) -> bool {
    let geometry = WindowGeometry::of(ctx, shape);
    let max = ctx.limits().max_storage_buffer_binding_size;
    shape.batch <= BATCHED
        && [false, true]
            .iter()
            .all(|&b| (geometry.packed_len(b) as u64 * 4) <= max)
}

/// Whether windows64-km-16x8 may run a product: up to [`BATCHED`] matrices, op(A) readable as
/// broadcast64-km-16x8 reads it, and op(B)'s windows inside one storage binding (the copy
/// writes them as one).
fn windows64_fit(ctx: &GpuContext, shape: &Shape, layout: &Layout) -> bool {
    shape.batch <= BATCHED
        && layout.a_aligned8(shape)
        && windows64_bytes(shape) <= ctx.limits().max_storage_buffer_binding_size
}

/// Bytes of windows64-km-16x8's copy of op(B): a window per matrix, 64 columns and
/// [`WINDOW64_K`] k.
fn windows64_bytes(shape: &Shape) -> u64 {
    let windows = shape.batch * shape.n.div_ceil(WINDOW64_COLS) * shape.k.div_ceil(WINDOW64_K);
    windows as u64 * WINDOW_BYTES
}

/// Bytes of packed operands, for estimating a pass's memory before it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Packing {
    pub total: u64,
    pub largest: u64,
}

impl std::ops::Add for Packing {
    type Output = Packing;
    fn add(self, other: Packing) -> Packing {
        Packing {
            total: self.total + other.total,
            largest: self.largest.max(other.largest),
        }
    }
}

impl std::iter::Sum for Packing {
    fn sum<I: Iterator<Item = Packing>>(iter: I) -> Packing {
        iter.fold(Packing::default(), |a, b| a + b)
    }
}

impl Packing {
    /// The packed copies of op(A) and op(B) that windows-16x4, broadcast64-packed-16x4 or
    /// windows64-km-16x8 (op(B) only) allocates for this product where it may run it (the
    /// largest; nothing where none may). windows-16x4's and windows64-km-16x8's live until the
    /// encoder that records the product is submitted; broadcast64-packed-16x4's are the
    /// context's scratch, shared by every such product and kept, so counting them per product
    /// is an upper bound.
    pub fn of(ctx: &GpuContext, shape: &Shape) -> Packing {
        let copies = |lens: [usize; 2]| -> Packing {
            lens.iter()
                .map(|&len| {
                    let bytes = GpuTensor::padded_bytes(len as u64);
                    Packing {
                        total: bytes,
                        largest: bytes,
                    }
                })
                .sum()
        };
        let windows = if windows_fit(ctx, shape) {
            let g = WindowGeometry::of(ctx, shape);
            copies([false, true].map(|b| g.packed_len(b)))
        } else {
            Packing::default()
        };
        let packed = if Variant::Packed64.available(ctx) && packed_fits(ctx, shape) {
            let g = packed_geometry(shape, shape.k.min(K_SPAN));
            copies([false, true].map(|b| packed_len(&g, b)))
        } else {
            Packing::default()
        };
        // Where windows64_fit would allow it (op(A)'s alignment aside: not known here).
        let windows64_fits = shape.batch <= BATCHED
            && windows64_bytes(shape) <= ctx.limits().max_storage_buffer_binding_size;
        let windows64 = if Variant::Windows64Km8.available(ctx) && windows64_fits {
            copies([(windows64_bytes(shape) / 4) as usize, 0])
        } else {
            Packing::default()
        };
        [windows, packed, windows64]
            .into_iter()
            .fold(Packing::default(), |most, p| Packing {
                total: most.total.max(p.total),
                largest: most.largest.max(p.largest),
            })
    }

    /// `times` products' worth of these packed copies.
    pub fn times(self, times: u64) -> Packing {
        Packing {
            total: self.total * times,
            largest: self.largest,
        }
    }
}

impl Matmul<'_> {
    /// windows-16x4: packs op(A) and op(B) into uniform windows, then dispatches matmul_windows
    /// once per block of C and group of up to four k windows, the groups in order, each
    /// adding into C after the first (a two-level sum, as K_SPAN gives the other variants).
    fn record_windowed(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let shape = &self.shape;
        if !windows_fit(ctx, shape) {
            return Err(Error::shape(
                "matmul",
                format!(
                    "{} x {} x {} x {} (batch, m, n, k) does not run on windows-16x4 (more than \
                     {BATCHED} matrices, or packed copies above max_storage_buffer_binding_size)",
                    shape.batch, shape.m, shape.n, shape.k
                ),
            ));
        }
        let g = WindowGeometry::of(ctx, shape);
        let base = self.window_params(&g);
        let packed_a = self.pack(ctx, encoder, &g, &base, false)?;
        let packed_b = self.pack(ctx, encoder, &g, &base, true)?;
        let packed = (&packed_a, &packed_b);
        let run = self.dispatch_windows(ctx, encoder, Variant::Windows, (&g, &base), packed);
        ctx.hold_until_submit(packed_a);
        ctx.hold_until_submit(packed_b);
        run
    }

    /// windows64-km-16x8: op(B) copied into windows of 64 columns by [`WINDOW64_K`] k
    /// (pack_windows64), then per matrix and 64-column block of C one dispatch per group of up
    /// to four windows, in k order, groups after the first adding into C: a two-level sum, as
    /// the K spans of the other variants (groups of 1024 k against spans of [`K_SPAN`]);
    /// windows64-by-k-km-16x8 orders them k window by k window instead.
    fn record_windows64(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        variant: Variant,
    ) -> Result<()> {
        let (shape, l) = (&self.shape, &self.layout);
        if !windows64_fit(ctx, shape, l) {
            return Err(Error::shape(
                "matmul",
                format!(
                    "{} x {} x {} x {} (batch, m, n, k) does not run on {}: it needs at most \
                     {BATCHED} matrices, k and A's row and batch strides multiples of 8, and \
                     op(B)'s windows within max_storage_buffer_binding_size",
                    shape.batch, shape.m, shape.n, shape.k, variant
                ),
            ));
        }
        let base = self.whole_params();
        let windows = GpuTensor::windows(
            ctx,
            "op(B) in windows",
            (windows64_bytes(shape) / 4) as usize,
        )?;
        ctx.run(
            encoder,
            &PACK_WINDOWS64,
            &[
                ("TRANS_B", l.trans_b as u8 as f64),
                ("VEC4", l.vec4(shape) as u8 as f64),
            ],
            &base,
            &[
                ("a", &self.a.buffer),
                ("b", &self.b.buffer),
                ("packed", &windows.buffer),
            ],
            // One invocation per 4 columns by 4 k.
            Grid::Invocations(windows.len() as u64 / 16),
        )?;
        let run = self.dispatch_windows64(ctx, encoder, &base, &windows, variant);
        ctx.hold_until_submit(windows);
        run
    }

    /// matmul_windows64_km8's dispatches over `windows` (pack_windows64's copy of op(B)): one
    /// pipeline per group of windows (its count and epilogue are override constants), every
    /// block's first group before any block's second; for windows64-by-k-km-16x8, each group
    /// one k window over the column blocks, 4 a dispatch.
    fn dispatch_windows64(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        base: &MatmulParams,
        windows: &GpuTensor,
        variant: Variant,
    ) -> Result<()> {
        let (shape, l) = (&self.shape, &self.layout);
        let per_dispatch = WINDOW64_NAMES.len();
        let k_windows = shape.k.div_ceil(WINDOW64_K);
        let col_blocks = shape.n.div_ceil(WINDOW64_COLS);
        let mut buffers = self.storage_buffers(&MATMUL_WINDOWS64_KM8);
        buffers.extend(WINDOW64_NAMES.iter().map(|n| (*n, &windows.buffer)));
        // A subgroup of 8 lanes per 16 rows, DEFAULT_WORKGROUP lanes a workgroup.
        let workgroups = (shape.m.div_ceil(16) * BROADCAST_LANES as usize)
            .div_ceil(DEFAULT_WORKGROUP as usize) as u64;
        // The slots take consecutive column blocks (WINDOW_COLUMNS) at one k window, each
        // subgroup computing them in turn, where k is one window or the order is by k;
        // otherwise consecutive k windows of one column block.
        let columns = k_windows == 1 || variant == Variant::Windows64Km8ByK;
        let windows_per_group = if columns { 1 } else { per_dispatch };
        let groups = k_windows.div_ceil(windows_per_group);
        let blocks = if columns { per_dispatch } else { 1 };
        // Per group of k windows, in order, and per number of windows bound (each set one
        // pipeline): the dispatches.
        let mut runs: std::collections::BTreeMap<(usize, usize), Vec<_>> = Default::default();
        for e in 0..shape.batch {
            for group in 0..groups {
                let first = group * windows_per_group;
                for first_block in (0..col_blocks).step_by(blocks) {
                    let count = if columns {
                        (col_blocks - first_block).min(per_dispatch)
                    } else {
                        (k_windows - first).min(per_dispatch)
                    };
                    let window = |i: usize| {
                        let i = i.min(count - 1);
                        let (block, k_window) = if columns {
                            (first_block + i, first)
                        } else {
                            (first_block, first + i)
                        };
                        ((e * col_blocks + block) * k_windows + k_window) as u64 * WINDOW_BYTES
                    };
                    let k_begin = first * WINDOW64_K;
                    runs.entry((group, count))
                        .or_default()
                        .push(WindowedDispatch {
                            params: MatmulParams {
                                k_begin: k_begin as u32,
                                k_end: (k_begin + windows_per_group * WINDOW64_K).min(shape.k)
                                    as u32,
                                col0: (first_block * WINDOW64_COLS) as u32,
                                batch0: e as u32,
                                ..*base
                            },
                            windows: WINDOW64_NAMES
                                .iter()
                                .enumerate()
                                .map(|(i, n)| (*n, window(i)))
                                .collect(),
                            workgroups,
                        });
                }
            }
        }
        for ((group, count), dispatches) in runs {
            let constants = [
                &[
                    ("TRANS_A", l.trans_a as u8 as f64),
                    ("TRANS_C", l.trans_c as u8 as f64),
                    ("C_VEC4", c_vec4(shape, l) as u8 as f64),
                    ("C_VEC8", c_vec8(shape, l) as u8 as f64),
                    ("SUBGROUP", BROADCAST_LANES as f64),
                    ("WINDOWS", count as f64),
                    ("WINDOW_COLUMNS", columns as u8 as f64),
                ][..],
                &self.epilogue_constants(group > 0, group + 1 == groups),
            ]
            .concat();
            // Multiply-adds: each dispatch's columns of C (its blocks, cut at n) by its k.
            let blocks = if columns { count } else { 1 };
            let terms: u64 = dispatches
                .iter()
                .map(|d| {
                    let p = &d.params;
                    let cols = (shape.n - p.col0 as usize).min(blocks * WINDOW64_COLS);
                    (shape.m * cols) as u64 * (p.k_end - p.k_begin) as u64
                })
                .sum();
            ctx.run_windowed(
                encoder,
                &MATMUL_WINDOWS64_KM8,
                &constants,
                &dispatches,
                &buffers,
                Work {
                    flops: Some(2 * terms),
                    detail: Some(format!("{variant}, {}", shape_class(shape, l))),
                },
            )?;
        }
        Ok(())
    }

    /// Whether windows-direct-16x4 may run this product: its layout has a
    /// `direct_geometry` and both operands are windowable tensors.
    pub fn runs_direct(&self, ctx: &GpuContext) -> bool {
        self.a.is_windowable()
            && self.b.is_windowable()
            && direct_geometry(ctx, &self.shape, &self.layout).is_some()
    }

    /// windows-direct-16x4: matmul_windows with op(A)'s and op(B)'s windows bound where the
    /// operands lie, one dispatch per matrix and block of C.
    fn record_direct(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let g = direct_geometry(ctx, &self.shape, &self.layout)
            .filter(|_| self.runs_direct(ctx))
            .ok_or_else(|| {
                Error::shape(
                    "matmul",
                    format!(
                        "{} x {} x {} x {} (batch, m, n, k) does not run on windows-direct-16x4: \
                         it needs C = A B^T with dense rows, k a multiple of 4 up to 512, \
                         aligned matrices and windowable tensors",
                        self.shape.batch, self.shape.m, self.shape.n, self.shape.k
                    ),
                )
            })?;
        let base = self.window_params(&g);
        self.dispatch_windows(ctx, encoder, Variant::Direct, (&g, &base), (self.a, self.b))
    }

    /// The params of the whole product: its sizes, strides and alpha, k from 0 to K.
    fn whole_params(&self) -> MatmulParams {
        let (shape, l) = (&self.shape, &self.layout);
        MatmulParams {
            m: shape.m as u32,
            n: shape.n as u32,
            k_begin: 0,
            k_end: shape.k as u32,
            lda: l.lda as u32,
            ldb: l.ldb as u32,
            ldc: l.ldc as u32,
            batch: shape.batch as u32,
            stride_a: l.stride_a as u32,
            stride_b: l.stride_b as u32,
            stride_c: l.stride_c as u32,
            alpha: self.epilogue.alpha,
            ..Default::default()
        }
    }

    /// The params every matmul_windows dispatch of this product shares.
    fn window_params(&self, g: &WindowGeometry) -> MatmulParams {
        MatmulParams {
            window_k: g.k as u32,
            window_lines_a: g.lines_a as u32,
            window_lines_b: g.lines_b as u32,
            window_batch: g.batch as u32,
            ..self.whole_params()
        }
    }

    /// Records matmul_windows over `windows` (op(A)'s and op(B)'s tensors) as `g` places them,
    /// for `variant` (windows-16x4 or windows-direct-16x4, as the profile names it).
    fn dispatch_windows(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        variant: Variant,
        (g, base): (&WindowGeometry, &MatmulParams),
        windows: (&GpuTensor, &GpuTensor),
    ) -> Result<()> {
        let (shape, l) = (&self.shape, &self.layout);
        let mut buffers = self.storage_buffers(&MATMUL_WINDOWS);
        for (names, tensor) in WINDOW_NAMES.iter().zip([windows.0, windows.1]) {
            buffers.extend(names.iter().map(|n| (*n, &tensor.buffer)));
        }
        let direct = variant == Variant::Direct;
        let [first, summed_on] = self.windowed_dispatches(g, base, direct);
        // Every block sums the same k in its first dispatch: its first WINDOWS_PER_DISPATCH k
        // windows (all of k side by side).
        let first_k = if direct {
            shape.k
        } else {
            shape.k.min(WINDOWS_PER_DISPATCH * g.k)
        };
        let later = !summed_on.is_empty();
        for (dispatches, summed_on, k) in [
            (first, false, first_k),
            (summed_on, true, shape.k - first_k),
        ] {
            if dispatches.is_empty() {
                continue;
            }
            let constants = [
                &[
                    ("B_K_MAJOR", (direct && b_k_major(shape, l)) as u8 as f64),
                    ("TRANS_C", l.trans_c as u8 as f64),
                    ("BATCH_WINDOWS", direct as u8 as f64),
                    ("C_VEC4", c_vec4(shape, l) as u8 as f64),
                ][..],
                // The activation only where no later dispatch adds in (`record` runs the
                // elementwise kernel instead where one does).
                &self.epilogue_constants(summed_on, !later),
            ]
            .concat();
            let terms = (shape.batch * shape.m * shape.n * k) as u64;
            ctx.run_windowed(
                encoder,
                &MATMUL_WINDOWS,
                &constants,
                &dispatches,
                &buffers,
                Work {
                    flops: Some(2 * terms),
                    detail: Some(format!("{variant}, {}", shape_class(shape, l))),
                },
            )?;
        }
        Ok(())
    }

    /// Records pack_windows for op(A) or op(B) into a new packed tensor.
    fn pack(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        g: &WindowGeometry,
        base: &MatmulParams,
        operand_b: bool,
    ) -> Result<GpuTensor> {
        let name = if operand_b {
            "packed op(B)"
        } else {
            "packed op(A)"
        };
        let tensor = GpuTensor::windows(ctx, name, g.packed_len(operand_b))?;
        let (line_windows, stride) = g.operand(operand_b);
        let lines = if operand_b { g.lines_b } else { g.lines_a };
        let params = MatmulParams {
            window_stride: (stride / 16) as u32,
            ..*base
        };
        // One invocation per 4 lines by 4 k of every window.
        let windows = g.batch_groups * line_windows * g.k_windows;
        let quads = (windows * g.batch * lines * g.k / 16) as u64;
        self.run_pack(
            ctx,
            encoder,
            (&PACK_WINDOWS, &params),
            operand_b,
            &tensor,
            quads,
        )?;
        Ok(tensor)
    }

    /// Records pack_k_contiguous: the span `base` gives of op(A) or op(B) into `tensor`, laid
    /// out as `g` says ([`packed_geometry`]).
    fn pack_span(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        (g, base): (&WindowGeometry, &MatmulParams),
        operand_b: bool,
        tensor: &GpuTensor,
    ) -> Result<()> {
        let lines = if operand_b { g.lines_b } else { g.lines_a };
        // One invocation per 4 lines by 4 k of every matrix.
        let quads = (g.batch_groups * lines * g.k / 16) as u64;
        self.run_pack(
            ctx,
            encoder,
            (&PACK_K_CONTIGUOUS, base),
            operand_b,
            tensor,
            quads,
        )
    }

    /// One dispatch of a packing kernel (pack_windows or pack_k_contiguous) copying op(A) or
    /// op(B) into `tensor`, one invocation per 4 lines by 4 k.
    fn run_pack(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        (kernel, params): (&Kernel, &MatmulParams),
        operand_b: bool,
        tensor: &GpuTensor,
        quads: u64,
    ) -> Result<()> {
        let l = &self.layout;
        ctx.run(
            encoder,
            kernel,
            &[
                ("TRANS_A", l.trans_a as u8 as f64),
                ("TRANS_B", l.trans_b as u8 as f64),
                ("VEC4", l.vec4(&self.shape) as u8 as f64),
                ("PACK_B", operand_b as u8 as f64),
            ],
            params,
            &[
                ("a", &self.a.buffer),
                ("b", &self.b.buffer),
                ("packed", &tensor.buffer),
            ],
            Grid::Invocations(quads),
        )
    }

    /// Every dispatch of matmul_windows, per window of op(A)'s lines and of op(B)'s. Each
    /// binds four window slots per operand: with `side_by_side` (windows-direct-16x4,
    /// BATCH_WINDOWS in the shader: one matrix per window, one k window) up to four matrices,
    /// slot i on matrix `batch0 + i`; otherwise, per batch group, up to four k windows summed
    /// in order (the later groups of k add into C). Slots past `count` are bound to the last
    /// one and never read. Returned as the dispatches that store C, then those that add into it
    /// (each set one pipeline: the epilogue is an override constant); running every first one
    /// before any later one keeps each block's sum in order.
    fn windowed_dispatches(
        &self,
        g: &WindowGeometry,
        base: &MatmulParams,
        side_by_side: bool,
    ) -> [Vec<WindowedDispatch<MatmulParams>>; 2] {
        let (block_rows, block_cols) = WINDOW_BLOCK;
        let blocks = (g.batch * (g.lines_a / block_rows) * (g.lines_b / block_cols)) as u64;
        // What the slots run along, and over what outside that.
        let (outer, along) = if side_by_side {
            (1, g.batch_groups)
        } else {
            (g.batch_groups, g.k_windows)
        };
        let mut dispatches = [Vec::new(), Vec::new()];
        for group in 0..outer {
            for wa in 0..g.line_windows_a {
                for wb in 0..g.line_windows_b {
                    for first in (0..along).step_by(WINDOWS_PER_DISPATCH) {
                        let count = (along - first).min(WINDOWS_PER_DISPATCH);
                        let summed_on = !side_by_side && first > 0;
                        let place = |operand_b: bool, i: usize| {
                            let line_window = if operand_b { wb } else { wa };
                            let slot = first + i.min(count - 1);
                            let (group, k_window) = if side_by_side {
                                (slot, 0)
                            } else {
                                (group, slot)
                            };
                            g.offset(operand_b, group, line_window, k_window)
                        };
                        let place = &place;
                        let windows = WINDOW_NAMES
                            .iter()
                            .zip([false, true])
                            .flat_map(|(names, b)| {
                                names
                                    .iter()
                                    .enumerate()
                                    .map(move |(i, n)| (*n, place(b, i)))
                            })
                            .collect();
                        let (batch0, workgroups) = if side_by_side {
                            (first, count as u64 * blocks)
                        } else {
                            (group, blocks)
                        };
                        dispatches[summed_on as usize].push(WindowedDispatch {
                            params: MatmulParams {
                                windows: count as u32,
                                row0: (wa * g.lines_a) as u32,
                                col0: (wb * g.lines_b) as u32,
                                batch0: (batch0 * g.batch) as u32,
                                ..*base
                            },
                            windows,
                            workgroups,
                        });
                    }
                }
            }
        }
        dispatches
    }
}

impl std::str::FromStr for Variant {
    type Err = String;

    /// The names [`Variant`]'s Display writes.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let block = |rest: &str| -> Option<(u32, u32)> {
            let (tm, tn) = rest.split_once('x')?;
            Some((tm.parse().ok()?, tn.parse().ok()?))
        };
        match s {
            "tiled-64x64" => Ok(Variant::Tiled),
            "subgroup-4x4" => Ok(Variant::Subgroup { lane_rows: 4 }),
            "subgroup-8x4" => Ok(Variant::Subgroup { lane_rows: 8 }),
            "broadcast-16x4" => Ok(Variant::Broadcast),
            "broadcast64-16x4" => Ok(Variant::Broadcast64),
            "broadcast64-km-16x4" => Ok(Variant::Broadcast64Km),
            "broadcast64-km-16x8" => Ok(Variant::Broadcast64Km8),
            "broadcast64-packed-16x4" => Ok(Variant::Packed64),
            "windows64-km-16x8" => Ok(Variant::Windows64Km8),
            "windows64-by-k-km-16x8" => Ok(Variant::Windows64Km8ByK),
            "windows-16x4" => Ok(Variant::Windows),
            "windows-direct-16x4" => Ok(Variant::Direct),
            _ => s
                .strip_prefix("registers-")
                .and_then(block)
                .map(|(tm, tn)| Variant::Registers { tm, tn })
                .ok_or_else(|| format!("no matmul variant is named {s}")),
        }
    }
}

/// Sizes of the probe the tuner screens every candidate on, and times batched classes on:
/// large enough to fill the device, small enough to time every candidate in about a second on
/// a software driver.
const PROBE_MN: usize = 512;
const PROBE_K: usize = 256;
/// The candidates close after screening are timed, for an unbatched class, on a probe with m
/// or n up to PROBE_LINES (C at most PROBE_MN^2 x 4 elements) and k up to one K span, nearer
/// the products the class stands for. A variant that copies one operand once
/// (broadcast64-packed-16x4 copies a layer's weight, not its 16384 rows of activations) pays
/// for the copy over m rows, so 512 rows charged it 8x too much; k-major operands are read
/// along a whole span, and at k = 256 a weight gradient's variants were a tie that they are
/// not at the model's k (BENCHMARKS.md).
const PROBE_LINES: usize = 4096;
const PROBE_K_LONG: usize = K_SPAN;

/// The largest m or n, and k, a probe of this shape keeps.
fn probe_caps(shape: &Shape) -> (usize, usize) {
    if shape.batch > BATCHED {
        (PROBE_MN, PROBE_K)
    } else {
        (PROBE_LINES, PROBE_K_LONG)
    }
}

/// The shape class a choice is cached under: layout, alignment and each side's size rounded up
/// to a power of two (capped where the probe stops growing).
pub fn shape_class(shape: &Shape, layout: &Layout) -> String {
    let bucket = |x: usize, cap: usize| x.next_power_of_two().min(cap);
    let (lines, k) = probe_caps(shape);
    format!(
        "matmul {}{} {} m{} n{} k{}{}",
        if layout.trans_a { "T" } else { "N" },
        if layout.trans_b { "T" } else { "N" },
        match (layout.vec4(shape), layout.aligned8(shape)) {
            (_, true) => "vec8",
            (true, false) => "vec4",
            _ => "scalar",
        },
        bucket(shape.m, lines),
        bucket(shape.n, lines),
        bucket(shape.k, k),
        // Many matrices: no windows-16x4, and the probe is batched too.
        if shape.batch > BATCHED {
            " batched"
        } else {
            ""
        },
    )
}

/// The variant used without measurement: on a CPU adapter, windows-16x4 where it fits the
/// product, else broadcast-16x4 where subgroups have 8 lanes, else subgroup-8x4 where there are
/// subgroups, else large register blocks (loads cost there, spills barely do); workgroup tiles
/// on other adapters.
pub fn default_variant(ctx: &GpuContext, shape: &Shape, layout: &Layout, direct: bool) -> Variant {
    if ctx.adapter().device_type != "Cpu" {
        return Variant::Tiled;
    }
    // The fastest on llvmpipe at every shape of the benchmarks (BENCHMARKS.md).
    for preferred in [
        Variant::Direct,
        Variant::Windows,
        Variant::Broadcast,
        Variant::Subgroup { lane_rows: 8 },
    ] {
        if preferred.available(ctx) && preferred.suits(ctx, shape, layout, direct) {
            return preferred;
        }
    }
    let side = |x: usize| match x {
        64.. => 16,
        16.. => 8,
        _ => 4,
    };
    Variant::Registers {
        tm: side(shape.m),
        tn: side(shape.n),
    }
}

/// Runs every product with `variant` from now on (None: the tuner chooses again), for tests
/// and measurements that compare variants through whole operations. Refuses a variant the
/// adapter cannot run.
pub fn pin_variant(ctx: &GpuContext, variant: Option<Variant>) -> Result<()> {
    if let Some(v) = variant.filter(|v| !v.available(ctx)) {
        return Err(Error::Adapter {
            adapter: ctx.adapter().label(),
            message: format!("matmul variant {v} cannot run here"),
        });
    }
    ctx.tuner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pinned_matmul = variant.map(|v| v.to_string());
    Ok(())
}

/// The variant for this product on this adapter: a pinned variant, the tuner's cached choice,
/// a fresh measurement, or the default when tuning is off. `direct`: whether its operands can
/// be bound as windows where they lie ([`Matmul::runs_direct`]); such products are a class of
/// their own.
pub fn choose(ctx: &GpuContext, shape: &Shape, layout: &Layout, direct: bool) -> Result<Variant> {
    let class = shape_class(shape, layout) + if direct { " direct" } else { "" };
    {
        let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pinned) = tuner
            .pinned_matmul
            .as_deref()
            .and_then(|n| n.parse::<Variant>().ok())
        {
            // A pinned windows-16x4 runs only where it fits (as it would if chosen).
            return Ok(if pinned.suits(ctx, shape, layout, direct) {
                pinned
            } else {
                default_variant(ctx, shape, layout, direct)
            });
        }
        if tuner.mode == TuneMode::Off {
            return Ok(default_variant(ctx, shape, layout, direct));
        }
        if let Some(name) = tuner.cached(&class).map(str::to_string) {
            match name.parse::<Variant>() {
                Ok(v) if v.available(ctx) && v.suits(ctx, shape, layout, direct) => return Ok(v),
                Ok(v) if v.available(ctx) => {
                    return Ok(default_variant(ctx, shape, layout, direct))
                }
                Ok(_) => tuner.forget(&class, "that variant cannot run on this adapter"),
                Err(e) => tuner.forget(&class, &e),
            }
        }
    }
    let chosen = measure(ctx, shape, layout, direct)?;
    let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
    tuner.record(&class, &chosen.to_string());
    Ok(chosen)
}

/// The probe's m and n: each side up to `lines`, the longer halved while C has more than
/// PROBE_MN^2 x 4 elements (a power of two stays one).
fn probe_sides(shape: &Shape, lines: usize) -> (usize, usize) {
    let (mut m, mut n) = (shape.m.min(lines), shape.n.min(lines));
    while m * n > 4 * PROBE_MN * PROBE_MN {
        if m >= n {
            m = m.div_ceil(2);
        } else {
            n = n.div_ceil(2);
        }
    }
    (m, n)
}

/// A product the tuner times in place of a class's: its operands filled with probe values.
struct Probe {
    shape: Shape,
    layout: Layout,
    direct: bool,
    a: GpuTensor,
    b: GpuTensor,
    c: GpuTensor,
}

impl Probe {
    /// The probe of `shape`'s class with m and n up to `lines` and k up to `k_cap`, keeping
    /// the layout's transposes and alignment.
    fn new(
        ctx: &GpuContext,
        (shape, layout, direct): (&Shape, &Layout, bool),
        (lines, k_cap): (usize, usize),
    ) -> Result<Probe> {
        let (m, n) = probe_sides(shape, lines);
        let k = shape.k.min(k_cap);
        // A batched class is timed batched (how many matrices a dispatch takes matters), with
        // about as many multiply-adds as an unbatched probe.
        let batch = if shape.batch > BATCHED {
            shape
                .batch
                .min((PROBE_MN * PROBE_MN * PROBE_K / (m * n * k)).max(BATCHED + 1))
        } else {
            1
        };
        // Odd k stays odd, k a multiple of 4 but not of 8 stays so.
        let k = match (layout.vec4(shape), layout.aligned8(shape)) {
            (_, true) => k,
            (true, false) => k | 4,
            _ => k | 1,
        };
        let probe = Shape { batch, m, n, k };
        let probe_layout = Layout::dense(&probe, layout.trans_a, layout.trans_b);
        // A direct class is probed on windowable tensors, where its probe's layout allows.
        let direct = direct && direct_geometry(ctx, &probe, &probe_layout).is_some();
        let fill = |name: &str, len: usize, salt: usize| {
            let values = probe_values(len, salt);
            if direct {
                GpuTensor::upload_windowable(ctx, name, &[len], &values)
            } else {
                GpuTensor::upload(ctx, name, &[len], &values)
            }
        };
        Ok(Probe {
            shape: probe,
            layout: probe_layout,
            direct,
            a: fill("tune a", batch * m * k, 0)?,
            b: fill("tune b", batch * k * n, 1)?,
            c: GpuTensor::output(ctx, "tune c", &[batch * m * n])?,
        })
    }

    fn product(&self) -> Matmul<'_> {
        Matmul {
            shape: self.shape,
            layout: self.layout,
            epilogue: Epilogue::default(),
            a: &self.a,
            b: &self.b,
            c: &self.c,
            bias: None,
            triangles: Triangles::NONE,
            activation: Activation::None,
        }
    }
}

/// Times every candidate on probes of the shape's class and returns the fastest whose result
/// agrees with the others (`tune::fastest_agreeing`): screened on a probe of at most 512 x 512
/// x 256, the close ones then timed on one nearer the class's size where it is unbatched
/// ([`probe_caps`]).
fn measure(ctx: &GpuContext, shape: &Shape, layout: &Layout, direct: bool) -> Result<Variant> {
    let class = (shape, layout, direct);
    let screen = Probe::new(ctx, class, (PROBE_MN, PROBE_K))?;
    // The larger probe where the class has one, and where it runs as the screening one does
    // (windows-direct-16x4 takes k up to 512).
    let close = match probe_caps(shape) {
        (PROBE_MN, PROBE_K) => None,
        caps => Some(Probe::new(ctx, class, caps)?).filter(|p| p.direct == screen.direct),
    };
    let close = close.as_ref().unwrap_or(&screen);
    let candidates: Vec<Variant> = Variant::candidates(ctx)
        .into_iter()
        // The product's own class, and the probes it is timed on (whose dense strides may be
        // aligned otherwise than the product's).
        .filter(|v| {
            v.suits(ctx, shape, layout, screen.direct)
                && [&screen, close]
                    .iter()
                    .all(|p| v.suits(ctx, &p.shape, &p.layout, p.direct))
        })
        .collect();
    let chosen = fastest_agreeing("matmul variant", &candidates, |variant, round| {
        let probe = if round == Round::Close {
            close
        } else {
            &screen
        };
        let (time, ()) = timed(|| {
            let mut encoder = ctx.encoder("tune matmul");
            probe.product().record(ctx, &mut encoder, variant)?;
            ctx.submit_and_wait("tune matmul", encoder)
        })?;
        let result = (round == Round::Check)
            .then(|| probe.c.download(ctx))
            .transpose()?;
        Ok(Some((time, result)))
    })?;
    Ok(chosen.unwrap_or_else(|| default_variant(ctx, shape, layout, direct)))
}

impl Matmul<'_> {
    /// Records the product with the variant [`choose`] picks.
    pub fn run(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let variant = choose(ctx, &self.shape, &self.layout, self.runs_direct(ctx))?;
        self.record(ctx, encoder, variant)
    }
}

#[cfg(test)]
mod tests {
    use super::{probe_caps, probe_sides, Shape, Triangles, K_SPAN};

    /// An unbatched probe keeps the long side up to 4096 lines and k up to a span, with C at
    /// most 1M elements; a batched one stays at 512 x 512 x 256.
    #[test]
    fn probes_keep_long_sides_within_their_caps() {
        let shape = |batch, m, n, k| Shape { batch, m, n, k };
        let sides = |s: Shape| probe_sides(&s, probe_caps(&s).0);
        assert_eq!(sides(shape(1, 16384, 256, 1024)), (4096, 256));
        assert_eq!(sides(shape(1, 16384, 1024, 256)), (1024, 1024));
        assert_eq!(sides(shape(1, 256, 1024, 16384)), (256, 1024));
        assert_eq!(sides(shape(1, 100, 3, 7)), (100, 3));
        assert_eq!(probe_caps(&shape(1, 256, 1024, 16384)).1, K_SPAN);
        assert_eq!(sides(shape(128, 2048, 2048, 128)), (512, 512));
        assert_eq!(probe_caps(&shape(128, 128, 128, 128)).1, 256);
    }

    /// The terms a profile counts: every term of a general product, fewer where zeros or an
    /// unread triangle of C are declared (4 x 4 x 4, counted by hand).
    #[test]
    fn declared_zeros_leave_the_terms_they_do_not_zero() {
        let all = Triangles::NONE.terms(4, 4, 0..4);
        assert_eq!(all, 64);
        let c_lower = Triangles {
            c_lower: true,
            ..Triangles::NONE
        };
        // Rows 0..3 keep 1..4 columns, each with 4 terms.
        assert_eq!(c_lower.terms(4, 4, 0..4), 40);
        let a_lower = Triangles {
            a_lower: true,
            ..Triangles::NONE
        };
        // Row i sums k <= i: 1..4 terms, in each of 4 columns.
        assert_eq!(a_lower.terms(4, 4, 0..4), 40);
        let b_lower = Triangles {
            b_lower: true,
            ..Triangles::NONE
        };
        // Column j sums k >= j: 4..1 terms; the span 2..4 leaves 2, 2, 2, 1.
        assert_eq!(b_lower.terms(4, 4, 0..4), 40);
        assert_eq!(b_lower.terms(4, 4, 2..4), 4 * 7);
    }
}
