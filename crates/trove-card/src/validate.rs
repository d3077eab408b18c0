//! `validate-yaml`: a card checked by the Hub's rules, through the same typed reading the
//! indexer uses ([`super::read_card`]): what the indexer reads around is refused here.

use super::{CardProblem, LICENSES, read_card};
use trove_types::RepoType;

/// The verdict on a card: errors refuse it (400), warnings only inform.
#[derive(Debug, Default, PartialEq)]
pub struct Validation {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Validation {
    /// The Hub's plain-text form, one bullet per message (`Accept: text/plain`).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            out.push_str(&format!("- Error: {e}\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("- Warning: {w}\n"));
        }
        out
    }
}

/// Validates the front matter of `readme` (a whole README.md) for a repo of `repo_type`.
pub fn validate(repo_type: RepoType, readme: &str) -> Validation {
    let card = read_card(repo_type, readme);
    let errors = card.problems.iter().map(message).collect();
    let mut warnings = Vec::new();
    if card.problems.is_empty() && card.data.as_ref().is_none_or(|d| d.is_empty()) {
        warnings.push("empty or missing yaml metadata in repo card".to_owned());
    }
    Validation { errors, warnings }
}

fn message(problem: &CardProblem) -> String {
    match problem {
        CardProblem::Unreadable(why) => why.clone(),
        CardProblem::WrongType { field, expected } => format!("\"{field}\" must be {expected}"),
        CardProblem::UnknownLicense { value } => format!(
            "\"license\" must be one of [{}] (got \"{value}\")",
            LICENSES.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(yaml: &str) -> String {
        format!("---\n{yaml}\n---\n# Card\n")
    }

    #[test]
    fn a_good_card_passes_without_warnings() {
        let v = validate(RepoType::Model, &card("license: mit\ntags: [a]"));
        assert_eq!(v, Validation::default());
    }

    #[test]
    fn unknown_license_wrong_types_and_model_index_are_errors() {
        let v = validate(RepoType::Model, &card("license: not-a-license"));
        assert_eq!(v.errors.len(), 1);
        assert!(v.errors[0].starts_with("\"license\" must be one of [apache-2.0, mit,"));
        let v = validate(RepoType::Model, &card("pipeline_tag: [a, b]"));
        assert_eq!(v.errors, ["\"pipeline_tag\" must be a string"]);
        let v = validate(RepoType::Model, &card("model-index: nope"));
        assert!(v.errors[0].starts_with("\"model-index\" must be a list of"));
        let v = validate(RepoType::Space, &card("pinned: sometimes"));
        assert_eq!(v.errors, ["\"pinned\" must be true or false"]);
        let v = validate(RepoType::Dataset, &card("license: [mit, nope]"));
        assert_eq!(v.errors.len(), 1);
        let v = validate(RepoType::Model, &card("tags: [unclosed"));
        assert_eq!(v.errors.len(), 1);
    }

    #[test]
    fn no_metadata_is_a_warning() {
        for readme in ["# Only a title\n", "---\n---\n# Empty\n"] {
            let v = validate(RepoType::Model, readme);
            assert!(v.errors.is_empty());
            assert_eq!(v.warnings, ["empty or missing yaml metadata in repo card"]);
        }
        let text = validate(RepoType::Model, &card("license: nope")).to_text();
        assert!(
            text.starts_with("- Error: \"license\" must be one of ["),
            "{text}"
        );
    }
}
