//! Host side of shaders/matmul.wgsl and matmul_subgroup.wgsl: the one matrix-product core,
//! C[b] = alpha op(A[b]) op(B[b]) (+ C[b]) (+ bias), batched and strided, in the variants the
//! tuner chooses between. Records into the caller's encoder; nothing is submitted here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::kernel::{gpu_params, Access, BindingDecl, Elem, Grid, Kernel, Needs, Workgroup};
use crate::gpu::tune::{fastest_agreeing, probe_values, time_runs, TuneMode};
use crate::gpu::Work;
use crate::gpu::{GpuContext, GpuTensor};

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
        flags: u32,
        batch: u32,
        stride_a: u32,
        stride_b: u32,
        stride_c: u32,
        alpha: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

const ADD_INTO_C: u32 = 1;
const ADD_BIAS: u32 = 2;

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
];

pub const MATMUL_REG: Kernel = Kernel {
    shader: "matmul.wgsl",
    entry: "matmul_reg",
    bindings: BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &["TRANS_A", "TRANS_B", "VEC4"],
    source_constants: &["TM", "TN"],
    needs: Needs::Core,
};

pub const MATMUL_TILED: Kernel = Kernel {
    shader: "matmul.wgsl",
    entry: "matmul_tiled",
    bindings: BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Fixed([16, 16, 1]),
    constants: &["TRANS_A", "TRANS_B", "VEC4"],
    source_constants: &[],
    needs: Needs::Core,
};

pub const MATMUL_BROADCAST: Kernel = Kernel {
    shader: "matmul_subgroup.wgsl",
    entry: "matmul_broadcast",
    bindings: BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &["TRANS_A", "TRANS_B", "VEC4", "SUBGROUP"],
    source_constants: &[],
    needs: Needs::Subgroups,
};

/// The subgroup size matmul_broadcast is written for (its lanes are spelled out).
const BROADCAST_LANES: u32 = 8;

pub const MATMUL_SUBGROUP: Kernel = Kernel {
    shader: "matmul_subgroup.wgsl",
    entry: "matmul_subgroup",
    bindings: BINDINGS,
    params: MatmulParams::LAYOUT,
    workgroup: Workgroup::Override("WORKGROUP"),
    constants: &["TRANS_A", "TRANS_B", "VEC4", "SUBGROUP"],
    source_constants: &["LANE_ROWS"],
    needs: Needs::Subgroups,
};

/// Edge of the block of C one workgroup of matmul_tiled computes.
const TILE: u64 = 64;

