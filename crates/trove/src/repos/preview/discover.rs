//! Which files make up a dataset's configs and splits: the card's `configs:` when it declares
//! them (`config_name`, `data_files` as a pattern, a list of patterns, or `split`/`path`
//! pairs, `data_dir`), else the Hub's default layout — the data files under `data/` if there
//! are any, split by the `train`/`validation`/`test` keywords in their paths, everything in
//! `train` when no path names a split.

use globset::{GlobBuilder, GlobMatcher};
use serde_json::{Map, Value};

/// At most this many configs, and splits per config, are offered (real cards have a handful).
const MAX_CONFIGS: usize = 64;
const MAX_SPLITS: usize = 32;
/// Patterns longer than this, or more of them per split, make the config unusable.
const MAX_PATTERN_LEN: usize = 512;
const MAX_PATTERNS: usize = 64;

/// The file formats a preview reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Tsv,
    JsonLines,
    /// A `.json` file holding one array of objects.
    Json,
    Parquet,
}

impl Format {
    /// The format a path's extension names; `None` for anything a preview does not read.
    /// Text formats may be gzip-compressed (`train.csv.gz`), as the Hub's loaders read them.
    pub fn of(path: &str) -> Option<Format> {
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        let (name, gzip) = match name.strip_suffix(".gz") {
            Some(inner) => (inner, true),
            None => (name.as_str(), false),
        };
        let (_, ext) = name.rsplit_once('.')?;
        Some(match ext {
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "jsonl" => Format::JsonLines,
            "json" => Format::Json,
            "parquet" if !gzip => Format::Parquet,
            _ => return None,
        })
    }

    /// Whether the file at `path` is gzip-compressed (its name ends in `.gz`).
    pub fn is_gzip(path: &str) -> bool {
        path.to_ascii_lowercase().ends_with(".gz")
    }

    /// Which of two formats the default layout prefers when they are equally common.
    fn rank(self) -> u8 {
        match self {
            Format::Parquet => 0,
            Format::JsonLines => 1,
            Format::Csv => 2,
            Format::Tsv => 3,
            Format::Json => 4,
        }
    }
}

/// A dataset's configs, each with its splits and their files, in the order to show them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub configs: Vec<ConfigFiles>,
    /// The configs come from the card's `configs:` (not the default layout).
    pub from_card: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFiles {
    pub name: String,
    pub splits: Vec<SplitFiles>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitFiles {
    pub name: String,
    /// Repository paths, sorted; only readable formats.
    pub files: Vec<String>,
}

impl Layout {
    /// The config and split named, if the layout has them.
    pub fn find(&self, config: &str, split: &str) -> Option<&SplitFiles> {
        self.configs
            .iter()
            .find(|c| c.name == config)?
            .splits
            .iter()
            .find(|s| s.name == split)
    }
}

/// The split keywords of the Hub's default layout, in the order splits are listed.
const SPLIT_KEYWORDS: [(&str, &[&str]); 3] = [
    ("train", &["train", "training"]),
    ("validation", &["validation", "valid", "dev", "val"]),
    ("test", &["test", "testing", "eval", "evaluation"]),
];

/// The layout of a dataset whose card front matter is `card` and whose files are `paths`.
pub fn layout(card: Option<&Map<String, Value>>, paths: &[&str]) -> Layout {
    let data: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| Format::of(p).is_some() && !p.split('/').any(|s| s.starts_with('.')))
        .collect();
    if let Some(configs) = card
        .and_then(|c| c.get("configs"))
        .and_then(Value::as_array)
    {
        let configs: Vec<ConfigFiles> = configs
            .iter()
            .filter_map(|c| card_config(c, &data))
            .take(MAX_CONFIGS)
            .collect();
        if !configs.is_empty() {
            return Layout {
                configs,
                from_card: true,
            };
        }
    }
    let splits = default_splits(&data);
    Layout {
        configs: if splits.is_empty() {
            Vec::new()
        } else {
            vec![ConfigFiles {
                name: "default".to_owned(),
                splits,
            }]
        },
        from_card: false,
    }
}

