//! GGUF models of the architectures candle-transformers runs quantized — `llama` (which
//! covers Mistral's files), `qwen2`, `qwen3`, `phi3` — each architecture's hyperparameters and
//! tensors checked against each other before candle sizes anything by them, the model
//! loaded, and one generation's state.
//!
//! candle's model constructors trust the file: a head count of zero divides by zero, a
//! context length sizes the rotary table, a tensor of the wrong shape fails only in the
//! middle of a request. So every tensor a model reads is checked here for presence and
//! shape, and the sizes candle allocates by are bounded, so that a bad file is a 400 naming
//! what is wrong.

use crate::arch::Arch;
use crate::chat::ChatTemplate;
use crate::error::{InferError, Result};
use crate::files::guarded;
use crate::text::Text;
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::{Device, Tensor};
use candle_transformers::models::{
    quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
};
use std::sync::{Mutex, MutexGuard};

/// The longest context given to a `qwen2` or `qwen3` model: candle sizes its rotary table
/// by the file's `context_length`, which a hostile file may make as large as it likes.
pub(crate) const MAX_CONTEXT: usize = 32768;

/// The longest context given to a `phi3` model: candle allocates each generation's
/// key/value cache for the whole context on its first token.
pub(crate) const MAX_PHI3_CONTEXT: usize = 4096;

/// The largest head size accepted (real models use 64 to 256): the rotary table is
/// `context × head size`.
const MAX_HEAD_DIM: usize = 1024;

/// What the checks found that the decoder needs.
pub(crate) struct Shape {
    pub(crate) arch: Arch,
    /// Tokens a sequence may hold.
    pub(crate) context: usize,
}

fn bad<T>(why: String) -> Result<T> {
    Err(InferError::BadModel(format!("GGUF: {why}")))
}

