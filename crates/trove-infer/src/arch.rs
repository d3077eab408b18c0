//! The `general.architecture` values of the GGUF files run here, and what differs between
//! them that both the header walk and the model checks need.

use crate::error::{InferError, Result};

/// The architectures run, for the refusal of the others.
pub(crate) const SUPPORTED: &str = "llama (which covers Mistral's GGUF files), qwen2, qwen3, phi3";

/// A `general.architecture` run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
}

impl Arch {
    pub(crate) fn of(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "phi3" => Some(Arch::Phi3),
            _ => None,
        }
    }

    /// The architecture of a file's `general.architecture`, or why it is not run.
    pub(crate) fn run(name: &str) -> Result<Arch> {
        Arch::of(name).ok_or_else(|| {
            InferError::Unsupported(format!(
                "GGUF models of architecture `{name}` are not run by this hub (supported: \
                 {SUPPORTED})"
            ))
        })
    }

    /// The prefix of its metadata keys.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
        }
    }

    /// Tensors every block has at least (the lower bound a `block_count` is checked by).
    pub(crate) fn tensors_per_block(self) -> u64 {
        match self {
            Arch::Llama => 9,
            Arch::Qwen2 => 12,
            Arch::Qwen3 => 11,
            Arch::Phi3 => 6,
        }
    }

    /// Whether candle reads the token embeddings a second time for a file without
    /// `output.weight` (a tied head), rather than sharing them.
    pub(crate) fn copies_tied_head(name: &str) -> bool {
        matches!(Arch::of(name), Some(Arch::Qwen2 | Arch::Qwen3))
    }
}
