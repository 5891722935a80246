// What the fuzz target `load` does with one input, shared with the replay test
// (tests/fuzz_corpus.rs): the bytes as a model file, as an input file (both losses) and as a
// config's JSON. Any bytes must give a value or an error, never a panic, a hang or an
// allocation beyond a small multiple of their size.
fn load_one(data: &[u8]) {
    let path = std::path::Path::new("fuzz.safetensors");
    let _ = polygrad::io::model_from_bytes(data, path);
    for kind in [polygrad::io::LossKind::Vjp, polygrad::io::LossKind::Mse] {
        let _ = polygrad::io::input_from_bytes(data, path, kind);
    }
    if let Ok(json) = std::str::from_utf8(data) {
        let _ = polygrad::ModelConfig::from_json(json);
    }
}
