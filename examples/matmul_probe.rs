use polygrad::bench::{matmul_flops, median_matmul};
use polygrad::ops::matmul::{Shape, Variant};
use polygrad::GpuContext;

fn main() -> polygrad::Result<()> {
    let ctx = GpuContext::new(None)?;
    if std::env::var("OLD").is_ok() {
        return old(&ctx);
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let shape = Shape {
        batch: 1,
        m: args[0],
        n: args[1],
        k: args[2],
    };
    for (ta, tb) in [(false, true), (false, false), (true, false)] {
        for v in Variant::candidates(&ctx) {
            let t = median_matmul(&ctx, shape, (ta, tb), v, 3)?;
            println!(
                "{ta} {tb} {v}: {:.1} ms {:.1} GFLOP/s",
                t.as_secs_f64() * 1e3,
                matmul_flops(&shape) / t.as_secs_f64() / 1e9
            );
        }
    }
    Ok(())
}

#[allow(dead_code)]
pub fn old(ctx: &GpuContext) -> polygrad::Result<()> {
    use polygrad::GpuTensor;
    let v = vec![0.5f32; 1024 * 1024];
    let x = GpuTensor::upload(ctx, "x", &[1024, 1024], &v)?;
    let w = GpuTensor::upload(ctx, "w", &[1024, 1024], &v)?;
    let y = GpuTensor::output(ctx, "y", &[1024, 1024])?;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let mut enc = ctx.encoder("x");
        polygrad::ops::linear::linear_forward(ctx, &mut enc, &x, &w, None, &y, false)?;
        ctx.submit("x", enc)?;
        ctx.synchronize()?;
        println!("old: {:?}", t.elapsed());
    }
    Ok(())
}
