//! BERT-family encoders: token embeddings, sentence embeddings pooled as the repository's
//! sentence-transformers modules say, and sequence classification (`…ForSequenceClassification`:
//! pooler then classifier, labels from `id2label`).

use crate::text::Text;
use crate::{InferError, ModelFiles, Result, architectures, guarded, load_weights};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use candle_transformers::models::bert::{BertModel, Config};
use serde_json::Value;

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

struct Classifier {
    pooler: Linear,
    out: Linear,
    labels: Vec<String>,
    multi_label: bool,
}

pub struct Encoder {
    bert: BertModel,
    classifier: Option<Classifier>,
    pooling: Pooling,
    normalize: bool,
    text: Text,
    max_tokens: usize,
    device: Device,
    bytes: u64,
}

impl Encoder {
    pub(crate) fn load(files: ModelFiles, device: &Device) -> Result<Encoder> {
        let config: Config = serde_json::from_value(files.config.clone())
            .map_err(|e| InferError::BadModel(format!("config.json: {e}")))?;
        let text = Text::load(&files.tokenizer)?;
        let (pooling, normalize) =
            sentence_transformers(files.st_modules.as_ref(), files.st_pooling.as_ref())?;
        let (tensors, bytes) = load_weights(files.weights, device)?;
        let prefixed = tensors.contains_key("bert.embeddings.word_embeddings.weight");
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let bert_vb = if prefixed { vb.pp("bert") } else { vb.clone() };
        let bert = guarded("BERT encoder", || BertModel::load(bert_vb.clone(), &config))?;
        let wants_classifier = architectures(&files.config)
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification"));
        let classifier = if wants_classifier {
            let labels = labels(&files.config)?;
            let pooler = guarded("pooler", || {
                linear(
                    config.hidden_size,
                    config.hidden_size,
                    bert_vb.pp("pooler").pp("dense"),
                )
            })?;
            let out = guarded("classifier", || {
                linear(config.hidden_size, labels.len(), vb.pp("classifier"))
            })?;
            let multi_label = files.config.get("problem_type").and_then(Value::as_str)
                == Some("multi_label_classification");
            Some(Classifier {
                pooler,
                out,
                labels,
                multi_label,
            })
        } else {
            None
        };
        Ok(Encoder {
            bert,
            classifier,
            pooling,
            normalize,
            text,
            max_tokens: config.max_position_embeddings,
            device: device.clone(),
            bytes,
        })
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the model has a sequence-classification head.
    pub fn classifies(&self) -> bool {
        self.classifier.is_some()
    }

    /// How [`Encoder::embed`] pools.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The last hidden states of one input: `[tokens, hidden]`.
    fn hidden(&self, input: &str) -> Result<Tensor> {
        let encoded = self.text.encode(input, true, self.max_tokens)?;
        let ids = Tensor::new(encoded.ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let types = Tensor::new(encoded.type_ids.as_slice(), &self.device)?.unsqueeze(0)?;
        Ok(self.bert.forward(&ids, &types, None)?.squeeze(0)?)
    }

    /// The embedding of one input: one vector (pooled) or one per token, L2-normalized when
    /// the repository's modules say so or `normalize` asks.
    pub fn embed(&self, input: &str, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let hidden = self.hidden(input)?;
        let vectors = match self.pooling {
            Pooling::Mean => hidden.mean(0)?.unsqueeze(0)?,
            Pooling::Cls => hidden.get(0)?.unsqueeze(0)?,
            Pooling::Tokens => hidden,
        };
        let vectors = if normalize || self.normalize {
            let norm = vectors.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
            vectors.broadcast_div(&norm.clamp(1e-12, f32::MAX)?)?
        } else {
            vectors
        };
        Ok(vectors.to_vec2::<f32>()?)
    }

    /// Cosine similarity of `source` with each of `others`, on pooled embeddings (mean
    /// pooling for a model without sentence-transformers modules).
    pub fn similarity(&self, source: &str, others: &[String]) -> Result<Vec<f32>> {
        let pooled = |text: &str| -> Result<Tensor> {
            let hidden = self.hidden(text)?;
            Ok(match self.pooling {
                Pooling::Cls => hidden.get(0)?,
                Pooling::Mean | Pooling::Tokens => hidden.mean(0)?,
            })
        };
        let a = pooled(source)?;
        let a_norm = a.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
        let mut out = Vec::with_capacity(others.len());
        for other in others {
            let b = pooled(other)?;
            let b_norm = b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
            let dot = (&a * &b)?.sum_all()?.to_scalar::<f32>()?;
            out.push(dot / (a_norm * b_norm).max(1e-12));
        }
        Ok(out)
    }

    /// Label scores for one input, highest first.
    pub fn classify(
        &self,
        input: &str,
        function: Option<ScoreFunction>,
    ) -> Result<Vec<(String, f32)>> {
        let Some(head) = &self.classifier else {
            return Err(InferError::Unsupported(
                "this model has no classification head".into(),
            ));
        };
        let hidden = self.hidden(input)?;
        let cls = hidden.get(0)?.unsqueeze(0)?;
        let pooled = head.pooler.forward(&cls)?.tanh()?;
        let logits = head.out.forward(&pooled)?.squeeze(0)?;
        let function = function.unwrap_or(if head.multi_label || head.labels.len() == 1 {
            ScoreFunction::Sigmoid
        } else {
            ScoreFunction::Softmax
        });
        let scores = match function {
            ScoreFunction::Softmax => candle_nn::ops::softmax(&logits, 0)?,
            ScoreFunction::Sigmoid => candle_nn::ops::sigmoid(&logits)?,
            ScoreFunction::None => logits,
        };
        let scores = scores.to_vec1::<f32>()?;
        let mut out: Vec<(String, f32)> = head.labels.iter().cloned().zip(scores).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }
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
