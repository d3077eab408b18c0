//! Decoders (Llama/Mistral, Qwen2, GPT-2; GGUF Llama, Qwen2, Qwen3, Phi-3): text generation, greedy or sampled with a seed,
//! token by token (each new piece of text handed to the caller as it is decoded, for
//! streaming).

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{InferError, Result};
use crate::files::{ModelFiles, guarded, load_weights};
use crate::gguf;
use crate::gpt2::{Gpt2, Gpt2Cache, Gpt2Config};
use crate::llama::{CpuLlama, LlamaCache};
use crate::quantized::{self, QuantizedNet, QuantizedState};
use crate::text::{Text, special_token};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::llama::{Cache, Config, Llama, LlamaConfig};
use candle_transformers::models::qwen2;
use serde_json::Value;

/// The decoder layouts this crate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderKind {
    Llama,
    Qwen2,
    Gpt2,
}

impl DecoderKind {
    /// The layout of a `config.json` `model_type`.
    pub fn of(model_type: &str) -> Option<DecoderKind> {
        match model_type {
            "llama" | "mistral" => Some(DecoderKind::Llama),
            "qwen2" => Some(DecoderKind::Qwen2),
            "gpt2" => Some(DecoderKind::Gpt2),
            _ => None,
        }
    }
}

/// A loaded network of one of the layouts.
enum Net {
    /// Llama on the CPU, in `llama.rs`'s loops (without rope scaling).
    CpuLlama(Box<CpuLlama>),
    /// Llama through candle-transformers: on other devices, or with Llama 3's rope scaling.
    Llama {
        model: Llama,
        config: Box<Config>,
    },
    /// candle's Qwen2 keeps its key/value cache inside the model: each generation runs on a
    /// clone (the weights are shared, not copied).
    Qwen2(qwen2::ModelForCausalLM),
    Gpt2(Gpt2),
    /// A GGUF model (`quantized.rs`).
    Quantized(QuantizedNet),
}

/// One generation's key/value cache.
enum State<'a> {
    CpuLlama(LlamaCache),
    Llama(Cache),
    Qwen2(Box<qwen2::ModelForCausalLM>),
    Gpt2(Gpt2Cache),
    Quantized(QuantizedState<'a>),
}

impl Net {
    fn start(&self, device: &Device) -> Result<State<'_>> {
        Ok(match self {
            Net::CpuLlama(model) => State::CpuLlama(model.start()),
            Net::Llama { config, .. } => {
                State::Llama(Cache::new(true, DType::F32, config, device)?)
            }
            Net::Qwen2(model) => {
                let mut model = model.clone();
                model.clear_kv_cache();
                State::Qwen2(Box::new(model))
            }
            Net::Gpt2(model) => State::Gpt2(model.cache()),
            Net::Quantized(model) => State::Quantized(model.start()),
        })
    }

    /// The next-token logits (`[vocab]`) after `ids`, which follow `position` tokens.
    fn step(
        &self,
        state: &mut State<'_>,
        ids: &[u32],
        position: usize,
        device: &Device,
    ) -> Result<Tensor> {
        match (self, state) {
            (Net::CpuLlama(model), State::CpuLlama(cache)) => {
                let logits = model.forward(ids, position, cache)?;
                let vocab = logits.len();
                Ok(Tensor::from_vec(logits, vocab, device)?)
            }
            (Net::Llama { model, .. }, State::Llama(cache)) => {
                let x = Tensor::new(ids, device)?.unsqueeze(0)?;
                Ok(model.forward(&x, position, cache)?.squeeze(0)?)
            }
            (Net::Qwen2(_), State::Qwen2(model)) => {
                let x = Tensor::new(ids, device)?.unsqueeze(0)?;
                Ok(model.forward(&x, position)?.squeeze(0)?.squeeze(0)?)
            }
            (Net::Gpt2(model), State::Gpt2(cache)) => model.forward(ids, position, cache),
            (Net::Quantized(_), State::Quantized(model)) => model.step(ids, position, device),
            _ => Err(InferError::Runtime("a cache of another model".into())),
        }
    }
}

/// How to generate: the TGI / OpenAI parameters the hub honours.
#[derive(Clone, Debug)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
    /// `None` or `0` → greedy.
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// Sampling is used only when `do_sample` or a temperature > 0 is given.
    pub do_sample: bool,
    pub seed: u64,
    /// Generation stops after any of these strings appears.
    pub stop: Vec<String>,
    /// Each generated token's log-probability is computed (TGI's `details`); off, nothing
    /// reads the whole distribution of a step beyond what sampling needs.
    pub logprobs: bool,
}