pub(crate) fn gguf_u32(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn gguf_f32(content: &Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// Checks `content` (a file of `tensors` tensors whose header [`crate::gguf::inspect`]
/// passed) as a model of `arch`, and bounds the context candle will size its
/// rotary table by (rewriting `{arch}.context_length` when it is larger).
pub(crate) fn check(content: &mut Content, tensors: u64, arch: Arch) -> Result<Shape> {
    let p = arch.name();
    let get = |key: &str| -> Result<usize> {
        let key = format!("{p}.{key}");
        gguf_u32(content, &key)
            .map(|v| v as usize)
            .ok_or_else(|| InferError::BadModel(format!("GGUF: no `{key}` (u32) in the metadata")))
    };
    let heads = get("attention.head_count")?;
    let kv_heads = get("attention.head_count_kv")?;
    let blocks = get("block_count")?;
    let hidden = get("embedding_length")?;
    let eps_key = format!("{p}.attention.layer_norm_rms_epsilon");
    match gguf_f32(content, &eps_key) {
        Some(eps) if eps.is_finite() && eps >= 0.0 => {}
        Some(eps) => return bad(format!("`{eps_key}` is {eps}")),
        None => return bad(format!("no `{eps_key}` (f32) in the metadata")),
    }
    let base_key = format!("{p}.rope.freq_base");
    match gguf_f32(content, &base_key) {
        // candle's Phi-3 rotates at base 10,000 whatever the file says.
        Some(base) if arch == Arch::Phi3 && base != 10000.0 => {
            return Err(InferError::Unsupported(format!(
                "GGUF: `{base_key}` is {base}; candle's Phi-3, which this hub runs, rotates \
                 at base 10000 only"
            )));
        }
        Some(base) if base.is_finite() && base > 0.0 => {}
        Some(base) => return bad(format!("`{base_key}` is {base}")),
        // candle's qwen3 has no default.
        None if arch == Arch::Qwen3 => {
            return bad(format!("no `{base_key}` (f32) in the metadata"));
        }
        None => {}
    }
    if arch == Arch::Phi3
        && ["rope_factors_long.weight", "rope_factors_short.weight"]
            .iter()
            .any(|t| content.tensor_infos.contains_key(*t))
    {
        return Err(InferError::Unsupported(
            "GGUF: phi3 files with LongRoPE factors (rope_factors_long/short: Phi-3-128k, \
             Phi-3.5) are not run by this hub: candle's Phi-3 does not apply them"
                .into(),
        ));
    }
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return bad("attention.head_count_kv does not divide attention.head_count".into());
    }
    let head_dim = match arch {
        // Qwen3's heads need not split the embedding: their size is its own key.
        Arch::Qwen3 => {
            let d = get("attention.key_length")?;
            if let Some(v) = gguf_u32(content, &format!("{p}.attention.value_length"))
                && v as usize != d
            {
                return bad("attention.value_length differs from attention.key_length".into());
            }
            d
        }
        Arch::Llama | Arch::Qwen2 | Arch::Phi3 => {
            if hidden == 0 || !hidden.is_multiple_of(heads) {
                return bad("attention.head_count does not divide embedding_length".into());
            }
            hidden / heads
        }
    };
    if head_dim == 0 || head_dim > MAX_HEAD_DIM || !head_dim.is_multiple_of(2) {
        return bad(format!(
            "the head size {head_dim} is not an even number up to {MAX_HEAD_DIM}"
        ));
    }
    if matches!(arch, Arch::Llama | Arch::Phi3) && get("rope.dimension_count")? != head_dim {
        // candle rotates whole heads with a table of this size.
        return bad("rope.dimension_count is not the head size".into());
    }
    let experts = match arch {
        Arch::Llama => gguf_u32(content, "llama.expert_count").unwrap_or(0) as usize,
        _ => 0,
    };
    if (blocks as u64).saturating_mul(arch.tensors_per_block()) > tensors
        || (experts as u64).saturating_mul(3) > tensors
    {
        return bad("block_count or expert_count is larger than the tensors in the file".into());
    }
    if experts > 1 {
        let used = gguf_u32(content, "llama.expert_used_count").unwrap_or(0) as usize;
        if used == 0 || used > experts {
            return bad(format!(
                "llama.expert_used_count {used} is not between 1 and expert_count"
            ));
        }
    }

    let t = Tensors(content);
    let vocab = match t.dims("token_embd.weight")? {
        [vocab, h] if *h == hidden && *vocab > 0 => *vocab,
        dims => {
            return bad(format!(
                "token_embd.weight is {dims:?}, not [vocabulary, embedding_length {hidden}]"
            ));
        }
    };
    t.expect("output_norm.weight", &[hidden])?;
    // candle's Phi-3 has no tied head.
    if arch == Arch::Phi3 || content.tensor_infos.contains_key("output.weight") {
        t.expect("output.weight", &[vocab, hidden])?;
    }
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    // Phi-3's feed-forward is one fused gate-and-up matrix split at this width.
    let phi3_inner = match arch {
        Arch::Phi3 => match get("feed_forward_length")? {
            0 => return bad("phi3.feed_forward_length is 0".into()),
            inner => inner,
        },
        _ => 0,
    };
    for b in 0..blocks {
        let n = |s: &str| format!("blk.{b}.{s}");
        t.expect(&n("attn_norm.weight"), &[hidden])?;
        t.expect(&n("ffn_norm.weight"), &[hidden])?;
        if arch == Arch::Phi3 {
            t.expect(&n("attn_qkv.weight"), &[q + 2 * kv, hidden])?;
            t.expect(&n("attn_output.weight"), &[hidden, q])?;
            t.expect(&n("ffn_up.weight"), &[2 * phi3_inner, hidden])?;
            t.expect(&n("ffn_down.weight"), &[hidden, phi3_inner])?;
            continue;
        }
        t.expect(&n("attn_q.weight"), &[q, hidden])?;
        t.expect(&n("attn_k.weight"), &[kv, hidden])?;
        t.expect(&n("attn_v.weight"), &[kv, hidden])?;
        t.expect(&n("attn_output.weight"), &[hidden, q])?;
        match arch {
            Arch::Qwen2 => {
                t.expect(&n("attn_q.bias"), &[q])?;
                t.expect(&n("attn_k.bias"), &[kv])?;
                t.expect(&n("attn_v.bias"), &[kv])?;
            }
            Arch::Qwen3 => {
                t.expect(&n("attn_q_norm.weight"), &[head_dim])?;
                t.expect(&n("attn_k_norm.weight"), &[head_dim])?;
            }
            Arch::Llama | Arch::Phi3 => {}
        }
        if experts > 1 {
            t.expect(&n("ffn_gate_inp.weight"), &[experts, hidden])?;
            for e in 0..experts {
                t.mlp(
                    hidden,
                    &n(&format!("ffn_gate.{e}.weight")),
                    &n(&format!("ffn_up.{e}.weight")),
                    &n(&format!("ffn_down.{e}.weight")),
                )?;
            }
        } else {
            t.mlp(
                hidden,
                &n("ffn_gate.weight"),
                &n("ffn_up.weight"),
                &n("ffn_down.weight"),
            )?;
        }
    }

    let context_key = format!("{p}.context_length");
    let context = match arch {
        Arch::Llama => gguf_u32(content, &context_key)
            .map_or(quantized_llama::MAX_SEQ_LEN, |c| c as usize)
            .min(quantized_llama::MAX_SEQ_LEN),
        Arch::Qwen2 | Arch::Qwen3 | Arch::Phi3 => {
            let context = get("context_length")?;
            if context == 0 {
                return bad(format!("`{context_key}` is 0"));
            }
            let most = match arch {
                Arch::Phi3 => MAX_PHI3_CONTEXT,
                _ => MAX_CONTEXT,
            };
            let bounded = context.min(most);
            content
                .metadata
                .insert(context_key, Value::U32(bounded as u32));
            bounded
        }
    };
    Ok(Shape { arch, context })
}

/// The tensor infos, looked up with errors that name the tensor.
struct Tensors<'a>(&'a Content);

