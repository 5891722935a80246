//! Every WGSL file parses and validates with naga; no GPU needed.

use polygrad::gpu::shaders::{specialised_source, validate_wgsl, GENERATED, SHADERS};
use polygrad::ops::poly_attention::UNROLLED_MAX_D;

#[test]
fn every_shader_validates_with_naga() {
    for (name, src) in SHADERS {
        if let Err(e) = validate_wgsl(name, src) {
            panic!("{name} does not validate:\n{e}");
        }
    }
}

/// The unrolled feature kernels, generated for every d_qk they run at, and for their default.
#[test]
fn every_generated_shader_validates_with_naga() {
    for generated in GENERATED {
        for d in 1..=UNROLLED_MAX_D as u32 {
            let src = specialised_source(generated.name, &[("D_QK", d)]).unwrap();
            if let Err(e) = validate_wgsl(generated.name, &src) {
                panic!("{} for D_QK = {d} does not validate:\n{e}", generated.name);
            }
            assert!(src.contains(&format!("const D_QK: u32 = {d}u;")));
        }
        let default = specialised_source(generated.name, &[]).unwrap();
        validate_wgsl(generated.name, &default).unwrap();
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
