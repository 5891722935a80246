//! One error type for the library: every variant names the tensor, shape, limit or adapter at
//! fault, so that a caller can act on it without reading polygrad's source.

/// polygrad's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter {}; adapters found: {}", wanted.as_ref().map(|w| format!("matches \"{w}\"")).unwrap_or_else(|| "was found".into()), if available.is_empty() { "none (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)".to_string() } else { available.join(", ") })]
    NoAdapter {
        wanted: Option<String>,
        available: Vec<String>,
    },

    #[error("adapter {adapter}: {message}")]
    Adapter { adapter: String, message: String },

    #[error("degree {degree} is not supported: {reason}")]
    InvalidDegree { degree: u32, reason: String },

    #[error("tensor {tensor}: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    #[error("tensor {tensor}: {count} values given for shape {shape:?} ({expected} values)")]
    LengthMismatch {
        tensor: String,
        shape: Vec<usize>,
        expected: usize,
        count: usize,
    },

    #[error("invalid shape: {what} {message}")]
    InvalidShape { what: String, message: String },

    #[error("tensor {tensor} has a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        tensor: String,
        index: usize,
        value: f32,
    },

    #[error("tensor {tensor} needs {bytes} bytes, above the device limit {limit} = {max} bytes")]
    TooLarge {
        tensor: String,
        bytes: u64,
        limit: &'static str,
        max: u64,
    },

    #[error("{what} needs {needed}, above the device limit {limit} = {max}")]
    LimitExceeded {
        what: String,
        limit: &'static str,
        needed: u64,
        max: u64,
    },

    #[error("not enough memory: the pass needs about {} ({detail}), and the machine has {} available", crate::model::format_bytes(*needed), crate::model::format_bytes(*available))]
    OutOfMemory {
        needed: u64,
        available: u64,
        detail: String,
    },

    #[error("config field {field}: {message}")]
    Config { field: String, message: String },

    #[error("tensor {tensor} is missing{}", if context.is_empty() { String::new() } else { format!(" from {context}") })]
    MissingTensor { tensor: String, context: String },

    #[error("tensor {tensor}: {message}")]
    BadTensor { tensor: String, message: String },

    #[error("file {path}: {message}")]
    File { path: String, message: String },

    #[error("GPU error during {during}: {message}")]
    Gpu { during: String, message: String },

    #[error("shader {shader} does not compile: {message}")]
    Shader { shader: String, message: String },

    #[error("kernel {kernel}: {message}")]
    Kernel { kernel: String, message: String },

    #[error("option {option}: {message}")]
    Option { option: String, message: String },
}

impl Error {
    pub(crate) fn shape(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidShape {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_tensor(tensor: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadTensor {
            tensor: tensor.into(),
            message: message.into(),
        }
    }

    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn gpu(during: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Gpu {
            during: during.into(),
            message: message.to_string(),
        }
    }
}