/// One entry of the card's `configs:`; `None` when it names no files that exist here.
fn card_config(entry: &Value, data: &[&str]) -> Option<ConfigFiles> {
    let entry = entry.as_object()?;
    let name = entry
        .get("config_name")
        .and_then(Value::as_str)
        .unwrap_or("default");
    if name.is_empty() || name.len() > 128 {
        return None;
    }
    let data_dir = entry
        .get("data_dir")
        .and_then(Value::as_str)
        .map(|d| d.trim_matches('/'))
        .filter(|d| !d.is_empty());
    let under_dir = |p: &&str| data_dir.is_none_or(|d| p.starts_with(&format!("{d}/")));
    let splits = match entry.get("data_files") {
        None => {
            let inside: Vec<&str> = data.iter().copied().filter(under_dir).collect();
            default_splits(&inside)
        }
        Some(files) => declared_splits(files)?
            .into_iter()
            .filter_map(|(split, patterns)| {
                let patterns: Vec<String> = patterns
                    .into_iter()
                    .map(|p| match data_dir {
                        Some(d) => format!("{d}/{}", p.trim_start_matches('/')),
                        None => p.trim_start_matches('/').to_owned(),
                    })
                    .collect();
                let files = matching(&patterns, data)?;
                (!files.is_empty()).then_some(SplitFiles { name: split, files })
            })
            .take(MAX_SPLITS)
            .collect(),
    };
    (!splits.is_empty()).then(|| ConfigFiles {
        name: name.to_owned(),
        splits,
    })
}

/// `data_files` as (split, patterns): a pattern or a list of them is the `train` split; a
/// list of `{split, path}` or a mapping of split to patterns names each split.
fn declared_splits(files: &Value) -> Option<Vec<(String, Vec<String>)>> {
    fn patterns(v: &Value) -> Option<Vec<String>> {
        let out: Vec<String> = match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => return None,
        };
        (!out.is_empty()
            && out.len() <= MAX_PATTERNS
            && out.iter().all(|p| p.len() <= MAX_PATTERN_LEN))
        .then_some(out)
    }
    match files {
        Value::Array(items) if items.iter().all(Value::is_object) => {
            let mut out: Vec<(String, Vec<String>)> = Vec::new();
            for item in items {
                let split = item.get("split").and_then(Value::as_str).unwrap_or("train");
                let Some(found) = item.get("path").and_then(patterns) else {
                    continue;
                };
                if split.is_empty() || split.len() > 128 {
                    continue;
                }
                match out.iter_mut().find(|(s, _)| s == split) {
                    Some((_, existing)) => existing.extend(found),
                    None => out.push((split.to_owned(), found)),
                }
            }
            Some(out)
        }
        Value::Object(map) => Some(
            map.iter()
                .filter_map(|(split, v)| Some((split.clone(), patterns(v)?)))
                .collect(),
        ),
        other => Some(vec![("train".to_owned(), patterns(other)?)]),
    }
}

/// The files among `data` that match any of `patterns` (`*` within a folder, `**` across
/// folders, as the Hub's `fsspec` globs); `None` when a pattern is not a valid glob.
fn matching(patterns: &[String], data: &[&str]) -> Option<Vec<String>> {
    let globs: Vec<GlobMatcher> = patterns
        .iter()
        .map(|p| {
            GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
                .ok()
        })
        .collect::<Option<_>>()?;
    let mut files: Vec<String> = data
        .iter()
        .filter(|p| globs.iter().any(|g| g.is_match(p)))
        .map(|p| (*p).to_owned())
        .collect();
    files.sort();
    Some(files)
}

