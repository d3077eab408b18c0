//! A repository's page — `/{ns}/{name}`, `/datasets/{ns}/{name}`, `/spaces/{ns}/{name}`:
//! its card rendered from `README.md` (front matter left out), tags linking to the browsing
//! page, counters, and the files at `main`. Readable only by those who may read the repo;
//! everyone else gets the same answer as for a repository that does not exist.

use super::render;
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::ApiResult;
use crate::http::extract::RepoAt;
use crate::markdown;
use crate::repos::card::card_body;
use crate::repos::{RepoRef, content, with_git};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use trove_git::EntryKind;
use trove_types::{DEFAULT_BRANCH, RepoType};

/// What a file name keeps unescaped in a download link (RFC 3986 unreserved characters).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A card larger than this is not rendered (real cards are a few KiB).
const MAX_CARD_BYTES: u64 = 1 << 20;

pub struct TagLink {
    pub label: String,
    pub href: String,
}

pub struct FileRow {
    pub path: String,
    /// Download link for files; folders have none.
    pub href: Option<String>,
    pub size: String,
    pub lfs: bool,
}

#[derive(Template)]
#[template(path = "repo.html")]
pub struct RepoPage {
    pub section: &'static str,
    pub signed_in: Option<String>,
    pub kind: &'static str,
    pub id: String,
    pub private: bool,
    pub downloads: i64,
    pub likes: i64,
    pub updated: String,
    pub tags: Vec<TagLink>,
    pub card_html: Option<String>,
    pub files: Vec<FileRow>,
    pub clone_url: String,
    /// A Space's status, logs and app (`space_partial.html`).
    pub space_html: Option<String>,
}

/// `1536` → `1.5 KiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub async fn page(State(state): State<AppState>, repo_at: ApiResult<RepoAt>) -> Response {
    match repo_at {
        Ok(RepoAt { repo, caller }) => repo_page(&state, &caller, &repo).await,
        Err(e) => Err(e),
    }
    .unwrap_or_else(super::error_page)
}

async fn repo_page(state: &AppState, caller: &Caller, repo: &RepoRef) -> ApiResult<Response> {
    let repo_type = repo.repo_type;
    let index = state.db.repo_index(repo.repo.id).await?;
    let head = with_git(state, repo, |git| {
        Ok(git.resolve_revision(&format!("refs/heads/{DEFAULT_BRANCH}"))?)
    })
    .await?;
    let entries = match head.clone() {
        Some(head) => with_git(state, repo, move |git| Ok(git.list_tree(&head, "", false)?))
            .await?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let url = repo.url(state);
    let readme = entries.iter().find(|e| e.path == "README.md");
    let card_html = match readme.map(|e| &e.kind) {
        Some(kind @ EntryKind::File { size, .. }) if *size <= MAX_CARD_BYTES => {
            content::read_range(state, repo, kind, 0, *size)
                .await?
                .map(|bytes| markdown::render(card_body(&String::from_utf8_lossy(&bytes))))
        }
        _ => None,
    };
    let files = entries
        .iter()
        .map(|e| match &e.kind {
            EntryKind::File { size, lfs, .. } => FileRow {
                path: e.path.clone(),
                href: Some(format!(
                    "{url}/resolve/{DEFAULT_BRANCH}/{}",
                    percent_encoding::utf8_percent_encode(&e.path, PATH_SEGMENT)
                )),
                size: human_size(*size),
                lfs: lfs.is_some(),
            },
            _ => FileRow {
                path: e.path.clone(),
                href: None,
                size: String::new(),
                lfs: false,
            },
        })
        .collect();
    let (section, kind) = match repo_type {
        RepoType::Model => ("models", "Model"),
        RepoType::Dataset => ("datasets", "Dataset"),
        RepoType::Space => ("spaces", "Space"),
    };
    let tags: Vec<String> = index
        .as_ref()
        .and_then(|i| serde_json::from_str(&i.tags_json).ok())
        .unwrap_or_default();
    let tags = tags
        .into_iter()
        .map(|tag| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("filter", &tag);
            TagLink {
                href: format!("/{section}?{}", query.finish()),
                label: tag,
            }
        })
        .collect();
    Ok(render(&RepoPage {
        section,
        signed_in: caller.user().map(|u| u.name.clone()),
        kind,
        id: format!("{}/{}", repo.repo.namespace, repo.repo.name),
        private: repo.repo.private,
        downloads: index.as_ref().map_or(0, |i| i.downloads),
        likes: index.as_ref().map_or(0, |i| i.likes),
        updated: format_ms(repo.repo.updated_at_ms)
            .get(..10)
            .unwrap_or_default()
            .to_owned(),
        tags,
        card_html,
        files,
        clone_url: url,
        space_html: crate::http::spaces::page_partial(state, repo),
    }))
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_a_file_browser() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
