//! Collections (E54): `GET|POST /api/collections`, `GET|PATCH|DELETE
//! /api/collections/{namespace}/{slug}`, `POST …/items`, `PATCH|DELETE …/items/{item}`, in
//! the JSON the client parses into `Collection` and `CollectionItem`.

use super::Empty;
use super::search::{page_response, page_size, parse_cursor};
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::collections::{self, CollectionView, CreateCollection, ItemKind, MetadataUpdate};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, QueryParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use trove_db::{CollectionItem, ItemRow};

/// The largest page of `list_collections`.
const PAGE: u32 = 100;

/// A collection as the client reads it.
#[derive(Serialize)]
pub struct CollectionJson {
    slug: String,
    title: String,
    owner: String,
    items: Vec<ItemJson>,
    #[serde(rename = "lastUpdated")]
    last_updated: String,
    /// Left out of listings: the client numbers listed collections itself (and refuses a
    /// `position` key there).
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<i64>,
    private: bool,
    theme: String,
    upvotes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    url: String,
}

/// An item: `_id` is the item's own id (`item_object_id`), `id` what it points at (a repo id;
/// for a collection the client takes `slug` instead).
#[derive(Serialize)]
struct ItemJson {
    #[serde(rename = "_id")]
    object_id: String,
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    position: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<Note>,
    private: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    slug: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

#[derive(Serialize)]
struct Note {
    text: String,
}

fn item_json(item: CollectionItem) -> ItemJson {
    let (id, kind, private, slug, title) = match &item.target {
        ItemRow::Repo(repo) => (
            format!("{}/{}", repo.namespace, repo.name),
            repo.repo_type.as_str(),
            repo.private,
            None,
            None,
        ),
        ItemRow::Collection(c) => {
            let slug = collections::slug(c);
            (
                slug.clone(),
                "collection",
                c.private,
                Some(slug),
                Some(c.title.clone()),
            )
        }
    };
    ItemJson {
        object_id: item.object_id,
        id,
        kind,
        position: item.position,
        note: item.note.map(|text| Note { text }),
        private,
        slug,
        title,
    }
}

pub fn collection_json(state: &AppState, view: CollectionView) -> CollectionJson {
    let c = view.collection;
    let slug = collections::slug(&c);
    CollectionJson {
        url: format!("{}/collections/{slug}", state.public_url()),
        slug,
        owner: c.namespace,
        items: view.items.into_iter().map(item_json).collect(),
        last_updated: format_ms(c.updated_at_ms),
        position: Some(c.position),
        private: c.private,
        theme: c.theme,
        upvotes: 0,
        description: c.description.filter(|d| !d.is_empty()),
        title: c.title,
    }
}

/// `{namespace}/{slug}` of the collection routes.
#[derive(Deserialize)]
pub struct SlugParam {
    ns: String,
    slug: String,
}

impl SlugParam {
    fn slug(&self) -> String {
        format!("{}/{}", self.ns, self.slug)
    }
}

/// `…/items/{item}`.
#[derive(Deserialize)]
pub struct ItemParam {
    ns: String,
    slug: String,
    item: String,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    query: QueryParams,
) -> ApiResult<Response> {
    if let Some(sort) = query.get("sort")
        && !["lastModified", "trending", "upvotes"].contains(&sort)
    {
        return Err(ApiError::bad_request(format!(
            "Invalid sort {sort:?}: expected lastModified, trending or upvotes"
        )));
    }
    let filter = collections::ListFilter {
        owners: query.all("owner").into_iter().map(str::to_owned).collect(),
        items: query.all("item").into_iter().map(str::to_owned).collect(),
    };
    let after = query.get("cursor").map(parse_cursor).transpose()?;
    let page = collections::list(&state, &caller, filter, after, page_size(&query, PAGE)?).await?;
    let items = page
        .items
        .into_iter()
        .map(|v| CollectionJson {
            position: None,
            ..collection_json(&state, v)
        })
        .collect();
    Ok(page_response(&state, &uri, items, page.next))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SlugParam>,
) -> ApiResult<Json<CollectionJson>> {
    let view = collections::get(&state, &caller, &p.slug()).await?;
    Ok(Json(collection_json(&state, view)))
}

#[derive(Deserialize)]
pub struct CreateBody {
    title: String,
    namespace: String,
    #[serde(default)]
    private: bool,
    description: Option<String>,
    #[serde(rename = "resourceGroupId")]
    resource_group_id: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<Json<CollectionJson>> {
    if body.resource_group_id.is_some() {
        return Err(ApiError::bad_request(
            "Resource groups are not supported by this hub",
        ));
    }
    let view = collections::create(
        &state,
        &caller,
        CreateCollection {
            namespace: body.namespace,
            title: body.title,
            description: body.description,
            private: body.private,
        },
    )
    .await?;
    Ok(Json(collection_json(&state, view)))
}

#[derive(Deserialize)]
pub struct UpdateBody {
    title: Option<String>,
    description: Option<String>,
    position: Option<i64>,
    private: Option<bool>,
    theme: Option<String>,
}

/// `update_collection_metadata` reads the collection from `data`.
#[derive(Serialize)]
pub struct Wrapped {
    data: CollectionJson,
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SlugParam>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> ApiResult<Json<Wrapped>> {
    let view = collections::update(
        &state,
        &caller,
        &p.slug(),
        MetadataUpdate {
            title: body.title,
            description: body.description,
            private: body.private,
            theme: body.theme,
            position: body.position,
        },
    )
    .await?;
    Ok(Json(Wrapped {
        data: collection_json(&state, view),
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SlugParam>,
) -> ApiResult<Json<Empty>> {
    collections::delete(&state, &caller, &p.slug()).await?;
    Ok(Json(Empty {}))
}

#[derive(Deserialize)]
pub struct ItemRef {
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
pub struct AddItemBody {
    item: ItemRef,
    note: Option<String>,
}

pub async fn add_item(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SlugParam>,
    ApiJson(body): ApiJson<AddItemBody>,
) -> ApiResult<Json<CollectionJson>> {
    let kind = ItemKind::parse(&body.item.kind)?;
    let view =
        collections::add_item(&state, &caller, &p.slug(), kind, &body.item.id, body.note).await?;
    Ok(Json(collection_json(&state, view)))
}

#[derive(Deserialize)]
pub struct UpdateItemBody {
    note: Option<String>,
    position: Option<i64>,
}

pub async fn update_item(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ItemParam>,
    ApiJson(body): ApiJson<UpdateItemBody>,
) -> ApiResult<Json<Empty>> {
    collections::update_item(
        &state,
        &caller,
        &format!("{}/{}", p.ns, p.slug),
        &p.item,
        body.note,
        body.position,
    )
    .await?;
    Ok(Json(Empty {}))
}

pub async fn delete_item(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ItemParam>,
) -> ApiResult<Json<Empty>> {
    collections::delete_item(&state, &caller, &format!("{}/{}", p.ns, p.slug), &p.item).await?;
    Ok(Json(Empty {}))
}
