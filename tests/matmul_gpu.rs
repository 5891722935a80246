//! The matrix-product core against its f64 definition: every variant the adapter offers, every
//! transpose (of A, B and C), every epilogue, ragged sizes, batches of 1 and 3.

mod common;

use polygrad::gpu::GpuTensor;
use polygrad::ops::matmul::{
    direct_fits, Activation, Epilogue, Layout, Matmul, Shape, Triangles, Variant,
};
use polygrad::reference::{matmul::matmul as reference_matmul, relative_error, widen};
use polygrad::GpuContext;
use rand::Rng;

const SIZES: [usize; 6] = [1, 3, 7, 64, 65, 257];

/// How far one product is from f64, in two measures:
/// - `relative`: the whole tensor's relative error, held to 1e-5 where C has at least
///   [`Accuracy::MIN_ELEMENTS`] elements. On a handful of elements it is not a measure of the
///   kernel: one element of c0 + a.b that cancels to near zero (seed 14589847507812729052 drew
///   one at m = n = 1, k = 3: 2.6e-5) leaves a correct f32 result far from f64 in relative terms.
/// - `worst_over_bound`: every element's error over the bound that f32 arithmetic guarantees
///   in any order of summation, gamma_(k+4) (|alpha| |A||B| + |bias| + |c0|) with
///   gamma_j = j u / (1 - j u), u = 2^-24 (Higham, Accuracy and Stability of Numerical
///   Algorithms, 3.5). A correct kernel never exceeds 1, whatever the draw; a kernel that drops,
///   repeats or misplaces a term misses by about 1/(k gamma_(k+4)), over 100 for every k here.
struct Accuracy {
    relative: f64,
    worst_over_bound: f64,
    elements: usize,
}

impl Accuracy {
    const MIN_ELEMENTS: usize = 64;

    /// Panics, naming `what`, where either measure fails.
    fn assert_close(&self, what: &str) {
        assert!(
            self.worst_over_bound <= 1.0,
            "{what}: an element's error is {:.2} times f32's bound (relative error {:.2e})",
            self.worst_over_bound,
            self.relative
        );
        assert!(
            self.elements < Self::MIN_ELEMENTS || self.relative <= 1e-5,
            "{what}: relative error {:.2e}",
            self.relative
        );
    }
}

/// The operands of one product as the test drew them, on the host.
struct Operands<'a> {
    a: &'a [f32],
    b: &'a [f32],
    bias: Option<&'a [f32]>,
    c0: &'a [f32],
}

/// [`Accuracy`] of C as the GPU left it (`got`) against the f64 product of the same operands,
/// the bound from the same product run on their absolute values.
fn accuracy(
    got: &[f32],
    shape: &Shape,
    layout: &Layout,
    epilogue: Epilogue,
    operands: Operands,
) -> Accuracy {
    let product = |values: fn(&[f32]) -> Vec<f64>, alpha: f64| {
        let bias = operands.bias.map(values);
        reference_matmul(
            shape,
            layout,
            alpha,
            epilogue.add_into_c,
            &values(operands.a),
            &values(operands.b),
            bias.as_deref(),
            &values(operands.c0),
        )
    };
    let expected = product(widen, epilogue.alpha as f64);
    let magnitude = product(absolute, epilogue.alpha.abs() as f64);
    let unit = f64::powi(2.0, -24);
    let terms = (shape.k + 4) as f64;
    let gamma = terms * unit / (1.0 - terms * unit);
    let worst_over_bound = got
        .iter()
        .zip(&expected)
        .zip(&magnitude)
        .map(|((&g, &e), &bound)| {
            let err = (g as f64 - e).abs();
            if err == 0.0 {
                0.0
            } else {
                err / (gamma * bound)
            }
        })
        .fold(0.0, f64::max);
    Accuracy {
        relative: relative_error(got, &expected),
        worst_over_bound,
        elements: shape.batch * shape.m * shape.n,
    }
}

fn absolute(x: &[f32]) -> Vec<f64> {
    x.iter().map(|v| v.abs() as f64).collect()
}

/// The four epilogues every case cycles through: plain, scaled, added into C, with a bias.
fn epilogue(case: usize) -> (Epilogue, bool) {
    match case % 4 {
        0 => (Epilogue::default(), false),
        1 => (
            Epilogue {
                alpha: -0.75,
                add_into_c: false,
            },
            false,
        ),
        2 => (
            Epilogue {
                alpha: 1.0,
                add_into_c: true,
            },
            false,
        ),
        _ => (
            Epilogue {
                alpha: 0.5,
                add_into_c: true,
            },
            true,
        ),
    }
}

