//! The model's non-attention kernels one by one against their f64 twins, at sizes that make
//! the row-summing kernels run over more than one span (more rows than ops::linear::K_SPAN).

mod common;

use polygrad::ops::gelu::{gelu_backward, gelu_forward};
use polygrad::ops::heads::{merge_heads, split_heads, HeadLayout};
use polygrad::ops::layer_norm::{
    layer_norm_backward, layer_norm_forward, LayerNormGrads, LayerNormParams,
};
use polygrad::ops::linear::{linear_backward, linear_forward, InputGrad};
use polygrad::ops::matmul::Activation;
use polygrad::reference::gelu::{gelu, gelu_derivative};
use polygrad::reference::layer_norm::{
    layer_norm_backward as ln_backward_ref, layer_norm_forward as ln_forward_ref,
};
use polygrad::reference::linear::{
    linear_backward as linear_backward_ref, linear_forward as linear_forward_ref,
};
use polygrad::reference::{relative_error, widen};
use polygrad::GpuTensor;

/// More rows than one span of the row-summing kernels (32768).
const ROWS: usize = 32768 + 1001;
const TOLERANCE: f64 = 1e-5;

fn assert_close(what: &str, gpu: &[f32], reference: &[f64]) {
    let e = relative_error(gpu, reference);
    eprintln!("{what}: {e:.1e}");
    assert!(e <= TOLERANCE, "{what}: relative error {e:e}");
}

/// Both load paths of the product core: scalar (a width or row count that is not a multiple of
/// 4) and vector (all multiples of 4); the bias gradient over two spans of rows, one column per
/// invocation (out = 6), in two levels (out = 12), and 8 columns a load where the adapter has
/// 64-bit integers (out = 16). Where out < in, dW runs as x^T dy stored transposed: scalar
/// (7 -> 6) and in the 64-bit kernels' layout (24 -> 8).
#[test]
fn linear_forward_and_backward_over_two_spans() {
    linear_case(7, 6, ROWS);
    linear_case(8, 12, ROWS - 1);
    linear_case(8, 16, ROWS - 3);
    linear_case(24, 8, ROWS - 8);
}

fn linear_case(inp: usize, out: usize, rows: usize) {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng(&format!("linear {inp} -> {out}, {rows} rows"));
    let x = common::random_vec(&mut rng, rows * inp, 1.0);
    let w = common::random_vec(&mut rng, out * inp, 1.0);
    let b = common::random_vec(&mut rng, out, 1.0);
    let dy = common::random_vec(&mut rng, rows * out, 1.0);
    let up = |name: &str, shape: &[usize], data: &[f32]| {
        GpuTensor::upload(&ctx, name, shape, data).unwrap()
    };
    let (gx, gw, gb, gdy) = (
        up("x", &[rows, inp], &x),
        up("w", &[out, inp], &w),
        up("b", &[out], &b),
        up("dy", &[rows, out], &dy),
    );
    let y = GpuTensor::output(&ctx, "y", &[rows, out]).unwrap();
    let dx = GpuTensor::output(&ctx, "dx", &[rows, inp]).unwrap();
    let dw = GpuTensor::output(&ctx, "dw", &[out, inp]).unwrap();
    let db = GpuTensor::output(&ctx, "db", &[out]).unwrap();
    let mut enc = ctx.encoder("linear test");
    linear_forward(&ctx, &mut enc, &gx, &gw, Some(&gb), &y, false).unwrap();
    linear_backward(
        &ctx,
        &mut enc,
        (&gx, &gw, &gdy),
        Some(InputGrad {
            dx: &dx,
            add: false,
            activation: Activation::None,
        }),
        &dw,
        Some(&db),
    )
    .unwrap();
    ctx.submit("linear test", enc).unwrap();

    let (x64, w64, dy64) = (widen(&x), widen(&w), widen(&dy));
    assert_close(
        "y",
        &y.download(&ctx).unwrap(),
        &linear_forward_ref(&x64, &w64, Some(&widen(&b)), out),
    );
    let (rdx, rdw, rdb) = linear_backward_ref(&x64, &w64, &dy64, out);
    assert_close("dx", &dx.download(&ctx).unwrap(), &rdx);
    assert_close("dw", &dw.download(&ctx).unwrap(), &rdw);
    assert_close("db", &db.download(&ctx).unwrap(), &rdb);
}

/// Every kernel of each row pass: the plain one (width 5) and, on a CPU adapter, the row kernels
/// that hold a row in private vec4 arrays (width 36, a multiple of 4), loading and storing it by
/// vec4<u64>s where the adapter has 64-bit integers and the width is a multiple of 8 (40); the
/// parameter gradients likewise one column per invocation (5) and in two levels (36), over two
/// spans of rows, and 8 columns a load where the adapter has 64-bit integers (40).
#[test]
fn layer_norm_forward_and_backward_over_two_spans() {
    layer_norm_case(5);
    layer_norm_case(36);
    layer_norm_case(40);
}