impl GenerationParams {
    /// Whether tokens are drawn at random (with [`GenerationParams::seed`]) rather than
    /// picked greedily.
    pub fn samples(&self) -> bool {
        !matches!(sampling(self), Sampling::ArgMax)
    }
}

/// Why generation ended, in TGI's / OpenAI's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` reached.
    Length,
    /// The end-of-sequence token.
    EosToken,
    /// A stop sequence.
    StopSequence,
}

impl FinishReason {
    /// TGI's `finish_reason`.
    pub fn tgi(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EosToken => "eos_token",
            FinishReason::StopSequence => "stop_sequence",
        }
    }

    /// OpenAI's `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EosToken | FinishReason::StopSequence => "stop",
        }
    }
}

/// A finished generation.
#[derive(Clone, Debug)]
pub struct Generated {
    pub text: String,
    /// Each generated token, in order.
    pub tokens: Vec<GeneratedToken>,
    pub prompt_tokens: usize,
    pub finish: FinishReason,
}

impl Generated {
    /// The generated tokens' ids, in order.
    pub fn token_ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.id).collect()
    }
}

/// One generated token as TGI's `details` describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    /// The text this token added to the generated text (empty while it leaves a character
    /// incomplete, or past a stop sequence).
    pub text: String,
    /// `ln p(token)` under the model's distribution for that step, before temperature,
    /// top-k or top-p; `None` unless [`GenerationParams::logprobs`].
    pub logprob: Option<f32>,
    /// Whether the tokenizer marks it special.
    pub special: bool,
}

pub struct Decoder {
    net: Net,
    text: Text,
    eos: Vec<u32>,
    template: Option<ChatTemplate>,
    max_tokens: usize,
    device: Device,
    bytes: u64,
}

impl Decoder {
    pub(crate) fn load(files: ModelFiles, device: &Device) -> Result<Decoder> {
        let bad = |e: serde_json::Error| InferError::BadModel(format!("config.json: {e}"));
        let model_type = files
            .config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = DecoderKind::of(model_type).ok_or_else(|| {
            InferError::Unsupported(format!("`{model_type}` is not a decoder run here"))
        })?;
        let (heads, kv_heads, hidden) = match kind {
            DecoderKind::Gpt2 => (
                files.config.get("n_head"),
                files.config.get("n_head"),
                files.config.get("n_embd"),
            ),
            _ => (
                files.config.get("num_attention_heads"),
                files
                    .config
                    .get("num_key_value_heads")
                    .or(files.config.get("num_attention_heads")),
                files.config.get("hidden_size"),
            ),
        };
        let number = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let (heads, kv_heads, hidden) = (number(heads), number(kv_heads), number(hidden));
        if heads == 0
            || !hidden.is_multiple_of(heads)
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(InferError::BadModel(
                "config.json: attention heads do not divide the hidden size".into(),
            ));
        }
        let text = Text::load(&files.tokenizer)?;
        let template = ChatTemplate::from_tokenizer_config(files.tokenizer_config.as_ref())?;
        let eos = eos_ids(&files, &text, None);
        let (tensors, bytes) = load_weights(files.weights, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let (net, max_tokens) = match kind {
            DecoderKind::Llama => {
                let llama_config: LlamaConfig =
                    serde_json::from_value(files.config.clone()).map_err(bad)?;
                let config = llama_config.into_config(false);
                let max = config.max_position_embeddings;
                if device.is_cpu() && CpuLlama::runs(&config) {
                    let model = guarded("Llama decoder", || CpuLlama::load(vb, &config))?;
                    (Net::CpuLlama(Box::new(model)), max)
                } else {
                    let model = guarded("Llama decoder", || Llama::load(vb, &config))?;
                    (
                        Net::Llama {
                            model,
                            config: Box::new(config),
                        },
                        max,
                    )
                }
            }
            DecoderKind::Qwen2 => {
                let config: qwen2::Config =
                    serde_json::from_value(files.config.clone()).map_err(bad)?;
                let model = guarded("Qwen2 decoder", || {
                    qwen2::ModelForCausalLM::new(&config, vb)
                })?;
                (Net::Qwen2(model), config.max_position_embeddings)
            }
            DecoderKind::Gpt2 => {
                let config: Gpt2Config =
                    serde_json::from_value(files.config.clone()).map_err(bad)?;
                let model = guarded("GPT-2 decoder", || Gpt2::load(vb, &config))?;
                (Net::Gpt2(model), config.n_positions)
            }
        };
        Ok(Decoder {
            max_tokens,
            net,
            text,
            eos,
            template,
            device: device.clone(),
            bytes,
        })
    }

