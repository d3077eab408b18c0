//! `GET /api/models`, `/api/datasets`, `/api/spaces`: listing and search (E13), answered
//! from the search index, paginated with an absolute `Link: <…&cursor=…>; rel="next"`.

use super::repo_json::{GatedJson, RepoJson, Sibling};
use super::{link_header, next_page_url};
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, TypeParam};
use crate::repos::card::{LINKED, PIPELINE, USES_DATASET, USES_MODEL};
use crate::repos::listing;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use trove_db::{Cursor, ListQuery, Listed, SortKey, Visibility};
use trove_types::RepoType;

/// Page size without `limit`, and its cap.
const MAX_PAGE: u32 = 1000;
/// Cap when each item carries its files and card (`full`, `cardData`, `expand=siblings`).
const MAX_FULL_PAGE: u32 = 100;

/// Properties a listing or `expand` can return from the index (others the client may name,
/// such as `gguf`, are not offered and simply left out; `runtime` and `inference` are
/// added live by [`list`]).
const PROPERTIES: &[&str] = &[
    "author",
    "cardData",
    "config",
    "createdAt",
    "disabled",
    "downloads",
    "downloadsAllTime",
    "gated",
    "host",
    "lastModified",
    "library_name",
    "likes",
    "pipeline_tag",
    "private",
    "safetensors",
    "sdk",
    "sha",
    "siblings",
    "subdomain",
    "tags",
    "trendingScore",
    "usedStorage",
];

/// What each item of the page carries.
enum Shape {
    /// The Hub's default summary, plus `cardData` / `config` when asked.
    Summary { card_data: bool, config: bool },
    /// Everything we have (`full=true`).
    Full { config: bool },
    /// `id` plus exactly these properties.
    Expand(Vec<String>),
}

impl Shape {
    fn includes(&self, property: &str, repo_type: RepoType) -> bool {
        let summary: &[&str] = match repo_type {
            RepoType::Model => &[
                "author",
                "sha",
                "lastModified",
                "createdAt",
                "private",
                "gated",
                "disabled",
                "downloads",
                "likes",
                "trendingScore",
                "tags",
                "pipeline_tag",
                "library_name",
            ],
            RepoType::Dataset => &[
                "author",
                "sha",
                "lastModified",
                "createdAt",
                "private",
                "gated",
                "disabled",
                "downloads",
                "likes",
                "trendingScore",
                "tags",
            ],
            RepoType::Space => &[
                "author",
                "sha",
                "lastModified",
                "createdAt",
                "private",
                "likes",
                "trendingScore",
                "tags",
                "sdk",
            ],
        };
        match self {
            Shape::Summary { card_data, config } => {
                summary.contains(&property)
                    || (*card_data && property == "cardData")
                    || (*config && property == "config")
            }
            Shape::Full { config } => property != "config" || *config,
            Shape::Expand(props) => props.iter().any(|p| p == property),
        }
    }

    /// How items are rendered, as a listing cache key: equal for shapes that render alike.
    fn view(&self) -> String {
        match self {
            Shape::Summary { card_data, config } => format!("summary:{card_data}:{config}"),
            Shape::Full { config } => format!("full:{config}"),
            Shape::Expand(props) => {
                let mut props: Vec<&str> = props.iter().map(String::as_str).collect();
                props.sort_unstable();
                props.dedup();
                format!("expand:{}", props.join(","))
            }
        }
    }

    /// Whether items show any of the index's JSON documents (card data, files, safetensors,
    /// config), which the listing then has to read.
    fn documents(&self, repo_type: RepoType) -> bool {
        ["cardData", "siblings", "safetensors", "config", "inference"]
            .iter()
            .any(|p| self.includes(p, repo_type))
    }

    fn heavy(&self) -> bool {
        match self {
            Shape::Summary { card_data, .. } => *card_data,
            Shape::Full { .. } => true,
            Shape::Expand(props) => props.iter().any(|p| p == "siblings" || p == "cardData"),
        }
    }
}

