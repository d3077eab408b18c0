//! The crate's one error type: why a model cannot be loaded or a request answered.

/// Why a model cannot be loaded or a request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The repository's files do not describe a model this crate runs.
    #[error("{0}")]
    Unsupported(String),
    /// The files are there but wrong (bad JSON, missing tensor, wrong shape).
    #[error("the model's files cannot be loaded: {0}")]
    BadModel(String),
    /// The request cannot be run (too long, bad parameter).
    #[error("{0}")]
    BadInput(String),
    /// A failure of the tensor library while running a loaded model.
    #[error("inference failed: {0}")]
    Runtime(String),
}

impl From<candle_core::Error> for InferError {
    fn from(e: candle_core::Error) -> Self {
        InferError::Runtime(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, InferError>;
