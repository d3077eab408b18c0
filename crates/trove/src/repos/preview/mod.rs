//! Dataset previews: the first rows of a dataset's CSV, TSV, JSON Lines, JSON (an array of
//! objects) and Parquet files,
//! per config and split, with the columns' types. The files come from the card's `configs:`
//! or the Hub's default layout ([`discover`]); their bytes are read through the one content
//! path ([`content::read_range`]), so git, LFS and Xet files preview alike, and only ever a
//! bounded part: a 1 MiB prefix of text (of gzip text once inflated, [`gzip`]), a Parquet
//! file's footer and the first pages of its first row group, each within a budget of bytes
//! read and, for what is decompressed, of bytes decoded ([`declared`]). A file that cannot
//! be previewed (hostile, corrupt, too deep) is a note saying why, never a server error.
//! Results are cached per (repo, commit, config, split).

pub mod declared;
pub mod discover;
pub mod gzip;
pub mod parquet;
pub mod text;
pub mod thrift;

use super::{RepoRef, card, content, resolve, with_git};
use crate::auth::Caller;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::bounded::Bounded;
use bytes::Bytes;
use discover::{Format, Layout};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use trove_git::EntryKind;
use trove_types::GitOid;

/// Rows shown per split.
pub const MAX_ROWS: usize = 100;
/// Columns shown (wider files show their first ones).
pub const MAX_COLUMNS: usize = 200;
/// Characters of one cell shown; longer values end with `…`.
pub const MAX_CELL_CHARS: usize = 200;
/// The prefix of a text file read for its first rows.
pub const TEXT_PREFIX_BYTES: u64 = 1 << 20;
/// All bytes one preview may read.
pub const MAX_PREVIEW_BYTES: u64 = 32 << 20;
/// How long one preview may take before it is given up with a note.
pub const PREVIEW_TIME: Duration = Duration::from_secs(10);
/// A card larger than this is not read for its `configs:`.
const MAX_CARD_BYTES: u64 = 1 << 20;
/// Files listed to find data files; larger repositories are previewed from these.
const MAX_LISTED_FILES: usize = 100_000;
/// Previews kept in memory.
const CACHE_ENTRIES: usize = 128;
/// Dataset layouts kept in memory (each holds its data files' entries).
const CACHE_LAYOUTS: usize = 32;

/// Why a file has no preview, in words for the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

/// A column: its name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub dtype: String,
}

/// The first rows of a file, each cell already shortened for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<String>>,
}

/// A cell's text: at most [`MAX_CELL_CHARS`] characters, `…` when cut.
pub fn cell(value: &str) -> String {
    match value.char_indices().nth(MAX_CELL_CHARS) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_owned(),
    }
}

/// `1048576` → `1.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// The bytes one preview may still read.
pub struct Budget {
    left: u64,
}

impl Budget {
    pub fn new(bytes: u64) -> Self {
        Budget { left: bytes }
    }

    pub fn bytes_left(&self) -> u64 {
        self.left
    }

    fn spend(&mut self, n: u64) {
        self.left = self.left.saturating_sub(n);
    }
}

/// A dataset at a commit: where its configs' files are.
pub struct Dataset {
    pub commit: GitOid,
    pub layout: Layout,
    files: HashMap<String, EntryKind>,
}

