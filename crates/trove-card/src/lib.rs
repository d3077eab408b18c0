//! Model, dataset and Space cards: the YAML front matter of `README.md`, as JSON `cardData`
//! and as typed metadata per repo type, plus the tags the Hub derives from it and from the
//! repository's files.
//!
//! Tolerant by design: a card that is not YAML, not a mapping, too large, an alias bomb, or
//! has fields of the wrong type never blocks anything. What can be read is used; every
//! problem becomes a warning shown on the repo.

mod budget;
mod licenses;
pub mod validate;

pub use licenses::LICENSES;

use serde_json::{Map, Value};
use trove_types::RepoType;

/// Front matter larger than this is not parsed (real cards are a few KiB).
const MAX_FRONT_MATTER: usize = 256 * 1024;

/// The region tag the Hub gives every repo; Trove keeps everything in one place.
pub const REGION_TAG: &str = "region:us";

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

/// The card's text after its front matter (all of it when there is none).
pub fn card_body(readme: &str) -> &str {
    let text = readme.strip_prefix('\u{feff}').unwrap_or(readme);
    let Some(yaml) = front_matter(text) else {
        return text;
    };
    // `front_matter` returned a slice of `text`: skip the opening line, the YAML, then the
    // closing `---` line.
    let opening = if text.starts_with("---\r\n") { 5 } else { 4 };
    let after_yaml = &text[opening + yaml.len()..];
    match after_yaml.find('\n') {
        Some(end) => &after_yaml[end + 1..],
        None => "",
    }
}

/// Why front matter could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("the YAML metadata is too large ({0} bytes; the limit is 256 KiB)")]
    TooLarge(usize),
    #[error("invalid YAML metadata: {0}")]
    Yaml(String),
    #[error("the YAML metadata is too costly to read: it {0}")]
    OverBudget(budget::BudgetError),
    #[error("the YAML metadata must be a mapping (key: value pairs)")]
    NotAMapping,
}

/// Parses front matter into a JSON object; `Ok(None)` when the card has none. The YAML
/// event stream is first checked against a budget of depth, values and text (aliases
/// counted as what they expand to), so hostile input fails fast instead of growing; only
/// then are values built.
pub fn parse_card(readme: &str) -> Result<Option<Map<String, Value>>, CardError> {
    let Some(yaml) = front_matter(readme) else {
        return Ok(None);
    };
    if yaml.len() > MAX_FRONT_MATTER {
        return Err(CardError::TooLarge(yaml.len()));
    }
    if yaml.trim().is_empty() {
        return Ok(Some(Map::new()));
    }
    budget::check(yaml).map_err(|e| match e {
        budget::BudgetError::Syntax(message) => CardError::Yaml(message),
        over => CardError::OverBudget(over),
    })?;
    let value: Value = serde_norway::from_str(yaml).map_err(|e| CardError::Yaml(e.to_string()))?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(Some(Map::new())),
        _ => Err(CardError::NotAMapping),
    }
}

/// A card as the index sees it: the front matter (if readable), typed metadata, and what
/// was wrong with it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Card {
    /// The front matter for `cardData`: as written, except that fields of a known name but
    /// the wrong type are dropped and scalars where a list is expected become lists, so the
    /// client's card classes can always load it.
    pub data: Option<Map<String, Value>>,
    pub meta: Meta,
    pub warnings: Vec<String>,
    /// What breaks the Hub's rules, typed: `validate-yaml` refuses a card for these, the
    /// indexer keeps the commit and reads around them.
    pub problems: Vec<CardProblem>,
}

/// One way a card breaks the Hub's metadata rules.
#[derive(Clone, Debug, PartialEq)]
pub enum CardProblem {
    /// The front matter cannot be read (YAML syntax, not a mapping, over the budget).
    Unreadable(String),
    /// A known field of the wrong shape (`model-index` included).
    WrongType {
        field: String,
        expected: &'static str,
    },
    /// A `license` that is not one of the Hub's license ids.
    UnknownLicense { value: String },
}

