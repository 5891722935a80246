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
    for (d, degree) in [(1, 2), (4, 4), (16, 2), (16, 4), (3, 8), (64, 2)] {
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