/// Runs one product with `variant` and returns its relative error against f64.
fn check(
    ctx: &GpuContext,
    rng: &mut impl Rng,
    shape: Shape,
    layout: Layout,
    (epilogue, with_bias): (Epilogue, bool),
    variant: Variant,
) -> Accuracy {
    // What the layout reaches (the dense size where it is dense).
    let extent = |stride: usize, (rows, cols): (usize, usize), ld: usize| {
        (shape.batch - 1) * stride + (rows - 1) * ld + cols
    };
    let (m, n, k) = (shape.m, shape.n, shape.k);
    let len_a = extent(
        layout.stride_a,
        if layout.trans_a { (k, m) } else { (m, k) },
        layout.lda,
    );
    let len_b = extent(
        layout.stride_b,
        if layout.trans_b { (n, k) } else { (k, n) },
        layout.ldb,
    );
    let len_c = shape.batch * shape.m * shape.n;
    let a = common::random_vec(rng, len_a, 1.0);
    let b = common::random_vec(rng, len_b, 1.0);
    let bias = common::random_vec(rng, shape.n, 1.0);
    let c0 = common::random_vec(rng, len_c, 1.0);
    // windows-direct-16x4 binds its operands as windows: they are made windowable for it.
    let upload = if variant == Variant::Direct {
        GpuTensor::upload_windowable
    } else {
        GpuTensor::upload
    };
    let ga = upload(ctx, "a", &[len_a], &a).unwrap();
    let gb = upload(ctx, "b", &[len_b], &b).unwrap();
    let gbias = GpuTensor::upload(ctx, "bias", &[shape.n], &bias).unwrap();
    // C starts as random values where the epilogue adds into it, as NaN (poisoned) otherwise.
    let gc = if epilogue.add_into_c {
        GpuTensor::upload(ctx, "c", &[len_c], &c0).unwrap()
    } else {
        GpuTensor::output(ctx, "c", &[len_c]).unwrap()
    };
    let mut encoder = ctx.encoder("matmul test");
    Matmul {
        shape,
        layout,
        epilogue,
        a: &ga,
        b: &gb,
        c: &gc,
        bias: with_bias.then_some(&gbias),
        triangles: Triangles::NONE,
        activation: Activation::None,
    }
    .record(ctx, &mut encoder, variant)
    .unwrap();
    ctx.submit("matmul test", encoder).unwrap();
    let got = gc.download(ctx).unwrap();
    let operands = Operands {
        a: &a,
        b: &b,
        bias: with_bias.then_some(bias.as_slice()),
        c0: &c0,
    };
    accuracy(&got, &shape, &layout, epilogue, operands)
}

#[test]
fn every_variant_matches_f64_over_ragged_shapes_transposes_and_epilogues() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("matmul variants");
    let variants = Variant::candidates(&ctx);
    eprintln!("variants: {variants:?}");
    let (mut case, mut checked) = (0, 0);
    let (mut worst_relative, mut worst_over_bound) = (0.0f64, 0.0f64);
    for &variant in &variants {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            // Six shapes per transpose pair in which every size is once m, once n and once
            // k; the pairs shift the pattern, batches 1 and 3 alternate.
            for i in 0..SIZES.len() {
                let t = case / SIZES.len();
                let m = SIZES[i];
                let n = SIZES[(i + 1 + t) % SIZES.len()];
                let k = SIZES[(i + 3 + 2 * t) % SIZES.len()];
                let batch = if case % 2 == 0 { 1 } else { 3 };
                let shape = Shape { batch, m, n, k };
                // C stored transposed in every other run of four cases, so that each
                // epilogue meets both.
                let dense = Layout::dense(&shape, trans_a, trans_b);
                let trans_c = (case / 4) % 2 == 1;
                let layout = if trans_c {
                    dense.with_c_transposed(&shape)
                } else {
                    dense
                };
                let epilogue = epilogue(case);
                case += 1;
                if !variant.suits(&ctx, &shape, &layout, direct_fits(&ctx, &shape, &layout)) {
                    continue;
                }
                let err = check(&ctx, &mut rng, shape, layout, epilogue, variant);
                err.assert_close(&format!(
                    "{variant} {shape:?} trans ({trans_a}, {trans_b}, c {trans_c}) {epilogue:?}"
                ));
                if err.elements >= Accuracy::MIN_ELEMENTS {
                    worst_relative = worst_relative.max(err.relative);
                }
                worst_over_bound = worst_over_bound.max(err.worst_over_bound);
                checked += 1;
            }
        }
    }
    eprintln!(
        "{checked} products checked; worst relative error {worst_relative:.2e} (C of 64 \
         elements or more), worst element {worst_over_bound:.3} of f32's bound"
    );
}

/// Runs windows-direct-16x4 over every k and (m, n) given, with op(B) in dense rows
/// (`trans_b`: C = A B^T) or k-major (C = A B), batches of 1, 3 and 5 in turn and every
/// epilogue, against f64; every shape must run direct but where a batch's matrix offsets miss
/// the adapter's alignment. Returns (checked, cases).
fn check_direct_cases(
    ctx: &GpuContext,
    rng: &mut impl Rng,
    trans_b: bool,
    ks: &[usize],
    mns: &[(usize, usize)],
) -> (usize, usize) {
    let (mut case, mut checked) = (0, 0);
    for &k in ks {
        for &(m, n) in mns {
            let batch = [1, 3, 5][case % 3];
            let shape = Shape { batch, m, n, k };
            let layout = Layout::dense(&shape, false, trans_b);
            let epilogue = epilogue(case);
            case += 1;
            if !direct_fits(ctx, &shape, &layout) {
                assert!(batch > 1, "{shape:?} trans_b {trans_b} does not run direct");
                continue;
            }
            let err = check(ctx, rng, shape, layout, epilogue, Variant::Direct);
            err.assert_close(&format!(
                "windows-direct-16x4 {shape:?} trans_b {trans_b} {epilogue:?}"
            ));
            checked += 1;
        }
    }
    (checked, case)
}