/// Typed metadata per repo type.
#[derive(Clone, Debug, PartialEq)]
pub enum Meta {
    Model(ModelMeta),
    Dataset(DatasetMeta),
    Space(SpaceMeta),
}

impl Default for Meta {
    fn default() -> Self {
        Meta::Model(ModelMeta::default())
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelMeta {
    pub license: Vec<String>,
    pub language: Vec<String>,
    pub tags: Vec<String>,
    pub datasets: Vec<String>,
    pub metrics: Vec<String>,
    pub library_name: Option<String>,
    pub pipeline_tag: Option<String>,
    pub base_model: Vec<String>,
    /// `adapter`, `merge`, `quantized` or `finetune`, when the card says so.
    pub base_model_relation: Option<String>,
    /// The results of `model-index`, flattened.
    pub eval_results: Vec<EvalResult>,
}

/// One metric of one `model-index` result.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalResult {
    pub model_name: String,
    pub task_type: String,
    pub dataset_type: String,
    pub dataset_name: Option<String>,
    pub metric_type: String,
    pub metric_value: Value,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetMeta {
    pub license: Vec<String>,
    pub language: Vec<String>,
    pub tags: Vec<String>,
    pub task_categories: Vec<String>,
    pub task_ids: Vec<String>,
    pub size_categories: Vec<String>,
    pub multilinguality: Vec<String>,
    pub language_creators: Vec<String>,
    pub annotations_creators: Vec<String>,
    pub source_datasets: Vec<String>,
    pub pretty_name: Option<String>,
    /// `config_name` of each entry of `configs`.
    pub configs: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpaceMeta {
    pub title: Option<String>,
    pub emoji: Option<String>,
    pub color_from: Option<String>,
    pub color_to: Option<String>,
    pub sdk: Option<String>,
    pub sdk_version: Option<String>,
    pub app_file: Option<String>,
    /// The port a docker Space's container listens on.
    pub app_port: Option<String>,
    pub pinned: Option<bool>,
    pub license: Vec<String>,
    pub tags: Vec<String>,
    /// Models and datasets the Space says it uses.
    pub models: Vec<String>,
    pub datasets: Vec<String>,
}

/// Reads a whole README.md into a [`Card`]; never fails.
pub fn read_card(repo_type: RepoType, readme: &str) -> Card {
    card_from_parse(repo_type, parse_front_matter(readme))
}

/// The front matter of a README.md as stored between commits and reads: the mapping
/// (`None` when there is none), or the warning that replaces it when it cannot be read.
pub type FrontMatter = Result<Option<Map<String, Value>>, String>;

/// Parses the front matter of a README.md, the one costly step of reading a card.
pub fn parse_front_matter(readme: &str) -> FrontMatter {
    parse_card(readme).map_err(|e| format!("README.md metadata ignored: {e}"))
}

/// Builds the [`Card`] of a parsed front matter: typed metadata, fields of the wrong type
/// dropped with warnings. Costs a walk of the mapping, never a parse.
pub fn card_from_parse(repo_type: RepoType, front_matter: FrontMatter) -> Card {
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    let mut data = match front_matter {
        Ok(data) => data,
        Err(warning) => {
            problems.push(CardProblem::Unreadable(warning.clone()));
            warnings.push(warning);
            None
        }
    };
    let empty = Map::new();
    let mut fields = Fields {
        map: data.as_ref().unwrap_or(&empty),
        warnings: &mut warnings,
        problems: &mut problems,
        fixes: Vec::new(),
    };
    let meta = match repo_type {
        RepoType::Model => Meta::Model(model_meta(&mut fields)),
        RepoType::Dataset => Meta::Dataset(dataset_meta(&mut fields)),
        RepoType::Space => Meta::Space(space_meta(&mut fields)),
    };
    let fixes = std::mem::take(&mut fields.fixes);
    if let Some(map) = data.as_mut() {
        for (key, value) in fixes {
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
    }
    Card {
        data,
        meta,
        warnings,
        problems,
    }
}

fn model_meta(f: &mut Fields<'_>) -> ModelMeta {
    ModelMeta {
        license: f.licenses(),
        language: f.strings("language"),
        tags: f.strings("tags"),
        datasets: f.strings("datasets"),
        metrics: f.strings("metrics"),
        library_name: f.string("library_name"),
        pipeline_tag: f.string("pipeline_tag"),
        base_model: f.strings("base_model"),
        base_model_relation: f.string("base_model_relation"),
        eval_results: f.model_index(),
    }
}

fn dataset_meta(f: &mut Fields<'_>) -> DatasetMeta {
    DatasetMeta {
        license: f.licenses(),
        language: f.strings("language"),
        tags: f.strings("tags"),
        task_categories: f.strings("task_categories"),
        task_ids: f.strings("task_ids"),
        size_categories: f.strings("size_categories"),
        multilinguality: f.strings("multilinguality"),
        language_creators: f.strings("language_creators"),
        annotations_creators: f.strings("annotations_creators"),
        source_datasets: f.strings("source_datasets"),
        pretty_name: f.string("pretty_name"),
        configs: f.configs(),
    }
}

fn space_meta(f: &mut Fields<'_>) -> SpaceMeta {
    SpaceMeta {
        title: f.string("title"),
        emoji: f.string("emoji"),
        color_from: f.string("colorFrom"),
        color_to: f.string("colorTo"),
        sdk: f.string("sdk"),
        sdk_version: f.string("sdk_version"),
        app_file: f.string("app_file"),
        app_port: f.string("app_port"),
        pinned: f.boolean("pinned"),
        license: f.licenses(),
        tags: f.strings("tags"),
        models: f.strings("models"),
        datasets: f.strings("datasets"),
    }
}

/// Lenient field readers: a value of the wrong type is skipped with a warning.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    warnings: &'a mut Vec<String>,
    problems: &'a mut Vec<CardProblem>,
    /// Corrections for `cardData`: the new value of a key, or `None` to drop it.
    fixes: Vec<(String, Option<Value>)>,
}

/// A YAML scalar as text: strings as they are, numbers and booleans spelled out
/// (`sdk_version: 4.36` arrives as a number).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Fields<'_> {
    /// Records that `key` had the wrong type and drops it from `cardData`.
    fn warn(&mut self, key: &str, expected: &'static str) {
        self.warnings.push(format!(
            "README.md metadata: `{key}` should be {expected}; it was ignored"
        ));
        self.problems.push(CardProblem::WrongType {
            field: key.to_owned(),
            expected,
        });
        self.fixes.push((key.to_owned(), None));
    }

    /// `license`, read as text; ids the Hub does not know are problems, kept for the index
    /// (tags are what the author wrote).
    fn licenses(&mut self) -> Vec<String> {
        let licenses = self.strings("license");
        for license in &licenses {
            if !LICENSES.contains(&license.as_str()) {
                self.problems.push(CardProblem::UnknownLicense {
                    value: license.clone(),
                });
            }
        }
        licenses
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.map.get(key)? {
            Value::Null => None,
            v => scalar_text(v).or_else(|| {
                self.warn(key, "a string");
                None
            }),
        }
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let out: Vec<String> = items.iter().filter_map(scalar_text).collect();
                if out.len() != items.iter().filter(|v| !v.is_null()).count() {
                    self.warnings.push(format!(
                        "README.md metadata: `{key}` should be a list of strings; \
                         items of other types were ignored"
                    ));
                    self.problems.push(CardProblem::WrongType {
                        field: key.to_owned(),
                        expected: "a list of strings",
                    });
                    self.fixes
                        .push((key.to_owned(), Some(Value::from(out.clone()))));
                }
                out
            }
            Some(v @ Value::String(_)) => scalar_text(v).into_iter().collect(),
            Some(v) => match scalar_text(v) {
                // `tags: 42`: a number where text is expected is read as text.
                Some(text) => {
                    self.fixes
                        .push((key.to_owned(), Some(Value::from(vec![text.clone()]))));
                    vec![text]
                }
                None => {
                    self.warn(key, "a string or a list of strings");
                    Vec::new()
                }
            },
        }
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.map.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            _ => {
                self.warn(key, "true or false");
                None
            }
        }
    }

    fn configs(&mut self) -> Vec<String> {
        match self.map.get("configs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|c| c.get("config_name").and_then(scalar_text))
                    .collect();
                if names.len() != items.len() {
                    self.warn("configs", "a list of mappings, each with a `config_name`");
                }
                names
            }
            Some(_) => {
                self.warn("configs", "a list of mappings, each with a `config_name`");
                Vec::new()
            }
        }
    }

    /// `model-index: [{name, results: [{task: {type}, dataset: {type, name}, metrics:
    /// [{type, value}]}]}]`, flattened to one entry per metric.
    fn model_index(&mut self) -> Vec<EvalResult> {
        let Some(index) = self.map.get("model-index") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut malformed = false;
        for model in index.as_array().map(Vec::as_slice).unwrap_or_else(|| {
            malformed = true;
            &[]
        }) {
            let model_name = model.get("name").and_then(scalar_text).unwrap_or_default();
            let Some(results) = model.get("results").and_then(Value::as_array) else {
                malformed = true;
                continue;
            };
            for result in results {
                let task_type = result
                    .get("task")
                    .and_then(|t| t.get("type"))
                    .and_then(scalar_text);
                let dataset = result.get("dataset");
                let dataset_type = dataset.and_then(|d| d.get("type")).and_then(scalar_text);
                let metrics = result.get("metrics").and_then(Value::as_array);
                let (Some(task_type), Some(dataset_type), Some(metrics)) =
                    (task_type, dataset_type, metrics)
                else {
                    malformed = true;
                    continue;
                };
                for metric in metrics {
                    let (Some(metric_type), Some(value)) = (
                        metric.get("type").and_then(scalar_text),
                        metric.get("value"),
                    ) else {
                        malformed = true;
                        continue;
                    };
                    out.push(EvalResult {
                        model_name: model_name.clone(),
                        task_type: task_type.clone(),
                        dataset_type: dataset_type.clone(),
                        dataset_name: dataset.and_then(|d| d.get("name")).and_then(scalar_text),
                        metric_type,
                        metric_value: value.clone(),
                    });
                }
            }
        }
        if malformed {
            self.warn(
                "model-index",
                "a list of {name, results: [{task: {type}, dataset: {type, name}, metrics: [{type, value}]}]}",
            );
        }
        out
    }
}

