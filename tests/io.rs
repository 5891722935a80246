//! safetensors files: what is refused and how it is named. No GPU needed.

use std::collections::HashMap;
use std::path::Path;

use polygrad::io::{read_input, read_model, read_tensors, write_model, write_tensors, LossKind};
use polygrad::validate::small_model_config;
use polygrad::{Attention, HostTensor, Model};

fn model() -> Model {
    Model::random(
        small_model_config(2, 2, true, Attention::Poly { degree: 2 }),
        3,
    )
    .unwrap()
}

/// Writes `model`'s tensors after `edit`, with its config JSON after `edit_config`.
fn write_edited(
    path: &Path,
    edit: impl FnOnce(&mut polygrad::model::Tensors),
    edit_config: impl FnOnce(String) -> String,
) {
    let m = model();
    let mut tensors = m.params().clone();
    edit(&mut tensors);
    let metadata = HashMap::from([("config".to_string(), edit_config(m.config().to_json()))]);
    write_tensors(path, &tensors, metadata).unwrap();
}

fn read_error(path: &Path) -> String {
    match read_model(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_model_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_model(&path, &model()).unwrap();
    assert_eq!(read_model(&path).unwrap(), model());
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_edited(
        &path,
        |t| {
            t.remove("blocks.1.mlp.fc1.bias");
        },
        |c| c,
    );
    let e = read_error(&path);
    assert!(
        e.contains("blocks.1.mlp.fc1.bias") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn a_wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_edited(
        &path,
        |t| {
            let w = t.get_mut("blocks.0.attn.q.weight").unwrap();
            w.shape = vec![w.shape[1], w.shape[0]];
        },
        |c| c,
    );
    let e = read_error(&path);
    assert!(
        e.contains("blocks.0.attn.q.weight") && e.contains("[8, 16]"),
        "{e}"
    );
}

#[test]
fn a_wrong_dtype_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let raw = vec![0u8; 2 * 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![16], &raw).unwrap();
    std::fs::write(
        &path,
        safetensors::serialize([("ln_f.weight", view)], None).unwrap(),
    )
    .unwrap();
    let e = read_tensors(&path).unwrap_err().to_string();
    assert!(e.contains("ln_f.weight") && e.contains("F16"), "{e}");
}

#[test]
fn a_config_that_contradicts_the_tensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    // One layer in the config, two in the file.
    write_edited(
        &path,
        |_| {},
        |c| c.replace("\"n_layers\":2", "\"n_layers\":1"),
    );
    let e = read_error(&path);
    assert!(e.contains("blocks.1.") && e.contains("config"), "{e}");
    // A wider d_ff than the tensors have.
    write_edited(&path, |_| {}, |c| c.replace("\"d_ff\":32", "\"d_ff\":64"));
    let e = read_error(&path);
    assert!(e.contains("mlp.fc1") && e.contains("64"), "{e}");
    // An odd degree and a missing field.
    write_edited(&path, |_| {}, |c| c.replace("\"degree\":2", "\"degree\":3"));
    assert!(read_error(&path).contains("degree"));
    write_edited(&path, |_| {}, |c| c.replace("\"ln_eps\"", "\"eps\""));
    assert!(
        read_error(&path).contains("ln_eps"),
        "{}",
        read_error(&path)
    );
    write_edited(&path, |_| {}, |_| "not json".into());
    assert!(read_error(&path).contains("config"));
}

#[test]
fn a_file_without_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_tensors(&path, model().params(), HashMap::new()).unwrap();
    let e = read_error(&path);
    assert!(e.contains("config") && e.contains("m.safetensors"), "{e}");
}

#[test]
fn non_finite_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_edited(
        &path,
        |t| t.get_mut("blocks.0.ln2.bias").unwrap().data[3] = f32::NAN,
        |c| c,
    );
    let e = read_error(&path);
    assert!(
        e.contains("blocks.0.ln2.bias") && e.contains("non-finite"),
        "{e}"
    );
}

#[test]
fn unreadable_and_truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.safetensors");
    let e = read_error(&missing);
    assert!(
        e.contains("absent.safetensors") && e.contains("cannot read"),
        "{e}"
    );
    let path = dir.path().join("m.safetensors");
    write_model(&path, &model()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 5, 100, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = read_error(&path);
        assert!(
            e.contains("m.safetensors") && e.contains("not a valid safetensors file"),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn input_files_name_what_they_lack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.safetensors");
    let x = HostTensor::new("x", vec![1, 2, 16], vec![0.5; 32]).unwrap();
    let tensors = polygrad::model::Tensors::from([("x".to_string(), x)]);
    write_tensors(&path, &tensors, HashMap::new()).unwrap();
    let e = read_input(&path, LossKind::Vjp).unwrap_err().to_string();
    assert!(e.contains("dy") && e.contains("missing"), "{e}");
    let e = read_input(&path, LossKind::Mse).unwrap_err().to_string();
    assert!(e.contains("target"), "{e}");
}

#[test]
fn an_input_with_a_tensor_it_does_not_use_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.safetensors");
    let t = |name: &str| HostTensor::new(name, vec![1, 2, 16], vec![0.5; 32]).unwrap();
    let tensors = polygrad::model::Tensors::from([
        ("x".to_string(), t("x")),
        ("dy".to_string(), t("dy")),
        ("dY".to_string(), t("dY")),
    ]);
    write_tensors(&path, &tensors, HashMap::new()).unwrap();
    let e = read_input(&path, LossKind::Vjp).unwrap_err().to_string();
    assert!(e.contains("dY") && e.contains("x and dy only"), "{e}");
    // With --loss mse, dy is as foreign as any other name.
    let e = read_input(&path, LossKind::Mse).unwrap_err().to_string();
    assert!(e.contains("target"), "{e}");
}

#[test]
fn a_failed_write_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a directory: the rename fails after the temporary file was written.
    let target = dir.path().join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    let e = write_model(&target, &model()).unwrap_err().to_string();
    assert!(e.contains("taken") && e.contains("cannot write"), "{e}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("taken")],
        "left behind: {names:?}"
    );
    // A directory that does not exist.
    let e = write_model(&dir.path().join("no/such/dir/m.safetensors"), &model()).unwrap_err();
    assert!(e.to_string().contains("m.safetensors"), "{e}");
}

#[test]
fn a_wrong_offset_in_the_header_names_its_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_model(&path, &model()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    // The tensor whose data comes fourth: its range grows by one f32 into the next one's.
    let mut by_offset: Vec<(String, u64)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, e)| (name.clone(), e["data_offsets"][0].as_u64().unwrap()))
        .collect();
    by_offset.sort_by_key(|(_, start)| *start);
    let victim = by_offset[3].0.clone();
    let end = header[&victim]["data_offsets"][1].as_u64().unwrap();
    header[&victim]["data_offsets"][1] = (end + 4).into();
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut edited = (text.len() as u64).to_le_bytes().to_vec();
    edited.extend_from_slice(&text);
    edited.extend_from_slice(&bytes[8 + len..]);
    std::fs::write(&path, &edited).unwrap();
    let e = read_error(&path);
    assert!(e.contains(&format!("tensor {victim} claims")), "{e}");
}
