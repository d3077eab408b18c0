//! BERT-family encoders (BERT, DistilBERT, RoBERTa on one backbone): token embeddings,
//! sentence embeddings pooled as the repository's sentence-transformers modules say, sequence
//! classification, token classification and masked-token prediction.

use crate::bert::{Bert, activate};
use crate::error::{InferError, Result};
use crate::files::{ModelFiles, architectures, guarded, load_weights};
use crate::text::{Encoded, Text, special_token};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder, layer_norm, linear};
use candle_transformers::models::bert::{Config, HiddenAct};
use serde_json::Value;
use std::collections::HashMap;

/// How token embeddings become one vector per input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the token embeddings (sentence-transformers `pooling_mode_mean_tokens`).
    Mean,
    /// The first token's embedding (`pooling_mode_cls_token`).
    Cls,
    /// No pooling: one vector per token (a plain transformers model).
    Tokens,
}

/// What turns a classifier's logits into scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreFunction {
    Softmax,
    Sigmoid,
    None,
}

impl ScoreFunction {
    pub fn parse(name: &str) -> Option<ScoreFunction> {
        match name {
            "softmax" => Some(ScoreFunction::Softmax),
            "sigmoid" => Some(ScoreFunction::Sigmoid),
            "none" => Some(ScoreFunction::None),
            _ => None,
        }
    }
}

/// The BERT-shaped layouts this crate runs; DistilBERT and RoBERTa are BERT's encoder with
/// renamed tensors (DistilBERT: no token types) or shifted positions (RoBERTa: position ids
/// start after the padding id), so all three run on one backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderKind {
    Bert,
    DistilBert,
    Roberta,
}

impl EncoderKind {
    /// The layout of a `config.json` `model_type`.
    pub fn of(model_type: &str) -> Option<EncoderKind> {
        match model_type {
            "bert" => Some(EncoderKind::Bert),
            "distilbert" => Some(EncoderKind::DistilBert),
            "roberta" | "xlm-roberta" => Some(EncoderKind::Roberta),
            _ => None,
        }
    }

    /// The prefix of the backbone's tensors in a model with a head (`bert.`…).
    fn prefix(self) -> &'static str {
        match self {
            EncoderKind::Bert => "bert",
            EncoderKind::DistilBert => "distilbert",
            EncoderKind::Roberta => "roberta",
        }
    }
}

/// What an encoder's architecture puts on top of the backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// None: hidden states (embeddings).
    Embeddings,
    /// `…ForSequenceClassification`.
    SequenceClassification,
    /// `…ForTokenClassification`.
    TokenClassification,
    /// `…ForMaskedLM`.
    MaskedLm,
}

impl Head {
    /// The head `config.json`'s first known architecture names.
    pub fn of(config: &Value) -> Head {
        for arch in architectures(config) {
            if arch.ends_with("ForSequenceClassification") {
                return Head::SequenceClassification;
            }
            if arch.ends_with("ForTokenClassification") {
                return Head::TokenClassification;
            }
            if arch.ends_with("ForMaskedLM") {
                return Head::MaskedLm;
            }
        }
        Head::Embeddings
    }
}

/// A dense layer, an activation, and the output layer (the sequence classifiers of the
/// three layouts differ only in names and activation).
struct SequenceHead {
    dense: Linear,
    relu: bool,
    out: Linear,
    labels: Vec<String>,
    multi_label: bool,
}

/// The masked-language-model head: dense, activation, layer norm, then the decoder (its
/// weight usually tied to the word embeddings).
struct MaskedLmHead {
    dense: Linear,
    act: HiddenAct,
    norm: LayerNorm,
    decoder: Linear,
    mask_token: String,
    mask_id: u32,
}

enum HeadLayers {
    None,
    Sequence(SequenceHead),
    Token { out: Linear, labels: Vec<String> },
    MaskedLm(MaskedLmHead),
}

/// One token's label (token classification before aggregation).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLabel {
    /// The token's position in the encoded input (special tokens counted, as the Hub does).
    pub index: usize,
    /// The token as the pipeline writes it: the vocabulary's string (`##ing`), or the input's
    /// own text for the unknown token (when `tokenizer_config.json` names one).
    pub token: String,
    pub id: u32,
    /// Character span in the input.
    pub start: usize,
    pub end: usize,
    /// The best label and its probability.
    pub label: String,
    pub score: f32,
    /// The probability of every label, in [`Encoder::labels`] order.
    pub scores: Vec<f32>,
    /// Whether the token continues the word of the token before it.
    pub subword: bool,
}

/// One proposal for a masked token.
#[derive(Clone, Debug, PartialEq)]
pub struct Fill {
    pub score: f32,
    pub token: u32,
    pub token_str: String,
    pub sequence: String,
}

/// An input's label scores, highest first.
pub type LabelScores = Vec<(String, f32)>;

/// Inputs run as one batch at most (and so the most single-input requests the hub gathers
/// into one run). A 32-sentence list of the MiniLM-shaped model ran
/// faster cut into batches of 16 than as one of 32 (or of 4 or 8) in process on this
/// 2-core machine (docs/inference.md): past that, a batch's activations outgrow the cache.
pub const MAX_BATCH: usize = 16;
/// Padded tokens (inputs × the longest) of one batch at most, unless one input alone is
/// longer: bounds a batch's activations and attention scores (inputs · heads · tokens²).
const MAX_BATCH_TOKENS: usize = 2048;

