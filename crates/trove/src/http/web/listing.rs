//! `GET /models`, `/datasets`, `/spaces`: browse repositories with the listing API's
//! parameters (`search`, `filter`, `pipeline_tag`, `author`, `sort`, `cursor`), facets to
//! narrow by, and pages. Shows what the caller may read, like the API.

use super::csrf::CsrfToken;
use super::{Nav, render};
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::ApiResult;
use crate::http::api::search::{format_cursor, list_query};
use crate::http::extract::QueryParams;
use crate::repos::facets::{self, FilterParam};
use crate::repos::{listing, repo_url};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use trove_types::RepoType;

/// Repositories per page.
const PAGE: u32 = 30;

const SORTS: &[(&str, &str)] = &[
    ("trendingScore", "Trending"),
    ("downloads", "Most downloads"),
    ("likes", "Most likes"),
    ("lastModified", "Recently updated"),
    ("createdAt", "Newest"),
];

pub struct FacetLink {
    pub value: String,
    pub label: String,
    pub count: i64,
    pub href: String,
    pub active: bool,
}

pub struct FacetGroup {
    pub title: &'static str,
    pub values: Vec<FacetLink>,
}

pub struct SortLink {
    pub key: &'static str,
    pub label: &'static str,
    pub href: String,
    pub active: bool,
}

pub struct ActiveFilter {
    pub label: String,
    pub href: String,
}

pub struct RepoRow {
    pub id: String,
    pub href: String,
    pub kind: Option<String>,
    pub updated: String,
    pub downloads: String,
    pub likes: String,
    pub private: bool,
}

#[derive(Template)]
#[template(path = "listing.html")]
pub struct ListingPage {
    pub nav: Nav,
    pub heading: &'static str,
    pub noun: &'static str,
    pub path: String,
    pub search: String,
    /// The current parameters other than `search` and `cursor`, kept by the search form.
    pub hidden: Vec<(String, String)>,
    pub facets: Vec<FacetGroup>,
    pub active: Vec<ActiveFilter>,
    pub sorts: Vec<SortLink>,
    pub repos: Vec<RepoRow>,
    pub next: Option<String>,
}

/// The page's query parameters, in order, without `cursor`: every link changes one thing
/// and starts again from the first page.
struct Params {
    path: String,
    pairs: Vec<(String, String)>,
}

impl Params {
    fn from_uri(uri: &Uri) -> Params {
        let pairs = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .filter(|(k, v)| k != "cursor" && !v.is_empty())
            .collect();
        Params {
            path: uri.path().to_owned(),
            pairs,
        }
    }

    fn has(&self, key: &str, value: &str) -> bool {
        self.pairs.iter().any(|(k, v)| k == key && v == value)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn href(&self, pairs: &[(String, String)]) -> String {
        if pairs.is_empty() {
            return self.path.clone();
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        format!("{}?{}", self.path, query.finish())
    }

    /// With `key=value` added, or removed when present. A single-valued key (`pipeline_tag`)
    /// is replaced.
    fn toggled(&self, key: &str, value: &str, single: bool) -> String {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, v)| !(k == key && (single || v == value)))
            .cloned()
            .collect();
        if !self.has(key, value) {
            pairs.push((key.to_owned(), value.to_owned()));
        }
        self.href(&pairs)
    }

    fn with(&self, key: &str, value: &str) -> String {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != key)
            .cloned()
            .collect();
        pairs.push((key.to_owned(), value.to_owned()));
        self.href(&pairs)
    }

    fn next_page(&self, cursor: &str) -> String {
        let mut pairs = self.pairs.clone();
        pairs.push(("cursor".to_owned(), cursor.to_owned()));
        self.href(&pairs)
    }
}

/// `1234567` → `1.2M`, as listing pages show counts.
fn compact(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 1_000.0 {
        format!("{n}")
    } else if n < 1_000_000.0 {
        format!("{:.1}k", n / 1_000.0)
    } else {
        format!("{:.1}M", n / 1_000_000.0)
    }
}

pub async fn models(state: State<AppState>, caller: Caller, csrf: CsrfToken, uri: Uri) -> Response {
    page(state, caller, csrf, uri, RepoType::Model)
        .await
        .unwrap_or_else(super::error_page)
}

pub async fn datasets(
    state: State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    uri: Uri,
) -> Response {
    page(state, caller, csrf, uri, RepoType::Dataset)
        .await
        .unwrap_or_else(super::error_page)
}

pub async fn spaces(state: State<AppState>, caller: Caller, csrf: CsrfToken, uri: Uri) -> Response {
    page(state, caller, csrf, uri, RepoType::Space)
        .await
        .unwrap_or_else(super::error_page)
}

