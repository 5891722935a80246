//! Replays the fuzz target's corpus (fuzz/corpus/load) on the stable toolchain: every input
//! the fuzzer was seeded with or kept must load or fail cleanly, as under libFuzzer.

include!("../fuzz/load_one.rs");

#[test]
fn the_fuzz_corpus_loads_or_fails_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/load");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        load_one(&std::fs::read(&path).unwrap());
        replayed += 1;
    }
    eprintln!("{replayed} corpus inputs replayed from {}", dir.display());
    assert!(
        replayed >= 4,
        "the seed corpus is missing from {}",
        dir.display()
    );
    // The seeds themselves are valid: the model and both inputs load.
    let model = polygrad::io::model_from_bytes(
        &std::fs::read(dir.join("model-1-layer")).unwrap(),
        &dir.join("model-1-layer"),
    );
    assert!(model.is_ok(), "{:?}", model.err());
}
