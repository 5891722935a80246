//! Times exact attention's forward + backward with each tile setting given on the command
//! line (`key_block:col_tile`), causal, one head, d_qk = 16, d_v = 64:
//! `cargo run --release --example exact_tiles -- 1024 8:16 8:64 16:32`.

use polygrad::ops::exact_attention::{ExactAttention, ExactTiles};
use polygrad::ops::{upload_inputs, AttentionInputs};
use polygrad::validate::random_attention_inputs;
use polygrad::{AttentionShape, GpuContext};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .ok_or("usage: exact_tiles N KB:CT ...")?
        .parse()?;
    let ctx = GpuContext::new(None)?;
    let shape = AttentionShape::new(1, 1, n, 16, 64, true);
    let inputs = random_attention_inputs(&shape, 1.0, 7);
    let (q, k, v, d_o) = upload_inputs(&ctx, &shape, AttentionInputs::from_array(&inputs))?;
    for setting in args {
        let (kb, ct) = setting.split_once(':').ok_or("tiles as KB:CT")?;
        let tiles = ExactTiles {
            key_block: kb.parse()?,
            col_tile: ct.parse()?,
        };
        let op = ExactAttention::with_tiles(&ctx, shape, tiles, None)?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let saved = op.forward(&ctx, &q, &k, &v)?;
            op.backward(&ctx, &q, &k, &v, &saved, &d_o)?;
            ctx.synchronize()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "n = {n} key_block {kb} col_tile {ct}: {:.1} ms (median of 5)",
            times[2]
        );
    }
    Ok(())
}