/// windows-direct-16x4 where it runs: C = A B^T over windowable tensors, k a multiple of 4 up
/// to 512 (one line window and several, on both operands), ragged m and n whose last window
/// reads into the next matrix or the slack, batches of 1, 3 and 5, every epilogue.
#[test]
fn windows_direct_matches_f64_where_it_runs() {
    let Some(ctx) = common::gpu() else { return };
    if !offered(&ctx, Variant::Direct) {
        return;
    }
    let mut rng = common::fresh_rng("matmul windows-direct");
    let mns = [(1, 7), (33, 64), (64, 157), (300, 65), (8, 300)];
    let (checked, cases) = check_direct_cases(&ctx, &mut rng, true, &[4, 16, 68, 128, 512], &mns);
    // 20 of 25 on llvmpipe (32-byte offset alignment).
    eprintln!("{checked} of {cases} products ran direct");
}

/// windows-direct-16x4 with op(B) k-major (C = A B, B `[k, n]` dense, all of it in one window:
/// polynomial attention's O'_c = Phi(Q_c) S_<c), n a multiple of 4 whose last 32-column block
/// reads past the matrix, batches of 1, 3 and 5, every epilogue; and a B too large for one
/// window is refused.
#[test]
fn windows_direct_reads_b_k_major_where_it_fits() {
    let Some(ctx) = common::gpu() else { return };
    if !offered(&ctx, Variant::Direct) {
        return;
    }
    let mut rng = common::fresh_rng("matmul windows-direct k-major");
    let mns = [(1, 8), (33, 64), (64, 68), (300, 36), (8, 100)];
    let (checked, cases) = check_direct_cases(&ctx, &mut rng, false, &[4, 16, 68, 156], &mns);
    eprintln!("{checked} of {cases} products ran direct with B k-major");
    assert!(checked > 0);
    // 16384 floats hold 128 rows of 128 columns, not 129 rows.
    let too_deep = Shape {
        batch: 1,
        m: 16,
        n: 128,
        k: 132,
    };
    assert!(!direct_fits(
        &ctx,
        &too_deep,
        &Layout::dense(&too_deep, false, false)
    ));
}

#[test]
fn strided_operands_and_a_broadcast_matrix() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("matmul strides");
    for &variant in &Variant::candidates(&ctx) {
        let shape = Shape {
            batch: 3,
            m: 9,
            n: 12,
            k: 20,
        };
        // Rows padded (lda, ldc past the row length), B shared by every batch (stride 0).
        let layout = Layout {
            trans_a: false,
            trans_b: true,
            trans_c: false,
            lda: 24,
            ldb: 20,
            ldc: 16,
            stride_a: 9 * 24,
            stride_b: 0,
            stride_c: 9 * 16,
        };
        let padded = Shape {
            batch: 3,
            m: 9,
            n: 16,
            k: 24,
        };
        // Padded rows are not windows-direct-16x4's layout.
        if !variant.suits(&ctx, &shape, &layout, direct_fits(&ctx, &shape, &layout)) {
            continue;
        }
        let err = check_padded(&ctx, &mut rng, shape, layout, padded, variant);
        err.assert_close(&format!("{variant}"));
    }
}

/// [`check`] with tensors sized by `padded` (room for the strides), C added into.
fn check_padded(
    ctx: &GpuContext,
    rng: &mut impl Rng,
    shape: Shape,
    layout: Layout,
    padded: Shape,
    variant: Variant,
) -> Accuracy {
    let a = common::random_vec(rng, padded.batch * padded.m * padded.k, 1.0);
    let b = common::random_vec(rng, shape.n * shape.k, 1.0);
    let c0 = common::random_vec(rng, padded.batch * padded.m * padded.n, 1.0);
    let ga = GpuTensor::upload(ctx, "a", &[a.len()], &a).unwrap();
    let gb = GpuTensor::upload(ctx, "b", &[b.len()], &b).unwrap();
    let gc = GpuTensor::upload(ctx, "c", &[c0.len()], &c0).unwrap();
    let epilogue = Epilogue {
        alpha: 1.0,
        add_into_c: true,
    };
    let mut encoder = ctx.encoder("matmul test");
    Matmul {
        shape,
        layout,
        epilogue,
        a: &ga,
        b: &gb,
        c: &gc,
        bias: None,
        triangles: Triangles::NONE,
        activation: Activation::None,
    }
    .record(ctx, &mut encoder, variant)
    .unwrap();
    ctx.submit("matmul test", encoder).unwrap();
    let got = gc.download(ctx).unwrap();
    let operands = Operands {
        a: &a,
        b: &b,
        bias: None,
        c0: &c0,
    };
    accuracy(&got, &shape, &layout, epilogue, operands)
}

