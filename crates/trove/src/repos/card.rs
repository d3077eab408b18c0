//! Model, dataset and Space cards: the YAML front matter of `README.md` as JSON `cardData`.
//! Tolerant by design: a bad card never blocks anything, it just yields no data.

use serde_json::Value;

/// Front matter larger than this is ignored (real cards are a few KiB).
const MAX_FRONT_MATTER: usize = 256 * 1024;

/// The YAML text between a leading `---` line and the next `---` line, if any.
pub fn front_matter(readme: &str) -> Option<&str> {
    let text = readme.strip_prefix('\u{feff}').unwrap_or(readme);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some(&rest[..offset]);
        }
        offset += line.len();
    }
    None
}

/// Why front matter was refused.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("the YAML metadata is too large ({0} bytes)")]
    TooLarge(usize),
    #[error("invalid YAML metadata: {0}")]
    Yaml(String),
    #[error("the YAML metadata must be a mapping (key: value pairs)")]
    NotAMapping,
}

/// Parses front matter into a JSON object; `Ok(None)` when the card has none.
pub fn parse_card(readme: &str) -> Result<Option<serde_json::Map<String, Value>>, CardError> {
    let Some(yaml) = front_matter(readme) else {
        return Ok(None);
    };
    if yaml.len() > MAX_FRONT_MATTER {
        return Err(CardError::TooLarge(yaml.len()));
    }
    if yaml.trim().is_empty() {
        return Ok(Some(serde_json::Map::new()));
    }
    let value: Value = serde_norway::from_str(yaml).map_err(|e| CardError::Yaml(e.to_string()))?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(Some(serde_json::Map::new())),
        _ => Err(CardError::NotAMapping),
    }
}

/// Tags as the Hub derives them from card data: the card's own `tags`, the library, the
/// pipeline tag, languages, `license:…`, `dataset:…` and `base_model:…`.
pub fn derived_tags(card: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let mut push = |t: String| {
        if !t.is_empty() && !tags.contains(&t) {
            tags.push(t);
        }
    };
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    for t in strings(card.get("library_name")) {
        push(t);
    }
    for t in strings(card.get("tags")) {
        push(t);
    }
    for t in strings(card.get("pipeline_tag")) {
        push(t);
    }
    for t in strings(card.get("language")) {
        push(t);
    }
    for t in strings(card.get("license")) {
        push(format!("license:{t}"));
    }
    for t in strings(card.get("datasets")) {
        push(format!("dataset:{t}"));
    }
    for t in strings(card.get("base_model")) {
        push(format!("base_model:{t}"));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_front_matter() {
        let card = parse_card("---\nlicense: mit\ntags:\n- a\n---\n# Title\n")
            .expect("ok")
            .expect("some");
        assert_eq!(card["license"], "mit");
        assert_eq!(
            derived_tags(&card),
            vec!["a".to_owned(), "license:mit".to_owned()]
        );
    }

    #[test]
    fn no_front_matter_is_none() {
        assert!(parse_card("# Title\n---\n").expect("ok").is_none());
        assert!(
            parse_card("---\nunterminated: true\n")
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn bad_yaml_and_non_mappings_are_errors_not_panics() {
        assert!(parse_card("---\n: : :\n  - [\n---\n").is_err());
        assert!(matches!(
            parse_card("---\n- a\n- b\n---\n"),
            Err(CardError::NotAMapping)
        ));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut yaml =
            String::from("---\na: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
        for i in 0..9u8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            yaml.push_str(&format!("l{i}: &l{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        yaml.push_str("---\n");
        assert!(parse_card(&yaml).is_err());
    }
}