/// The layout of `repo` at `rev`, for a caller who may read its files. A commit's layout
/// never changes: it is listed once and then served from memory.
pub async fn dataset(
    state: &Context,
    cache: &PreviewCache,
    caller: &Caller,
    repo: &RepoRef,
    rev: &str,
) -> ApiResult<Arc<Dataset>> {
    repo.require_content(caller)?;
    let rev = rev.to_owned();
    let commit = with_git(state, repo, move |git| resolve(git, &rev)).await?;
    let key = (repo.repo.id, commit.clone());
    if let Some(hit) = cache.layouts.get(&key) {
        return Ok(hit);
    }
    let listed = commit.clone();
    let entries = with_git(state, repo, move |git| {
        Ok(git.list_tree(&listed, "", true)?.unwrap_or_default())
    })
    .await?;
    let readme = entries
        .iter()
        .find(|e| e.path == "README.md")
        .map(|e| e.kind.clone());
    let files: HashMap<String, EntryKind> = entries
        .into_iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }) && Format::of(&e.path).is_some())
        .take(MAX_LISTED_FILES)
        .map(|e| (e.path, e.kind))
        .collect();
    let card = match readme.as_ref() {
        Some(kind @ EntryKind::File { size, .. }) if *size <= MAX_CARD_BYTES => {
            content::read_range(state, repo, kind, 0, *size)
                .await?
                .and_then(|bytes| card::parse_card(&String::from_utf8_lossy(&bytes)).ok())
                .flatten()
        }
        _ => None,
    };
    let paths: Vec<&str> = files.keys().map(String::as_str).collect();
    let layout = discover::layout(card.as_ref(), &paths);
    let dataset = Arc::new(Dataset {
        commit,
        layout,
        files,
    });
    cache.layouts.put(key, dataset.clone());
    Ok(dataset)
}

/// The preview of one config's split.
#[derive(Clone, Debug)]
pub struct SplitPreview {
    pub config: String,
    pub split: String,
    /// The file previewed (the split's first), and how many files the split has.
    pub file: String,
    pub files: usize,
    pub format: Format,
    /// The file is gzip-compressed text.
    pub gzip: bool,
    pub table: Result<Table, Unavailable>,
    /// What the rows are the first rows of ("the first row group", "the first 1.0 MiB").
    pub source: String,
    /// Why fewer rows than asked may show.
    pub note: Option<String>,
}

/// The first rows of `config`'s `split` (`EntryNotFound` when the dataset has no such split).
pub async fn preview(
    state: &Context,
    cache: &PreviewCache,
    repo: &RepoRef,
    dataset: &Dataset,
    config: &str,
    split: &str,
) -> ApiResult<Arc<SplitPreview>> {
    let Some(files) = dataset.layout.find(config, split) else {
        return Err(ApiError::EntryNotFound {
            message: format!("The dataset has no split {split:?} in config {config:?}"),
            commit: Some(dataset.commit.clone()),
        });
    };
    let key = (
        repo.repo.id,
        dataset.commit.clone(),
        config.to_owned(),
        split.to_owned(),
    );
    if let Some(hit) = cache.previews.get(&key) {
        return Ok(hit);
    }
    let Some((path, entry, format)) = files.files.iter().find_map(|p| {
        let entry = dataset.files.get(p)?;
        Some((p.clone(), entry, Format::of(p)?))
    }) else {
        return Err(ApiError::entry_not_found(
            &files.files.join(", "),
            Some(dataset.commit.clone()),
        ));
    };
    let gzip = Format::is_gzip(&path);
    let read =
        tokio::time::timeout(PREVIEW_TIME, read_file(state, repo, entry, format, gzip)).await;
    let (table, source, note) = match read {
        Ok(read) => read?,
        Err(_) => (
            Err(Unavailable(format!(
                "reading it took longer than {} s",
                PREVIEW_TIME.as_secs()
            ))),
            String::new(),
            None,
        ),
    };
    let preview = Arc::new(SplitPreview {
        config: config.to_owned(),
        split: split.to_owned(),
        file: path,
        files: files.files.len(),
        format,
        gzip,
        table,
        source,
        note,
    });
    cache.previews.put(key, preview.clone());
    Ok(preview)
}

type Read = (Result<Table, Unavailable>, String, Option<String>);

