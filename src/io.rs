//! safetensors in and out, by the names of shared/DESIGN.md §4: models (parameters plus the
//! `config` metadata key), inputs (`x` with `dy` or `target`) and gradients (`y`, `grad.x`,
//! `grad.<name>`). Files are written to a temporary name beside the target and renamed into
//! place, so that a failed write never leaves a half-written file under the real name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::model::{HostTensor, Loss, Model, ModelConfig, ModelGradients, Tensors};

/// The tensors of a safetensors file (f32 only) and its metadata.
pub fn read_tensors(path: &Path) -> Result<(Tensors, HashMap<String, String>)> {
    tensors_from_bytes(&read_bounded(path)?, path)
}

/// [`read_tensors`] on bytes already read; `path` names them in errors. What the fuzz target
/// (`fuzz/`) drives: any bytes give tensors or an error, never a panic.
pub fn tensors_from_bytes(bytes: &[u8], path: &Path) -> Result<(Tensors, HashMap<String, String>)> {
    let not_safetensors = |e: safetensors::SafeTensorError| {
        let detail = header_problem(bytes).map_or(String::new(), |p| format!(": {p}"));
        Error::file(path, format!("not a valid safetensors file: {e}{detail}"))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
    let file = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    let mut tensors = Tensors::new();
    for (name, view) in file.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::bad_tensor(
                name,
                format!(
                    "has dtype {:?}; polygrad reads F32 tensors only",
                    view.dtype()
                ),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(
            name.to_string(),
            HostTensor::new(name, view.shape().to_vec(), data)?,
        );
    }
    Ok((tensors, header.metadata().clone().unwrap_or_default()))
}

/// Writes f32 tensors and metadata to `path` through a temporary file and a rename.
pub fn write_tensors(
    path: &Path,
    tensors: &Tensors,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::bad_tensor(name.clone(), e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let encoded = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::file(path, format!("cannot encode: {e}")))?;
    write_atomically(path, &encoded)
}

/// Which tensor of a safetensors header is at fault, where the header parses as JSON: the
/// safetensors crate's own error does not always name it. Checks, in the order of the data,
/// that every tensor's byte range starts where the previous one ended and holds its shape.
fn header_problem(bytes: &[u8]) -> Option<String> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?;
    let json: serde_json::Value = serde_json::from_slice(header).ok()?;
    let mut ranges: Vec<(&str, u64, u64, Option<u64>)> = Vec::new();
    for (name, entry) in json.as_object()? {
        if name == "__metadata__" {
            continue;
        }
        let offsets = entry.get("data_offsets")?.as_array()?;
        let (start, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let elements = entry
            .get("shape")?
            .as_array()?
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(d.as_u64()?));
        let width = match entry.get("dtype")?.as_str()? {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        ranges.push((
            name,
            start,
            end,
            elements.and_then(|e| e.checked_mul(width)),
        ));
    }
    ranges.sort_by_key(|r| (r.1, r.2));
    let mut expected_start = 0;
    for (name, start, end, bytes_needed) in ranges {
        if start != expected_start || end < start {
            return Some(format!(
                "tensor {name} claims bytes {start}..{end}, but the previous tensor ends at {expected_start}"
            ));
        }
        if bytes_needed != Some(end - start) {
            return Some(format!(
                "tensor {name} claims {} bytes ({start}..{end}), its shape and dtype need {}",
                end - start,
                bytes_needed.map_or("more than 2^64".to_string(), |b| b.to_string())
            ));
        }
        expected_start = end;
    }
    None
}

/// The largest safetensors header read: far above any model's (the format's own readers cap
/// it at 100 MB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A safetensors file's bytes, read only after checking that it is a regular file and that its
/// header's length fits in it: a device (`/dev/zero`) or a FIFO would otherwise be read
/// until memory runs out.
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let cannot = |e: std::io::Error| Error::file(path, format!("cannot read: {e}"));
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(Error::file(
            path,
            format!("is {}, not a regular file", file_kind(&meta)),
        ));
    }
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        Error::file(
            path,
            "not a valid safetensors file: shorter than its 8-byte header length",
        )
    })?;
    let header = u64::from_le_bytes(prefix);
    if header > MAX_HEADER_BYTES || header > meta.len() - 8 {
        return Err(Error::file(
            path,
            format!(
                "not a valid safetensors file: its header claims {header} bytes, the file holds {}",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    bytes.extend_from_slice(&prefix);
    // No more than the length checked above, should the file grow meanwhile.
    file.take(meta.len() - 8)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    Ok(bytes)
}

/// Refuses an output path before any work is done: one that names the same file as an input
/// (after following links), one that exists but is not a regular file (a FIFO, a device, a
/// directory would be replaced by the rename), and one whose directory cannot take the
/// temporary file the write goes through (tried by creating and removing it).
pub fn check_output_path(out: &Path, inputs: &[&Path]) -> Result<()> {
    refuse_special_output(out)?;
    if out.exists() {
        for input in inputs {
            if same_file(out, input) {
                return Err(Error::file(
                    out,
                    format!(
                        "is the same file as the input {}: refusing to overwrite it",
                        input.display()
                    ),
                ));
            }
        }
    }
    let temporary = temporary_name(out);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(|e| Error::file(out, format!("cannot be written ({e})")))?;
    std::fs::remove_file(&temporary)
        .map_err(|e| Error::file(&temporary, format!("cannot be removed ({e})")))?;
    Ok(())
}

/// Refuses an output path that exists and is not a regular file: the rename into place would
/// replace a FIFO, a device or a directory.
fn refuse_special_output(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(Error::file(
            path,
            format!(
                "cannot write: it exists and is {}, not a regular file",
                file_kind(&meta)
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether two paths name one file (device and inode on Unix, after following links).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// What a non-regular file is, for errors.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// The temporary file being written, for a signal handler to remove (unix).
#[cfg(unix)]
static PARTIAL: std::sync::atomic::AtomicPtr<libc::c_char> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Marks `path` as the temporary file being written until the guard is dropped. The path's
/// bytes are leaked (a few per write), never freed: a signal handler on another thread may be
/// reading them.
struct PartialGuard;

impl PartialGuard {
    fn new(path: &Path) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
                PARTIAL.store(c.into_raw(), std::sync::atomic::Ordering::SeqCst);
            }
        }
        #[cfg(not(unix))]
        let _ = path;
        PartialGuard
    }
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        PARTIAL.store(std::ptr::null_mut(), std::sync::atomic::Ordering::SeqCst);
    }
}

/// For programs (the `polygrad` CLI): on SIGINT or SIGTERM, remove the temporary file of a
/// write in progress, then die of the signal as before. A library caller keeps its own
/// handlers by not calling this.
#[cfg(unix)]
pub fn remove_partial_on_signal() {
    extern "C" fn on_signal(signal: libc::c_int) {
        // Only async-signal-safe calls: unlink, signal, raise.
        let p = PARTIAL.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: p is null or a NUL-terminated path that is never freed.
        unsafe {
            if !p.is_null() {
                libc::unlink(p);
            }
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that makes only async-signal-safe calls.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Elsewhere: nothing to install.
#[cfg(not(unix))]
pub fn remove_partial_on_signal() {}

/// For tests of the signal handling: milliseconds to wait with the temporary file written and
/// not yet renamed (`POLYGRAD_TEST_HOLD_PARTIAL_MS`), so that a signal can be sent then.
fn hold_partial_for_tests() {
    if let Some(ms) = std::env::var("POLYGRAD_TEST_HOLD_PARTIAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// `value` as pretty JSON into `path`, replaced whole (never left half-written).
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::file(path, format!("cannot be serialised: {e}")))?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// `path`'s bytes replaced by `bytes`, or `path` untouched on failure. A path that exists and
/// is not a regular file is refused (the rename would replace a FIFO or a device).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    refuse_special_output(path)?;
    let temporary = temporary_name(path);
    let _partial = PartialGuard::new(&temporary);
    let result = std::fs::write(&temporary, bytes).and_then(|()| {
        hold_partial_for_tests();
        std::fs::rename(&temporary, path)
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::file(path, format!("cannot write: {e}")));
    }
    Ok(())
}

fn temporary_name(path: &Path) -> PathBuf {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{file}.{}.partial", std::process::id()))
}

/// A model from a safetensors file with a `config` metadata key.
pub fn read_model(path: &Path) -> Result<Model> {
    model_from_bytes(&read_bounded(path)?, path)
}

/// [`read_model`] on bytes already read; `path` names them in errors.
pub fn model_from_bytes(bytes: &[u8], path: &Path) -> Result<Model> {
    let (tensors, metadata) = tensors_from_bytes(bytes, path)?;
    let json = metadata.get("config").ok_or_else(|| {
        Error::file(
            path,
            "has no metadata key \"config\" (the model's JSON config)",
        )
    })?;
    Model::new(ModelConfig::from_json(json)?, tensors)
}

/// Writes a model (its parameters and `config`) to `path` atomically.
pub fn write_model(path: &Path, model: &Model) -> Result<()> {
    let metadata = HashMap::from([("config".to_string(), model.config().to_json())]);
    write_tensors(path, model.params(), metadata)
}

/// x and the loss's tensor (`dy` for [`LossKind::Vjp`], `target` for [`LossKind::Mse`]) from an
/// input file.
pub fn read_input(path: &Path, kind: LossKind) -> Result<(HostTensor, Loss)> {
    input_from_bytes(&read_bounded(path)?, path, kind)
}

/// [`read_input`] on bytes already read; `path` names them in errors.
pub fn input_from_bytes(bytes: &[u8], path: &Path, kind: LossKind) -> Result<(HostTensor, Loss)> {
    let (mut tensors, _) = tensors_from_bytes(bytes, path)?;
    let mut take = |name: &str| {
        tensors.remove(name).ok_or_else(|| Error::MissingTensor {
            tensor: name.into(),
            context: path.display().to_string(),
        })
    };
    let x = take("x")?;
    let loss = match kind {
        LossKind::Vjp => Loss::Vjp(take("dy")?),
        LossKind::Mse => Loss::Mse(take("target")?),
    };
    // One rule for anything else, whatever its dtype: refused by name, as a model file's
    // unknown tensors are (a misspelt or misplaced tensor is not silently ignored).
    if let Some(extra) = tensors.keys().next() {
        let wanted = match kind {
            LossKind::Vjp => "x and dy",
            LossKind::Mse => "x and target (--loss mse)",
        };
        return Err(Error::bad_tensor(
            extra.clone(),
            format!(
                "is not read from {}: an input holds {wanted} only",
                path.display()
            ),
        ));
    }
    Ok((x, loss))
}

/// The built-in ways to start the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// dL/dy is given as `dy`.
    Vjp,
    /// L = mean((y - target)^2).
    Mse,
}

/// Writes `y`, `grad.x` and `grad.<name>` for every parameter; metadata `loss` holds the value
/// of a built-in loss.
pub fn write_gradients(path: &Path, result: &ModelGradients) -> Result<()> {
    let mut tensors = Tensors::new();
    tensors.insert("y".into(), result.y.clone());
    tensors.insert("grad.x".into(), result.grad_x.clone());
    for (name, g) in &result.grads {
        tensors.insert(format!("grad.{name}"), g.clone());
    }
    let mut metadata = HashMap::new();
    if let Some(loss) = result.loss {
        metadata.insert("loss".to_string(), format!("{loss:e}"));
    }
    write_tensors(path, &tensors, metadata)
}
