//! Token classification's answers: each token with its label (`aggregation_strategy: none`),
//! or consecutive tokens of one entity grouped (`simple`), as the Hub's pipeline groups them:
//! a `B-` tag starts a new group, an `I-` tag (or a bare label) of the same type continues
//! it; a group's score is the mean of its tokens', its span from its first token's start to
//! its last token's end. Labels in `ignore` (default `O`) are left out after grouping.

use crate::Result;
use crate::encoder::{Encoder, TokenLabel};

/// How tokens become entities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    None,
    Simple,
}

impl Aggregation {
    /// The strategies run here, by the client's names (`first`, `average`, `max` are not).
    pub fn parse(name: &str) -> Option<Aggregation> {
        match name {
            "none" => Some(Aggregation::None),
            "simple" => Some(Aggregation::Simple),
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

/// The entities of `input`.
pub fn entities(
    encoder: &Encoder,
    input: &str,
    aggregation: Aggregation,
    ignore: &[String],
) -> Result<Vec<Entity>> {
    let tokens = encoder.tag(input)?;
    let out = match aggregation {
        Aggregation::None => tokens
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
        Aggregation::Simple => {
            let mut groups = Vec::new();
            for group in group(&tokens) {
                let ids: Vec<u32> = group.iter().map(|t| t.id).collect();
                let (Some(first), Some(last)) = (group.first(), group.last()) else {
                    continue;
                };
                groups.push(Entity {
                    label: tag(&first.label).1.to_owned(),
                    grouped: true,
                    index: None,
                    score: group.iter().map(|t| t.score).sum::<f32>() / group.len() as f32,
                    word: encoder.words(&ids)?,
                    start: first.start,
                    end: last.end,
                });
            }
            groups
        }
    };
    Ok(out
        .into_iter()
        .filter(|e| !ignore.contains(&e.label))
        .collect())
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

/// Consecutive tokens of one entity.
fn group(tokens: &[TokenLabel]) -> Vec<&[TokenLabel]> {
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

    fn token(index: usize, label: &str) -> TokenLabel {
        TokenLabel {
            index,
            token: format!("t{index}"),
            id: index as u32,
            start: index * 2,
            end: index * 2 + 1,
            label: label.into(),
            score: 0.5,
        }
    }

    #[test]
    fn b_tags_start_groups_and_i_tags_of_the_same_type_continue_them() {
        let tokens = [
            token(1, "B-PER"),
            token(2, "I-PER"),
            token(3, "B-PER"),
            token(4, "O"),
            token(5, "O"),
            token(6, "I-LOC"),
            token(7, "B-ORG"),
        ];
        let sizes: Vec<usize> = group(&tokens).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![2, 1, 2, 1, 1]);
        assert_eq!(tag("B-PER"), ("B", "PER"));
        assert_eq!(tag("O"), ("I", "O"));
        assert!(group(&[]).is_empty());
        assert_eq!(Aggregation::parse("simple"), Some(Aggregation::Simple));
        assert_eq!(Aggregation::parse("first"), None);
    }
}