#[test]
fn operands_too_small_are_refused_by_name() {
    let Some(ctx) = common::gpu() else { return };
    let a = GpuTensor::upload(&ctx, "small_a", &[6], &[1.0; 6]).unwrap();
    let b = GpuTensor::upload(&ctx, "b", &[8], &[1.0; 8]).unwrap();
    let c = GpuTensor::output(&ctx, "c", &[8]).unwrap();
    let shape = Shape {
        batch: 1,
        m: 2,
        n: 4,
        k: 4,
    };
    let mut encoder = ctx.encoder("matmul test");
    let err = Matmul {
        shape,
        layout: Layout::dense(&shape, false, false),
        epilogue: Epilogue::default(),
        a: &a,
        b: &b,
        c: &c,
        bias: None,
        triangles: Triangles::NONE,
        activation: Activation::None,
    }
    .record(&ctx, &mut encoder, Variant::Registers { tm: 4, tn: 4 })
    .unwrap_err();
    assert!(err.to_string().contains("small_a"), "{err}");
}

/// Sums longer than one span (K_SPAN) and ragged: every variant's loops stay inside llvmpipe's
/// per-invocation loop budget (a loop cut short there gives wrong numbers, not an error).
#[test]
fn long_sums_over_several_spans() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("matmul long sums");
    let k = 2 * polygrad::ops::matmul::K_SPAN + 5;
    for &variant in &Variant::candidates(&ctx) {
        for (trans_a, trans_b) in [(false, true), (true, false)] {
            let shape = Shape {
                batch: 1,
                m: 17,
                n: 20,
                k,
            };
            let layout = Layout::dense(&shape, trans_a, trans_b);
            // k past 512 is not windows-direct-16x4's (it is tested on its own).
            if !variant.suits(&ctx, &shape, &layout, direct_fits(&ctx, &shape, &layout)) {
                continue;
            }
            let err = check(&ctx, &mut rng, shape, layout, epilogue(3), variant);
            err.assert_close(&format!("{variant} k = {k} trans ({trans_a}, {trans_b})"));
            // The same with vec4 loads (k a multiple of 4).
            let shape = Shape { k: k - 1, ..shape };
            let layout = Layout::dense(&shape, trans_a, trans_b);
            let err = check(&ctx, &mut rng, shape, layout, epilogue(0), variant);
            err.assert_close(&format!(
                "{variant} k = {} trans ({trans_a}, {trans_b})",
                k - 1
            ));
        }
    }
}

/// broadcast64-16x4 (64-bit loads) where it runs, C = A B^T with k a multiple of 8: ragged m
/// and n (lines past the last repeat it), several k spans, a row stride past k, batches of 1
/// and 3, every epilogue; and refused, by name, where k is not a multiple of 8.
#[test]
fn broadcast64_matches_f64_where_it_runs() {
    let Some(ctx) = common::gpu() else { return };
    if !offered(&ctx, Variant::Broadcast64) {
        return;
    }
    let mut rng = common::fresh_rng("matmul broadcast64");
    let k_spans = 2 * polygrad::ops::matmul::K_SPAN + 8;
    let mut case = 0;
    for k in [8, 64, 256, 264, k_spans] {
        for (m, n) in [(1, 1), (7, 33), (17, 20), (65, 257), (512, 512)] {
            let shape = Shape {
                batch: 1 + 2 * (case % 2),
                m,
                n,
                k,
            };
            let mut layout = Layout::dense(&shape, false, true);
            if case % 3 == 2 {
                // Rows 8 floats longer than k, each matrix 8 floats past the last row.
                layout.lda = k + 8;
                layout.stride_a = m * (k + 8) + 8;
            }
            assert!(layout.vec8(&shape));
            let err = check(
                &ctx,
                &mut rng,
                shape,
                layout,
                epilogue(case),
                Variant::Broadcast64,
            );
            err.assert_close(&format!("broadcast64-16x4 {shape:?} {layout:?}"));
            case += 1;
        }
    }
    let shape = Shape {
        batch: 1,
        m: 4,
        n: 4,
        k: 12,
    };
    let layout = Layout::dense(&shape, false, true);
    assert_refused(&ctx, shape, layout, Variant::Broadcast64, "multiples of 8");
}

/// Whether the adapter offers `variant`; says so where it does not (the test then checks
/// nothing there).
fn offered(ctx: &GpuContext, variant: Variant) -> bool {
    let available = variant.available(ctx);
    if !available {
        eprintln!("{variant} is not offered on {}", ctx.adapter().label());
    }
    available
}

/// `variant` refuses the product by an error that says `why`.
fn assert_refused(ctx: &GpuContext, shape: Shape, layout: Layout, variant: Variant, why: &str) {
    let len = 64;
    let a = GpuTensor::upload(ctx, "a", &[len], &vec![1.0; len]).unwrap();
    let c = GpuTensor::output(ctx, "c", &[shape.m * shape.n]).unwrap();
    let product = Matmul {
        shape,
        layout,
        epilogue: Epilogue::default(),
        a: &a,
        b: &a,
        c: &c,
        bias: None,
        triangles: Triangles::NONE,
        activation: Activation::None,
    };
    let mut encoder = ctx.encoder("matmul test");
    let err = product
        .record(ctx, &mut encoder, variant)
        .unwrap_err()
        .to_string();
    assert!(err.contains(why), "{err}");
}

