//! Every WGSL file parses and validates with naga; no GPU needed.

use polygrad::gpu::shaders::{validate_wgsl, SHADERS};

#[test]
fn every_shader_validates_with_naga() {
    for (name, src) in SHADERS {
        if let Err(e) = validate_wgsl(name, src) {
            panic!("{name} does not validate:\n{e}");
        }
    }
}

#[test]
fn every_file_in_shaders_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = SHADERS.iter().map(|(n, _)| n.to_string()).collect();
    registered.sort();
    assert_eq!(
        on_disk, registered,
        "shaders/ and gpu::shaders::SHADERS disagree"
    );
}

#[test]
fn a_broken_shader_is_reported() {
    let err = validate_wgsl("broken.wgsl", "fn f() -> f32 { return 1u; }").unwrap_err();
    assert!(
        err.contains("broken.wgsl") || err.contains("return"),
        "{err}"
    );
}