fn parse_json(text: Option<&str>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

/// A listed repository with the properties `keep` accepts that it has a value for, from the
/// search index. JSON columns are parsed only for the properties kept.
fn repo_json(l: &Listed, keep: impl Fn(&str) -> bool) -> RepoJson {
    let (r, i) = (&l.repo, &l.index);
    let model = r.repo_type == RepoType::Model;
    let counted = r.repo_type != RepoType::Space;
    let json = |name: &str, text: Option<&str>| parse_json(text.filter(|_| keep(name)));
    let mut out = RepoJson {
        object_id: r.id.to_string(),
        id: format!("{}/{}", r.namespace, r.name),
        author: Some(r.namespace.clone()),
        sha: i.sha.clone(),
        last_modified: Some(format_ms(i.last_modified_ms)),
        created_at: Some(format_ms(r.created_at_ms)),
        private: Some(r.private),
        gated: Some(GatedJson::from(r.gated)),
        disabled: Some(false),
        downloads: counted.then_some(i.downloads),
        downloads_all_time: counted.then_some(i.downloads_all_time),
        likes: Some(i.likes),
        trending_score: Some(i.trending_score),
        tags: keep("tags")
            .then(|| parse_json(Some(&i.tags_json)).unwrap_or_else(|| Value::Array(Vec::new()))),
        pipeline_tag: i.pipeline_tag.clone().filter(|_| model),
        library_name: i.library_name.clone().filter(|_| model),
        sdk: i.sdk.clone().filter(|_| r.repo_type == RepoType::Space),
        card_data: json("cardData", i.card_data_json.as_deref()),
        siblings: keep("siblings").then(|| {
            let files: Vec<String> = serde_json::from_str(&i.siblings_json).unwrap_or_default();
            files.into_iter().map(Sibling::name_only).collect()
        }),
        used_storage: Some(u64::try_from(i.used_storage).unwrap_or(0)),
        safetensors: json("safetensors", i.safetensors_json.as_deref()).filter(|_| model),
        config: json("config", i.config_json.as_deref()).filter(|_| model),
        ..RepoJson::default()
    };
    out.retain(keep);
    out
}

/// The listing's item: the properties `shape` selects; others (`model-index`, `runtime`,
/// `cardWarnings`) are info-only.
fn render(l: &Listed, shape: &Shape) -> RepoJson {
    repo_json(l, |p| {
        PROPERTIES.contains(&p) && shape.includes(p, l.repo.repo_type)
    })
}

fn parse_sort(value: Option<&str>) -> ApiResult<SortKey> {
    Ok(match value {
        None | Some("trendingScore" | "trending_score" | "trending") => SortKey::TrendingScore,
        Some("downloads") => SortKey::Downloads,
        Some("likes") => SortKey::Likes,
        Some("lastModified" | "last_modified") => SortKey::LastModified,
        Some("createdAt" | "created_at") => SortKey::CreatedAt,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid sort {other:?}: use downloads, likes, lastModified, createdAt or trendingScore"
            )));
        }
    })
}

/// `min:6B,max:128B` (also `6B` alone = at least); suffixes K, M, B, T.
fn parse_num_parameters(spec: &str) -> ApiResult<(Option<i64>, Option<i64>)> {
    let bad = || {
        ApiError::bad_request(format!(
            "Invalid num_parameters {spec:?}: use e.g. min:6B,max:128B"
        ))
    };
    let number = |s: &str| -> ApiResult<i64> {
        let s = s.trim();
        let (digits, scale) = match s.chars().last() {
            Some('K' | 'k') => (&s[..s.len() - 1], 1e3),
            Some('M' | 'm') => (&s[..s.len() - 1], 1e6),
            Some('B' | 'b') => (&s[..s.len() - 1], 1e9),
            Some('T' | 't') => (&s[..s.len() - 1], 1e12),
            _ => (s, 1.0),
        };
        let n: f64 = digits.trim().parse().map_err(|_| bad())?;
        if !(n.is_finite() && n >= 0.0) {
            return Err(bad());
        }
        Ok((n * scale).round() as i64)
    };
    let (mut min, mut max) = (None, None);
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once(':') {
            Some(("min", v)) => min = Some(number(v)?),
            Some(("max", v)) => max = Some(number(v)?),
            None => min = Some(number(part)?),
            Some(_) => return Err(bad()),
        }
    }
    Ok((min, max))
}

pub fn parse_cursor(value: &str) -> ApiResult<Cursor> {
    let bad = || ApiError::bad_request("Invalid cursor: follow the Link header as given");
    let (v, id) = value.split_once('_').ok_or_else(bad)?;
    Ok(Cursor {
        value: v.parse().map_err(|_| bad())?,
        id: id.parse().map_err(|_| bad())?,
    })
}

pub fn format_cursor(c: Cursor) -> String {
    format!("{}_{}", c.value, c.id)
}