    /// Loads a GGUF model (`quantized.rs`: the weight matrices stay quantized, the token
    /// embeddings are dequantized) from the file's bytes, with the repository's
    /// `tokenizer.json`.
    pub(crate) fn load_gguf(files: ModelFiles, gguf: Vec<u8>, device: &Device) -> Result<Decoder> {
        let facts = gguf::inspect(&gguf, gguf.len() as u64)?
            .ok_or_else(|| InferError::BadModel("GGUF: the file ends inside its header".into()))?;
        let arch = crate::arch::Arch::run(&facts.architecture)?;
        let mut reader = std::io::Cursor::new(gguf.as_slice());
        let mut content = gguf_file::Content::read(&mut reader).map_err(|e| {
            InferError::BadModel(format!("GGUF: {}", crate::error::candle_message(&e)))
        })?;
        let shape = quantized::check(&mut content, facts.tensors, arch)?;
        let text = Text::load(&files.tokenizer)?;
        let template = match ChatTemplate::from_tokenizer_config(files.tokenizer_config.as_ref())? {
            Some(t) => Some(t),
            None => quantized::gguf_template(&content, &text)?,
        };
        let eos = eos_ids(
            &files,
            &text,
            quantized::gguf_u32(&content, "tokenizer.ggml.eos_token_id"),
        );
        let net = QuantizedNet::load(shape.arch, content, &mut reader, device)?;
        drop(gguf);
        Ok(Decoder {
            net: Net::Quantized(net),
            text,
            eos,
            template,
            max_tokens: shape.context,
            device: device.clone(),
            bytes: facts.memory_bytes,
        })
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the repository ships a chat template.
    pub fn chats(&self) -> bool {
        self.template.is_some()
    }

    /// The prompt a conversation renders to through the repository's chat template.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        let Some(template) = &self.template else {
            return Err(InferError::Unsupported(
                "this model has no chat template (tokenizer_config.json `chat_template`)".into(),
            ));
        };
        template.render(messages)
    }

    /// Generates from `prompt`; `on_piece` receives each generated token's id with the text it
    /// added (possibly empty) and returns `false` to stop early (the reader went away).
    ///
    /// The text is what transformers' text-generation pipeline answers: the decoding of the
    /// prompt's and the generated tokens together, less as many characters as the prompt's
    /// tokens decode to alone. Decoding the generated tokens alone would lose what depends on
    /// what comes before them: a Metaspace or WordPiece decoder drops the space before the
    /// first token of what it decodes, so " the cat" would come out "the cat". Each piece is
    /// the new end of that text; a character still incomplete (its bytes spread over tokens
    /// not all generated yet, decoded as U+FFFD) waits for the token that completes it.
    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        add_special: bool,
        on_piece: &mut dyn FnMut(&str, u32) -> bool,
    ) -> Result<Generated> {
        let prompt_ids = self.text.encode(prompt, add_special, self.max_tokens)?.ids;
        if prompt_ids.is_empty() {
            return Err(InferError::BadInput("the prompt is empty".into()));
        }
        let prompt_chars = self.text.decode(&prompt_ids)?.chars().count();
        let room = self.max_tokens.saturating_sub(prompt_ids.len());
        let max_new = params.max_new_tokens.min(room);
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling(params));
        let mut state = self.net.start(&self.device)?;
        let mut all = prompt_ids.clone();
        let mut text = String::new();
        let mut emitted = String::new();
        let mut finish = FinishReason::Length;
        let mut tokens = Vec::new();
        let mut position = 0;
        while all.len() - prompt_ids.len() < max_new {
            let input = &all[position..];
            let logits = self
                .net
                .step(&mut state, input, position, &self.device)?
                .to_dtype(DType::F32)?;
            position = all.len();
            let next = sampler.sample(&logits)?;
            if self.eos.contains(&next) {
                finish = FinishReason::EosToken;
                break;
            }
            let logprob = if params.logprobs {
                Some(log_probability(&logits, next)?)
            } else {
                None
            };
            all.push(next);
            text = after_chars(&self.text.decode(&all)?, prompt_chars);
            let stop = params
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min();
            if let Some(cut) = stop {
                text.truncate(cut);
                finish = FinishReason::StopSequence;
            }
            let piece = new_piece(&text, &mut emitted, stop.is_some());
            tokens.push(GeneratedToken {
                id: next,
                text: piece.to_owned(),
                logprob,
                special: self.text.is_special(next),
            });
            if stop.is_some() {
                on_piece(piece, next);
                break;
            }
            if !on_piece(piece, next) {
                break;
            }
        }
        Ok(Generated {
            text,
            tokens,
            prompt_tokens: prompt_ids.len(),
            finish,
        })
    }
}