impl Tensors<'_> {
    fn dims(&self, name: &str) -> Result<&[usize]> {
        match self.0.tensor_infos.get(name) {
            Some(info) => Ok(info.shape.dims()),
            None => bad(format!("no tensor {name}")),
        }
    }

    fn expect(&self, name: &str, dims: &[usize]) -> Result<()> {
        let got = self.dims(name)?;
        if got != dims {
            return bad(format!("{name} is {got:?}, not {dims:?}"));
        }
        Ok(())
    }

    /// A gated feed-forward block of any inner width.
    fn mlp(&self, hidden: usize, gate: &str, up: &str, down: &str) -> Result<()> {
        let inner = match self.dims(gate)? {
            [inner, h] if *h == hidden && *inner > 0 => *inner,
            got => return bad(format!("{gate} is {got:?}, not [inner, {hidden}]")),
        };
        self.expect(up, &[inner, hidden])?;
        self.expect(down, &[hidden, inner])
    }
}

/// A loaded GGUF model.
pub(crate) enum QuantizedNet {
    /// candle keeps the key/value cache inside the model: each generation runs on a clone
    /// (the quantized weights are shared, not copied).
    Llama(quantized_llama::ModelWeights),
    /// candle's quantized Qwen2 cannot be cloned: generations take turns on the one model
    /// (its cache restarts at position 0). With the default one request per model at a
    /// time, nothing waits longer than it would anyway.
    Qwen2(Mutex<quantized_qwen2::ModelWeights>),
    Qwen3(quantized_qwen3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
}

/// One generation's model (and so its key/value cache).
pub(crate) enum QuantizedState<'a> {
    Llama(Box<quantized_llama::ModelWeights>),
    Qwen2(MutexGuard<'a, quantized_qwen2::ModelWeights>),
    Qwen3(Box<quantized_qwen3::ModelWeights>),
    Phi3(Box<quantized_phi3::ModelWeights>),
}

impl QuantizedNet {
    /// Loads the checked `content` from `reader`.
    pub(crate) fn load<R: std::io::Read + std::io::Seek>(
        arch: Arch,
        content: Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<QuantizedNet> {
        Ok(match arch {
            Arch::Llama => QuantizedNet::Llama(guarded("GGUF Llama", || {
                quantized_llama::ModelWeights::from_gguf(content, reader, device)
            })?),
            Arch::Qwen2 => QuantizedNet::Qwen2(Mutex::new(guarded("GGUF Qwen2", || {
                quantized_qwen2::ModelWeights::from_gguf(content, reader, device)
            })?)),
            Arch::Qwen3 => QuantizedNet::Qwen3(guarded("GGUF Qwen3", || {
                quantized_qwen3::ModelWeights::from_gguf(content, reader, device)
            })?),
            // Without flash attention (a CUDA kernel this build does not have).
            Arch::Phi3 => QuantizedNet::Phi3(guarded("GGUF Phi-3", || {
                quantized_phi3::ModelWeights::from_gguf(false, content, reader, device)
            })?),
        })
    }

    pub(crate) fn start(&self) -> QuantizedState<'_> {
        match self {
            // The first step runs at position 0, which starts the clone's cache afresh.
            QuantizedNet::Llama(model) => QuantizedState::Llama(Box::new(model.clone())),
            QuantizedNet::Phi3(model) => QuantizedState::Phi3(Box::new(model.clone())),
            // A generation that panicked left nothing the next one reads: position 0
            // replaces the cache.
            QuantizedNet::Qwen2(model) => {
                QuantizedState::Qwen2(model.lock().unwrap_or_else(|p| p.into_inner()))
            }
            QuantizedNet::Qwen3(model) => {
                let mut model = model.clone();
                model.clear_kv_cache();
                QuantizedState::Qwen3(Box::new(model))
            }
        }
    }
}

impl QuantizedState<'_> {
    /// The next-token logits (`[vocab]`) after `ids`, which follow `position` tokens.
    pub(crate) fn step(&mut self, ids: &[u32], position: usize, device: &Device) -> Result<Tensor> {
        let x = Tensor::new(ids, device)?.unsqueeze(0)?;
        Ok(match self {
            QuantizedState::Llama(model) => model.forward(&x, position)?.squeeze(0)?,
            QuantizedState::Qwen2(model) => model.forward(&x, position)?.squeeze(0)?,
            QuantizedState::Qwen3(model) => model.forward(&x, position)?.squeeze(0)?,
            QuantizedState::Phi3(model) => model.forward(&x, position)?.squeeze(0)?,
        })
    }
}

/// The GGUF's own chat template (`tokenizer.chat_template`), with its BOS and EOS tokens,
/// for a repository without `tokenizer_config.json`.
pub(crate) fn gguf_template(content: &Content, text: &Text) -> Result<Option<ChatTemplate>> {
    let Some(Ok(source)) = content
        .metadata
        .get("tokenizer.chat_template")
        .map(gguf_file::Value::to_string)
    else {
        return Ok(None);
    };
    let token = |key: &str| {
        gguf_u32(content, key)
            .and_then(|id| text.id_to_token(id))
            .unwrap_or_default()
    };
    let config = serde_json::json!({
        "chat_template": source,
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
    });
    ChatTemplate::from_tokenizer_config(Some(&config))
}

#[cfg(test)]
mod tests;
