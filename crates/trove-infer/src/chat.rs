//! Chat templates: the Jinja template a repository ships in `tokenizer_config.json`,
//! rendered with minijinja (and its Python-compatible string methods) into a prompt.

use crate::error::{InferError, Result};
use crate::text::special_token;
use serde::Serialize;
use serde_json::Value;

/// One message of a conversation.
#[derive(Clone, Debug, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A repository's chat template and the special tokens it may print.
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

/// Templates longer than this are refused (real ones are a few KiB).
const MAX_TEMPLATE: usize = 256 << 10;

impl ChatTemplate {
    /// The template of `tokenizer_config.json` (`chat_template` as a string, or the
    /// `default` one of a list of named templates); `None` when there is none.
    pub fn from_tokenizer_config(config: Option<&Value>) -> Result<Option<ChatTemplate>> {
        let Some(config) = config else {
            return Ok(None);
        };
        let source = match config.get("chat_template") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(named)) => {
                let default = named
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"));
                match default
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                {
                    Some(s) => s.to_owned(),
                    None => return Ok(None),
                }
            }
            Some(_) => {
                return Err(InferError::BadModel(
                    "tokenizer_config.json: `chat_template` is neither a string nor a list".into(),
                ));
            }
        };
        if source.len() > MAX_TEMPLATE {
            return Err(InferError::BadModel(
                "the chat template is too large".into(),
            ));
        }
        Ok(Some(ChatTemplate {
            source,
            bos_token: special_token(config, "bos_token").unwrap_or_default(),
            eos_token: special_token(config, "eos_token").unwrap_or_default(),
        }))
    }

    /// Renders a conversation, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        // Templates loop over the conversation: bound the work a hostile one can do.
        env.set_fuel(Some(1_000_000));
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.render_str(&self.source, context)
            .map_err(|e| InferError::BadInput(format!("the chat template failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages() -> Vec<ChatMessage> {
        vec![
            ChatMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            },
        ]
    }

    #[test]
    fn renders_a_template_with_python_string_methods() {
        let config = json!({
            "bos_token": {"content": "<s>"},
            "eos_token": "</s>",
            "chat_template": "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content.strip() }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
        });
        let template = ChatTemplate::from_tokenizer_config(Some(&config))
            .expect("valid")
            .expect("present");
        assert_eq!(
            template.render(&messages()).expect("renders"),
            "<s><|system|>be brief</s><|user|>hi</s><|assistant|>"
        );
    }

    #[test]
    fn raise_exception_refuses_the_conversation() {
        let config = json!({
            "chat_template": "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        });
        let template = ChatTemplate::from_tokenizer_config(Some(&config))
            .expect("valid")
            .expect("present");
        let err = template.render(&messages()).expect_err("refused");
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn no_template_and_named_templates() {
        assert!(
            ChatTemplate::from_tokenizer_config(Some(&json!({})))
                .expect("ok")
                .is_none()
        );
        let named = json!({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "d"}]});
        let t = ChatTemplate::from_tokenizer_config(Some(&named))
            .expect("ok")
            .expect("some");
        assert_eq!(t.render(&[]).expect("renders"), "d");
    }
}