/// What the repository's files say, for the format tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// Format tags in display order (`pytorch`, `safetensors`, `gguf`, `parquet`…).
    pub formats: Vec<&'static str>,
}

impl FileFacts {
    /// Looks at the file paths of a commit.
    pub fn from_paths<'a>(repo_type: RepoType, paths: impl IntoIterator<Item = &'a str>) -> Self {
        const MODEL: &[(&str, &str)] = &[
            ("pytorch_model", "pytorch"),
            ("tf_model.h5", "tf"),
            ("flax_model.msgpack", "jax"),
            (".onnx", "onnx"),
            (".safetensors", "safetensors"),
            (".gguf", "gguf"),
        ];
        const DATASET: &[(&str, &str)] = &[
            (".parquet", "parquet"),
            (".csv", "csv"),
            (".json", "json"),
            (".jsonl", "json"),
            (".txt", "text"),
            (".arrow", "arrow"),
            (".tar", "webdataset"),
            (".tar.gz", "webdataset"),
        ];
        let mut found: Vec<&'static str> = Vec::new();
        for path in paths {
            let name = path.rsplit('/').next().unwrap_or(path);
            let hit = match repo_type {
                RepoType::Model => MODEL
                    .iter()
                    .find(|(p, _)| {
                        if p.starts_with('.') {
                            name.ends_with(p)
                        } else {
                            name.starts_with(p) || name == *p
                        }
                    })
                    .map(|(_, t)| *t),
                RepoType::Dataset if !name.starts_with('.') && name != "README.md" => DATASET
                    .iter()
                    .find(|(ext, _)| name.ends_with(ext))
                    .map(|(_, t)| *t),
                _ => None,
            };
            if let Some(tag) = hit
                && !found.contains(&tag)
            {
                found.push(tag);
            }
        }
        let order: Vec<&str> = match repo_type {
            RepoType::Model => MODEL.iter().map(|(_, t)| *t).collect(),
            _ => DATASET.iter().map(|(_, t)| *t).collect(),
        };
        found.sort_by_key(|t| order.iter().position(|o| o == t));
        FileFacts { formats: found }
    }
}