async fn page(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    uri: Uri,
    repo_type: RepoType,
) -> ApiResult<Response> {
    let query = QueryParams::from_uri(&uri);
    let mut list = list_query(repo_type, &query, PAGE)?;
    list.limit = PAGE;
    let page = listing::list(&state, &caller, list).await?;
    let params = Params::from_uri(&uri);

    let facet_values = state.facet_cache.get(&state.db, repo_type).await?;
    let mut active = Vec::new();
    let facets = facet_values
        .iter()
        .map(|group| {
            let (key, single) = match group.facet.param {
                FilterParam::PipelineTag => ("pipeline_tag", true),
                FilterParam::Tag => ("filter", false),
            };
            FacetGroup {
                title: group.facet.title,
                values: group
                    .values
                    .iter()
                    .map(|(value, count)| FacetLink {
                        value: value.clone(),
                        label: facets::label(&group.facet, value),
                        count: *count,
                        href: params.toggled(key, value, single),
                        active: params.has(key, value),
                    })
                    .collect(),
            }
        })
        .collect();
    for (key, value) in &params.pairs {
        if matches!(key.as_str(), "filter" | "pipeline_tag" | "author") {
            active.push(ActiveFilter {
                label: if key == "author" {
                    format!("author: {value}")
                } else {
                    value.clone()
                },
                href: params.toggled(key, value, false),
            });
        }
    }
    let current_sort = params.get("sort").unwrap_or("trendingScore");
    let sorts = SORTS
        .iter()
        .map(|(key, label)| SortLink {
            key,
            label,
            href: params.with("sort", key),
            active: *key == current_sort,
        })
        .collect();
    let repos = page
        .items
        .iter()
        .map(|l| RepoRow {
            id: format!("{}/{}", l.repo.namespace, l.repo.name),
            href: repo_url(&state, repo_type, &l.repo.namespace, &l.repo.name),
            kind: l.index.pipeline_tag.clone().or_else(|| l.index.sdk.clone()),
            updated: format_ms(l.index.last_modified_ms)
                .get(..10)
                .unwrap_or_default()
                .to_owned(),
            downloads: compact(l.index.downloads),
            likes: compact(l.index.likes),
            private: l.repo.private,
        })
        .collect();
    let (section, heading, noun) = match repo_type {
        RepoType::Model => ("models", "Models", "models"),
        RepoType::Dataset => ("datasets", "Datasets", "datasets"),
        RepoType::Space => ("spaces", "Spaces", "Spaces"),
    };
    Ok(render(&ListingPage {
        nav: Nav::new(section, &caller, &csrf),
        heading,
        noun,
        path: params.path.clone(),
        search: params.get("search").unwrap_or_default().to_owned(),
        hidden: params
            .pairs
            .iter()
            .filter(|(k, _)| k != "search")
            .cloned()
            .collect(),
        facets,
        active,
        sorts,
        repos,
        next: page.next.map(|c| params.next_page(&format_cursor(c))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params::from_uri(&format!("/models?{query}").parse().expect("uri"))
    }

    #[test]
    fn facet_links_toggle_one_value_and_drop_the_cursor() {
        let p = params("filter=en&sort=likes&cursor=5_9");
        assert_eq!(
            p.toggled("filter", "license:mit", false),
            "/models?filter=en&sort=likes&filter=license%3Amit"
        );
        assert_eq!(p.toggled("filter", "en", false), "/models?sort=likes");
        let p = params("pipeline_tag=a");
        assert_eq!(
            p.toggled("pipeline_tag", "b", true),
            "/models?pipeline_tag=b"
        );
        assert_eq!(p.toggled("pipeline_tag", "a", true), "/models");
        assert_eq!(
            p.with("sort", "downloads"),
            "/models?pipeline_tag=a&sort=downloads"
        );
        assert_eq!(p.next_page("3_4"), "/models?pipeline_tag=a&cursor=3_4");
    }

    #[test]
    fn counts_are_compact() {
        assert_eq!(compact(999), "999");
        assert_eq!(compact(1_234), "1.2k");
        assert_eq!(compact(2_500_000), "2.5M");
    }

    #[test]
    fn pages_escape_what_users_wrote() {
        let html = ListingPage {
            nav: Nav::anonymous(),
            heading: "Models",
            noun: "models",
            path: "/models".into(),
            search: "\"><script>x</script>".into(),
            hidden: vec![("filter".into(), "<b>".into())],
            facets: Vec::new(),
            active: Vec::new(),
            sorts: Vec::new(),
            repos: Vec::new(),
            next: None,
        }
        .render()
        .expect("renders");
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }
}