fn layer_norm_case(width: usize) {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng(&format!("layer_norm width {width}"));
    let mut x = common::random_vec(&mut rng, ROWS * width, 1.0);
    // Rows with a mean well away from zero, as a residual stream has. (Larger offsets cost
    // digits in any f32 LayerNorm: the mean itself rounds.)
    x.iter_mut().for_each(|v| *v += 5.0);
    let w = common::random_vec(&mut rng, width, 1.0);
    let b = common::random_vec(&mut rng, width, 1.0);
    let dy = common::random_vec(&mut rng, ROWS * width, 1.0);
    let eps = 1e-5;
    let up = |name: &str, shape: &[usize], data: &[f32]| {
        GpuTensor::upload(&ctx, name, shape, data).unwrap()
    };
    let (gx, gw, gb, gdy) = (
        up("x", &[ROWS, width], &x),
        up("w", &[width], &w),
        up("b", &[width], &b),
        up("dy", &[ROWS, width], &dy),
    );
    let y = GpuTensor::output(&ctx, "y", &[ROWS, width]).unwrap();
    let dx = GpuTensor::output(&ctx, "dx", &[ROWS, width]).unwrap();
    let dw = GpuTensor::output(&ctx, "dw", &[width]).unwrap();
    let db = GpuTensor::output(&ctx, "db", &[width]).unwrap();
    let ln = LayerNormParams {
        weight: &gw,
        bias: &gb,
        eps,
    };
    let mut enc = ctx.encoder("layer norm test");
    let stats = layer_norm_forward(&ctx, &mut enc, &gx, ln, &y).unwrap();
    let grads = LayerNormGrads {
        dx: &dx,
        add_into_dx: false,
        d_weight: &dw,
        d_bias: &db,
    };
    layer_norm_backward(&ctx, &mut enc, (&gx, &stats, &gdy), ln, grads).unwrap();
    ctx.submit("layer norm test", enc).unwrap();

    let (x64, w64, dy64) = (widen(&x), widen(&w), widen(&dy));
    assert_close(
        "y",
        &y.download(&ctx).unwrap(),
        &ln_forward_ref(&x64, &w64, &widen(&b), eps),
    );
    let (rdx, rdw, rdb) = ln_backward_ref(&x64, &w64, eps, &dy64);
    assert_close("dx", &dx.download(&ctx).unwrap(), &rdx);
    assert_close("dw", &dw.download(&ctx).unwrap(), &rdw);
    assert_close("db", &db.download(&ctx).unwrap(), &rdb);
}

/// Both kernels: per element (10007 values) and per vec4 (10008, a multiple of 4).
#[test]
fn gelu_forward_and_backward_including_large_inputs() {
    gelu_case(&[-100.0, -12.0, -1e-3, 0.0, 1e-3, 12.0, 100.0]);
    gelu_case(&[-100.0, -12.0, -1e-3, 0.0, 1e-3, 12.0, 100.0, -5.0]);
}

fn gelu_case(special: &[f32]) {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = common::fresh_rng(&format!("gelu, {} specials", special.len()));
    let mut t = common::random_vec(&mut rng, 10000, 4.0);
    t.extend(special);
    let upstream = common::random_vec(&mut rng, t.len(), 1.0);
    let gt = GpuTensor::upload(&ctx, "t", &[t.len()], &t).unwrap();
    let gup = GpuTensor::upload(&ctx, "upstream", &[t.len()], &upstream).unwrap();
    let out = GpuTensor::output(&ctx, "gelu", &[t.len()]).unwrap();
    let dt = GpuTensor::output(&ctx, "dt", &[t.len()]).unwrap();
    let mut enc = ctx.encoder("gelu test");
    gelu_forward(&ctx, &mut enc, &gt, &out).unwrap();
    gelu_backward(&ctx, &mut enc, &gt, &gup, &dt).unwrap();
    ctx.submit("gelu test", enc).unwrap();
    let reference: Vec<f64> = t.iter().map(|&v| gelu(v as f64)).collect();
    let d_reference: Vec<f64> = t
        .iter()
        .zip(&upstream)
        .map(|(&v, &u)| u as f64 * gelu_derivative(v as f64))
        .collect();
    assert_close("gelu", &out.download(&ctx).unwrap(), &reference);
    assert_close("gelu'", &dt.download(&ctx).unwrap(), &d_reference);
}

/// The head-layout copies against the index arithmetic on the host, per element (d = 3) and by
/// rows of vec4s (d = 8): split into [B, H, n, d], then merged back.
#[test]
fn head_layout_copies_move_every_element_where_it_belongs() {
    let Some(ctx) = common::gpu() else { return };
    for width in [3, 8] {
        let layout = HeadLayout {
            batch: 2,
            seq_len: 37,
            heads: 3,
            width,
        };
        let len = 2 * 37 * 3 * width;
        // Distinct values, so that any misplaced element shows.
        let tokens: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
        let src = GpuTensor::upload(&ctx, "tokens", &layout.token_major(), &tokens).unwrap();
        let mut enc = ctx.encoder("heads test");
        let split = split_heads(&ctx, &mut enc, &src, layout, "split").unwrap();
        let merged = merge_heads(&ctx, &mut enc, &split, layout, "merged").unwrap();
        ctx.submit("heads test", enc).unwrap();
        let mut expected = vec![0.0; len];
        for b in 0..2 {
            for t in 0..37 {
                for h in 0..3 {
                    for e in 0..width {
                        let token_major = ((b * 37 + t) * 3 + h) * width + e;
                        let head_major = ((b * 3 + h) * 37 + t) * width + e;
                        expected[head_major] = tokens[token_major];
                    }
                }
            }
        }
        assert_eq!(
            split.download(&ctx).unwrap(),
            expected,
            "split, d = {width}"
        );
        assert_eq!(merged.download(&ctx).unwrap(), tokens, "merge, d = {width}");
    }
}
