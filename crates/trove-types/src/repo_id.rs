//! Repository types and ids (`namespace/name`), validated with the Hub's rules.

use crate::InvalidIdentifier;
use std::fmt;

/// The three kinds of repository the Hub knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoType {
    Model,
    Dataset,
    Space,
}

impl RepoType {
    pub const ALL: [RepoType; 3] = [RepoType::Model, RepoType::Dataset, RepoType::Space];

    /// Singular name as in JSON bodies (`"model"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
            RepoType::Space => "space",
        }
    }

    /// Plural segment used under `/api/` (`models`).
    pub fn plural(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
            RepoType::Space => "spaces",
        }
    }

    /// Prefix of non-API routes (resolve, LFS, git): empty for models, `datasets/` or `spaces/`.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
            RepoType::Space => "spaces/",
        }
    }

    /// Parses the singular form sent in request bodies.
    pub fn from_singular(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Parses the plural `/api/{T}` segment.
    pub fn from_plural(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.plural() == s)
    }
}

impl fmt::Display for RepoType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One segment of a repo id (a namespace or a repository name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RepoName(String);

/// First segments of URLs that belong to Trove's own routes; no user, organization or model
/// namespace may take them, or `/{namespace}/{name}` would be ambiguous.
const RESERVED_NAMESPACES: &[&str] = &[
    "api",
    "datasets",
    "spaces",
    "models",
    "kernels",
    "settings",
    "login",
    "logout",
    "signup",
    "join",
    "new",
    "organizations",
    "docs",
    "static",
    "assets",
    "healthz",
    "uploads",
    "_lfs",
    "_xet",
    "blog",
    "search",
    "collections",
    "papers",
    "pricing",
    "metrics",
];

impl RepoName {
    /// Validates with the Hub's rules: 1-96 characters of `[A-Za-z0-9._-]`, no `--` or `..`,
    /// not starting or ending with `-` or `.`, not ending with `.git`.
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let fail = |why: &str| Err(InvalidIdentifier(format!("Invalid repo name {s:?}: {why}")));
        if s.is_empty() || s.len() > 96 {
            return fail("must be 1 to 96 characters long");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return fail("only letters, digits, '.', '_' and '-' are allowed");
        }
        if s.contains("--") || s.contains("..") {
            return fail("'--' and '..' are forbidden");
        }
        if s.starts_with(['-', '.']) || s.ends_with(['-', '.']) {
            return fail("cannot start or end with '-' or '.'");
        }
        if s.ends_with(".git") {
            return fail("cannot end with '.git'");
        }
        Ok(Self(s.to_owned()))
    }

    /// Like [`RepoName::parse`], and also refuses names that Trove's routes reserve.
    pub fn parse_namespace(s: &str) -> Result<Self, InvalidIdentifier> {
        let name = Self::parse(s)?;
        if RESERVED_NAMESPACES.contains(&s.to_ascii_lowercase().as_str()) {
            return Err(InvalidIdentifier(format!("{s:?} is a reserved name")));
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// `namespace/name`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RepoId {
    pub namespace: RepoName,
    pub name: RepoName,
}

impl RepoId {
    pub fn new(namespace: RepoName, name: RepoName) -> Self {
        Self { namespace, name }
    }

    /// Parses `namespace/name`.
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let Some((ns, name)) = s.split_once('/') else {
            return Err(InvalidIdentifier(format!(
                "Invalid repo id {s:?}: expected 'namespace/name'"
            )));
        };
        Ok(Self {
            namespace: RepoName::parse(ns)?,
            name: RepoName::parse(name)?,
        })
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl serde::Serialize for RepoId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hub_style_names() {
        for ok in ["gpt2", "bert-base-uncased", "Llama_3.1-8B", "a", "x.y_z-1"] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_names_the_hub_refuses() {
        let long = "a".repeat(97);
        for bad in [
            "",
            "a--b",
            "a..b",
            "-a",
            "a-",
            ".a",
            "a.",
            "model.git",
            "a/b",
            "a b",
            "é",
            &long,
            "..",
            "a\0b",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserved_namespaces_are_refused_case_insensitively() {
        assert!(RepoName::parse_namespace("api").is_err());
        assert!(RepoName::parse_namespace("Datasets").is_err());
        assert!(RepoName::parse_namespace("alice").is_ok());
        // The first user every installation creates.
        assert!(RepoName::parse_namespace("admin").is_ok());
    }

    #[test]
    fn repo_id_round_trips() {
        let id = RepoId::parse("alice/my-model").expect("valid");
        assert_eq!(id.to_string(), "alice/my-model");
        assert!(RepoId::parse("alice").is_err());
        assert!(RepoId::parse("alice/a/b").is_err());
    }

    #[test]
    fn repo_type_segments() {
        assert_eq!(RepoType::from_plural("datasets"), Some(RepoType::Dataset));
        assert_eq!(RepoType::from_singular("space"), Some(RepoType::Space));
        assert_eq!(RepoType::Model.url_prefix(), "");
        assert_eq!(RepoType::Space.url_prefix(), "spaces/");
    }
}
