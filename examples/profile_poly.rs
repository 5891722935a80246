//! Times polynomial attention's forward and backward apart, at several n and chunk sizes.
//! cargo run --release --example profile_poly
use std::time::Instant;

use polygrad::bench::benchmark_shape;
use polygrad::ops::poly_attention::PolyAttention;
use polygrad::validate::random_attention_inputs;
use polygrad::{GpuContext, GpuTensor};

fn main() -> polygrad::Result<()> {
    let ctx = GpuContext::new(None)?;
    println!("adapter: {}", ctx.adapter().label());
    for chunk in [32, 64] {
        for n in [1024, 4096, 16384] {
            let s = benchmark_shape(n);
            let op = PolyAttention::with_chunk(&ctx, s, 2, chunk)?;
            let [q, k, v, d_o] = random_attention_inputs(&s, 1.0, 7);
            let q = GpuTensor::upload(&ctx, "q", &s.qk_shape(), &q)?;
            let k = GpuTensor::upload(&ctx, "k", &s.qk_shape(), &k)?;
            let v = GpuTensor::upload(&ctx, "v", &s.v_shape(), &v)?;
            let d_o = GpuTensor::upload(&ctx, "d_o", &s.v_shape(), &d_o)?;
            let (mut tf, mut tb) = (Vec::new(), Vec::new());
            for _ in 0..7 {
                let t = Instant::now();
                let fwd = op.forward(&ctx, &q, &k, &v)?;
                ctx.synchronize()?;
                tf.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                op.backward(&ctx, &q, &k, &v, &fwd, &d_o)?;
                ctx.synchronize()?;
                tb.push(t.elapsed().as_secs_f64() * 1e3);
            }
            tf.sort_by(f64::total_cmp);
            tb.sort_by(f64::total_cmp);
            println!(
                "chunk {chunk:>3} n {n:>6}: forward {:>8.1} ms, backward {:>8.1} ms",
                tf[3], tb[3]
            );
        }
    }
    Ok(())
}
