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
        InferError::Runtime(candle_message(&e))
    }
}

/// A candle error's message without the backtrace candle appends when `RUST_BACKTRACE` is
/// set: a message shown to users names what is wrong with the model, not this program's
/// stack.
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        candle_core::Error::WithPath { inner, path } => {
            format!("{}: {}", path.display(), candle_message(inner))
        }
        other => other.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, InferError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candle_message_leaves_the_backtrace_out() {
        let e = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("shape mismatch for w".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert!(
            e.to_string().len() > "shape mismatch for w".len(),
            "candle shows it"
        );
        let plain = candle_message(&e.context("Llama decoder"));
        assert_eq!(plain, "Llama decoder: shape mismatch for w");
    }
}