/// `limit` as a page size, capped at `cap`.
pub fn page_size(query: &QueryParams, cap: u32) -> ApiResult<u32> {
    match query.get("limit") {
        None | Some("") => Ok(cap),
        Some(v) => v
            .parse::<u32>()
            .map(|n| n.clamp(1, cap))
            .map_err(|_| ApiError::bad_request(format!("Invalid limit {v:?}"))),
    }
}

/// A page as JSON with its `Link` header when there is a next page.
pub fn page_response<T: Serialize>(
    state: &AppState,
    uri: &Uri,
    items: Vec<T>,
    next: Option<Cursor>,
) -> Response {
    with_next_link(state, uri, next, Json(items))
}

/// `body` with the `Link` header of the next page, when there is one.
fn with_next_link(
    state: &AppState,
    uri: &Uri,
    next: Option<Cursor>,
    body: impl IntoResponse,
) -> Response {
    match next {
        Some(c) => {
            let url = next_page_url(state, uri, &format_cursor(c));
            ([link_header(&url)], body).into_response()
        }
        None => body.into_response(),
    }
}

/// The listing a request asks for: `filter`, `pipeline_tag`, Space links, `author`, `search`,
/// `num_parameters`, `sort`, `direction`, `cursor` and `limit` (capped at `cap`). The
/// visibility is left public; [`crate::repos::listing::list`] sets the caller's. Items are
/// read without their JSON documents: a caller that shows them sets `documents`.
pub fn list_query(repo_type: RepoType, query: &QueryParams, cap: u32) -> ApiResult<ListQuery> {
    let mut tags: Vec<String> = query
        .all("filter")
        .into_iter()
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(pipeline) = query.get("pipeline_tag").filter(|p| !p.is_empty()) {
        tags.push(format!("{PIPELINE}{pipeline}"));
    }
    if repo_type == RepoType::Space {
        tags.extend(
            query
                .all("models")
                .into_iter()
                .map(|m| format!("{USES_MODEL}{m}")),
        );
        tags.extend(
            query
                .all("datasets")
                .into_iter()
                .map(|d| format!("{USES_DATASET}{d}")),
        );
        if query.flag("linked") {
            tags.push(LINKED.to_owned());
        }
    }
    let (params_min, params_max) = match query.get("num_parameters") {
        Some(spec) => parse_num_parameters(spec)?,
        None => (None, None),
    };
    let ascending = match query.get("direction") {
        None | Some("-1" | "desc") => false,
        Some("1" | "asc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid direction {other:?}"
            )));
        }
    };
    let gated = match query.get("gated") {
        None | Some("") => None,
        Some("true" | "True" | "1") => Some(true),
        Some("false" | "False" | "0") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid gated {other:?}: use true or false"
            )));
        }
    };
    Ok(ListQuery {
        repo_type,
        gated,
        visibility: Visibility::Public,
        author: query
            .get("author")
            .filter(|a| !a.is_empty())
            .map(str::to_owned),
        search: query
            .all("search")
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        tags,
        params_min,
        params_max,
        only_ids: None,
        sort: parse_sort(query.get("sort"))?,
        ascending,
        after: query.get("cursor").map(parse_cursor).transpose()?,
        limit: page_size(query, cap)?,
        // Pages in the browser show none of them; the API's shape decides in `list`.
        documents: false,
    })
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(t): ApiPath<TypeParam>,
    uri: Uri,
    query: QueryParams,
) -> ApiResult<Response> {
    let repo_type = t.repo_type()?;
    let expand: Vec<String> = query.all("expand").into_iter().map(str::to_owned).collect();
    let shape = if !expand.is_empty() {
        Shape::Expand(expand)
    } else if query.flag("full") {
        Shape::Full {
            config: query.flag("config"),
        }
    } else {
        Shape::Summary {
            card_data: query.flag("cardData"),
            config: query.flag("config"),
        }
    };
    if query.get("apps").is_some() {
        return Err(ApiError::NotImplemented(
            "Filtering by local apps (`apps`) is not supported by this server".into(),
        ));
    }
    let cap = if shape.heavy() {
        MAX_FULL_PAGE
    } else {
        MAX_PAGE
    };
    let mut list_query = list_query(repo_type, &query, cap)?;
    list_query.documents = shape.documents(repo_type);
    // `inference=warm`: the models loaded for inference on this node, as model info's
    // `inference` says "warm" (the Hub: models a provider serves now). Other values, and
    // the external providers (`inference_provider`) and benchmarks, match nothing here.
    let warm_only = match query.get("inference") {
        None => false,
        Some("warm") if repo_type == RepoType::Model => true,
        Some(_) => return Ok(page_response(&state, &uri, Vec::<RepoJson>::new(), None)),
    };
    if query.get("inference_provider").is_some() || query.get("benchmark").is_some() {
        return Ok(page_response(&state, &uri, Vec::<RepoJson>::new(), None));
    }
    if warm_only {
        list_query.only_ids = Some(state.inference.warm_repo_ids());
        // The card, config and file list decide whether a loaded model still runs.
        list_query.documents = true;
    }
    // `expand=runtime` (a Space's stage, from the Spaces supervisor), `expand=inference` and
    // `inference=warm` (a model loaded or not, from the inference registry) are not from the
    // index, so such pages are never cached.
    let live =
        |name: &str| matches!(&shape, Shape::Expand(props) if props.iter().any(|p| p == name));
    let (runtime, inference) = (live("runtime"), live("inference"));
    if runtime || inference || warm_only {
        let mut page = listing::list(&state, &caller, list_query).await?;
        if warm_only {
            // Loaded is not enough: the settings or the card may have turned it off since.
            page.items
                .retain(|l| inference_status(&state, l) == Some("warm"));
        }
        let mut items: Vec<RepoJson> = page.items.iter().map(|l| render(l, &shape)).collect();
        for (item, l) in items.iter_mut().zip(&page.items) {
            if runtime && l.repo.repo_type == RepoType::Space {
                item.runtime = Some(super::repo_json::Runtime::current(&state.spaces, l.repo.id));
            }
            if inference && l.repo.repo_type == RepoType::Model {
                item.inference = inference_status(&state, l);
            }
        }
        return Ok(page_response(&state, &uri, items, page.next));
    }
    let page = listing::list_rendered(
        &state,
        &state.listing_cache,
        &caller,
        list_query,
        shape.view(),
        |page| {
            let items: Vec<RepoJson> = page.items.iter().map(|l| render(l, &shape)).collect();
            serde_json::to_vec(&items).map_err(|e| ApiError::Internal(e.into()))
        },
    )
    .await?;
    Ok(json_page_response(&state, &uri, page.body, page.next))
}

