//! A model's files as the caller hands them over, and the helpers that read them: the
//! architectures `config.json` lists, safetensors weights as f32 tensors, and candle's
//! constructors run so that a panic on malformed weights is an error.

use crate::error::{InferError, Result, candle_message};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::collections::HashMap;

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
    /// A GGUF file, which then holds the weights (and `config` may be empty).
    pub gguf: Option<Vec<u8>>,
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

/// Reads every safetensors buffer into tensors on `device` (converted to f32); the buffers
/// are dropped as they are read, so the weights are held once.
pub(crate) fn load_weights(
    weights: Vec<Vec<u8>>,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, u64)> {
    if weights.is_empty() {
        return Err(InferError::BadModel("no safetensors weights".into()));
    }
    let mut all = HashMap::new();
    let mut bytes = 0u64;
    for buffer in weights {
        let tensors = candle_core::safetensors::load_buffer(&buffer, device)
            .map_err(|e| InferError::BadModel(format!("safetensors: {}", candle_message(&e))))?;
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
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> candle_core::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(InferError::BadModel(format!(
            "{what}: {}",
            candle_message(&e)
        ))),
        Err(_) => Err(InferError::BadModel(format!(
            "{what}: the weights do not match the configuration"
        ))),
    }
}