/// broadcast64-km-16x4 where it runs: op(B) stored k-major, op(A) either way (C = A B and
/// C = A^T B), or both stored transposed (C = A^T B^T), k a multiple of 8: ragged m and n
/// (lines past the last repeat earlier ones), several k spans, row strides past the matrix,
/// batches of 1 and 3, every epilogue; and refused, by name, where B's row stride is not a
/// multiple of 4. broadcast64-packed-16x4 runs the same products (padding varied across the
/// transposes, so that its in-place operand is read with padded rows too), and
/// broadcast64-km-16x8 those with op(B) k-major and B's strides multiples of 8 (refused, by
/// name, where they are not).
#[test]
fn broadcast64_km_and_packed_match_f64_where_they_run() {
    let Some(ctx) = common::gpu() else { return };
    if !offered(&ctx, Variant::Broadcast64Km) {
        return;
    }
    let mut rng = common::fresh_rng("matmul broadcast64-km");
    let k_spans = 2 * polygrad::ops::matmul::K_SPAN + 8;
    let mut case = 0;
    for k in [8, 64, 264, k_spans] {
        for (m, n) in [(1, 4), (7, 36), (17, 20), (65, 260), (256, 256)] {
            for (trans_a, trans_b) in [(false, false), (true, false), (true, true)] {
                let shape = Shape {
                    batch: 1 + 2 * (case % 2),
                    m,
                    n,
                    k,
                };
                let mut layout = Layout::dense(&shape, trans_a, trans_b);
                // Which padding, varied across the transposes too (each case's 3 in a row).
                let pad = (case + case / 3) % 3;
                // A's lines (rows, or with trans_a its k-rows) padded to a multiple of 8 floats.
                let a_line = if trans_a { m } else { k };
                layout.lda = a_line.next_multiple_of(8) + 8 * (pad / 2);
                layout.stride_a = layout.lda * if trans_a { k } else { m } + 8;
                if pad == 2 && trans_b {
                    // B's rows (each a column of op(B), along k) 8 floats longer than k.
                    layout.ldb = k + 8;
                    layout.stride_b = n * (k + 8) + 8;
                } else if pad == 2 {
                    // B's rows 4 floats longer than n, each matrix 4 floats past the last row.
                    layout.ldb = n + 4;
                    layout.stride_b = k * (n + 4) + 4;
                }
                assert!(layout.k_major8(&shape), "{shape:?} {layout:?}");
                // broadcast64-packed-16x4 on the same layouts: within one span (k up to
                // K_SPAN) the operand already k-contiguous, padded rows and all, is read where
                // it lies and only the other is copied; over several spans both are.
                // broadcast64-km-16x8 where B's strides are multiples of 8 floats as well.
                for variant in [
                    Variant::Broadcast64Km,
                    Variant::Broadcast64Km8,
                    Variant::Packed64,
                ] {
                    let wide = variant != Variant::Broadcast64Km8 || layout.aligned8(&shape);
                    if !offered(&ctx, variant) || !wide {
                        continue;
                    }
                    let err = check(&ctx, &mut rng, shape, layout, epilogue(case), variant);
                    err.assert_close(&format!("{variant} {shape:?} {layout:?}"));
                }
                case += 1;
            }
        }
    }
    let shape = Shape {
        batch: 1,
        m: 4,
        n: 6,
        k: 8,
    };
    let mut layout = Layout::dense(&shape, false, false);
    layout.lda = 8;
    assert!(!layout.k_major8(&shape));
    assert_refused(
        &ctx,
        shape,
        layout,
        Variant::Broadcast64Km,
        "multiples of 4",
    );
    // B's rows of 4 floats: broadcast64-km-16x4 runs it, broadcast64-km-16x8 refuses it.
    let shape = Shape { n: 4, ..shape };
    let layout = Layout::dense(&shape, false, false);
    assert!(layout.k_major8(&shape) && !layout.aligned8(&shape));
    assert_refused(
        &ctx,
        shape,
        layout,
        Variant::Broadcast64Km8,
        "multiples of 8",
    );
}

/// windows-16x4 and windows64-km-16x8 give C bit for bit the same from run to run, over
/// several windows and groups of windows (later groups add into C).
#[test]
fn windows_reruns_are_bit_identical() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("matmul windows reruns");
    // Two matrices, lines over several windows, k over two groups of k windows (C added into).
    // m a multiple of 8 (windows64-km-16x8 reads A's k-rows 8 floats at a time), not of 16.
    let shape = Shape {
        batch: 2,
        m: 296,
        n: 70,
        k: 1104,
    };
    let layout = Layout::dense(&shape, true, false);
    let a = common::random_vec(&mut rng, shape.batch * shape.m * shape.k, 1.0);
    let b = common::random_vec(&mut rng, shape.batch * shape.k * shape.n, 1.0);
    let ga = GpuTensor::upload(&ctx, "a", &[a.len()], &a).unwrap();
    let gb = GpuTensor::upload(&ctx, "b", &[b.len()], &b).unwrap();
    for variant in [
        Variant::Windows,
        Variant::Windows64Km8,
        Variant::Windows64Km8ByK,
    ] {
        if !offered(&ctx, variant) {
            continue;
        }
        let run = || {
            let gc = GpuTensor::output(&ctx, "c", &[shape.batch * shape.m * shape.n]).unwrap();
            let mut encoder = ctx.encoder("matmul reruns");
            Matmul {
                shape,
                layout,
                epilogue: Epilogue::default(),
                a: &ga,
                b: &gb,
                c: &gc,
                bias: None,
                triangles: Triangles::NONE,
                activation: Activation::None,
            }
            .record(&ctx, &mut encoder, variant)
            .unwrap();
            ctx.submit("matmul reruns", encoder).unwrap();
            gc.download(&ctx).unwrap()
        };
        let (first, second) = (run(), run());
        assert!(first.iter().all(|x| x.is_finite()), "{variant}");
        assert!(
            first
                .iter()
                .zip(&second)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "two runs of {variant} differ"
        );
    }
}