/// `ln softmax(logits)[id]`, summed in f64 from the largest logit down (no overflow).
fn log_probability(logits: &Tensor, id: u32) -> Result<f32> {
    let logits = logits.flatten_all()?.to_vec1::<f32>()?;
    let Some(chosen) = logits.get(id as usize) else {
        return Err(InferError::Runtime(format!(
            "token {id} is past the {} logits of the step",
            logits.len()
        )));
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|l| f64::from(l - max).exp()).sum();
    Ok((f64::from(chosen - max) - sum.ln()) as f32)
}

/// `text` without its first `chars` characters (Python's `text[chars:]`, as the pipeline
/// cuts the prompt's decoding off).
fn after_chars(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => text[at..].to_owned(),
        None => String::new(),
    }
}

/// The part of `text` not handed out yet, which is then added to `emitted`: empty while the
/// text does not extend what was handed out (a decoder may rewrite the end of a word), and
/// without a trailing incomplete character unless the text is `last`.
fn new_piece<'t>(text: &'t str, emitted: &mut String, last: bool) -> &'t str {
    let Some(rest) = text.strip_prefix(emitted.as_str()) else {
        return "";
    };
    let piece = if last {
        rest
    } else {
        rest.trim_end_matches('\u{fffd}')
    };
    emitted.push_str(piece);
    piece
}

/// The end-of-sequence tokens: `config.json`'s `eos_token_id` (one or a list), the GGUF's,
/// and `tokenizer_config.json`'s `eos_token`.
fn eos_ids(files: &ModelFiles, text: &Text, gguf: Option<u32>) -> Vec<u32> {
    let mut eos: Vec<u32> = match files.config.get("eos_token_id") {
        Some(Value::Number(n)) => n.as_u64().map(|id| vec![id as u32]).unwrap_or_default(),
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(Value::as_u64)
            .map(|id| id as u32)
            .collect(),
        _ => Vec::new(),
    };
    let named = files
        .tokenizer_config
        .as_ref()
        .and_then(|c| special_token(c, "eos_token"))
        .and_then(|t| text.token_id(&t));
    for token in [gguf, named].into_iter().flatten() {
        if !eos.contains(&token) {
            eos.push(token);
        }
    }
    eos
}

fn sampling(params: &GenerationParams) -> Sampling {
    let temperature = params.temperature.unwrap_or(0.0);
    if !(params.do_sample || temperature > 0.0) {
        return Sampling::ArgMax;
    }
    let temperature = if temperature > 0.0 { temperature } else { 1.0 };
    match (params.top_k, params.top_p) {
        (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
        (Some(k), None) => Sampling::TopK { k, temperature },
        (None, Some(p)) => Sampling::TopP { p, temperature },
        (None, None) => Sampling::All { temperature },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_probability_is_the_log_softmax_of_the_chosen_logit() {
        let logits = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu).expect("tensor");
        let expected = 3.0 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let got = log_probability(&logits, 2).expect("in range");
        assert!(
            (f64::from(got) - expected).abs() < 1e-6,
            "{got} vs {expected}"
        );
        // Large logits do not overflow: the sum starts from the largest.
        let big = Tensor::new(&[1000.0f32, 1000.0], &Device::Cpu).expect("tensor");
        let half = log_probability(&big, 0).expect("in range");
        assert!((f64::from(half) - 0.5f64.ln()).abs() < 1e-6, "{half}");
        assert!(
            log_probability(&logits, 3).is_err(),
            "an id past the logits"
        );
    }

    #[test]
    fn pieces_hold_back_an_incomplete_character_until_it_is_complete() {
        let mut emitted = String::new();
        assert_eq!(new_piece(" caf", &mut emitted, false), " caf");
        assert_eq!(new_piece(" caf\u{fffd}", &mut emitted, false), "");
        assert_eq!(new_piece(" café", &mut emitted, false), "é");
        assert_eq!(emitted, " café");
        // A rewritten end hands out nothing until the text extends what went out again.
        assert_eq!(new_piece(" cafe", &mut emitted, false), "");
        assert_eq!(new_piece(" café au", &mut emitted, false), " au");
        // The last piece is what is left, whatever it ends with.
        assert_eq!(
            new_piece(" café au\u{fffd}", &mut emitted, true),
            "\u{fffd}"
        );
    }

    #[test]
    fn the_prompt_is_cut_off_by_characters_as_python_slices() {
        assert_eq!(after_chars("héllo world", 5), " world");
        assert_eq!(after_chars("abc", 3), "");
        assert_eq!(after_chars("abc", 7), "");
    }
}