/// Tags as the Hub derives them: library, file formats, pipeline tag, the card's own tags,
/// languages, `dataset:…`, `base_model:…`, `license:…` for models; prefixed categories
/// (`task_categories:…`, `language:…`, `size_categories:…`, `format:…`) for datasets; the
/// SDK for Spaces; and the region for all.
pub fn derive_tags(card: &Card, files: &FileFacts) -> Vec<String> {
    let mut tags = TagList::default();
    match &card.meta {
        Meta::Model(m) => {
            tags.extend(m.library_name.iter().cloned());
            tags.extend(files.formats.iter().map(|f| (*f).to_owned()));
            tags.extend(m.pipeline_tag.iter().cloned());
            tags.extend(m.tags.iter().cloned());
            tags.extend(m.language.iter().cloned());
            tags.extend(m.datasets.iter().map(|d| format!("dataset:{d}")));
            for base in &m.base_model {
                tags.push(format!("base_model:{base}"));
                if let Some(relation) = &m.base_model_relation {
                    tags.push(format!("base_model:{relation}:{base}"));
                }
            }
            tags.extend(m.license.iter().map(|l| format!("license:{l}")));
        }
        Meta::Dataset(d) => {
            tags.extend(d.tags.iter().cloned());
            for (prefix, values) in [
                ("task_categories", &d.task_categories),
                ("task_ids", &d.task_ids),
                ("annotations_creators", &d.annotations_creators),
                ("language_creators", &d.language_creators),
                ("multilinguality", &d.multilinguality),
                ("source_datasets", &d.source_datasets),
                ("language", &d.language),
                ("license", &d.license),
                ("size_categories", &d.size_categories),
            ] {
                tags.extend(values.iter().map(|v| format!("{prefix}:{v}")));
            }
            tags.extend(files.formats.iter().map(|f| format!("format:{f}")));
        }
        Meta::Space(s) => {
            tags.extend(s.sdk.iter().cloned());
            tags.extend(s.tags.iter().cloned());
            tags.extend(s.license.iter().map(|l| format!("license:{l}")));
        }
    }
    tags.push(REGION_TAG.to_owned());
    tags.0
}

