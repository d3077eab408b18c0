//! The tokenizer of a model (`tokenizer.json` through the `tokenizers` crate), with the
//! input-size rule every task applies.

use crate::error::{InferError, Result};
use serde_json::Value;
use tokenizers::{Decoder, ModelWrapper, Tokenizer};

pub(crate) struct Text {
    tokenizer: Tokenizer,
    /// The ids of the tokens the tokenizer marks special (`added_tokens` with `special`).
    special: std::collections::HashSet<u32>,
}

/// One encoded input.
pub(crate) struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Each token's span in the input, in characters (Unicode scalar values, as Python
    /// indexes a `str`); `(0, 0)` for the tokens the post-processor added.
    pub offsets: Vec<(usize, usize)>,
    /// Whether each token is one the post-processor added (`[CLS]`, `[SEP]`…).
    pub special: Vec<bool>,
}

impl Text {
    pub fn load(bytes: &[u8]) -> Result<Text> {
        let tokenizer = Tokenizer::from_bytes(bytes)
            .map_err(|e| InferError::BadModel(format!("tokenizer.json: {e}")))?;
        let special = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        Ok(Text { tokenizer, special })
    }

    /// Whether `id` is one of the tokenizer's special tokens.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// Encodes `text` (with the model's special tokens when `special`), refused past
    /// `max_tokens`.
    pub fn encode(&self, text: &str, special: bool, max_tokens: usize) -> Result<Encoded> {
        let encoding = self
            .tokenizer
            .encode_char_offsets(text, special)
            .map_err(|e| InferError::BadInput(format!("cannot tokenize the input: {e}")))?;
        let ids = encoding.get_ids().to_vec();
        if ids.len() > max_tokens {
            return Err(InferError::BadInput(format!(
                "Input validation error: `inputs` must have less than {max_tokens} tokens. Given: {}",
                ids.len()
            )));
        }
        Ok(Encoded {
            type_ids: encoding.get_type_ids().to_vec(),
            offsets: encoding.get_offsets().to_vec(),
            special: encoding
                .get_special_tokens_mask()
                .iter()
                .map(|m| *m == 1)
                .collect(),
            ids,
        })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, true)
    }

    /// Decodes, keeping the special tokens unless `skip_special`.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| InferError::Runtime(format!("cannot decode tokens: {e}")))
    }

    /// A token's string in the vocabulary (`##ing`), as `convert_ids_to_tokens` gives it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Whether the tokenizer's model marks the tokens that continue a word (WordPiece's `##`,
    /// a BPE with a `continuing_subword_prefix`): then a token whose vocabulary string is not
    /// as long as its span in the input continues the word before it, as the Hub's pipeline
    /// decides.
    pub fn marks_subwords(&self) -> bool {
        match self.tokenizer.get_model() {
            ModelWrapper::WordPiece(wp) => !wp.continuing_subword_prefix.is_empty(),
            ModelWrapper::BPE(bpe) => bpe
                .continuing_subword_prefix
                .as_ref()
                .is_some_and(|p| !p.is_empty()),
            ModelWrapper::WordLevel(_) | ModelWrapper::Unigram(_) => false,
        }
    }

    /// Token strings joined as the tokenizer's decoder joins them (`convert_tokens_to_string`:
    /// WordPiece glues `##` pieces, byte-level BPE turns `Ġ` back into spaces), or with spaces
    /// for a tokenizer without a decoder.
    pub fn join_tokens(&self, tokens: Vec<String>) -> Result<String> {
        match self.tokenizer.get_decoder() {
            Some(decoder) => decoder
                .decode(tokens)
                .map_err(|e| InferError::Runtime(format!("cannot join tokens: {e}"))),
            None => Ok(tokens.join(" ")),
        }
    }

    /// The first token of `text` encoded without special tokens (a fill-mask target that is
    /// not one token of the vocabulary).
    pub fn first_token(&self, text: &str) -> Option<u32> {
        self.tokenizer
            .encode(text, false)
            .ok()
            .and_then(|e| e.get_ids().first().copied())
    }
}

/// A special token of `tokenizer_config.json`: a string, or an object with `content`.
pub(crate) fn special_token(config: &Value, name: &str) -> Option<String> {
    match config.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A fill-mask model's mask token: `tokenizer_config.json`'s `mask_token`, else the first
/// of BERT's `[MASK]` and RoBERTa's `<mask>` that the tokenizer has (`has_token`). The one
/// rule for the model run and for what the model page's widget shows.
pub fn mask_token(
    tokenizer_config: Option<&Value>,
    has_token: impl Fn(&str) -> bool,
) -> Option<String> {
    tokenizer_config
        .and_then(|c| special_token(c, "mask_token"))
        .or_else(|| {
            ["[MASK]", "<mask>"]
                .into_iter()
                .find(|t| has_token(t))
                .map(str::to_owned)
        })
}

/// Whether a `tokenizer.json` document has `token`: as an added token, or in its model's
/// vocabulary (an object of pieces for WordPiece, BPE and WordLevel; a list of
/// `[piece, score]` for Unigram) — what loading it would give `token_to_id`.
pub fn tokenizer_json_has(tokenizer: &Value, token: &str) -> bool {
    let added = tokenizer
        .get("added_tokens")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|t| t.get("content").and_then(Value::as_str) == Some(token))
        });
    added
        || match tokenizer.get("model").and_then(|m| m.get("vocab")) {
            Some(Value::Object(vocab)) => vocab.contains_key(token),
            Some(Value::Array(pieces)) => pieces
                .iter()
                .any(|p| p.get(0).and_then(Value::as_str) == Some(token)),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_mask_token_is_the_configs_else_the_one_the_tokenizer_has() {
        let roberta = json!({"added_tokens": [{"id": 4, "content": "<mask>", "special": true}],
                             "model": {"type": "BPE", "vocab": {"a": 0}}});
        let bert = json!({"model": {"type": "WordPiece", "vocab": {"[MASK]": 4, "a": 5}}});
        let unigram =
            json!({"model": {"type": "Unigram", "vocab": [["<mask>", 0.0], ["a", -1.0]]}});
        let plain = json!({"model": {"type": "WordLevel", "vocab": {"a": 0}}});
        let has = |tokenizer: &Value| {
            let tokenizer = tokenizer.clone();
            move |token: &str| tokenizer_json_has(&tokenizer, token)
        };
        assert_eq!(mask_token(None, has(&roberta)).as_deref(), Some("<mask>"));
        assert_eq!(mask_token(None, has(&bert)).as_deref(), Some("[MASK]"));
        assert_eq!(mask_token(None, has(&unigram)).as_deref(), Some("<mask>"));
        assert_eq!(mask_token(None, has(&plain)), None);
        // The config's token wins, as a string or as an added-token object.
        let config = json!({"mask_token": {"content": "<mask>", "lstrip": true}});
        assert_eq!(
            mask_token(Some(&config), has(&bert)).as_deref(),
            Some("<mask>")
        );
        let config = json!({"mask_token": "[M]"});
        assert_eq!(
            mask_token(Some(&config), has(&plain)).as_deref(),
            Some("[M]")
        );
    }
}
