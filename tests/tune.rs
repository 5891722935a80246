//! The tune cache: round trip, a corrupt file, an unwritable directory, a stale entry (a matmul
//! variant, a chunk size). None of them is an error; each gives a warning and a fresh
//! measurement.

mod common;

use polygrad::gpu::tune::{read_cache, write_cache, TuneCache, TuneMode, Tuner};
use polygrad::ops::matmul::{choose, shape_class, Layout, Shape, Variant};
use polygrad::ops::poly_attention::{chunk_class, PolyAttention, CHUNK_CANDIDATES};
use polygrad::AttentionShape;

fn cache_with(key: &str, class: &str, variant: &str) -> TuneCache {
    TuneCache {
        key: key.into(),
        choices: [(class.to_string(), variant.to_string())].into(),
    }
}

#[test]
fn a_cache_round_trips_and_is_read_back_for_its_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut tuner = Tuner::new(TuneMode::Cached, Some(dir.path()), "adapter A");
    tuner.record("matmul NT vec4 m64 n64 k64", "registers-8x8");
    let again = Tuner::new(TuneMode::Cached, Some(dir.path()), "adapter A");
    assert_eq!(
        again.cached("matmul NT vec4 m64 n64 k64"),
        Some("registers-8x8")
    );
    // Another adapter (or driver, or version) does not reuse it; retune ignores it.
    let other = Tuner::new(TuneMode::Cached, Some(dir.path()), "adapter B");
    assert_eq!(other.cached("matmul NT vec4 m64 n64 k64"), None);
    let mut retune = Tuner::new(TuneMode::Retune, Some(dir.path()), "adapter A");
    assert_eq!(retune.cached("matmul NT vec4 m64 n64 k64"), None);
    // What it measures, it keeps for the rest of the process (and writes to the file).
    retune.record("matmul NT vec4 m64 n64 k64", "subgroup-8x4");
    assert_eq!(
        retune.cached("matmul NT vec4 m64 n64 k64"),
        Some("subgroup-8x4")
    );
    let again = Tuner::new(TuneMode::Cached, Some(dir.path()), "adapter A");
    assert_eq!(
        again.cached("matmul NT vec4 m64 n64 k64"),
        Some("subgroup-8x4")
    );
}

#[test]
fn a_corrupt_cache_is_a_warning_and_an_empty_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.json");
    std::fs::write(&path, "{ not json").unwrap();
    assert!(read_cache(&path).unwrap_err().contains("corrupt"));
    let mut tuner = Tuner::new(TuneMode::Cached, Some(dir.path()), "adapter A");
    assert!(tuner.cache().choices.is_empty());
    // Recording a new choice replaces the corrupt file with a good one.
    tuner.record("c", "tiled-64x64");
    assert_eq!(
        read_cache(&path).unwrap().unwrap().choices["c"],
        "tiled-64x64"
    );
}

#[test]
fn an_unwritable_cache_directory_keeps_choices_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: nothing can be created under it, even as
    // root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let mut tuner = Tuner::new(TuneMode::Cached, Some(&blocker), "adapter A");
    tuner.record("c", "registers-4x4");
    assert_eq!(tuner.cached("c"), Some("registers-4x4"));
    assert!(write_cache(&blocker.join("tune.json"), tuner.cache()).is_err());
}

#[test]
fn every_variant_name_parses_back() {
    for v in [
        Variant::Registers { tm: 4, tn: 4 },
        Variant::Registers { tm: 16, tn: 8 },
        Variant::Tiled,
        Variant::Subgroup { lane_rows: 4 },
        Variant::Subgroup { lane_rows: 8 },
        Variant::Broadcast,
    ] {
        assert_eq!(v.to_string().parse::<Variant>(), Ok(v));
    }
    assert!("registers-4".parse::<Variant>().is_err());
    assert!("warp-speed".parse::<Variant>().is_err());
}

#[test]
fn a_stale_entry_is_measured_again_and_replaced() {
    let Some(ctx) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let shape = Shape {
        batch: 1,
        m: 8,
        n: 8,
        k: 8,
    };
    let layout = Layout::dense(&shape, false, true);
    let class = shape_class(&shape, &layout);
    // The key the context writes under, taken from a cache it makes itself.
    ctx.set_tuning(TuneMode::Cached, Some(dir.path()));
    let first = choose(&ctx, &shape, &layout, false).unwrap();
    let path = dir.path().join("tune.json");
    let key = read_cache(&path).unwrap().unwrap().key;
    // A variant that no longer exists.
    write_cache(&path, &cache_with(&key, &class, "registers-99x3")).unwrap();
    ctx.set_tuning(TuneMode::Cached, Some(dir.path()));
    let again = choose(&ctx, &shape, &layout, false).unwrap();
    assert!(Variant::candidates(&ctx).contains(&again), "{again}");
    let stored = read_cache(&path).unwrap().unwrap();
    assert_eq!(stored.choices[&class], again.to_string());
    eprintln!("first choice {first}, after the stale entry {again}");
    ctx.set_tuning(TuneMode::Off, None);
}

/// The chunk size of causal polynomial attention is tuned like a matmul variant: measured once,
/// cached, and a stale value is measured again.
#[test]
fn the_chunk_size_is_tuned_cached_and_a_stale_value_replaced() {
    let Some(ctx) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let shape = AttentionShape::new(1, 2, 300, 8, 16, true);
    let class = chunk_class(&shape, 2);
    ctx.set_tuning(TuneMode::Cached, Some(dir.path()));
    let first = PolyAttention::new(&ctx, shape, 2).unwrap().chunk();
    assert!(CHUNK_CANDIDATES.contains(&first), "{first}");
    let path = dir.path().join("tune.json");
    let cache = read_cache(&path).unwrap().unwrap();
    assert_eq!(cache.choices[&class], first.to_string());
    // Read back from the cache, not measured again.
    ctx.set_tuning(TuneMode::Cached, Some(dir.path()));
    assert_eq!(PolyAttention::new(&ctx, shape, 2).unwrap().chunk(), first);
    // A chunk size polygrad does not time.
    let mut stale = cache.clone();
    stale.choices.insert(class.clone(), "7".into());
    write_cache(&path, &stale).unwrap();
    ctx.set_tuning(TuneMode::Cached, Some(dir.path()));
    let again = PolyAttention::new(&ctx, shape, 2).unwrap().chunk();
    assert!(CHUNK_CANDIDATES.contains(&again), "{again}");
    assert_eq!(
        read_cache(&path).unwrap().unwrap().choices[&class],
        again.to_string()
    );
    // Tuning off: the default, whatever is cached.
    ctx.set_tuning(TuneMode::Off, None);
    assert_eq!(
        PolyAttention::new(&ctx, shape, 2).unwrap().chunk(),
        PolyAttention::DEFAULT_CHUNK
    );
    eprintln!("chunk {first}, after the stale entry {again}");
}
