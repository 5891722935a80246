//! Criterion benchmark of a whole model's forward + backward (L = 4, D = 256, H = 4, d_qk = 16,
//! d_v = 64, d_ff = 1024, causal, B = 1), as `GpuModel::gradients` runs it: x and dy uploaded,
//! every gradient read back. Polynomial g = 2 at n = 1024, 4096, 16384; exact at 1024 and 4096
//! only, since one exact pass at 16384 takes most of an hour on a software driver (run
//! `polygrad bench --model` for it). `polygrad bench --model` prints the same figures with the
//! growth ratio.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use polygrad::bench::{benchmark_model_config, ModelRun};
use polygrad::{Attention, GpuContext};

fn model(c: &mut Criterion) {
    let ctx = match GpuContext::new(None) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("skipping the model benchmark: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group(format!("model fwd+bwd on {}", ctx.adapter().label()));
    group.sample_size(10);
    let cases = [
        (Attention::Exact, 1024),
        (Attention::Exact, 4096),
        (Attention::Poly { degree: 2 }, 1024),
        (Attention::Poly { degree: 2 }, 4096),
        (Attention::Poly { degree: 2 }, 16384),
    ];
    for (attention, n) in cases {
        let config = benchmark_model_config(attention);
        ModelRun::new(&ctx, config.clone(), 64)
            .and_then(|mut warm_up| warm_up.run_once(&ctx))
            .expect("warm-up");
        let mut run = ModelRun::new(&ctx, config, n).expect("benchmark set-up");
        group.bench_function(BenchmarkId::new(attention.to_string(), n), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run.run_once(&ctx).expect("forward + backward"))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, model);
criterion_main!(benches);