/// windows64-km-16x8 against f64 where its copy of op(B) and its windows could go wrong: k
/// within one window (the windows then column blocks, up to 4 a dispatch), across windows and
/// across groups of four (later groups add into C), n ragged around its 64-column blocks (5
/// of them at n = 300: a dispatch of 4 and one of 1), op(B) k-major and k-contiguous with rows
/// padded by 3 floats (the copy reads any stride), batches of 1 and 3, C transposed, every
/// epilogue; windows64-by-k-km-16x8 wherever its order differs (k past one window, n past one
/// column block: each k window a group of dispatches, later ones adding into C). It refuses
/// op(A) whose strides are not multiples of 8, by name.
#[test]
fn windows64_matches_f64_where_it_runs() {
    let Some(ctx) = common::gpu() else { return };
    if !offered(&ctx, Variant::Windows64Km8) {
        return;
    }
    let mut rng = common::fresh_rng("matmul windows64");
    let window_k = 256;
    let mut case = 0;
    for k in [8, window_k, window_k + 8, 4 * window_k + 8, 9 * window_k] {
        // C element by element (n = 1, 63), by 8 floats a store (72: the second column block
        // one lane wide), by 4 (300: 5 column blocks, the last ragged).
        for (m, n) in [(1, 1), (17, 63), (40, 72), (130, 300)] {
            for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
                let shape = Shape {
                    batch: 1 + 2 * (case % 2),
                    m,
                    n,
                    k,
                };
                let dense = Layout::dense(&shape, trans_a, trans_b);
                let mut layout = if case % 5 == 2 {
                    dense.with_c_transposed(&shape)
                } else {
                    dense
                };
                // A's lines a multiple of 8 floats (what the kernel needs), B's rows padded by
                // 3 floats in every other case and its matrices by up to 2 (what it does not).
                let a_line = if trans_a { m } else { k };
                layout.lda = a_line.next_multiple_of(8);
                layout.stride_a = layout.lda * if trans_a { k } else { m } + 8;
                layout.ldb = if trans_b { k } else { n } + 3 * (case % 2);
                layout.stride_b = layout.ldb * if trans_b { n } else { k } + case % 3;
                assert!(
                    Variant::Windows64Km8.suits(&ctx, &shape, &layout, false),
                    "{shape:?} {layout:?}"
                );
                // The order by k wherever it differs: k past one window and n past one
                // column block (a dispatch of 4 blocks and one of 1 at n = 300).
                let by_k = Variant::Windows64Km8ByK;
                assert_eq!(
                    by_k.suits(&ctx, &shape, &layout, false),
                    k > window_k && n > 64,
                    "{shape:?}"
                );
                for variant in [Variant::Windows64Km8, by_k] {
                    if !variant.suits(&ctx, &shape, &layout, false) {
                        continue;
                    }
                    let err = check(&ctx, &mut rng, shape, layout, epilogue(case), variant);
                    err.assert_close(&format!("{variant} {shape:?} {layout:?}"));
                }
                case += 1;
            }
        }
    }
    let shape = Shape {
        batch: 1,
        m: 4,
        n: 4,
        k: 12,
    };
    assert_refused(
        &ctx,
        shape,
        Layout::dense(&shape, false, false),
        Variant::Windows64Km8,
        "multiples of 8",
    );
}

