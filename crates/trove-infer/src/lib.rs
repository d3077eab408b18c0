//! In-process model inference for the models a hub hosts: BERT-family encoders (BERT,
//! DistilBERT, RoBERTa: embeddings with sentence-transformers pooling, sequence and token
//! classification, masked-token prediction) and decoders (Llama/Mistral, Qwen2, GPT-2, and
//! GGUF Llama, Qwen2, Qwen3, Phi-3: text generation, chat with the repository's template), on candle.
//!
//! The crate knows model files, not repositories: the caller hands it the bytes of
//! `config.json`, `tokenizer.json`, the safetensors files and the optional side files, and
//! gets a [`Model`] whose methods are synchronous and CPU-bound (run them off async threads).

mod arch;
mod bert;
mod chat;
mod cpu;
mod decoder;
mod encoder;
mod entities;
mod error;
mod files;
mod gguf;
mod gpt2;
mod llama;
mod quantized;
mod text;

/// The device type models are loaded on, so callers need not depend on candle.
pub use candle_core::Device;
pub use chat::{ChatMessage, ChatTemplate};
pub use decoder::{
    Decoder, DecoderKind, FinishReason, Generated, GeneratedToken, GenerationParams,
};
pub use encoder::{
    Encoder, EncoderKind, Fill, Head, MAX_BATCH, Pooling, ScoreFunction, TokenLabel,
};
pub use entities::{Aggregation, Entity, entities};
pub use error::{InferError, Result};
pub use files::{ModelFiles, architectures, estimated_bytes};
pub use gguf::{GgufFacts, MAX_HEADER_BYTES as GGUF_MAX_HEADER_BYTES, inspect as inspect_gguf};
pub use text::{mask_token, tokenizer_json_has};

use serde_json::Value;

/// What a repository's `config.json` says it is, before any weight is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// A BERT-shaped encoder (`bert`, `distilbert`, `roberta`, `xlm-roberta`).
    Encoder(EncoderKind),
    /// A decoder (`llama`, `mistral`, `qwen2`, `gpt2`).
    Decoder(DecoderKind),
}

impl Family {
    /// The family of a `config.json`, or why it is not run here.
    pub fn of(config: &Value) -> Result<Family> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if model_type.is_empty() {
            return Err(InferError::Unsupported(
                "config.json has no `model_type`".into(),
            ));
        }
        if let Some(kind) = EncoderKind::of(model_type) {
            return Ok(Family::Encoder(kind));
        }
        if let Some(kind) = DecoderKind::of(model_type) {
            return Ok(Family::Decoder(kind));
        }
        Err(InferError::Unsupported(format!(
            "models of type `{model_type}` are not run by this hub (supported: bert, distilbert, \
             roberta, xlm-roberta, llama, mistral, qwen2, gpt2)"
        )))
    }

    pub fn is_encoder(self) -> bool {
        matches!(self, Family::Encoder(_))
    }
}

/// A loaded model.
pub enum Model {
    Encoder(Encoder),
    Decoder(Decoder),
}

