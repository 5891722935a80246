//! Helpers shared by the integration tests: one GPU context per test process, serialised, and
//! fresh random inputs.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use polygrad::GpuContext;
use rand::Rng;

static CONTEXT: OnceLock<Option<Mutex<GpuContext>>> = OnceLock::new();

/// The process's GPU context, locked for the caller (GPU tests run one at a time). Without an
/// adapter: fails when `CI` is set, otherwise prints why and returns None so the test can skip.
pub fn gpu() -> Option<MutexGuard<'static, GpuContext>> {
    let slot = CONTEXT.get_or_init(|| match GpuContext::new(None) {
        Ok(ctx) => {
            ctx.set_poison_outputs(true);
            // Tests choose kernel variants without timing them (fast and the same every run),
            // unless POLYGRAD_TUNE asks otherwise; tests/matmul_gpu.rs checks every variant.
            if std::env::var_os("POLYGRAD_TUNE").is_none() {
                ctx.set_tuning(polygrad::gpu::tune::TuneMode::Off, None);
            }
            eprintln!("GPU tests on {}", ctx.adapter().label());
            Some(Mutex::new(ctx))
        }
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI is set and no GPU adapter: {e}"),
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    });
    slot.as_ref()
        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
}

/// `len` values uniform in [-scale, scale], never all zero.
pub fn random_vec(rng: &mut impl Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// A fresh seed, or `POLYGRAD_TEST_SEED` where it is set (to reproduce a printed seed; every
/// draw of the process then takes it). The caller prints it.
pub fn seed() -> u64 {
    match std::env::var("POLYGRAD_TEST_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("POLYGRAD_TEST_SEED is not a u64: {text:?}")),
        Err(_) => rand::random(),
    }
}

/// A generator from [`seed`], the seed printed so a failure can be reproduced.
pub fn fresh_rng(what: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let seed = seed();
    eprintln!("{what}: seed {seed}");
    rand::rngs::StdRng::seed_from_u64(seed)
}