/// The inputs cut into batches of similar lengths, each a list of input indices: sorted by
/// length, a batch takes the next input while it stays within [`MAX_BATCH`] inputs and
/// [`MAX_BATCH_TOKENS`] padded tokens, so that padding stays small and the attention scores
/// (batch · heads · tokens²) bounded.
fn batches(encoded: &[Encoded]) -> Result<Vec<Vec<usize>>> {
    if encoded.iter().any(|e| e.ids.is_empty()) {
        return Err(no_tokens());
    }
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].ids.len());
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len()
            && end - start < MAX_BATCH
            && (end - start + 1) * encoded[order[end]].ids.len() <= MAX_BATCH_TOKENS
        {
            end += 1;
        }
        out.push(order[start..end].to_vec());
        start = end;
    }
    Ok(out)
}

fn batch_inputs<'a>(encoded: &'a [Encoded], batch: &[usize]) -> Vec<(&'a [u32], &'a [u32])> {
    batch
        .iter()
        .map(|&i| (encoded[i].ids.as_slice(), encoded[i].type_ids.as_slice()))
        .collect()
}

/// The mean of `tokens × width` rows (in f32, summed in order as candle's `mean` does).
fn mean_rows(rows: &[f32], width: usize) -> Vec<f32> {
    let mut sum = vec![0f32; width];
    let mut count = 0usize;
    for row in rows.chunks_exact(width) {
        for (s, x) in sum.iter_mut().zip(row) {
            *s += x;
        }
        count += 1;
    }
    for s in &mut sum {
        *s /= count.max(1) as f32;
    }
    sum
}

pub struct Encoder {
    bert: Bert,
    head: HeadLayers,
    pooling: Pooling,
    normalize: bool,
    text: Text,
    /// The unknown token's id, when `tokenizer_config.json` names the token (the pipeline
    /// knows it only from there).
    unk_id: Option<u32>,
    max_tokens: usize,
    bytes: u64,
}