impl Model {
    /// Loads a model from its files onto `device`: safetensors weights as f32, a GGUF's
    /// weight matrices as they are quantized.
    pub fn load(mut files: ModelFiles, device: &Device) -> Result<Model> {
        if let Some(gguf) = files.gguf.take() {
            return Ok(Model::Decoder(Decoder::load_gguf(files, gguf, device)?));
        }
        match Family::of(&files.config)? {
            Family::Encoder(_) => Ok(Model::Encoder(Encoder::load(files, device)?)),
            Family::Decoder(_) => Ok(Model::Decoder(Decoder::load(files, device)?)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Tensor};
    use serde_json::json;
    use std::collections::HashMap;

    /// Greedy decoding of `max_new_tokens` tokens, no stop strings.
    pub(crate) fn greedy(max_new_tokens: usize) -> GenerationParams {
        GenerationParams {
            max_new_tokens,
            temperature: None,
            top_k: None,
            top_p: None,
            do_sample: false,
            seed: 1,
            stop: Vec::new(),
            logprobs: false,
        }
    }

    const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":{"type":"WhitespaceSplit"},"post_processor":null,
        "decoder":null,"model":{"type":"WordLevel","vocab":{"<unk>":0,"a":1,"b":2},"unk_token":"<unk>"}}"#;

    fn safetensors(tensors: &[(&str, Tensor)]) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| ((*n).to_owned(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, &path).expect("saved");
        std::fs::read(&path).expect("read back")
    }

    fn llama_config() -> Value {
        json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 3,
               "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1,
               "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-6,
               "max_position_embeddings": 16})
    }

    fn files(config: Value, weights: Vec<Vec<u8>>) -> ModelFiles {
        ModelFiles {
            config,
            tokenizer: TOKENIZER.as_bytes().to_vec(),
            tokenizer_config: None,
            st_modules: None,
            st_pooling: None,
            weights,
            gguf: None,
        }
    }

    #[test]
    fn missing_weights_are_a_bad_model_not_a_panic() {
        let embed = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).expect("tensor");
        let weights = safetensors(&[("model.embed_tokens.weight", embed)]);
        let err = Model::load(files(llama_config(), vec![weights]), &Device::Cpu)
            .err()
            .expect("refused");
        assert!(matches!(err, InferError::BadModel(_)), "{err}");
    }

    #[test]
    fn garbage_weights_and_unknown_families_are_refused() {
        let err = Model::load(
            files(llama_config(), vec![b"not safetensors".to_vec()]),
            &Device::Cpu,
        )
        .err()
        .expect("refused");
        assert!(matches!(err, InferError::BadModel(_)), "{err}");
        let err = Model::load(files(json!({"model_type": "t5"}), vec![]), &Device::Cpu)
            .err()
            .expect("refused");
        assert!(matches!(err, InferError::Unsupported(_)), "{err}");
        assert!(Family::of(&json!({})).is_err());
        assert_eq!(
            Family::of(&json!({"model_type": "mistral"})).expect("ok"),
            Family::Decoder(DecoderKind::Llama)
        );
    }

    /// The safetensors of a complete one-layer Llama of `llama_config()`.
    fn tiny_llama_weights() -> Vec<u8> {
        let cpu = &Device::Cpu;
        let mut tensors = vec![
            (
                "model.embed_tokens.weight",
                Tensor::arange(0f32, 12., cpu).and_then(|t| t.reshape((3, 4))),
            ),
            ("model.norm.weight", Tensor::ones(4, DType::F32, cpu)),
            (
                "lm_head.weight",
                Tensor::arange(0f32, 12., cpu).and_then(|t| t.reshape((3, 4))),
            ),
        ];
        let p = "model.layers.0.";
        let names: [(&str, (usize, usize)); 7] = [
            ("self_attn.q_proj.weight", (4, 4)),
            ("self_attn.k_proj.weight", (2, 4)),
            ("self_attn.v_proj.weight", (2, 4)),
            ("self_attn.o_proj.weight", (4, 4)),
            ("mlp.gate_proj.weight", (8, 4)),
            ("mlp.up_proj.weight", (8, 4)),
            ("mlp.down_proj.weight", (4, 8)),
        ];
        let owned: Vec<(String, candle_core::Result<Tensor>)> = names
            .iter()
            .map(|(n, shape)| {
                (
                    format!("{p}{n}"),
                    Tensor::ones(*shape, DType::F32, cpu).and_then(|t| t * 0.1),
                )
            })
            .chain(
                ["input_layernorm.weight", "post_attention_layernorm.weight"]
                    .iter()
                    .map(|n| (format!("{p}{n}"), Tensor::ones(4, DType::F32, cpu))),
            )
            .collect();
        let mut all: Vec<(&str, Tensor)> = Vec::new();
        for (n, t) in tensors.drain(..) {
            all.push((n, t.expect("tensor")));
        }
        for (n, t) in &owned {
            all.push((n.as_str(), t.as_ref().expect("tensor").clone()));
        }
        safetensors(&all)
    }

    #[test]
    fn a_complete_tiny_llama_generates_greedily_and_deterministically() {
        let cpu = &Device::Cpu;
        let model =
            Model::load(files(llama_config(), vec![tiny_llama_weights()]), cpu).expect("loads");
        assert_eq!(
            model.memory_bytes(),
            4 * (12 + 4 + 12 + 16 + 8 + 8 + 16 + 32 + 32 + 32 + 8)
        );
        let Model::Decoder(decoder) = model else {
            panic!("a decoder")
        };
        let params = greedy(5);
        let mut pieces = Vec::new();
        let first = decoder
            .generate("a b", &params, true, &mut |piece, id| {
                pieces.push((piece.to_owned(), id));
                true
            })
            .expect("generates");
        assert_eq!(first.tokens.len(), 5);
        assert_eq!(first.finish, FinishReason::Length);
        assert_eq!(
            pieces.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
            first.token_ids()
        );
        let again = decoder
            .generate("a b", &params, true, &mut |_, _| true)
            .expect("generates");
        assert_eq!(
            again.token_ids(),
            first.token_ids(),
            "greedy is deterministic"
        );
        let stopped = decoder
            .generate("a b", &params, true, &mut |_, _| false)
            .expect("generates");
        assert_eq!(
            stopped.tokens.len(),
            1,
            "the reader stopping ends the generation"
        );
        let too_long = decoder.generate(&"a ".repeat(20), &params, true, &mut |_, _| true);
        assert!(matches!(too_long, Err(InferError::BadInput(_))));
    }

    /// A sentencepiece-style tokenizer: `▁` marks a word's leading space, and the Metaspace
    /// decoder drops it from the first token it decodes.
    const METASPACE_TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
        "added_tokens":[],"normalizer":null,
        "pre_tokenizer":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true},
        "post_processor":null,
        "decoder":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true},
        "model":{"type":"WordLevel","vocab":{"<unk>":0,"\u2581a":1,"\u2581b":2},"unk_token":"<unk>"}}"#;

    #[test]
    fn generated_tokens_carry_their_text_and_log_probability_when_asked() {
        let Model::Decoder(decoder) = Model::load(
            files(llama_config(), vec![tiny_llama_weights()]),
            &Device::Cpu,
        )
        .expect("loads") else {
            panic!("a decoder")
        };
        let plain = decoder
            .generate("a b", &greedy(4), true, &mut |_, _| true)
            .expect("generates");
        assert!(plain.tokens.iter().all(|t| t.logprob.is_none()));
        let mut params = greedy(4);
        params.logprobs = true;
        assert!(!params.samples(), "greedy draws nothing at random");
        let mut streamed = Vec::new();
        let out = decoder
            .generate("a b", &params, true, &mut |_, id| {
                streamed.push(id);
                true
            })
            .expect("generates");
        assert_eq!(
            out.token_ids(),
            plain.token_ids(),
            "asking changes nothing generated"
        );
        assert_eq!(
            streamed,
            out.token_ids(),
            "each token carrying its details is the one handed to the reader, in order"
        );
        let texts: String = out.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, out.text, "the pieces make the text");
        for t in &out.tokens {
            let lp = t.logprob.expect("asked for");
            assert!(lp.is_finite() && lp <= 0.0, "{lp}");
        }
    }

    #[test]
    fn generated_text_keeps_the_space_a_metaspace_decoder_drops_from_a_first_token() {
        let mut model_files = files(llama_config(), vec![tiny_llama_weights()]);
        model_files.tokenizer = METASPACE_TOKENIZER.as_bytes().to_vec();
        let Model::Decoder(decoder) = Model::load(model_files, &Device::Cpu).expect("loads") else {
            panic!("a decoder")
        };
        let mut pieces = String::new();
        let out = decoder
            .generate("a b", &greedy(4), true, &mut |piece, _| {
                pieces.push_str(piece);
                true
            })
            .expect("generates");
        let text = crate::text::Text::load(METASPACE_TOKENIZER.as_bytes()).expect("tokenizer");
        let prompt = text.encode("a b", true, 16).expect("encodes").ids;
        assert_eq!(text.decode(&prompt).expect("decodes"), "a b");
        let whole = text
            .decode(&[prompt.clone(), out.token_ids()].concat())
            .expect("decodes");
        assert_eq!(out.text, whole["a b".len()..], "the pipeline's rule");
        let alone = text.decode(&out.token_ids()).expect("decodes");
        assert!(
            out.token_ids().iter().any(|id| *id != 0) && out.text.starts_with(' '),
            "the words generated start with their space: {:?} ({:?})",
            out.text,
            out.token_ids()
        );
        assert_ne!(
            out.text, alone,
            "decoding the generated tokens alone loses it"
        );
        assert_eq!(pieces, out.text, "the streamed pieces add up to the text");
    }

    /// A tiny Llama GGUF written with candle's own writer: Q8_0 matrices, F32 norms.
    fn tiny_gguf(metadata_override: Option<(&str, u32)>) -> Vec<u8> {
        use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
        let cpu = &Device::Cpu;
        let (vocab, hidden, inner) = (3usize, 32usize, 64usize);
        let matrix = |rows: usize, cols: usize, seed: f64| {
            let t = Tensor::arange(0f32, (rows * cols) as f32, cpu)
                .and_then(|t| (t * seed)?.sin())
                .and_then(|t| t.reshape((rows, cols)))
                .expect("tensor");
            QTensor::quantize(&t, GgmlDType::Q8_0).expect("quantized")
        };
        let norm = || {
            QTensor::quantize(
                &Tensor::ones(hidden, DType::F32, cpu).expect("ones"),
                GgmlDType::F32,
            )
            .expect("f32")
        };
        let mut tensors: Vec<(String, QTensor)> = vec![
            ("token_embd.weight".into(), matrix(vocab, hidden, 0.37)),
            ("output_norm.weight".into(), norm()),
            ("output.weight".into(), matrix(vocab, hidden, 0.11)),
        ];
        for (name, rows, cols) in [
            ("attn_q", hidden, hidden),
            ("attn_k", hidden / 2, hidden),
            ("attn_v", hidden / 2, hidden),
            ("attn_output", hidden, hidden),
            ("ffn_gate", inner, hidden),
            ("ffn_up", inner, hidden),
            ("ffn_down", hidden, inner),
        ] {
            tensors.push((format!("blk.0.{name}.weight"), matrix(rows, cols, 0.05)));
        }
        tensors.push(("blk.0.attn_norm.weight".into(), norm()));
        tensors.push(("blk.0.ffn_norm.weight".into(), norm()));
        let u = gguf_file::Value::U32;
        let mut metadata: Vec<(&str, gguf_file::Value)> = vec![
            (
                "general.architecture",
                gguf_file::Value::String("llama".into()),
            ),
            ("llama.attention.head_count", u(2)),
            ("llama.attention.head_count_kv", u(1)),
            ("llama.block_count", u(1)),
            ("llama.embedding_length", u(hidden as u32)),
            ("llama.rope.dimension_count", u(16)),
            ("llama.context_length", u(16)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                gguf_file::Value::F32(1e-5),
            ),
        ];
        if let Some((key, value)) = metadata_override {
            metadata.retain(|(k, _)| *k != key);
            metadata.push((key, u(value)));
        }
        let mut out = std::io::Cursor::new(Vec::new());
        let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut out, &md, &ts).expect("written");
        out.into_inner()
    }

    fn gguf_files(gguf: Vec<u8>) -> ModelFiles {
        ModelFiles {
            gguf: Some(gguf),
            ..files(json!({}), Vec::new())
        }
    }

    #[test]
    fn a_tiny_gguf_llama_generates_and_broken_ones_are_refused() {
        let model = Model::load(gguf_files(tiny_gguf(None)), &Device::Cpu).expect("loads");
        let Model::Decoder(decoder) = model else {
            panic!("a decoder")
        };
        let params = greedy(4);
        let first = decoder
            .generate("a b", &params, true, &mut |_, _| true)
            .expect("generates");
        assert_eq!(first.tokens.len(), 4);
        let again = decoder
            .generate("a b", &params, true, &mut |_, _| true)
            .expect("generates");
        assert_eq!(
            again.token_ids(),
            first.token_ids(),
            "each generation starts afresh"
        );
        let too_long = decoder.generate(&"a ".repeat(20), &params, true, &mut |_, _| true);
        assert!(
            matches!(too_long, Err(InferError::BadInput(_))),
            "context_length 16"
        );

        // Hyperparameters that would make candle divide by zero or allocate without bound.
        for (key, value) in [
            ("llama.attention.head_count", 0),
            ("llama.attention.head_count_kv", 3),
            ("llama.block_count", u32::MAX),
            ("llama.rope.dimension_count", u32::MAX),
            ("llama.embedding_length", 64),
        ] {
            let err = Model::load(gguf_files(tiny_gguf(Some((key, value)))), &Device::Cpu)
                .err()
                .expect("refused");
            assert!(matches!(err, InferError::BadModel(_)), "{key}: {err}");
        }
        let mut truncated = tiny_gguf(None);
        truncated.truncate(truncated.len() - 10);
        let err = Model::load(gguf_files(truncated), &Device::Cpu)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("past the end of the file"),
            "{err}"
        );
    }
}