/// What listings can match beyond the shown tags: a model's pipeline tag (`pipeline_tag=`,
/// distinct from a card tag of the same name), and for Spaces the models and datasets they
/// use (`models=`, `datasets=`, `linked=true` of `list_spaces`).
pub fn hidden_facets(card: &Card) -> Vec<String> {
    if let Meta::Model(m) = &card.meta {
        return m
            .pipeline_tag
            .iter()
            .map(|p| format!("{PIPELINE}{p}"))
            .collect();
    }
    let Meta::Space(s) = &card.meta else {
        return Vec::new();
    };
    let mut out: Vec<String> = s
        .models
        .iter()
        .map(|m| format!("{USES_MODEL}{m}"))
        .collect();
    out.extend(s.datasets.iter().map(|d| format!("{USES_DATASET}{d}")));
    if !out.is_empty() {
        out.push(LINKED.to_owned());
    }
    out
}

/// Facet prefixes of [`hidden_facets`]; they contain a character no tag a client sends has.
pub const USES_MODEL: &str = "\u{1}model:";
pub const USES_DATASET: &str = "\u{1}dataset:";
pub const LINKED: &str = "\u{1}linked";
pub const PIPELINE: &str = "\u{1}pipeline_tag:";

/// An ordered list of distinct non-empty tags.
#[derive(Default)]
struct TagList(Vec<String>);

