//! In-process model inference for the models a hub hosts: BERT-family encoders (embeddings
//! with sentence-transformers pooling, sequence classification) and Llama-family decoders
//! (text generation, chat with the repository's template), on candle.
//!
//! The crate knows model files, not repositories: the caller hands it the bytes of
//! `config.json`, `tokenizer.json`, the safetensors files and the optional side files, and
//! gets a [`Model`] whose methods are synchronous and CPU-bound (run them off async threads).

mod chat;
mod decoder;
mod encoder;
mod text;

pub use chat::{ChatMessage, ChatTemplate};
pub use decoder::{Decoder, FinishReason, Generated, GenerationParams};
pub use encoder::{Encoder, Pooling, ScoreFunction};
/// The device type models are loaded on, so callers need not depend on candle.
pub use candle_core::Device;

use candle_core::{DType, Tensor};
use serde_json::Value;
use std::collections::HashMap;

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

/// The files of one model repository at one revision, as bytes.
pub struct ModelFiles {
    /// `config.json`.
    pub config: Value,
    /// `tokenizer.json`.
    pub tokenizer: Vec<u8>,
    /// `tokenizer_config.json`: the chat template and the special tokens it names.
    pub tokenizer_config: Option<Value>,
    /// sentence-transformers' `modules.json`, when the repository is one.
    pub st_modules: Option<Value>,
    /// sentence-transformers' pooling module config (`1_Pooling/config.json`).
    pub st_pooling: Option<Value>,
    /// Every safetensors file of the weights (one, or the shards of an index).
    pub weights: Vec<Vec<u8>>,
}

/// What a repository's `config.json` says it is, before any weight is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// BERT-style encoder (`bert`, and the layouts that share its weights' names).
    Bert,
    /// Llama-style decoder (`llama`, `mistral` without sliding windows).
    Llama,
}

impl Family {
    /// The family of a `config.json`, or why it is not run here.
    pub fn of(config: &Value) -> Result<Family> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match model_type {
            "bert" => Ok(Family::Bert),
            "llama" | "mistral" => Ok(Family::Llama),
            "" => Err(InferError::Unsupported(
                "config.json has no `model_type`".into(),
            )),
            other => Err(InferError::Unsupported(format!(
                "models of type `{other}` are not run by this hub (supported: bert, llama, mistral)"
            ))),
        }
    }
}

/// The architectures `config.json` lists (`BertForSequenceClassification`…).
pub fn architectures(config: &Value) -> Vec<String> {
    config
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A loaded model.
pub enum Model {
    Encoder(Encoder),
    Decoder(Decoder),
}

impl Model {
    /// Loads a model from its files onto `device`, weights as f32.
    pub fn load(files: ModelFiles, device: &Device) -> Result<Model> {
        match Family::of(&files.config)? {
            Family::Bert => Ok(Model::Encoder(Encoder::load(files, device)?)),
            Family::Llama => Ok(Model::Decoder(Decoder::load(files, device)?)),
        }
    }

    /// Bytes the loaded weights take in memory.
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Model::Encoder(e) => e.memory_bytes(),
            Model::Decoder(d) => d.memory_bytes(),
        }
    }
}

/// The device inference runs on: the first CUDA GPU in a `cuda` build when there is one,
/// else the CPU.
#[cfg(feature = "cuda")]
pub fn default_device() -> Device {
    Device::new_cuda(0).unwrap_or(Device::Cpu)
}

/// The device inference runs on: the CPU (a build without the `cuda` feature).
#[cfg(not(feature = "cuda"))]
pub fn default_device() -> Device {
    Device::Cpu
}

/// Reads every safetensors buffer into tensors on `device` (converted to f32); the buffers
/// are dropped as they are read, so the weights are held once.
fn load_weights(weights: Vec<Vec<u8>>, device: &Device) -> Result<(HashMap<String, Tensor>, u64)> {
    if weights.is_empty() {
        return Err(InferError::BadModel("no safetensors weights".into()));
    }
    let mut all = HashMap::new();
    let mut bytes = 0u64;
    for buffer in weights {
        let tensors = candle_core::safetensors::load_buffer(&buffer, device)
            .map_err(|e| InferError::BadModel(format!("safetensors: {e}")))?;
        drop(buffer);
        for (name, tensor) in tensors {
            let tensor = if tensor.dtype() == DType::F32 {
                tensor
            } else {
                tensor.to_dtype(DType::F32)?
            };
            bytes += (tensor.elem_count() * 4) as u64;
            all.insert(name, tensor);
        }
    }
    Ok((all, bytes))
}

/// Estimated memory of a model's weights once loaded as f32, from its safetensors headers'
/// parameter count: what the registry checks against its budget before loading.
pub fn estimated_bytes(parameters: u64) -> u64 {
    parameters.saturating_mul(4)
}

/// Runs a model constructor that may panic on malformed weights (some of candle's loaders
/// unwrap), turning the panic into [`InferError::BadModel`].
fn guarded<T>(what: &str, f: impl FnOnce() -> candle_core::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(InferError::BadModel(format!("{what}: {e}"))),
        Err(_) => Err(InferError::BadModel(format!(
            "{what}: the weights do not match the configuration"
        ))),
    }
}
