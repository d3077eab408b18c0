//! Token classification's answers, as the Hub's (transformers') pipeline builds them: each
//! token with its best label (`aggregation_strategy: none`); or entities, grouped from tokens
//! (`simple`) or from words (`first`, `average`, `max`).
//!
//! Words: a token starts a word unless it continues the one before ([`TokenLabel::subword`]).
//! A word's label is its first token's best (`first`), the best of its tokens' averaged
//! probabilities (`average`), or the best label of the token that has the highest probability
//! of all (`max`), with that probability as its score.
//!
//! Entities: a `B-` tag starts a new group, an `I-` tag (or a bare label) of the same type
//! continues it; a group's label is its first member's without the prefix, its score the
//! mean of its members', its word their words joined by the tokenizer's decoder, its span
//! from its first member's start to its last one's end. Labels in `ignore` (default `O`) are
//! left out after grouping.

use crate::encoder::{Encoder, TokenLabel, argmax};
use crate::error::Result;

/// How tokens become entities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    None,
    Simple,
    First,
    Average,
    Max,
}

impl Aggregation {
    /// A strategy by the client's name, in any case (the pipeline upper-cases it).
    pub fn parse(name: &str) -> Option<Aggregation> {
        match name.to_ascii_lowercase().as_str() {
            "none" => Some(Aggregation::None),
            "simple" => Some(Aggregation::Simple),
            "first" => Some(Aggregation::First),
            "average" => Some(Aggregation::Average),
            "max" => Some(Aggregation::Max),
            _ => None,
        }
    }
}

/// One answer element: a token (`grouped == false`: `entity`, `index`) or a group
/// (`entity_group`).
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub label: String,
    pub grouped: bool,
    pub index: Option<usize>,
    pub score: f32,
    pub word: String,
    pub start: usize,
    pub end: usize,
}

/// The entities of each input (the inputs run as batches).
pub fn entities<S: AsRef<str>>(
    encoder: &Encoder,
    inputs: &[S],
    aggregation: Aggregation,
    ignore: &[String],
) -> Result<Vec<Vec<Entity>>> {
    encoder
        .tag(inputs)?
        .into_iter()
        .map(|tokens| entities_of(encoder, tokens, aggregation, ignore))
        .collect()
}

/// The entities of one input's labelled tokens.
fn entities_of(
    encoder: &Encoder,
    tokens: Vec<TokenLabel>,
    aggregation: Aggregation,
    ignore: &[String],
) -> Result<Vec<Entity>> {
    let members: Vec<Entity> = match aggregation {
        Aggregation::None | Aggregation::Simple => tokens
            .into_iter()
            .map(|t| Entity {
                label: t.label,
                grouped: false,
                index: Some(t.index),
                score: t.score,
                word: t.token,
                start: t.start,
                end: t.end,
            })
            .collect(),
        Aggregation::First | Aggregation::Average | Aggregation::Max => {
            let mut words = Vec::new();
            for word in split_words(&tokens) {
                if let Some(entity) = aggregate_word(encoder, word, aggregation)? {
                    words.push(entity);
                }
            }
            words
        }
    };
    let out = if aggregation == Aggregation::None {
        members
    } else {
        let mut groups = Vec::new();
        for group in group(&members) {
            let (Some(first), Some(last)) = (group.first(), group.last()) else {
                continue;
            };
            groups.push(Entity {
                label: tag(&first.label).1.to_owned(),
                grouped: true,
                index: None,
                score: group.iter().map(|e| e.score).sum::<f32>() / group.len() as f32,
                word: encoder.join_tokens(group.iter().map(|e| e.word.clone()).collect())?,
                start: first.start,
                end: last.end,
            });
        }
        groups
    };
    Ok(out
        .into_iter()
        .filter(|e| !ignore.contains(&e.label))
        .collect())
}

/// Consecutive tokens of one word: a token that does not continue a word starts one.
fn split_words(tokens: &[TokenLabel]) -> Vec<&[TokenLabel]> {
    let mut words = Vec::new();
    let mut begin = 0;
    for (i, token) in tokens.iter().enumerate().skip(1) {
        if !token.subword {
            words.push(&tokens[begin..i]);
            begin = i;
        }
    }
    if begin < tokens.len() {
        words.push(&tokens[begin..]);
    }
    words
}