/// The Hub's default layout over `data` (readable data files).
fn default_splits(data: &[&str]) -> Vec<SplitFiles> {
    let in_data_dir: Vec<&str> = data
        .iter()
        .copied()
        .filter(|p| p.starts_with("data/"))
        .collect();
    let candidates = if in_data_dir.is_empty() {
        data.to_vec()
    } else {
        in_data_dir
    };
    // One format per config, as the Hub's loader builds one: the most common one.
    let Some(format) = [
        Format::Parquet,
        Format::JsonLines,
        Format::Csv,
        Format::Tsv,
        Format::Json,
    ]
    .into_iter()
    .filter_map(|f| {
        let n = candidates
            .iter()
            .filter(|p| Format::of(p) == Some(f))
            .count();
        (n > 0).then_some((n, f))
    })
    .max_by(|a, b| a.0.cmp(&b.0).then(b.1.rank().cmp(&a.1.rank())))
    .map(|(_, f)| f) else {
        return Vec::new();
    };
    let mut files: Vec<&str> = candidates
        .into_iter()
        .filter(|p| Format::of(p) == Some(format))
        .collect();
    files.sort_unstable();
    let mut splits: Vec<SplitFiles> = SPLIT_KEYWORDS
        .iter()
        .map(|(split, keywords)| SplitFiles {
            name: (*split).to_owned(),
            files: files
                .iter()
                .filter(|p| split_of(p) == Some(keywords))
                .map(|p| (*p).to_owned())
                .collect(),
        })
        .filter(|s| !s.files.is_empty())
        .collect();
    if splits.is_empty() {
        splits.push(SplitFiles {
            name: "train".to_owned(),
            files: files.into_iter().map(str::to_owned).collect(),
        });
    }
    splits
}

