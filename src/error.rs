//! One error type for the crate: every variant names the problem and, where there is one,
//! the fix.

/// Errors returned by the GPU context, the kernel launchers, the data sets and the trainer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter could be found or the requested one is missing.
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused to open a device.
    #[error("could not open a device on adapter '{adapter}': {reason}")]
    Device {
        /// The adapter's name.
        adapter: String,
        /// What the adapter said.
        reason: String,
    },
    /// A shape argument is zero, inconsistent or too large.
    #[error("invalid shape: {0}")]
    Shape(String),
    /// A scalar parameter is out of its range.
    #[error("invalid parameter: {0}")]
    Param(String),
    /// A buffer is too small, lacks a usage flag, or is larger than a binding may be.
    #[error("buffer `{name}`: {problem}")]
    Buffer {
        /// The operand, by the launch arguments' field name.
        name: &'static str,
        /// What is wrong and the fix.
        problem: String,
    },
    /// The launch would exceed a limit of this device.
    #[error("over this device's limits: {0}")]
    Limit(String),
    /// A WGSL source failed to parse, validate or translate.
    #[error("shader `{name}`: {message}")]
    Shader {
        /// The shader family.
        name: String,
        /// The parser's, validator's or translator's message.
        message: String,
    },
    /// A checkpoint file is missing, unreadable, malformed or does not match the model.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint's file.
        path: String,
        /// What is wrong with it and the fix.
        problem: String,
        /// The I/O or safetensors error behind it, where there is one.
        #[source]
        source: Option<Source>,
    },
    /// A data set is missing, unreadable, empty or malformed.
    #[error("data: {0}")]
    Data(String),
    /// A configuration file or option is unknown or out of range.
    #[error("config: {0}")]
    Config(String),
    /// A file could not be read or written (or a plot or image not drawn into it).
    #[error("{path}: {what} ({source})")]
    Io {
        /// The file or folder.
        path: String,
        /// What could not be done, e.g. "cannot write the log".
        what: String,
        /// The operating system's (or the encoder's) error.
        #[source]
        source: Source,
    },
    /// Training diverged (a non-finite loss or gradient).
    #[error("training stopped: {0}")]
    Diverged(String),
    /// Mapping a buffer for readback, or waiting for the GPU, failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),
    /// wgpu refused to make a launch's bind group (e.g. an operand made on another device),
    /// with wgpu's own message.
    #[error("wgpu refused the launch: {0}")]
    Launch(String),
    /// Two operands of one launch share memory where one of them is written.
    #[error("aliased buffers: {0}")]
    Alias(String),
    /// Another process is writing into the same folder.
    #[error("busy: {0}")]
    Busy(String),

    /// Another rank of a data-parallel job refused or failed; that rank reported why.
    #[error("rank {rank} of this data-parallel job failed (its error is above)")]
    OtherRank {
        /// The failed rank.
        rank: usize,
    },
    /// SIGINT, SIGTERM or SIGHUP stopped training after a step; a checkpoint of that step was
    /// written.
    #[error("stopped by {name} after step {step}; {what}")]
    Interrupted {
        /// The signal's number (2 for SIGINT, 15 for SIGTERM, 1 for SIGHUP): exit with 128 + it.
        signal: i32,
        /// The signal's name.
        name: &'static str,
        /// The last step trained, whose checkpoint was written.
        step: u32,
        /// What was saved and how to continue.
        what: String,
    },
}

/// Result with the crate's error.
pub type Result<T> = std::result::Result<T, Error>;

/// The lower-level error an [`Error`] carries (an `std::io::Error`, a safetensors or image
/// error), reachable through `std::error::Error::source`.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

impl Error {
    /// A file that could not be read or written: its path, what was being done, and why.
    pub fn io(path: &std::path::Path, what: impl Into<String>, source: impl Into<Source>) -> Self {
        Error::Io {
            path: path.display().to_string(),
            what: what.into(),
            source: source.into(),
        }
    }

    /// A checkpoint that cannot be used, and why.
    pub fn checkpoint(path: &std::path::Path, problem: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.display().to_string(),
            problem: problem.into(),
            source: None,
        }
    }

    /// The same error with the lower-level error behind it attached (checkpoint errors; other
    /// variants are returned unchanged).
    pub fn with_source(self, source: impl Into<Source>) -> Self {
        match self {
            Error::Checkpoint { path, problem, .. } => Error::Checkpoint {
                path,
                problem,
                source: Some(source.into()),
            },
            other => other,
        }
    }
}
