//! Criterion benchmark of attention forward + backward (causal, one head, d_qk = 16, d_v = 64),
//! exact and polynomial g = 2, at n = 1024, 4096, 16384 on the default adapter. Each iteration waits for
//! the GPU; input sets alternate. `polygrad bench` prints the same figures with the growth
//! ratio and fails when it exceeds 20.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use polygrad::bench::{benchmark_shape, AttentionRun};
use polygrad::{Attention, GpuContext};

fn attention(c: &mut Criterion) {
    let ctx = match GpuContext::new(None) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("skipping the attention benchmark: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group(format!("attention fwd+bwd on {}", ctx.adapter().label()));
    group.sample_size(10);
    for (attention, n) in [Attention::Exact, Attention::Poly { degree: 2 }]
        .into_iter()
        .flat_map(|a| [1024, 4096, 16384].map(|n| (a, n)))
    {
        let mut run =
            AttentionRun::new(&ctx, attention, benchmark_shape(n)).expect("benchmark set-up");
        run.run_once(&ctx).expect("warm-up");
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

criterion_group!(benches, attention);
criterion_main!(benches);