impl Encoder {
    pub(crate) fn load(files: ModelFiles, device: &Device) -> Result<Encoder> {
        let model_type = files
            .config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = EncoderKind::of(model_type).ok_or_else(|| {
            InferError::Unsupported(format!("`{model_type}` is not an encoder run here"))
        })?;
        let (config, position_offset) = bert_config(kind, &files.config)?;
        let text = Text::load(&files.tokenizer)?;
        let (pooling, normalize) =
            sentence_transformers(files.st_modules.as_ref(), files.st_pooling.as_ref())?;
        let (mut tensors, bytes) = load_weights(files.weights, device)?;
        let prefix = kind.prefix();
        let prefixed = tensors.contains_key(&format!("{prefix}.embeddings.word_embeddings.weight"));
        let root = if prefixed {
            format!("{prefix}.")
        } else {
            String::new()
        };
        adapt_tensors(kind, &root, &mut tensors, position_offset, &config, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let bert_vb = if prefixed { vb.pp(prefix) } else { vb.clone() };
        let bert = guarded("encoder", || Bert::load(bert_vb.clone(), &config))?;
        let hidden = config.hidden_size;
        let head = match Head::of(&files.config) {
            Head::Embeddings => HeadLayers::None,
            Head::SequenceClassification => {
                let labels = labels(&files.config)?;
                let (dense, relu, out) = match kind {
                    EncoderKind::Bert => {
                        (bert_vb.pp("pooler").pp("dense"), false, vb.pp("classifier"))
                    }
                    EncoderKind::DistilBert => (vb.pp("pre_classifier"), true, vb.pp("classifier")),
                    EncoderKind::Roberta => (
                        vb.pp("classifier").pp("dense"),
                        false,
                        vb.pp("classifier").pp("out_proj"),
                    ),
                };
                let dense = guarded("classifier", || linear(hidden, hidden, dense))?;
                let out = guarded("classifier", || linear(hidden, labels.len(), out))?;
                let multi_label = files.config.get("problem_type").and_then(Value::as_str)
                    == Some("multi_label_classification");
                HeadLayers::Sequence(SequenceHead {
                    dense,
                    relu,
                    out,
                    labels,
                    multi_label,
                })
            }
            Head::TokenClassification => {
                let labels = labels(&files.config)?;
                let out = guarded("token classifier", || {
                    linear(hidden, labels.len(), vb.pp("classifier"))
                })?;
                HeadLayers::Token { out, labels }
            }
            Head::MaskedLm => {
                let mask_token = crate::text::mask_token(files.tokenizer_config.as_ref(), |t| {
                    text.token_id(t).is_some()
                })
                .ok_or_else(|| InferError::BadModel("the tokenizer has no mask token".into()))?;
                let mask_id = text.token_id(&mask_token).ok_or_else(|| {
                    InferError::BadModel(format!(
                        "the mask token {mask_token} is not in the vocabulary"
                    ))
                })?;
                let names = match kind {
                    EncoderKind::Bert => [
                        "cls.predictions.transform.dense",
                        "cls.predictions.transform.LayerNorm",
                        "cls.predictions.decoder",
                        "cls.predictions.bias",
                    ],
                    EncoderKind::DistilBert => [
                        "vocab_transform",
                        "vocab_layer_norm",
                        "vocab_projector",
                        "vocab_projector.bias",
                    ],
                    EncoderKind::Roberta => [
                        "lm_head.dense",
                        "lm_head.layer_norm",
                        "lm_head.decoder",
                        "lm_head.bias",
                    ],
                };
                let [dense, norm, decoder, bias] = names;
                let vocab = config.vocab_size;
                let head = guarded("masked-LM head", || {
                    let dense = linear(hidden, hidden, vb.pp(dense))?;
                    let norm = layer_norm(hidden, config.layer_norm_eps, vb.pp(norm))?;
                    let weight = if vb.contains_tensor(&format!("{decoder}.weight")) {
                        vb.get((vocab, hidden), &format!("{decoder}.weight"))?
                    } else {
                        vb.get(
                            (vocab, hidden),
                            &format!("{root}embeddings.word_embeddings.weight"),
                        )?
                    };
                    let bias = if vb.contains_tensor(&format!("{decoder}.bias")) {
                        vb.get(vocab, &format!("{decoder}.bias"))?
                    } else {
                        vb.get(vocab, bias)?
                    };
                    Ok((dense, norm, Linear::new(weight, Some(bias))))
                })?;
                HeadLayers::MaskedLm(MaskedLmHead {
                    dense: head.0,
                    // RoBERTa's head applies GELU whatever the config says; the others
                    // apply the config's activation.
                    act: match kind {
                        EncoderKind::Roberta => HiddenAct::Gelu,
                        EncoderKind::Bert | EncoderKind::DistilBert => config.hidden_act,
                    },
                    norm: head.1,
                    decoder: head.2,
                    mask_token,
                    mask_id,
                })
            }
        };
        let unk_id = files
            .tokenizer_config
            .as_ref()
            .and_then(|c| special_token(c, "unk_token"))
            .and_then(|t| text.token_id(&t));
        Ok(Encoder {
            bert,
            head,
            pooling,
            normalize,
            text,
            unk_id,
            max_tokens: config.max_position_embeddings,
            bytes,
        })
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the model has a sequence-classification head.
    pub fn classifies(&self) -> bool {
        matches!(self.head, HeadLayers::Sequence(_))
    }

    /// How [`Encoder::embed`] pools.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Each input's last hidden states (`[tokens, hidden]`, in input order), the inputs run
    /// in batches of similar lengths (see [`batches`]).
    fn hidden_of(&self, encoded: &[Encoded]) -> Result<Vec<Tensor>> {
        let mut out: Vec<Option<Tensor>> = vec![None; encoded.len()];
        for batch in batches(encoded)? {
            let inputs = batch_inputs(encoded, &batch);
            let hidden = self.bert.forward_batch(&inputs)?;
            for (row, &i) in batch.iter().enumerate() {
                out[i] = Some(hidden.get(row)?.narrow(0, 0, encoded[i].ids.len())?);
            }
        }
        out.into_iter()
            .map(|h| h.ok_or_else(|| InferError::Runtime("an input was not run".into())))
            .collect()
    }

    /// [`Encoder::hidden_of`] as values: each input's rows, `tokens × hidden` row-major.
    fn rows_of(&self, encoded: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        let h = self.bert.hidden_size();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encoded.len()];
        for batch in batches(encoded)? {
            let inputs = batch_inputs(encoded, &batch);
            let (rows, n) = self.bert.forward_rows(&inputs)?;
            for (row, &i) in batch.iter().enumerate() {
                let len = encoded[i].ids.len();
                out[i] = rows[row * n * h..][..len * h].to_vec();
            }
        }
        Ok(out)
    }

    fn encode_all<S: AsRef<str>>(&self, inputs: &[S]) -> Result<Vec<Encoded>> {
        inputs
            .iter()
            .map(|input| self.text.encode(input.as_ref(), true, self.max_tokens))
            .collect()
    }

    /// Each input encoded on its own, for inputs of different requests run together: the
    /// answer `run` gives for the encodings that can run (in their order), and for an input
    /// that cannot — too long, or no tokens at all — its own error, so that it never fails the
    /// others. An `Err` of the whole is a failure of the run itself.
    fn each<S: AsRef<str>, T>(
        &self,
        inputs: &[S],
        run: impl FnOnce(&[Encoded]) -> Result<Vec<T>>,
    ) -> Result<Vec<Result<T>>> {
        let mut out: Vec<Option<Result<T>>> = (0..inputs.len()).map(|_| None).collect();
        let (mut places, mut runnable) = (Vec::new(), Vec::new());
        for (i, input) in inputs.iter().enumerate() {
            match self.text.encode(input.as_ref(), true, self.max_tokens) {
                Ok(encoded) if encoded.ids.is_empty() => out[i] = Some(Err(no_tokens())),
                Ok(encoded) => {
                    places.push(i);
                    runnable.push(encoded);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if !runnable.is_empty() {
            let answers = run(&runnable)?;
            if answers.len() != places.len() {
                return Err(InferError::Runtime("an input was not run".into()));
            }
            for (i, answer) in places.into_iter().zip(answers) {
                out[i] = Some(Ok(answer));
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(InferError::Runtime("an input was not run".into()))))
            .collect())
    }

    /// The embedding of each input: one vector (pooled) or one per token, L2-normalized when
    /// the repository's modules say so or `normalize` asks. The inputs run as batches.
    pub fn embed<S: AsRef<str>>(
        &self,
        inputs: &[S],
        normalize: bool,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        self.embed_encoded(&self.encode_all(inputs)?, normalize)
    }

    /// [`Encoder::embed`] for inputs of different requests: each input's answer or its own
    /// error (see [`Encoder::each`]); the ones that can run, run as batches.
    pub fn embed_each<S: AsRef<str>>(
        &self,
        inputs: &[S],
        normalize: bool,
    ) -> Result<Vec<Result<Vec<Vec<f32>>>>> {
        self.each(inputs, |encoded| self.embed_encoded(encoded, normalize))
    }

    fn embed_encoded(&self, encoded: &[Encoded], normalize: bool) -> Result<Vec<Vec<Vec<f32>>>> {
        let h = self.bert.hidden_size();
        let rows = self.rows_of(encoded)?;
        Ok(rows
            .into_iter()
            .map(|rows| {
                let mut vectors: Vec<Vec<f32>> = match self.pooling {
                    Pooling::Mean => vec![mean_rows(&rows, h)],
                    Pooling::Cls => vec![rows[..h].to_vec()],
                    Pooling::Tokens => rows.chunks_exact(h).map(<[f32]>::to_vec).collect(),
                };
                if normalize || self.normalize {
                    for v in &mut vectors {
                        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                        for x in v.iter_mut() {
                            *x /= norm;
                        }
                    }
                }
                vectors
            })
            .collect())
    }

    /// Cosine similarity of `source` with each of `others`, on pooled embeddings (mean
    /// pooling for a model without sentence-transformers modules); all run as batches.
    pub fn similarity(&self, source: &str, others: &[String]) -> Result<Vec<f32>> {
        let mut texts: Vec<&str> = Vec::with_capacity(others.len() + 1);
        texts.push(source);
        texts.extend(others.iter().map(String::as_str));
        let h = self.bert.hidden_size();
        let pooled: Vec<Vec<f32>> = self
            .rows_of(&self.encode_all(&texts)?)?
            .into_iter()
            .map(|rows| match self.pooling {
                Pooling::Cls => rows[..h].to_vec(),
                Pooling::Mean | Pooling::Tokens => mean_rows(&rows, h),
            })
            .collect();
        let Some((a, others)) = pooled.split_first() else {
            return Ok(Vec::new());
        };
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let a_norm = norm(a);
        let mut out = Vec::with_capacity(others.len());
        for b in others {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            out.push(dot / (a_norm * norm(b)).max(1e-12));
        }
        Ok(out)
    }

    /// Label scores for each input, highest first; the inputs run as batches.
    pub fn classify<S: AsRef<str>>(
        &self,
        inputs: &[S],
        function: Option<ScoreFunction>,
    ) -> Result<Vec<Vec<(String, f32)>>> {
        self.classify_encoded(&self.encode_all(inputs)?, function)
    }

    /// [`Encoder::classify`] for inputs of different requests: each input's answer or its own
    /// error (see [`Encoder::each`]); the ones that can run, run as batches.
    pub fn classify_each<S: AsRef<str>>(
        &self,
        inputs: &[S],
        function: Option<ScoreFunction>,
    ) -> Result<Vec<Result<LabelScores>>> {
        if !self.classifies() {
            return Err(no_sequence_head());
        }
        self.each(inputs, |encoded| self.classify_encoded(encoded, function))
    }

    fn classify_encoded(
        &self,
        encoded: &[Encoded],
        function: Option<ScoreFunction>,
    ) -> Result<Vec<Vec<(String, f32)>>> {
        let HeadLayers::Sequence(head) = &self.head else {
            return Err(no_sequence_head());
        };
        let hidden = self.hidden_of(encoded)?;
        let cls = hidden
            .iter()
            .map(|h| h.get(0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let cls = Tensor::stack(&cls, 0)?;
        let dense = head.dense.forward(&cls)?;
        let pooled = if head.relu {
            dense.relu()?
        } else {
            dense.tanh()?
        };
        let logits = head.out.forward(&pooled)?;
        let function = function.unwrap_or(if head.multi_label || head.labels.len() == 1 {
            ScoreFunction::Sigmoid
        } else {
            ScoreFunction::Softmax
        });
        let scores = match function {
            ScoreFunction::Softmax => candle_nn::ops::softmax(&logits, D::Minus1)?,
            ScoreFunction::Sigmoid => candle_nn::ops::sigmoid(&logits)?,
            ScoreFunction::None => logits,
        };
        Ok(scores
            .to_vec2::<f32>()?
            .into_iter()
            .map(|scores| {
                let mut out: Vec<(String, f32)> = head.labels.iter().cloned().zip(scores).collect();
                out.sort_by(|a, b| b.1.total_cmp(&a.1));
                out
            })
            .collect())
    }

    /// Whether the model has a token-classification head.
    pub fn tags(&self) -> bool {
        matches!(self.head, HeadLayers::Token { .. })
    }

    /// Whether the model has a masked-language-model head.
    pub fn fills_masks(&self) -> bool {
        matches!(self.head, HeadLayers::MaskedLm(_))
    }

    /// The labels of the token-classification head, by class id (empty for other heads).
    pub fn labels(&self) -> &[String] {
        match &self.head {
            HeadLayers::Token { labels, .. } => labels,
            _ => &[],
        }
    }

    /// Each token's label probabilities (softmax over the labels), special tokens left out,
    /// and where words start: with a tokenizer that marks subwords, a token continues a word
    /// when its vocabulary string is not as long as its span in the input; with one that does
    /// not, when the character before it and its first are both not spaces (the pipeline's
    /// fallback); the unknown token always starts a word.
    pub fn tag<S: AsRef<str>>(&self, inputs: &[S]) -> Result<Vec<Vec<TokenLabel>>> {
        let HeadLayers::Token { out, labels } = &self.head else {
            return Err(InferError::Unsupported(
                "this model has no token-classification head".into(),
            ));
        };
        let encoded = self.encode_all(inputs)?;
        let hidden = self.hidden_of(&encoded)?;
        let mut all = Vec::with_capacity(inputs.len());
        for ((input, encoded), hidden) in inputs.iter().zip(&encoded).zip(hidden) {
            let probs =
                candle_nn::ops::softmax(&out.forward(&hidden)?, D::Minus1)?.to_vec2::<f32>()?;
            all.push(self.token_labels(input.as_ref(), encoded, probs, labels));
        }
        Ok(all)
    }

    /// The tokens of one input with their label probabilities (see [`Encoder::tag`]).
    fn token_labels(
        &self,
        input: &str,
        encoded: &Encoded,
        probs: Vec<Vec<f32>>,
        labels: &[String],
    ) -> Vec<TokenLabel> {
        let chars: Vec<char> = input.chars().collect();
        let span = |start: usize, end: usize| -> String {
            chars
                .get(start.min(end)..end.min(chars.len()))
                .map(|c| c.iter().collect())
                .unwrap_or_default()
        };
        let marks_subwords = self.text.marks_subwords();
        let mut tokens = Vec::new();
        for (index, row) in probs.into_iter().enumerate() {
            if encoded.special.get(index).copied().unwrap_or(true) {
                continue;
            }
            let Some(best) = argmax(&row) else {
                continue;
            };
            let id = encoded.ids[index];
            let (start, end) = encoded.offsets.get(index).copied().unwrap_or((0, 0));
            let vocab = self.text.id_to_token(id).unwrap_or_default();
            let text = span(start, end);
            let (token, subword) = if Some(id) == self.unk_id {
                (text, false)
            } else if marks_subwords {
                let subword = vocab.chars().count() != text.chars().count();
                (vocab, subword)
            } else {
                let subword = start > 0 && !span(start - 1, start + 1).contains(' ');
                (vocab, subword)
            };
            tokens.push(TokenLabel {
                index,
                token,
                id,
                start,
                end,
                label: labels.get(best).cloned().unwrap_or_default(),
                score: row[best],
                scores: row,
                subword,
            });
        }
        tokens
    }

    /// Token strings joined as the tokenizer's decoder joins them (the pipeline's
    /// `convert_tokens_to_string`).
    pub fn join_tokens(&self, tokens: Vec<String>) -> Result<String> {
        self.text.join_tokens(tokens)
    }

    /// The `top_k` likeliest tokens for each mask of `input` (restricted to `targets` when
    /// given: each a vocabulary token, else the first token it encodes to).
    pub fn fill_mask(
        &self,
        input: &str,
        top_k: usize,
        targets: Option<&[String]>,
    ) -> Result<Vec<Vec<Fill>>> {
        let HeadLayers::MaskedLm(head) = &self.head else {
            return Err(InferError::Unsupported(
                "this model has no masked-language-model head".into(),
            ));
        };
        let encoded = self.text.encode(input, true, self.max_tokens)?;
        let masks: Vec<usize> = encoded
            .ids
            .iter()
            .enumerate()
            .filter(|(_, id)| **id == head.mask_id)
            .map(|(i, _)| i)
            .collect();
        if masks.is_empty() {
            return Err(InferError::BadInput(format!(
                "No mask_token ({}) found on the input",
                head.mask_token
            )));
        }
        let target_ids = match targets {
            None => None,
            Some(targets) => {
                let mut ids: Vec<u32> = Vec::new();
                for target in targets {
                    let id = self
                        .text
                        .token_id(target)
                        .or_else(|| self.text.first_token(target));
                    if let Some(id) = id
                        && !ids.contains(&id)
                    {
                        ids.push(id);
                    }
                }
                if ids.is_empty() {
                    return Err(InferError::BadInput(
                        "At least one target must be provided when passed.".into(),
                    ));
                }
                Some(ids)
            }
        };
        let hidden = self
            .hidden_of(std::slice::from_ref(&encoded))?
            .pop()
            .ok_or_else(|| InferError::Runtime("the input was not run".into()))?;
        let single = masks.len() == 1;
        let mut answers = Vec::with_capacity(masks.len());
        for &position in &masks {
            let x = hidden.get(position)?.unsqueeze(0)?;
            let x = head.dense.forward(&x)?;
            let x = activate(head.act, &x)?;
            let logits = head.decoder.forward(&head.norm.forward(&x)?)?.squeeze(0)?;
            let probs = candle_nn::ops::softmax(&logits, 0)?.to_vec1::<f32>()?;
            let mut candidates: Vec<(u32, f32)> = match &target_ids {
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| probs.get(*id as usize).map(|p| (*id, *p)))
                    .collect(),
                None => probs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i as u32, *p))
                    .collect(),
            };
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
            candidates.truncate(top_k);
            let mut fills = Vec::with_capacity(candidates.len());
            for (token, score) in candidates {
                let mut ids = encoded.ids.clone();
                ids[position] = token;
                fills.push(Fill {
                    score,
                    token,
                    token_str: self.text.decode_with(&[token], false)?,
                    sequence: self.text.decode_with(&ids, single)?,
                });
            }
            answers.push(fills);
        }
        Ok(answers)
    }
}

/// The index of the largest value, the first of equal ones (numpy's `argmax`).
fn no_tokens() -> InferError {
    InferError::BadInput("Input validation error: an input has no tokens".into())
}

fn no_sequence_head() -> InferError {
    InferError::Unsupported("this model has no sequence-classification head".into())
}

pub(crate) fn argmax(values: &[f32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        if best.is_none_or(|b| *v > values[b]) {
            best = Some(i);
        }
    }
    best
}

/// The BERT configuration a layout's `config.json` amounts to, and by how much RoBERTa's
/// position ids are shifted (`pad_token_id + 1`; 0 for the others).
fn bert_config(kind: EncoderKind, config: &Value) -> Result<(Config, usize)> {
    let bad = |e: serde_json::Error| InferError::BadModel(format!("config.json: {e}"));
    let get = |name: &str| config.get(name).cloned().unwrap_or(Value::Null);
    match kind {
        EncoderKind::Bert => Ok((
            serde_json::from_value(with_bert_defaults(config, 0)).map_err(bad)?,
            0,
        )),
        EncoderKind::DistilBert => {
            let bert = serde_json::json!({
                "vocab_size": get("vocab_size"),
                "hidden_size": get("dim"),
                "num_hidden_layers": get("n_layers"),
                "num_attention_heads": get("n_heads"),
                "intermediate_size": get("hidden_dim"),
                "hidden_act": config.get("activation").cloned().unwrap_or_else(|| "gelu".into()),
                "hidden_dropout_prob": 0.0,
                "max_position_embeddings": get("max_position_embeddings"),
                "type_vocab_size": 1,
                "initializer_range": 0.02,
                "layer_norm_eps": 1e-12,
                "pad_token_id": config.get("pad_token_id").cloned().unwrap_or_else(|| 0.into()),
                "classifier_dropout": null,
                "model_type": null,
            });
            Ok((serde_json::from_value(bert).map_err(bad)?, 0))
        }
        EncoderKind::Roberta => {
            let mut bert: Config =
                serde_json::from_value(with_bert_defaults(config, 1)).map_err(bad)?;
            bert.model_type = None;
            let offset = bert.pad_token_id + 1;
            if bert.max_position_embeddings <= offset {
                return Err(InferError::BadModel(
                    "config.json: max_position_embeddings leaves no position after the padding id"
                        .into(),
                ));
            }
            bert.max_position_embeddings -= offset;
            Ok((bert, offset))
        }
    }
}

/// `config` with transformers' `BertConfig` defaults for the keys it leaves out (transformers
/// loads such a file, so it loads here too); RoBERTa's default padding id is 1.
fn with_bert_defaults(config: &Value, pad_token_id: u64) -> Value {
    let mut merged = serde_json::json!({
        "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": pad_token_id,
    });
    if let (Some(merged), Some(given)) = (merged.as_object_mut(), config.as_object()) {
        for (key, value) in given {
            merged.insert(key.clone(), value.clone());
        }
    }
    merged
}

/// Puts a DistilBERT's or RoBERTa's tensors in BERT's names and shapes: DistilBERT's layers
/// renamed and a zero token-type embedding added; RoBERTa's position table started at its
/// first real position.
fn adapt_tensors(
    kind: EncoderKind,
    root: &str,
    tensors: &mut HashMap<String, Tensor>,
    position_offset: usize,
    config: &Config,
    device: &Device,
) -> Result<()> {
    match kind {
        EncoderKind::Bert => {}
        EncoderKind::DistilBert => {
            const RENAMES: [(&str, &str); 8] = [
                ("attention.q_lin.", "attention.self.query."),
                ("attention.k_lin.", "attention.self.key."),
                ("attention.v_lin.", "attention.self.value."),
                ("attention.out_lin.", "attention.output.dense."),
                ("sa_layer_norm.", "attention.output.LayerNorm."),
                ("ffn.lin1.", "intermediate.dense."),
                ("ffn.lin2.", "output.dense."),
                ("output_layer_norm.", "output.LayerNorm."),
            ];
            let layer_prefix = format!("{root}transformer.layer.");
            let names: Vec<String> = tensors
                .keys()
                .filter(|k| k.starts_with(&layer_prefix))
                .cloned()
                .collect();
            for name in names {
                let rest = &name[layer_prefix.len()..];
                let Some((layer, tail)) = rest.split_once('.') else {
                    continue;
                };
                let Some((from, to)) = RENAMES.iter().find(|(from, _)| tail.starts_with(from))
                else {
                    continue;
                };
                let renamed = format!("{root}encoder.layer.{layer}.{to}{}", &tail[from.len()..]);
                if let Some(t) = tensors.remove(&name) {
                    tensors.insert(renamed, t);
                }
            }
            tensors.insert(
                format!("{root}embeddings.token_type_embeddings.weight"),
                Tensor::zeros((1, config.hidden_size), DType::F32, device)?,
            );
        }
        EncoderKind::Roberta => {
            let name = format!("{root}embeddings.position_embeddings.weight");
            let Some(table) = tensors.remove(&name) else {
                return Err(InferError::BadModel(format!("missing tensor {name}")));
            };
            let rows = table.dim(0)?;
            if rows != config.max_position_embeddings + position_offset {
                return Err(InferError::BadModel(format!(
                    "{name} has {rows} rows, config.json says {}",
                    config.max_position_embeddings + position_offset
                )));
            }
            tensors.insert(
                name,
                table.narrow(0, position_offset, config.max_position_embeddings)?,
            );
        }
    }
    Ok(())
}

/// `id2label` as a list indexed by class id.
fn labels(config: &Value) -> Result<Vec<String>> {
    let Some(map) = config.get("id2label").and_then(Value::as_object) else {
        return Err(InferError::BadModel(
            "config.json of a classifier has no `id2label`".into(),
        ));
    };
    let mut labels = vec![String::new(); map.len()];
    for (id, label) in map {
        let index = id
            .parse::<usize>()
            .ok()
            .filter(|i| *i < labels.len())
            .ok_or_else(|| InferError::BadModel(format!("id2label: bad class id {id:?}")))?;
        labels[index] = label.as_str().unwrap_or_default().to_owned();
    }
    if labels.is_empty() {
        return Err(InferError::BadModel("id2label is empty".into()));
    }
    Ok(labels)
}

/// Pooling and normalization from sentence-transformers' `modules.json` and pooling config;
/// no modules → token embeddings, as the transformers feature-extraction pipeline gives.
fn sentence_transformers(
    modules: Option<&Value>,
    pooling: Option<&Value>,
) -> Result<(Pooling, bool)> {
    let Some(modules) = modules.and_then(Value::as_array) else {
        return Ok((Pooling::Tokens, false));
    };
    let has = |kind: &str| {
        modules
            .iter()
            .any(|m| m.get("type").and_then(Value::as_str) == Some(kind))
    };
    let normalize = has("sentence_transformers.models.Normalize");
    if !has("sentence_transformers.models.Pooling") {
        return Ok((Pooling::Tokens, normalize));
    }
    let flag = |name: &str| {
        pooling
            .and_then(|p| p.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mode = if flag("pooling_mode_cls_token") {
        Pooling::Cls
    } else if flag("pooling_mode_mean_tokens") || pooling.is_none() {
        Pooling::Mean
    } else {
        return Err(InferError::Unsupported(
            "only mean and CLS pooling are supported".into(),
        ));
    };
    Ok((mode, normalize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bert_config_without_the_keys_transformers_defaults_loads_with_its_defaults() {
        // What a hand-written config.json for a tiny model often is: the shapes only.
        let shapes = json!({
            "vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16
        });
        let (bert, offset) = bert_config(EncoderKind::Bert, &shapes).expect("loads");
        assert_eq!(offset, 0);
        assert_eq!(
            (
                bert.hidden_size,
                bert.type_vocab_size,
                bert.max_position_embeddings,
                bert.pad_token_id
            ),
            (8, 2, 512, 0)
        );
        assert_eq!(bert.layer_norm_eps, 1e-12);
        // RoBERTa pads with id 1 by default, and its positions start after it.
        let (roberta, offset) = bert_config(EncoderKind::Roberta, &shapes).expect("loads");
        assert_eq!(
            (
                offset,
                roberta.pad_token_id,
                roberta.max_position_embeddings
            ),
            (2, 1, 510)
        );
        // What the file gives wins over a default.
        let given = json!({"vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "layer_norm_eps": 1e-5,
            "type_vocab_size": 1});
        let (bert, _) = bert_config(EncoderKind::Bert, &given).expect("loads");
        assert_eq!((bert.layer_norm_eps, bert.type_vocab_size), (1e-5, 1));
        // A key of the wrong type is still refused, naming the file.
        let wrong = json!({"hidden_size": "eight"});
        let Err(InferError::BadModel(message)) = bert_config(EncoderKind::Bert, &wrong) else {
            panic!("a wrong type is refused");
        };
        assert!(message.starts_with("config.json:"), "{message}");
    }

    #[test]
    fn pooling_follows_the_sentence_transformers_modules() {
        let modules = json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        ]);
        let mean = json!({"pooling_mode_mean_tokens": true});
        let cls = json!({"pooling_mode_cls_token": true});
        let max = json!({"pooling_mode_max_tokens": true});
        assert_eq!(
            sentence_transformers(Some(&modules), Some(&mean)).expect("valid"),
            (Pooling::Mean, true)
        );
        assert_eq!(
            sentence_transformers(Some(&modules), Some(&cls)).expect("valid"),
            (Pooling::Cls, true)
        );
        assert!(sentence_transformers(Some(&modules), Some(&max)).is_err());
        assert_eq!(
            sentence_transformers(None, None).expect("valid"),
            (Pooling::Tokens, false)
        );
    }

    /// A BERT classifier with mean-pooling sentence-transformers modules, random weights and
    /// a word-level vocabulary `w0`…`w49` (no special tokens).
    fn random_classifier() -> Encoder {
        let config = json!({
            "model_type": "bert", "architectures": ["BertForSequenceClassification"],
            "vocab_size": 50, "hidden_size": 24, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 40, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "max_position_embeddings": 64, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "id2label": {"0": "NEG", "1": "POS", "2": "MID"}
        });
        let bert_config: Config = serde_json::from_value(config.clone()).expect("config");
        let device = Device::Cpu;
        let mut tensors: HashMap<String, Tensor> = crate::bert::tests::random_bert(&bert_config)
            .into_iter()
            .map(|(name, t)| (format!("bert.{name}"), t))
            .collect();
        for (name, shape) in [
            ("bert.pooler.dense.weight", vec![24, 24]),
            ("bert.pooler.dense.bias", vec![24]),
            ("classifier.weight", vec![3, 24]),
            ("classifier.bias", vec![3]),
        ] {
            let t = Tensor::randn(0f32, 0.5, shape, &device).expect("random");
            tensors.insert(name.to_owned(), t);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        candle_core::safetensors::save(&tensors, &path).expect("saved");
        let vocab: serde_json::Map<String, Value> =
            (0..50).map(|i| (format!("w{i}"), json!(i))).collect();
        let tokenizer = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
        });
        let files = ModelFiles {
            config,
            tokenizer: serde_json::to_vec(&tokenizer).expect("json"),
            tokenizer_config: None,
            st_modules: Some(json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
            ])),
            st_pooling: Some(json!({"pooling_mode_mean_tokens": true})),
            weights: vec![std::fs::read(&path).expect("read back")],
            gguf: None,
        };
        Encoder::load(files, &device).expect("loads")
    }

    #[test]
    fn a_list_runs_in_batches_and_gives_what_each_input_gives_alone() {
        let encoder = random_classifier();
        // 70 inputs of 1 to 60 words: more than one batch by count (16), and batches cut by
        // padded tokens (2048) among the long ones.
        let inputs: Vec<String> = (0..70usize)
            .map(|i| {
                let len = 1 + (i * 37) % 60;
                (0..len)
                    .map(|j| format!("w{}", (i * 7 + j * 3) % 50))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let together = encoder.embed(&inputs, false).expect("batch");
        let labels = encoder.classify(&inputs, None).expect("batch");
        assert_eq!((together.len(), labels.len()), (70, 70));
        for (i, input) in inputs.iter().enumerate() {
            let alone = encoder.embed(&[input], false).expect("alone");
            assert_eq!(alone[0].len(), 1, "one pooled vector");
            for (a, b) in alone[0][0].iter().zip(&together[i][0]) {
                assert!((a - b).abs() < 1e-4, "input {i}: {a} vs {b}");
            }
            let one = encoder.classify(&[input], None).expect("alone");
            for ((la, a), (lb, b)) in one[0].iter().zip(&labels[i]) {
                assert_eq!(la, lb, "input {i}");
                assert!((a - b).abs() < 1e-4, "input {i}: {a} vs {b}");
            }
        }
        let scores = encoder.similarity(&inputs[0], &inputs).expect("similarity");
        assert!((scores[0] - 1.0).abs() < 1e-4);
        for (i, input) in inputs.iter().enumerate() {
            let pair = encoder
                .similarity(&inputs[0], std::slice::from_ref(input))
                .expect("alone");
            assert!((pair[0] - scores[i]).abs() < 1e-4, "input {i}");
        }
        assert!(matches!(
            encoder.embed(&["w1", ""], false),
            Err(InferError::BadInput(_))
        ));
    }

    #[test]
    fn inputs_of_different_requests_run_together_answer_as_alone_and_fail_alone() {
        let encoder = random_classifier();
        let too_long = vec!["w1"; 10_000].join(" ");
        let inputs: Vec<String> = vec![
            "w1 w2 w3".into(),
            String::new(),
            "w4".into(),
            too_long,
            (0..40)
                .map(|j| format!("w{}", j % 50))
                .collect::<Vec<_>>()
                .join(" "),
            "w9 w8".into(),
        ];
        let embedded = encoder.embed_each(&inputs, false).expect("the run");
        let classified = encoder.classify_each(&inputs, None).expect("the run");
        assert_eq!((embedded.len(), classified.len()), (6, 6));
        for (i, input) in inputs.iter().enumerate() {
            match (encoder.embed(&[input], false), &embedded[i]) {
                (Ok(alone), Ok(together)) => {
                    for (a, b) in alone[0][0].iter().zip(&together[0]) {
                        assert!((a - b).abs() < 1e-5, "input {i}: {a} vs {b}");
                    }
                }
                (Err(InferError::BadInput(alone)), Err(InferError::BadInput(together))) => {
                    assert_eq!(&alone, together, "input {i}: its own error")
                }
                (alone, together) => panic!(
                    "input {i}: alone {:?}, together {:?}",
                    alone.map(|_| ()),
                    together.as_ref().map(|_| ())
                ),
            }
            match (encoder.classify(&[input], None), &classified[i]) {
                (Ok(alone), Ok(together)) => {
                    for ((la, a), (lb, b)) in alone[0].iter().zip(together) {
                        assert_eq!(la, lb, "input {i}");
                        assert!((a - b).abs() < 1e-5, "input {i}: {a} vs {b}");
                    }
                }
                (Err(InferError::BadInput(_)), Err(InferError::BadInput(_))) => {}
                (alone, together) => panic!(
                    "input {i}: alone {:?}, together {:?}",
                    alone.map(|_| ()),
                    together.as_ref().map(|_| ())
                ),
            }
        }
        assert!(
            embedded[1].is_err() && embedded[3].is_err(),
            "the bad inputs"
        );
        assert_eq!(embedded.iter().filter(|e| e.is_ok()).count(), 4);
        let none_runs = encoder
            .embed_each(&["", ""], false)
            .expect("nothing to run is no failure of the run");
        assert!(
            none_runs
                .iter()
                .all(|e| matches!(e, Err(InferError::BadInput(_))))
        );
    }

    #[test]
    fn labels_are_indexed_by_class_id() {
        let config = json!({"id2label": {"1": "POSITIVE", "0": "NEGATIVE"}});
        assert_eq!(
            labels(&config).expect("valid"),
            vec!["NEGATIVE", "POSITIVE"]
        );
        assert!(labels(&json!({"id2label": {"7": "X"}})).is_err());
        assert!(labels(&json!({})).is_err());
    }
}