/// Products of triangular operands with their zeros declared ([`Triangles`], as causal
/// attention's diagonal blocks declare them) give C bit for bit as without the declaration,
/// wherever C is read, on every variant that runs them (those that skip the zeros and those
/// that sum them): square matrices of 72 (blocks of 16 and 32 lines cut them unevenly), a
/// batch of 3, the three layouts, each kind of zeros.
#[test]
fn declared_triangles_change_nothing_where_c_is_read() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("matmul triangles");
    let size = 72;
    let shape = Shape {
        batch: 3,
        m: size,
        n: size,
        k: size,
    };
    let kinds = [
        (
            "a_lower",
            Triangles {
                a_lower: true,
                ..Triangles::NONE
            },
        ),
        (
            "a_upper",
            Triangles {
                a_upper: true,
                ..Triangles::NONE
            },
        ),
        (
            "b_upper",
            Triangles {
                b_upper: true,
                ..Triangles::NONE
            },
        ),
        (
            "b_lower",
            Triangles {
                b_lower: true,
                ..Triangles::NONE
            },
        ),
        (
            "c_lower",
            Triangles {
                c_lower: true,
                ..Triangles::NONE
            },
        ),
    ];
    for (name, triangles) in kinds {
        // op(A)[i][k] and op(B)[k][j], zero where the declaration says.
        let zero_a =
            |i: usize, k: usize| (triangles.a_lower && k > i) || (triangles.a_upper && k < i);
        let zero_b =
            |k: usize, j: usize| (triangles.b_upper && k > j) || (triangles.b_lower && k < j);
        for (trans_a, trans_b) in [(false, true), (false, false), (true, false)] {
            let layout = Layout::dense(&shape, trans_a, trans_b);
            let mut a = common::random_vec(&mut rng, shape.batch * size * size, 1.0);
            let mut b = common::random_vec(&mut rng, shape.batch * size * size, 1.0);
            for m in 0..shape.batch {
                for (i, k) in (0..size).flat_map(|i| (0..size).map(move |k| (i, k))) {
                    let at = |row: usize, col: usize| m * size * size + row * size + col;
                    if zero_a(i, k) {
                        a[if trans_a { at(k, i) } else { at(i, k) }] = 0.0;
                    }
                    // op(B)[i][k] here: k-th column, i-th row of op(B) read as (k = i, j = k).
                    if zero_b(i, k) {
                        b[if trans_b { at(k, i) } else { at(i, k) }] = 0.0;
                    }
                }
            }
            for variant in Variant::candidates(&ctx) {
                if !variant.suits(&ctx, &shape, &layout, direct_fits(&ctx, &shape, &layout)) {
                    continue;
                }
                let run = |triangles: Triangles| -> Vec<f32> {
                    let upload = if variant == Variant::Direct {
                        GpuTensor::upload_windowable
                    } else {
                        GpuTensor::upload
                    };
                    let ga = upload(&ctx, "a", &[a.len()], &a).unwrap();
                    let gb = upload(&ctx, "b", &[b.len()], &b).unwrap();
                    let gc = GpuTensor::output(&ctx, "c", &[a.len()]).unwrap();
                    let mut encoder = ctx.encoder("matmul test");
                    Matmul {
                        shape,
                        layout,
                        epilogue: Epilogue::default(),
                        a: &ga,
                        b: &gb,
                        c: &gc,
                        bias: None,
                        triangles,
                        activation: Activation::None,
                    }
                    .record(&ctx, &mut encoder, variant)
                    .unwrap();
                    ctx.submit("matmul test", encoder).unwrap();
                    gc.download(&ctx).unwrap()
                };
                let (all, declared) = (run(Triangles::NONE), run(triangles));
                let read = |e: &usize| !triangles.c_lower || e % size <= e / size % size;
                let differ = (0..all.len())
                    .filter(read)
                    .filter(|&e| all[e].to_bits() != declared[e].to_bits())
                    .count();
                assert_eq!(
                    differ, 0,
                    "{variant} trans ({trans_a}, {trans_b}) {name}: {differ} elements of C differ"
                );
            }
        }
    }
}

/// broadcast64-packed-16x4's copies are one scratch per operand, shared by every such product:
/// three weight-gradient products recorded into one encoder (the second needs a larger copy,
/// which replaces the first's; the third a smaller one) and a fourth in its own, each against
/// f64.
#[test]
fn packed_products_share_their_copies_within_an_encoder() {
    let Some(ctx) = common::gpu() else { return };
    if !offered(&ctx, Variant::Packed64) {
        return;
    }
    let mut rng = common::fresh_rng("matmul packed scratch");
    let shapes = [(24, 40, 96), (72, 136, 200), (16, 8, 40), (40, 24, 64)];
    let drawn: Vec<_> = shapes
        .iter()
        .map(|&(m, n, k)| {
            let shape = Shape { batch: 1, m, n, k };
            // C = A^T B: both operands k-major, both copied.
            let layout = Layout::dense(&shape, true, false);
            let a = common::random_vec(&mut rng, k * m, 1.0);
            let b = common::random_vec(&mut rng, k * n, 1.0);
            let tensors = [("a", &a), ("b", &b)]
                .map(|(name, v)| GpuTensor::upload(&ctx, name, &[v.len()], v).unwrap());
            let c = GpuTensor::output(&ctx, "c", &[m * n]).unwrap();
            (shape, layout, a, b, tensors, c)
        })
        .collect();
    let record = |encoder: &mut wgpu::CommandEncoder, i: usize| {
        let (shape, layout, _, _, [ga, gb], gc) = &drawn[i];
        Matmul {
            shape: *shape,
            layout: *layout,
            epilogue: Epilogue::default(),
            a: ga,
            b: gb,
            c: gc,
            bias: None,
            triangles: Triangles::NONE,
            activation: Activation::None,
        }
        .record(&ctx, encoder, Variant::Packed64)
        .unwrap();
    };
    let mut encoder = ctx.encoder("packed scratch, shared");
    for i in 0..3 {
        record(&mut encoder, i);
    }
    ctx.submit("packed scratch, shared", encoder).unwrap();
    let mut encoder = ctx.encoder("packed scratch, alone");
    record(&mut encoder, 3);
    ctx.submit("packed scratch, alone", encoder).unwrap();
    for (shape, layout, a, b, _, gc) in &drawn {
        let c0 = vec![0.0; shape.m * shape.n];
        let operands = Operands {
            a,
            b,
            bias: None,
            c0: &c0,
        };
        let got = gc.download(&ctx).unwrap();
        accuracy(&got, shape, layout, Epilogue::default(), operands).assert_close(&format!(
            "broadcast64-packed-16x4 {shape:?}, recorded with others"
        ));
    }
}