/// One word's label and score under `first`, `average` or `max`.
fn aggregate_word(
    encoder: &Encoder,
    word: &[TokenLabel],
    aggregation: Aggregation,
) -> Result<Option<Entity>> {
    let (Some(first), Some(last)) = (word.first(), word.last()) else {
        return Ok(None);
    };
    let scores: Vec<f32> = match aggregation {
        Aggregation::Average => (0..first.scores.len())
            .map(|label| {
                word.iter()
                    .map(|t| t.scores.get(label).copied().unwrap_or(0.0))
                    .sum::<f32>()
                    / word.len() as f32
            })
            .collect(),
        Aggregation::Max => {
            // The first token whose best probability is the highest (Python's `max`).
            let mut best = first;
            for token in word {
                if token.score > best.score {
                    best = token;
                }
            }
            best.scores.clone()
        }
        Aggregation::First | Aggregation::None | Aggregation::Simple => first.scores.clone(),
    };
    let Some(label) = argmax(&scores) else {
        return Ok(None);
    };
    Ok(Some(Entity {
        label: encoder.labels().get(label).cloned().unwrap_or_default(),
        grouped: false,
        index: None,
        score: scores[label],
        word: encoder.join_tokens(word.iter().map(|t| t.token.clone()).collect())?,
        start: first.start,
        end: last.end,
    }))
}

/// `B-PER` → (`B`, `PER`), `I-PER` → (`I`, `PER`), anything else → (`I`, itself).
fn tag(label: &str) -> (&'static str, &str) {
    if let Some(rest) = label.strip_prefix("B-") {
        ("B", rest)
    } else if let Some(rest) = label.strip_prefix("I-") {
        ("I", rest)
    } else {
        ("I", label)
    }
}

/// Consecutive tokens or words of one entity.
fn group(tokens: &[Entity]) -> Vec<&[Entity]> {
    let mut groups = Vec::new();
    let mut begin = 0;
    for (i, pair) in tokens.windows(2).enumerate() {
        let (_, last_kind) = tag(&pair[0].label);
        let (bi, kind) = tag(&pair[1].label);
        if !(kind == last_kind && bi != "B") {
            groups.push(&tokens[begin..=i]);
            begin = i + 1;
        }
    }
    if begin < tokens.len() {
        groups.push(&tokens[begin..]);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(index: usize, label: &str) -> Entity {
        Entity {
            label: label.into(),
            grouped: false,
            index: Some(index),
            score: 0.5,
            word: format!("t{index}"),
            start: index * 2,
            end: index * 2 + 1,
        }
    }

    fn token(index: usize, subword: bool) -> TokenLabel {
        TokenLabel {
            index,
            token: format!("t{index}"),
            id: index as u32,
            start: index,
            end: index + 1,
            label: "O".into(),
            score: 0.5,
            scores: vec![0.5, 0.5],
            subword,
        }
    }

    #[test]
    fn b_tags_start_groups_and_i_tags_of_the_same_type_continue_them() {
        let entities = [
            entity(1, "B-PER"),
            entity(2, "I-PER"),
            entity(3, "B-PER"),
            entity(4, "O"),
            entity(5, "O"),
            entity(6, "I-LOC"),
            entity(7, "B-ORG"),
        ];
        let sizes: Vec<usize> = group(&entities).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![2, 1, 2, 1, 1]);
        assert_eq!(tag("B-PER"), ("B", "PER"));
        assert_eq!(tag("O"), ("I", "O"));
        assert!(group(&[]).is_empty());
    }

    #[test]
    fn subwords_join_the_word_before_them() {
        let tokens = [
            token(1, true), // the first token starts a word whatever it says
            token(2, true),
            token(3, false),
            token(4, false),
            token(5, true),
            token(6, true),
        ];
        let sizes: Vec<usize> = split_words(&tokens).iter().map(|w| w.len()).collect();
        assert_eq!(sizes, vec![2, 1, 3]);
        assert!(split_words(&[]).is_empty());
    }

    #[test]
    fn strategies_are_named_in_any_case() {
        assert_eq!(Aggregation::parse("simple"), Some(Aggregation::Simple));
        assert_eq!(Aggregation::parse("FIRST"), Some(Aggregation::First));
        assert_eq!(Aggregation::parse("Average"), Some(Aggregation::Average));
        assert_eq!(Aggregation::parse("max"), Some(Aggregation::Max));
        assert_eq!(Aggregation::parse("none"), Some(Aggregation::None));
        assert_eq!(Aggregation::parse("mean"), None);
    }
}
