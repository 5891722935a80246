//! One error type for the library: every variant names the tensor, shape, limit or adapter at
//! fault, so that a caller can act on it without reading polygrad's source.

/// polygrad's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each variant naming what is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched (or none exists).
    #[error("no GPU adapter {}; adapters found: {}", wanted.as_ref().map(|w| format!("matches \"{w}\"")).unwrap_or_else(|| "was found".into()), if available.is_empty() { "none (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)".to_string() } else { available.join(", ") })]
    NoAdapter {
        /// The name asked for, if any.
        wanted: Option<String>,
        /// Every adapter found.
        available: Vec<String>,
    },

    /// The adapter cannot do what was asked (a feature, a limit, a variant).
    #[error("adapter {adapter}: {message}")]
    Adapter {
        /// The adapter, as "name (backend)".
        adapter: String,
        /// What it lacks.
        message: String,
    },

    /// A polynomial degree polygrad does not run.
    #[error("degree {degree} is not supported: {reason}")]
    InvalidDegree {
        /// The degree given.
        degree: u32,
        /// Why not.
        reason: String,
    },

    /// A tensor of the wrong shape.
    #[error("tensor {tensor}: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// The tensor's name.
        tensor: String,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        got: Vec<usize>,
    },

    /// A tensor with more or fewer values than its shape holds.
    #[error("tensor {tensor}: {count} values given for shape {shape:?} ({expected} values)")]
    LengthMismatch {
        /// The tensor's name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The values the shape holds.
        expected: usize,
        /// The values given.
        count: usize,
    },

    /// A shape the operation cannot take.
    #[error("invalid shape: {what} {message}")]
    InvalidShape {
        /// The operation or operand.
        what: String,
        /// What is wrong with its shape.
        message: String,
    },

    /// A NaN or infinity where finite values are required.
    #[error("tensor {tensor} has a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// The tensor's name.
        tensor: String,
        /// The first such value's flat index.
        index: usize,
        /// The value.
        value: f32,
    },

    /// A tensor larger than a buffer the device allows.
    #[error("tensor {tensor} needs {bytes} bytes, above the device limit {limit} = {max} bytes")]
    TooLarge {
        /// The tensor's name.
        tensor: String,
        /// Its size.
        bytes: u64,
        /// The limit's name.
        limit: &'static str,
        /// The limit's value.
        max: u64,
    },

    /// Work past a device or driver limit.
    #[error("{what} needs {needed}, above the device limit {limit} = {max}")]
    LimitExceeded {
        /// What needs it.
        what: String,
        /// The limit's name.
        limit: &'static str,
        /// What the work needs.
        needed: u64,
        /// The limit's value.
        max: u64,
    },

    /// A pass larger than the memory available.
    #[error("not enough memory: the pass needs about {} ({detail}), and the machine has {} available", crate::model::format_bytes(*needed), crate::model::format_bytes(*available))]
    OutOfMemory {
        /// Bytes the pass needs.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Where the need comes from.
        detail: String,
    },

    /// A model config field out of range or contradicting the rest.
    #[error("config field {field}: {message}")]
    Config {
        /// The field's name.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A tensor that should be there and is not.
    #[error("tensor {tensor} is missing{}", if context.is_empty() { String::new() } else { format!(" from {context}") })]
    MissingTensor {
        /// The tensor's name.
        tensor: String,
        /// Where it was looked for.
        context: String,
    },

    /// A tensor that is there but wrong (its dtype, values, or no place in the model).
    #[error("tensor {tensor}: {message}")]
    BadTensor {
        /// The tensor's name.
        tensor: String,
        /// What is wrong with it.
        message: String,
    },

    /// A file that cannot be read or written, or is not what it should be.
    #[error("file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// An error the GPU driver or wgpu reported.
    #[error("GPU error during {during}: {message}")]
    Gpu {
        /// The work that was running.
        during: String,
        /// The driver's or wgpu's message.
        message: String,
    },

    /// A shader the device refused.
    #[error("shader {shader} does not compile: {message}")]
    Shader {
        /// The shader file.
        shader: String,
        /// The compiler's message.
        message: String,
    },

    /// A kernel called against its declaration.
    #[error("kernel {kernel}: {message}")]
    Kernel {
        /// The kernel, as "shader::entry".
        kernel: String,
        /// What disagrees.
        message: String,
    },

    /// A command-line option or a library setting out of range.
    #[error("option {option}: {message}")]
    Option {
        /// The option or setting.
        option: String,
        /// What is wrong with it.
        message: String,
    },
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