/// One product of `variant` with `activation` (None: plain), C poisoned before it runs.
fn run_with_activation(
    ctx: &GpuContext,
    product: (Shape, Layout, Variant),
    (a, b, bias): (&GpuTensor, &GpuTensor, &GpuTensor),
    c: &GpuTensor,
    activation: Activation,
) {
    let (shape, layout, variant) = product;
    let mut encoder = ctx.encoder("matmul activation test");
    Matmul {
        shape,
        layout,
        epilogue: Epilogue::default(),
        a,
        b,
        c,
        bias: Some(bias),
        triangles: Triangles::NONE,
        activation,
    }
    .record(ctx, &mut encoder, variant)
    .unwrap();
    ctx.submit("matmul activation test", encoder).unwrap();
}

/// GELU in the epilogue, forward (C and gelu(C)) and backward (C * gelu'(pre)), on every
/// variant and transpose, one K span and two, windows-16x4 over one group of k windows and
/// over several (k above 1024: it runs the elementwise kernel after the product): bit-identical to
/// the plain product followed by the elementwise kernels (the same operations), and gelu(C)
/// within f32 rounding of f64 gelu of the f64 product.
#[test]
fn activation_epilogue_matches_the_elementwise_kernels() {
    use polygrad::ops::gelu::{gelu_backward, gelu_forward};
    use polygrad::reference::gelu::gelu;
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng("matmul activation");
    let mut checked = 0;
    for variant in Variant::candidates(&ctx) {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            for (batch, m, n, k) in [
                (1, 40, 72, 64),
                (2, 9, 36, polygrad::ops::matmul::K_SPAN + 16),
            ] {
                let shape = Shape { batch, m, n, k };
                let layout = Layout::dense(&shape, trans_a, trans_b);
                if !variant.suits(&ctx, &shape, &layout, direct_fits(&ctx, &shape, &layout)) {
                    continue;
                }
                let upload = if variant == Variant::Direct {
                    GpuTensor::upload_windowable
                } else {
                    GpuTensor::upload
                };
                let len_c = batch * m * n;
                let mut host = |len| common::random_vec(&mut rng, len, 1.0);
                let (a, b, bias, pre) = (
                    host(batch * m * k),
                    host(batch * k * n),
                    host(n),
                    host(len_c),
                );
                let ga = upload(&ctx, "a", &[a.len()], &a).unwrap();
                let gb = upload(&ctx, "b", &[b.len()], &b).unwrap();
                let gbias = GpuTensor::upload(&ctx, "bias", &[n], &bias).unwrap();
                let gpre = GpuTensor::upload(&ctx, "pre", &[len_c], &pre).unwrap();
                let out = |name| GpuTensor::output(&ctx, name, &[len_c]).unwrap();
                let operands = (&ga, &gb, &gbias);
                let product = (shape, layout, variant);
                // Fused.
                let (c_fused, act_fused, grad_fused) = (out("c"), out("act"), out("grad"));
                let gelu_out = Activation::Gelu { out: &act_fused };
                run_with_activation(&ctx, product, operands, &c_fused, gelu_out);
                let gelu_grad = Activation::GeluGrad { pre: &gpre };
                run_with_activation(&ctx, product, operands, &grad_fused, gelu_grad);
                // Product, then the elementwise kernels.
                let (c_plain, act_plain, grad_plain) = (out("c"), out("act"), out("grad"));
                run_with_activation(&ctx, product, operands, &c_plain, Activation::None);
                let mut encoder = ctx.encoder("gelu");
                gelu_forward(&ctx, &mut encoder, &c_plain, &act_plain).unwrap();
                gelu_backward(&ctx, &mut encoder, &gpre, &c_plain, &grad_plain).unwrap();
                ctx.submit("gelu", encoder).unwrap();
                let what = format!("{variant} {shape:?} trans ({trans_a}, {trans_b})");
                let bits = |t: &GpuTensor| -> Vec<u32> {
                    t.download(&ctx)
                        .unwrap()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect()
                };
                assert!(bits(&c_fused) == bits(&c_plain), "{what}: C");
                assert!(bits(&act_fused) == bits(&act_plain), "{what}: gelu(C)");
                assert!(
                    bits(&grad_fused) == bits(&grad_plain),
                    "{what}: C gelu'(pre)"
                );
                // And against f64: gelu of the f64 product plus the bias.
                let (a64, b64, bias64) = (widen(&a), widen(&b), widen(&bias));
                let zeros = vec![0.0; len_c];
                let c64 = reference_matmul(
                    &shape,
                    &layout,
                    1.0,
                    false,
                    &a64,
                    &b64,
                    Some(&bias64),
                    &zeros,
                );
                let act64: Vec<f64> = c64.iter().map(|&v| gelu(v)).collect();
                let err = relative_error(&act_fused.download(&ctx).unwrap(), &act64);
                assert!(err < 1e-5, "{what}: gelu(C) relative error {err:e}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no variant ran a product with an activation");
    eprintln!("{checked} products with activations checked");
}