/// `expand=inference` of a listed model, by the rules of model info's
/// (`inference::Runtime::listed_status`), from the index's card data, `pipeline_tag`,
/// config summary and file list — what model info reads from the commit.
fn inference_status(state: &AppState, l: &Listed) -> Option<&'static str> {
    let card_data = parse_json(l.index.card_data_json.as_deref());
    let config = parse_json(l.index.config_json.as_deref());
    let files: Vec<String> = serde_json::from_str(&l.index.siblings_json).unwrap_or_default();
    state.inference.listed_status(
        &l.repo,
        crate::inference::Described {
            card_data: card_data.as_ref().and_then(Value::as_object),
            pipeline_tag: l.index.pipeline_tag.as_deref(),
            config: config.as_ref(),
            has_gguf: files.iter().any(|f| crate::inference::is_top_level_gguf(f)),
        },
    )
}

/// A page already serialized to JSON, with its `Link` header when there is a next page.
fn json_page_response(state: &AppState, uri: &Uri, body: Bytes, next: Option<Cursor>) -> Response {
    // What `Json` sets.
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    with_next_link(state, uri, next, (content_type, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_parameters_specs() {
        assert_eq!(
            parse_num_parameters("min:6B,max:128B").expect("valid"),
            (Some(6_000_000_000), Some(128_000_000_000))
        );
        assert_eq!(
            parse_num_parameters("1.5M").expect("valid"),
            (Some(1_500_000), None)
        );
        assert!(parse_num_parameters("min:lots").is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor { value: -5, id: 42 };
        assert_eq!(parse_cursor(&format_cursor(c)).expect("valid"), c);
        assert!(parse_cursor("nope").is_err());
    }

    #[test]
    fn sorts_accept_the_clients_names() {
        assert_eq!(
            parse_sort(Some("lastModified")).expect("ok"),
            SortKey::LastModified
        );
        assert_eq!(
            parse_sort(Some("created_at")).expect("ok"),
            SortKey::CreatedAt
        );
        assert_eq!(parse_sort(None).expect("ok"), SortKey::TrendingScore);
        assert!(parse_sort(Some("size")).is_err());
    }
}
