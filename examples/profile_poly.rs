//! Times polynomial attention's forward and backward apart, at several n, with Phi
//! materialised and formed in registers, in alternating rounds (medians of 7 passes).
//! cargo run --release --example profile_poly [CHUNK]
use std::time::Instant;

use polygrad::bench::benchmark_shape;
use polygrad::ops::poly_attention::{PhiForm, PolyAttention};
use polygrad::validate::random_attention_inputs;
use polygrad::{GpuContext, GpuTensor};

fn main() -> polygrad::Result<()> {
    let ctx = GpuContext::new(None)?;
    let chunk = std::env::args()
        .nth(1)
        .map_or(Ok(PolyAttention::DEFAULT_CHUNK), |c| c.parse())
        .expect("CHUNK is a number of rows");
    println!("adapter: {}, chunk {chunk}", ctx.adapter().label());
    for round in 1..=2 {
        for n in [4096, 16384] {
            for (form, name) in PhiForm::NAMES {
                let s = benchmark_shape(n);
                let op = PolyAttention::with_chunk(&ctx, s, 2, chunk)?.with_form(form)?;
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
                    "round {round} n {n:>6} {name:>12}: forward {:>8.1} ms, backward {:>8.1} ms, total {:>8.1} ms",
                    tf[3],
                    tb[3],
                    tf[3] + tb[3]
                );
            }
        }
    }
    Ok(())
}