async fn read_file(
    state: &Context,
    repo: &RepoRef,
    entry: &EntryKind,
    format: Format,
    gzip: bool,
) -> ApiResult<Read> {
    let EntryKind::File { size, .. } = entry else {
        return Ok((
            Err(Unavailable("not a file".to_owned())),
            String::new(),
            None,
        ));
    };
    let size = *size;
    match format {
        Format::Parquet => {
            let src = ContentRange {
                state,
                repo,
                entry,
                size,
            };
            let mut budget = Budget::new(MAX_PREVIEW_BYTES);
            let fetched = match parquet::fetch(&src, &mut budget).await? {
                Ok(f) => f,
                Err(u) => return Ok((Err(u), String::new(), None)),
            };
            // Decoding is CPU work on at most the budget's bytes; a panic in the decoder
            // on hostile bytes is that file's problem, not the page's.
            let decoded = tokio::task::spawn_blocking(move || parquet::decode(fetched))
                .await
                .unwrap_or_else(|_| {
                    Err(Unavailable(
                        "its first rows could not be decoded".to_owned(),
                    ))
                });
            Ok(match decoded {
                Ok((table, note)) => (Ok(table), "the first row group".to_owned(), note),
                Err(u) => (Err(u), String::new(), None),
            })
        }
        Format::Csv | Format::Tsv | Format::JsonLines | Format::Json => {
            let (prefix, whole) = if gzip {
                let src = ContentRange {
                    state,
                    repo,
                    entry,
                    size,
                };
                let inflated =
                    gzip::inflate_prefix(&src, TEXT_PREFIX_BYTES as usize, MAX_PREVIEW_BYTES)
                        .await?;
                match inflated {
                    Ok(i) => (i.text, i.whole),
                    Err(u) => return Ok((Err(u), String::new(), None)),
                }
            } else {
                let Some(prefix) =
                    content::read_range(state, repo, entry, 0, TEXT_PREFIX_BYTES).await?
                else {
                    return Ok((
                        Err(Unavailable(
                            "the file's bytes are not held on this hub".to_owned(),
                        )),
                        String::new(),
                        None,
                    ));
                };
                (prefix, size <= TEXT_PREFIX_BYTES)
            };
            let source = match (whole, gzip) {
                (true, _) => "the whole file".to_owned(),
                (false, false) => format!("the first {}", human_bytes(TEXT_PREFIX_BYTES)),
                (false, true) => format!(
                    "the first {} once decompressed",
                    human_bytes(prefix.len() as u64)
                ),
            };
            let table = tokio::task::spawn_blocking(move || {
                if format == Format::Json {
                    return text::parse_json_array(&prefix, whole);
                }
                let text = text::complete_lines(&prefix, whole)?;
                match format {
                    Format::JsonLines => text::parse_json_lines(text),
                    Format::Tsv => text::parse_delimited(text, b'\t', !whole),
                    _ => text::parse_delimited(text, b',', !whole),
                }
            })
            .await
            .unwrap_or_else(|_| Err(Unavailable("its first rows could not be read".to_owned())));
            Ok((table, source, None))
        }
    }
}

/// Ranged reads of a repository file through the content path.
struct ContentRange<'a> {
    state: &'a Context,
    repo: &'a RepoRef,
    entry: &'a EntryKind,
    size: u64,
}

impl parquet::RangeRead for ContentRange<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read(&self, start: u64, len: u64) -> ApiResult<Option<Bytes>> {
        Ok(
            content::read_range(self.state, self.repo, self.entry, start, len)
                .await?
                .map(Bytes::from),
        )
    }
}

/// Previews by (repo, commit, config, split) and layouts by (repo, commit). A commit never
/// changes, so entries need no invalidation; both are bounded.
pub struct PreviewCache {
    previews: Bounded<(i64, GitOid, String, String), Arc<SplitPreview>>,
    layouts: Bounded<(i64, GitOid), Arc<Dataset>>,
}

impl Default for PreviewCache {
    fn default() -> Self {
        PreviewCache {
            previews: Bounded::new(CACHE_ENTRIES),
            layouts: Bounded::new(CACHE_LAYOUTS),
        }
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