/// One way of running the product; all give the same result up to f32 rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// matmul_reg: a `tm` x `tn` block of C per invocation, in registers.
    Registers { tm: u32, tn: u32 },
    /// matmul_tiled: 64 x 64 per workgroup through workgroup memory.
    Tiled,
    /// matmul_subgroup: `lane_rows` x 4 of C per lane (4 or 8), operands shared by shuffles.
    Subgroup { lane_rows: u32 },
    /// matmul_broadcast: 16 x 4 of C per lane, rows of A shared by broadcasts (8-lane
    /// subgroups only).
    Broadcast,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variant::Registers { tm, tn } => write!(f, "registers-{tm}x{tn}"),
            Variant::Tiled => write!(f, "tiled-64x64"),
            Variant::Subgroup { lane_rows } => write!(f, "subgroup-{lane_rows}x4"),
            Variant::Broadcast => write!(f, "broadcast-16x4"),
        }
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
        all.retain(|v| v.available(ctx));
        all
    }

    /// Whether the variant can run on this adapter.
    pub fn available(&self, ctx: &GpuContext) -> bool {
        match *self {
            Variant::Registers { tm, tn } => {
                tm % 4 == 0 && tn % 4 == 0 && tm <= MAX_BLOCK && tn <= MAX_BLOCK
            }
            Variant::Tiled => ctx.limits().max_compute_invocations_per_workgroup >= 256,
            Variant::Broadcast => {
                ctx.has_subgroups() && ctx.adapter().subgroup_size == Some(BROADCAST_LANES)
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

    fn kernel(&self) -> &'static Kernel {
        match self {
            Variant::Registers { .. } => &MATMUL_REG,
            Variant::Tiled => &MATMUL_TILED,
            Variant::Subgroup { .. } => &MATMUL_SUBGROUP,
            Variant::Broadcast => &MATMUL_BROADCAST,
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
            Variant::Broadcast => {
                let lanes = BROADCAST_LANES as u64;
                (
                    vec![("SUBGROUP", lanes as f64)],
                    Grid::Invocations(batch * m.div_ceil(16) * n.div_ceil(8 * 4) * lanes),
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

/// The sizes of a product: op(A) is m x k, op(B) is k x n, `batch` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// How the operands are stored: A is m x k (or k x m with `trans_a`), B is k x n (or n x k
/// with `trans_b`); row strides and batch strides in elements (a batch stride of 0 reuses one
/// matrix for every batch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub trans_a: bool,
    pub trans_b: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Layout {
    /// Dense operands: each matrix's rows packed, the batch's matrices packed.
    pub fn dense(shape: &Shape, trans_a: bool, trans_b: bool) -> Self {
        let Shape { m, n, k, .. } = *shape;
        Layout {
            trans_a,
            trans_b,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
        }
    }

    /// Whether every operand run is 4-aligned, so that the kernels may load whole vec4s.
    fn vec4(&self, shape: &Shape) -> bool {
        [shape.k, self.lda, self.ldb, self.stride_a, self.stride_b]
            .iter()
            .all(|v| v % 4 == 0)
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
    pub alpha: f32,
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

/// One product to record.
#[derive(Clone, Copy)]
pub struct Matmul<'a> {
    pub shape: Shape,
    pub layout: Layout,
    pub epilogue: Epilogue,
    pub a: &'a GpuTensor,
    pub b: &'a GpuTensor,
    pub c: &'a GpuTensor,
    /// Added to every row of C, `[n]`.
    pub bias: Option<&'a GpuTensor>,
}

impl Matmul<'_> {
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
                Layout::extent(batch, l.stride_c, m, l.ldc, n),
                n,
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
        Ok(())
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
        let (shape, l) = (&self.shape, &self.layout);
        let (mut constants, grid) = variant.constants_and_grid(ctx, shape);
        constants.extend([
            ("TRANS_A", l.trans_a as u8 as f64),
            ("TRANS_B", l.trans_b as u8 as f64),
            ("VEC4", l.vec4(shape) as u8 as f64),
        ]);
        // Without a bias the slot still needs a buffer (a read-only one); it is never read.
        let bias = self.bias.unwrap_or(self.b);
        for (i, start) in (0..shape.k).step_by(K_SPAN).enumerate() {
            let mut flags = 0;
            if self.epilogue.add_into_c || i > 0 {
                flags |= ADD_INTO_C;
            }
            if self.bias.is_some() && i == 0 {
                flags |= ADD_BIAS;
            }
            let params = MatmulParams {
                m: shape.m as u32,
                n: shape.n as u32,
                k_begin: start as u32,
                k_end: (start + K_SPAN).min(shape.k) as u32,
                lda: l.lda as u32,
                ldb: l.ldb as u32,
                ldc: l.ldc as u32,
                flags,
                batch: shape.batch as u32,
                stride_a: l.stride_a as u32,
                stride_b: l.stride_b as u32,
                stride_c: l.stride_c as u32,
                alpha: self.epilogue.alpha,
                ..Default::default()
            };
            // Declared FLOPs: a multiply and an add per term of every sum.
            let terms =
                (shape.batch * shape.m * shape.n) as u64 * (params.k_end - start as u32) as u64;
            ctx.run_counted(
                encoder,
                variant.kernel(),
                &constants,
                &params,
                &[
                    ("a", &self.a.buffer),
                    ("b", &self.b.buffer),
                    ("bias", &bias.buffer),
                    ("c", &self.c.buffer),
                ],
                grid,
                Work {
                    flops: Some(2 * terms),
                    detail: Some(format!("{variant}, {}", shape_class(shape, l))),
                },
            )?;
        }
        Ok(())
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
            _ => s
                .strip_prefix("registers-")
                .and_then(block)
                .map(|(tm, tn)| Variant::Registers { tm, tn })
                .ok_or_else(|| format!("no matmul variant is named {s}")),
        }
    }
}

/// Sizes of the products the tuner times for a shape class: large enough to fill the device,
/// small enough to time every candidate in about a second on a software driver.
const PROBE_MN: usize = 512;
const PROBE_K: usize = 256;

/// The shape class a choice is cached under: layout, alignment and each side's size rounded up
/// to a power of two (capped where the probe stops growing).
pub fn shape_class(shape: &Shape, layout: &Layout) -> String {
    let bucket = |x: usize, cap: usize| x.next_power_of_two().min(cap);
    format!(
        "matmul {}{} {} m{} n{} k{}",
        if layout.trans_a { "T" } else { "N" },
        if layout.trans_b { "T" } else { "N" },
        if layout.vec4(shape) { "vec4" } else { "scalar" },
        bucket(shape.m, PROBE_MN),
        bucket(shape.n, PROBE_MN),
        bucket(shape.k, PROBE_K),
    )
}

/// The variant used without measurement: on a CPU adapter, broadcast-16x4 where subgroups have
/// 8 lanes, else subgroup-8x4 where there are subgroups, else large register blocks (loads cost
/// there, spills barely do); workgroup tiles on other adapters.
pub fn default_variant(ctx: &GpuContext, shape: &Shape) -> Variant {
    if ctx.adapter().device_type != "Cpu" {
        return Variant::Tiled;
    }
    // The fastest on llvmpipe at every shape of the benchmarks (BENCHMARKS.md).
    for preferred in [Variant::Broadcast, Variant::Subgroup { lane_rows: 8 }] {
        if preferred.available(ctx) {
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
/// a fresh measurement, or the default when tuning is off.
pub fn choose(ctx: &GpuContext, shape: &Shape, layout: &Layout) -> Result<Variant> {
    let class = shape_class(shape, layout);
    {
        let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pinned) = tuner.pinned_matmul.as_deref().and_then(|n| n.parse().ok()) {
            return Ok(pinned);
        }
        if tuner.mode == TuneMode::Off {
            return Ok(default_variant(ctx, shape));
        }
        if let Some(name) = tuner.cached(&class).map(str::to_string) {
            match name.parse::<Variant>() {
                Ok(v) if v.available(ctx) => return Ok(v),
                Ok(_) => tuner.forget(&class, "that variant cannot run on this adapter"),
                Err(e) => tuner.forget(&class, &e),
            }
        }
    }
    let chosen = measure(ctx, shape, layout)?;
    let mut tuner = ctx.tuner.lock().unwrap_or_else(|p| p.into_inner());
    tuner.record(&class, &chosen.to_string());
    Ok(chosen)
}

/// Times every candidate on a probe of the shape's class and returns the fastest whose result
/// agrees with the others (`tune::fastest_agreeing`).
fn measure(ctx: &GpuContext, shape: &Shape, layout: &Layout) -> Result<Variant> {
    let probe = Shape {
        batch: 1,
        m: shape.m.min(PROBE_MN),
        n: shape.n.min(PROBE_MN),
        k: shape.k.min(PROBE_K),
    };
    // The probe keeps the layout's transposes and alignment (odd k stays odd).
    let probe = Shape {
        k: if layout.vec4(shape) {
            probe.k
        } else {
            probe.k | 1
        },
        ..probe
    };
    let probe_layout = Layout::dense(&probe, layout.trans_a, layout.trans_b);
    let fill = |name: &str, len: usize, salt: usize| {
        GpuTensor::upload(ctx, name, &[len], &probe_values(len, salt))
    };
    let a = fill("tune a", probe.m * probe.k, 0)?;
    let b = fill("tune b", probe.k * probe.n, 1)?;
    let c = GpuTensor::output(ctx, "tune c", &[probe.m * probe.n])?;
    let product = Matmul {
        shape: probe,
        layout: probe_layout,
        epilogue: Epilogue::default(),
        a: &a,
        b: &b,
        c: &c,
        bias: None,
    };
    let chosen = fastest_agreeing("matmul variant", &Variant::candidates(ctx), |variant| {
        let time = time_runs(|| {
            let mut encoder = ctx.encoder("tune matmul");
            product.record(ctx, &mut encoder, variant)?;
            ctx.submit_and_wait("tune matmul", encoder)
        })?;
        Ok(Some((time, c.download(ctx)?)))
    })?;
    Ok(chosen.unwrap_or_else(|| default_variant(ctx, shape)))
}

impl Matmul<'_> {
    /// Records the product with the variant [`choose`] picks.
    pub fn run(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let variant = choose(ctx, &self.shape, &self.layout)?;
        self.record(ctx, encoder, variant)
    }
}