impl TagList {
    fn push(&mut self, tag: String) {
        if !tag.is_empty() && !self.0.contains(&tag) {
            self.0.push(tag);
        }
    }
    fn extend(&mut self, tags: impl IntoIterator<Item = String>) {
        for t in tags {
            self.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_body_follows_the_front_matter() {
        assert_eq!(card_body("---\nlicense: mit\n---\n# Title\n"), "# Title\n");
        assert_eq!(card_body("\u{feff}---\r\na: 1\r\n---\r\nbody"), "body");
        assert_eq!(card_body("# No metadata\n"), "# No metadata\n");
        assert_eq!(card_body("---\na: 1\n---"), "");
        assert_eq!(card_body("---\nunclosed\n"), "---\nunclosed\n");
    }

    fn model(text: &str) -> Card {
        read_card(RepoType::Model, text)
    }

    #[test]
    fn reads_front_matter() {
        let card = parse_card("---\nlicense: mit\ntags:\n- a\n---\n# Title\n")
            .expect("ok")
            .expect("some");
        assert_eq!(card["license"], "mit");
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

    fn alias_bomb() -> String {
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
        yaml
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let start = std::time::Instant::now();
        assert!(parse_card(&alias_bomb()).is_err());
        let card = model(&alias_bomb());
        assert!(card.data.is_none());
        assert_eq!(card.warnings.len(), 1, "{:?}", card.warnings);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn deep_nesting_and_huge_front_matter_are_warnings() {
        let deep = format!(
            "---\na: {}{}\n---\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let card = model(&deep);
        assert!(
            card.data.is_none() && card.warnings.len() == 1,
            "{:?}",
            card.warnings
        );

        let huge = format!("---\ndescription: \"{}\"\n---\n", "x".repeat(300_000));
        let card = model(&huge);
        assert!(card.data.is_none());
        assert!(
            card.warnings[0].contains("too large"),
            "{:?}",
            card.warnings
        );
    }

    /// The shapes of issue #11, read as a commit reads them: each is refused with one
    /// warning, the rest of the card handling goes on, and it takes well under the generous
    /// ceiling of a debug build (release timings: docs/fuzzing.md).
    #[test]
    fn hostile_cards_are_refused_with_a_warning_in_bounded_time() {
        let mut quadratic = format!("---\nlicense: mit\na: &a \"{}\"\nb: [", "x".repeat(20_000));
        quadratic.push_str(&vec!["*a"; 2500].join(","));
        quadratic.push_str("]\n---\n# Card\n");
        let deep = format!(
            "---\ntags: {}{}\n---\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let big = format!("---\ndescription: \"{}\"\n---\n", "y".repeat(900_000));
        // Just under the size limit, made of aliases of a mapping.
        let mut many = String::from("---\nbase: &b {k1: v, k2: v, k3: v, k4: v}\nl: [");
        while many.len() < MAX_FRONT_MATTER - 16 {
            many.push_str("*b,");
        }
        many.push_str("]\n---\n");
        for (name, text) in [
            ("quadratic aliases", &quadratic),
            ("deep", &deep),
            ("900 KB", &big),
            ("aliases up to the size limit", &many),
        ] {
            let start = std::time::Instant::now();
            let card = model(text);
            let took = start.elapsed();
            assert!(card.data.is_none(), "{name}");
            assert_eq!(card.warnings.len(), 1, "{name}: {:?}", card.warnings);
            assert!(
                card.warnings[0].starts_with("README.md metadata ignored"),
                "{name}: {:?}",
                card.warnings
            );
            assert!(took < std::time::Duration::from_secs(2), "{name}: {took:?}");
        }
    }

    #[test]
    fn model_card_typed_and_tags_as_the_hub_derives_them() {
        let card = model(
            "---\nlicense: mit\nlanguage: [en, fr]\nlibrary_name: transformers\n\
             pipeline_tag: text-classification\ntags: [sentiment]\ndatasets: [acme/reviews]\n\
             metrics: [accuracy]\nbase_model: acme/base\nbase_model_relation: finetune\n---\n",
        );
        assert!(card.warnings.is_empty(), "{:?}", card.warnings);
        let Meta::Model(m) = &card.meta else {
            panic!("model meta")
        };
        assert_eq!(m.library_name.as_deref(), Some("transformers"));
        assert_eq!(m.metrics, vec!["accuracy"]);
        let files = FileFacts::from_paths(
            RepoType::Model,
            ["config.json", "model.safetensors", "pytorch_model.bin"],
        );
        assert_eq!(
            derive_tags(&card, &files),
            vec![
                "transformers",
                "pytorch",
                "safetensors",
                "text-classification",
                "sentiment",
                "en",
                "fr",
                "dataset:acme/reviews",
                "base_model:acme/base",
                "base_model:finetune:acme/base",
                "license:mit",
                "region:us",
            ]
        );
    }

    #[test]
    fn wrong_types_are_skipped_with_warnings() {
        let card = model(
            "---\npipeline_tag: [a, b]\nlicense: {name: mit}\ntags: [ok, {bad: 1}]\n\
             library_name: 42\n---\n",
        );
        let Meta::Model(m) = &card.meta else {
            panic!("model meta")
        };
        assert_eq!(m.pipeline_tag, None);
        assert!(m.license.is_empty());
        assert_eq!(m.tags, vec!["ok"]);
        assert_eq!(m.library_name.as_deref(), Some("42"));
        assert_eq!(card.warnings.len(), 3, "{:?}", card.warnings);
        let data = card.data.expect("the readable card data stays available");
        assert!(!data.contains_key("pipeline_tag") && !data.contains_key("license"));
        assert_eq!(data["tags"], serde_json::json!(["ok"]));
        assert_eq!(
            data["library_name"], 42,
            "scalars stay as written where text is expected"
        );
    }

    #[test]
    fn model_index_is_flattened_and_checked() {
        let card = model(
            "---\nmodel-index:\n- name: m\n  results:\n  - task: {type: text-classification}\n    \
             dataset: {type: imdb, name: IMDB}\n    metrics:\n    - {type: accuracy, value: 0.9}\n\
             - name: broken\n---\n",
        );
        let Meta::Model(m) = &card.meta else {
            panic!("model meta")
        };
        assert_eq!(m.eval_results.len(), 1);
        assert_eq!(m.eval_results[0].metric_type, "accuracy");
        assert_eq!(m.eval_results[0].dataset_name.as_deref(), Some("IMDB"));
        assert_eq!(card.warnings.len(), 1);
    }

    #[test]
    fn dataset_tags_are_prefixed() {
        let card = read_card(
            RepoType::Dataset,
            "---\nlicense: mit\nlanguage: en\ntask_categories: [text-classification]\n\
             size_categories: 1K<n<10K\nconfigs:\n- config_name: default\n  data_files: data/*.csv\n---\n",
        );
        let Meta::Dataset(d) = &card.meta else {
            panic!("dataset meta")
        };
        assert_eq!(d.configs, vec!["default"]);
        let files = FileFacts::from_paths(RepoType::Dataset, ["README.md", "data/train.csv"]);
        assert_eq!(
            derive_tags(&card, &files),
            vec![
                "task_categories:text-classification",
                "language:en",
                "license:mit",
                "size_categories:1K<n<10K",
                "format:csv",
                "region:us",
            ]
        );
    }

    #[test]
    fn space_card_fields() {
        let card = read_card(
            RepoType::Space,
            "---\ntitle: Demo\nemoji: 🚀\ncolorFrom: red\ncolorTo: blue\nsdk: gradio\n\
             sdk_version: 4.36\napp_file: app.py\npinned: false\nlicense: apache-2.0\n\
             models: [acme/detector]\n---\n",
        );
        let Meta::Space(s) = &card.meta else {
            panic!("space meta")
        };
        assert_eq!(s.sdk_version.as_deref(), Some("4.36"));
        assert_eq!(s.pinned, Some(false));
        assert_eq!(s.color_to.as_deref(), Some("blue"));
        assert_eq!(
            derive_tags(&card, &FileFacts::default()),
            vec!["gradio", "license:apache-2.0", "region:us"]
        );
        assert_eq!(
            hidden_facets(&card),
            vec![format!("{USES_MODEL}acme/detector"), LINKED.to_owned()]
        );
    }
}
