//! Llama-family decoders: text generation, greedy or sampled with a seed, token by token
//! (each new piece of text handed to the caller as it is decoded, for streaming).

use crate::chat::{ChatMessage, ChatTemplate};
use crate::text::{Text, special_token};
use crate::{InferError, ModelFiles, Result, guarded, load_weights};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::llama::{Cache, Config, Llama, LlamaConfig, LlamaEosToks};

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
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish: FinishReason,
}

pub struct Decoder {
    llama: Llama,
    config: Config,
    text: Text,
    eos: Vec<u32>,
    template: Option<ChatTemplate>,
    max_tokens: usize,
    device: Device,
    bytes: u64,
}

impl Decoder {
    pub(crate) fn load(files: ModelFiles, device: &Device) -> Result<Decoder> {
        let llama_config: LlamaConfig = serde_json::from_value(files.config.clone())
            .map_err(|e| InferError::BadModel(format!("config.json: {e}")))?;
        let config = llama_config.into_config(false);
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
            || config.num_key_value_heads == 0
            || !config
                .num_attention_heads
                .is_multiple_of(config.num_key_value_heads)
        {
            return Err(InferError::BadModel(
                "config.json: attention heads do not divide the hidden size".into(),
            ));
        }
        let text = Text::load(&files.tokenizer)?;
        let template = ChatTemplate::from_tokenizer_config(files.tokenizer_config.as_ref())?;
        let mut eos: Vec<u32> = match &config.eos_token_id {
            Some(LlamaEosToks::Single(id)) => vec![*id],
            Some(LlamaEosToks::Multiple(ids)) => ids.clone(),
            None => Vec::new(),
        };
        if let Some(token) = files
            .tokenizer_config
            .as_ref()
            .and_then(|c| special_token(c, "eos_token"))
            .and_then(|t| text.token_id(&t))
            && !eos.contains(&token)
        {
            eos.push(token);
        }
        let (tensors, bytes) = load_weights(files.weights, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let llama = guarded("Llama decoder", || Llama::load(vb, &config))?;
        Ok(Decoder {
            max_tokens: config.max_position_embeddings,
            llama,
            config,
            text,
            eos,
            template,
            device: device.clone(),
            bytes,
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

    /// Generates from `prompt`; `on_piece` receives each new piece of text with its token id
    /// and returns `false` to stop early (the reader went away).
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
        let room = self.max_tokens.saturating_sub(prompt_ids.len());
        let max_new = params.max_new_tokens.min(room);
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling(params));
        let mut cache = Cache::new(true, DType::F32, &self.config, &self.device)?;
        let mut generated: Vec<u32> = Vec::new();
        let mut emitted = String::new();
        let mut finish = FinishReason::Length;
        let mut input = prompt_ids.clone();
        let mut position = 0;
        while generated.len() < max_new {
            let x = Tensor::new(input.as_slice(), &self.device)?.unsqueeze(0)?;
            let logits = self.llama.forward(&x, position, &mut cache)?.squeeze(0)?;
            position += input.len();
            let next = sampler.sample(&logits)?;
            if self.eos.contains(&next) {
                finish = FinishReason::EosToken;
                break;
            }
            generated.push(next);
            input = vec![next];
            let text = self.text.decode(&generated)?;
            // A token may end inside a multi-byte character: its text shows up with the next.
            let piece = match text.strip_prefix(emitted.as_str()) {
                Some(piece) if !piece.ends_with('\u{fffd}') => piece.to_owned(),
                _ => String::new(),
            };
            if !piece.is_empty() {
                emitted.push_str(&piece);
            }
            if let Some(cut) = params.stop.iter().find_map(|s| emitted.find(s.as_str())) {
                emitted.truncate(cut);
                finish = FinishReason::StopSequence;
                break;
            }
            if !on_piece(&piece, next) {
                break;
            }
        }
        Ok(Generated {
            text: emitted,
            token_ids: generated,
            prompt_tokens: prompt_ids.len(),
            finish,
        })
    }
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
