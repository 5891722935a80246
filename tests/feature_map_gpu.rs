//! The feature map phi and its transposed gradient J_phi^T on the GPU against f64 on the CPU.

mod common;

use polygrad::ops::poly_attention::FeatureMap;
use polygrad::poly::phi;
use polygrad::reference::finite_diff::central_gradient;
use polygrad::reference::{relative_error, widen};
use polygrad::GpuTensor;

#[test]
fn phi_and_its_transposed_gradient_match_f64() {
    let Some(ctx) = common::gpu() else { return };
    // At degree 2 and d_qk <= 16 the kernels are unrolled (phi only where k is a multiple of 4,
    // as at d = 7); d = 64 keeps the loops.
    for (d, degree) in [(1, 2), (4, 4), (7, 2), (16, 2), (16, 4), (3, 8), (64, 2)] {
        let rows = 5;
        let mut rng = common::fresh_rng(&format!("phi d={d} g={degree}"));
        let x = common::random_vec(&mut rng, rows * d, 1.0);
        let map = FeatureMap::new(&ctx, d, degree, 1.0).unwrap();
        let k = map.features();
        let grads = common::random_vec(&mut rng, rows * k, 1.0);
        let x_gpu = GpuTensor::upload(&ctx, "x", &[rows, d], &x).unwrap();
        let g_gpu = GpuTensor::upload(&ctx, "dphi", &[rows, k], &grads).unwrap();
        let features = map.forward(&ctx, &x_gpu).unwrap().download(&ctx).unwrap();
        let dx = map
            .backward(&ctx, &x_gpu, &g_gpu)
            .unwrap()
            .download(&ctx)
            .unwrap();

        let mut phi_ref = Vec::new();
        let mut dx_ref = Vec::new();
        for r in 0..rows {
            let row = widen(&x[r * d..(r + 1) * d]);
            phi_ref.extend(phi(&row, degree));
            let g = widen(&grads[r * k..(r + 1) * k]);
            let contracted = |u: &[f64]| {
                phi(u, degree)
                    .iter()
                    .zip(&g)
                    .map(|(p, g)| p * g)
                    .sum::<f64>()
            };
            dx_ref.extend(central_gradient(contracted, &row, 1e-5));
        }
        let (e_phi, e_dx) = (
            relative_error(&features, &phi_ref),
            relative_error(&dx, &dx_ref),
        );
        eprintln!("d={d} g={degree} k={k}: phi {e_phi:.2e}, J^T {e_dx:.2e}");
        assert!(e_phi < 1e-6, "phi d={d} g={degree}: relative error {e_phi}");
        assert!(
            e_dx < 1e-5,
            "J_phi^T d={d} g={degree}: relative error {e_dx}"
        );
    }
}

/// The unrolled degree-2 kernels give the loop kernels' results bit for bit: phi where the row
/// width is a multiple of 4 (d = 6, 7, 14), J_phi^T at every d they run at.
#[test]
fn unrolled_feature_kernels_match_the_loops_bit_for_bit() {
    let Some(ctx) = common::gpu() else { return };
    for d in [1, 2, 6, 7, 14, 16] {
        let rows = 37;
        let mut rng = common::fresh_rng(&format!("unrolled phi d={d}"));
        let x = common::random_vec(&mut rng, rows * d, 1.0);
        let unrolled = FeatureMap::new(&ctx, d, 2, 0.7).unwrap();
        let k = unrolled.features();
        let grads = common::random_vec(&mut rng, rows * k, 1.0);
        let x_gpu = GpuTensor::upload(&ctx, "x", &[rows, d], &x).unwrap();
        let g_gpu = GpuTensor::upload(&ctx, "dphi", &[rows, k], &grads).unwrap();
        let run = |map: &FeatureMap| {
            let phi = map.forward(&ctx, &x_gpu).unwrap().download(&ctx).unwrap();
            let dx = map.backward(&ctx, &x_gpu, &g_gpu).unwrap();
            (phi, dx.download(&ctx).unwrap())
        };
        let loops = FeatureMap::new(&ctx, d, 2, 0.7).unwrap().with_loops();
        let ((phi_u, dx_u), (phi_l, dx_l)) = (run(&unrolled), run(&loops));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&phi_u), bits(&phi_l), "phi d={d}");
        assert_eq!(bits(&dx_u), bits(&dx_l), "J_phi^T d={d}");
    }
}
