//! The dataset preview: a section of a dataset's page (its default config and split) and the
//! full-width viewer, `/datasets/{ns}/{name}/viewer/{config}/{split}` as on the Hub, with
//! config and split chosen by plain links. Rows come from `repos::preview`, which reads only
//! a bounded part of each file; a file it cannot preview shows why.

use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::{Nav, path_segments, render, repo_path, rev_segment};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, RepoAt};
use crate::repos::RepoRef;
use crate::repos::preview::{self, Column, Dataset, SplitPreview, discover::Format};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use trove_types::{DEFAULT_BRANCH, RepoType};

/// A config or split to switch to.
pub struct Choice {
    pub label: String,
    pub href: String,
    pub active: bool,
}

/// What `dataset_preview.html` shows.
pub struct PreviewView {
    pub configs: Vec<Choice>,
    pub splits: Vec<Choice>,
    pub config: String,
    pub split: String,
    pub file: String,
    pub file_href: String,
    /// Other files of the split, not previewed.
    pub more_files: usize,
    pub format: &'static str,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<String>>,
    /// "100 rows shown of the first row group".
    pub summary: String,
    pub unavailable: Option<String>,
    pub note: Option<String>,
    pub viewer_href: String,
}

/// The preview section of a dataset's page: its first config's first split, for a caller who
/// may read the files; `None` for other repositories, other callers, and datasets without a
/// data file. A failure to read is logged and leaves the section out: the page still shows.
pub async fn section(state: &AppState, caller: &Caller, repo: &RepoRef) -> Option<PreviewView> {
    if repo.repo_type != RepoType::Dataset || repo.require_content(caller).is_err() {
        return None;
    }
    let dataset = preview::dataset(state, &state.preview_cache, caller, repo, DEFAULT_BRANCH).await;
    let dataset = match dataset {
        Ok(d) => d,
        Err(ApiError::RevisionNotFound { .. }) => return None,
        Err(e) => {
            tracing::warn!(repo.id = repo.repo.id, error = %e, "dataset preview: listing failed");
            return None;
        }
    };
    let config = dataset.layout.configs.first()?;
    let split = config.splits.first()?;
    let (config, split) = (config.name.clone(), split.name.clone());
    match preview::preview(state, &state.preview_cache, repo, &dataset, &config, &split).await {
        Ok(found) => Some(view(repo, &dataset, &found)),
        Err(e) => {
            tracing::warn!(repo.id = repo.repo.id, error = %e, "dataset preview failed");
            None
        }
    }
}

fn viewer_href(repo: &RepoRef, config: &str, split: &str) -> String {
    format!(
        "{}/viewer/{}/{}",
        repo_path(repo),
        rev_segment(config),
        rev_segment(split)
    )
}

fn view(repo: &RepoRef, dataset: &Dataset, found: &SplitPreview) -> PreviewView {
    let configs = dataset
        .layout
        .configs
        .iter()
        .map(|c| Choice {
            label: c.name.clone(),
            href: viewer_href(repo, &c.name, c.splits.first().map_or("", |s| &s.name)),
            active: c.name == found.config,
        })
        .collect();
    let splits = dataset
        .layout
        .configs
        .iter()
        .find(|c| c.name == found.config)
        .map(|c| {
            c.splits
                .iter()
                .map(|s| Choice {
                    label: s.name.clone(),
                    href: viewer_href(repo, &c.name, &s.name),
                    active: s.name == found.split,
                })
                .collect()
        })
        .unwrap_or_default();
    let (columns, rows, unavailable) = match &found.table {
        Ok(t) => (t.columns.clone(), t.rows.clone(), None),
        Err(why) => (Vec::new(), Vec::new(), Some(why.0.clone())),
    };
    let summary = format!(
        "{} row{} shown of {}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        found.source
    );
    PreviewView {
        configs,
        splits,
        config: found.config.clone(),
        split: found.split.clone(),
        file_href: format!(
            "{}/blob/{}/{}",
            repo_path(repo),
            dataset.commit,
            path_segments(&found.file)
        ),
        file: found.file.clone(),
        more_files: found.files.saturating_sub(1),
        format: match (found.format, found.gzip) {
            (Format::Csv, false) => "CSV",
            (Format::Csv, true) => "CSV (gzip)",
            (Format::Tsv, false) => "TSV",
            (Format::Tsv, true) => "TSV (gzip)",
            (Format::JsonLines, false) => "JSON Lines",
            (Format::JsonLines, true) => "JSON Lines (gzip)",
            (Format::Json, false) => "JSON",
            (Format::Json, true) => "JSON (gzip)",
            (Format::Parquet, _) => "Parquet",
        },
        columns,
        rows,
        summary,
        unavailable,
        note: found.note.clone(),
        viewer_href: viewer_href(repo, &found.config, &found.split),
    }
}

#[derive(Template)]
#[template(path = "dataset_viewer.html")]
pub struct ViewerPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub preview: Option<PreviewView>,
}

#[derive(Deserialize)]
pub struct ViewerPath {
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    split: Option<String>,
}

/// `/datasets/{ns}/{name}/viewer[/{config}/{split}]`: one split's first rows, full width.
pub async fn viewer(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<ViewerPath>>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(ViewerPath { config, split }) = path?;
        let dataset =
            preview::dataset(&state, &state.preview_cache, &caller, &repo, DEFAULT_BRANCH).await?;
        let first = dataset.layout.configs.first();
        let config = config.or_else(|| first.map(|c| c.name.clone()));
        let split = split.or_else(|| first.and_then(|c| c.splits.first()).map(|s| s.name.clone()));
        let preview = match (config, split) {
            (Some(config), Some(split)) => {
                let found = preview::preview(
                    &state,
                    &state.preview_cache,
                    &repo,
                    &dataset,
                    &config,
                    &split,
                )
                .await?;
                Some(view(&repo, &dataset, &found))
            }
            _ => None,
        };
        Ok::<_, ApiError>(render(&ViewerPage {
            nav: Nav::new("datasets", &caller, &csrf),
            head: RepoHead::of(&repo, "viewer", DEFAULT_BRANCH),
            preview,
        }))
    }
    .await
    .unwrap_or_else(super::error_page)
}