/// The keywords of the first split a path names: a keyword between separators (`-`, `.`,
/// `_`, space, digits, `/`), as in `data/train-00000-of-00001.parquet` or `dev/x.csv`.
fn split_of(path: &str) -> Option<&'static [&'static str]> {
    let lower = path.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| matches!(c, '-' | '.' | '_' | ' ' | '/') || c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .collect();
    SPLIT_KEYWORDS
        .iter()
        .find(|(_, keywords)| words.iter().any(|w| keywords.contains(w)))
        .map(|(_, keywords)| *keywords)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Named = Vec<(String, Vec<(String, Vec<String>)>)>;

    fn names(layout: &Layout) -> Named {
        layout
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.splits
                        .iter()
                        .map(|s| (s.name.clone(), s.files.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn default_layout_splits_by_keywords_under_data() {
        let paths = [
            "README.md",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
            "data/validation-00000-of-00001.parquet",
            "extra.csv",
            ".hidden/x.csv",
        ];
        let layout = layout(None, &paths);
        assert!(!layout.from_card);
        assert_eq!(
            names(&layout),
            vec![(
                "default".to_owned(),
                vec![
                    (
                        "train".to_owned(),
                        s(&[
                            "data/train-00000-of-00002.parquet",
                            "data/train-00001-of-00002.parquet"
                        ])
                    ),
                    (
                        "validation".to_owned(),
                        s(&["data/validation-00000-of-00001.parquet"])
                    ),
                    ("test".to_owned(), s(&["data/test-00000-of-00001.parquet"])),
                ]
            )]
        );
    }

    #[test]
    fn default_layout_without_keywords_is_one_train_split_of_the_main_format() {
        let paths = ["a.csv", "b.csv", "notes.txt", "c.jsonl", "sub/latest.csv"];
        assert_eq!(
            names(&layout(None, &paths)),
            vec![(
                "default".to_owned(),
                vec![("train".to_owned(), s(&["a.csv", "b.csv", "sub/latest.csv"]))]
            )]
        );
        // Keywords are whole words: "contest" names no split, "dev" and "eval" do.
        let paths = ["contest.csv", "dev.csv", "my_eval_2.csv"];
        assert_eq!(
            names(&layout(None, &paths)),
            vec![(
                "default".to_owned(),
                vec![
                    ("validation".to_owned(), s(&["dev.csv"])),
                    ("test".to_owned(), s(&["my_eval_2.csv"])),
                ]
            )]
        );
        assert!(layout(None, &["README.md", "model.bin"]).configs.is_empty());
    }

    #[test]
    fn gzip_text_files_are_data_files_of_their_inner_format() {
        assert_eq!(Format::of("train.csv.gz"), Some(Format::Csv));
        assert_eq!(Format::of("data/x.JSONL.GZ"), Some(Format::JsonLines));
        assert_eq!(Format::of("a.json.gz"), Some(Format::Json));
        assert_eq!(Format::of("a.tsv.gz"), Some(Format::Tsv));
        assert_eq!(Format::of("a.parquet.gz"), None);
        assert_eq!(Format::of("archive.tar.gz"), None);
        assert_eq!(Format::of("x.gz"), None);
        assert!(Format::is_gzip("train.csv.gz") && !Format::is_gzip("train.csv"));
        let paths = [
            "README.md",
            "train.csv.gz",
            "test.csv",
            "data/train-00000-of-00001.jsonl.gz",
            "data/test-00000-of-00001.jsonl.gz",
        ];
        // data/ wins, as on the Hub; its gzip JSON Lines files split by keyword.
        assert_eq!(
            names(&layout(None, &paths)),
            vec![(
                "default".to_owned(),
                vec![
                    (
                        "train".to_owned(),
                        s(&["data/train-00000-of-00001.jsonl.gz"])
                    ),
                    ("test".to_owned(), s(&["data/test-00000-of-00001.jsonl.gz"])),
                ]
            )]
        );
        // Without data/, plain and gzip CSV files are one format.
        assert_eq!(
            names(&layout(None, &["train.csv.gz", "test.csv"])),
            vec![(
                "default".to_owned(),
                vec![
                    ("train".to_owned(), s(&["train.csv.gz"])),
                    ("test".to_owned(), s(&["test.csv"])),
                ]
            )]
        );
    }

    #[test]
    fn card_configs_name_splits_by_globs() {
        let card = json!({"configs": [
            {"config_name": "en", "data_files": [
                {"split": "train", "path": "en/train-*.csv"},
                {"split": "test", "path": ["en/test.csv"]}
            ]},
            {"config_name": "fr", "data_files": "fr/*.jsonl", "default": true},
            {"config_name": "by_dir", "data_dir": "de"},
            {"config_name": "mapped", "data_files": {"eval": "fr/b.jsonl"}},
            {"config_name": "missing", "data_files": "nothing/*.csv"},
            {"config_name": "bad glob", "data_files": "[.csv"},
            "not a mapping"
        ]});
        let paths = [
            "en/train-0.csv",
            "en/train-1.csv",
            "en/test.csv",
            "fr/a.jsonl",
            "fr/b.jsonl",
            "fr/deep/c.jsonl",
            "de/train.parquet",
            "de/test.parquet",
        ];
        let layout = layout(card.as_object(), &paths);
        assert!(layout.from_card);
        assert_eq!(
            names(&layout),
            vec![
                (
                    "en".to_owned(),
                    vec![
                        ("train".to_owned(), s(&["en/train-0.csv", "en/train-1.csv"])),
                        ("test".to_owned(), s(&["en/test.csv"])),
                    ]
                ),
                (
                    "fr".to_owned(),
                    vec![("train".to_owned(), s(&["fr/a.jsonl", "fr/b.jsonl"]))]
                ),
                (
                    "by_dir".to_owned(),
                    vec![
                        ("train".to_owned(), s(&["de/train.parquet"])),
                        ("test".to_owned(), s(&["de/test.parquet"])),
                    ]
                ),
                (
                    "mapped".to_owned(),
                    vec![("eval".to_owned(), s(&["fr/b.jsonl"]))]
                ),
            ]
        );
        assert_eq!(
            layout.find("en", "test").map(|s| s.files.clone()),
            Some(s(&["en/test.csv"]))
        );
        assert!(layout.find("en", "nope").is_none());
    }

    #[test]
    fn a_card_whose_configs_match_nothing_falls_back_to_the_default_layout() {
        let card = json!({"configs": [{"config_name": "x", "data_files": "none/*"}]});
        let layout = layout(card.as_object(), &["train.csv"]);
        assert!(!layout.from_card);
        assert_eq!(layout.configs[0].splits[0].files, s(&["train.csv"]));
    }
}
