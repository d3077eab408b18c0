//! Collection pages: `/collections/{owner}` (the owner's collections the visitor may see, in
//! the owner's order) and `/collections/{owner}/{slug}` (one collection's visible items,
//! with their notes). A private collection is, to those who may not see it, missing.

use super::csrf::CsrfToken;
use super::{Nav, error_page, render};
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::collections;
use crate::error::ApiResult;
use crate::http::extract::ApiPath;
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use trove_db::ItemRow;

pub struct CollectionRow {
    pub slug: String,
    pub title: String,
    pub description: Option<String>,
    pub private: bool,
    pub count: usize,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "collections.html")]
pub struct CollectionsPage {
    pub nav: Nav,
    pub owner: String,
    pub collections: Vec<CollectionRow>,
}

pub struct ItemRowView {
    pub id: String,
    pub kind: &'static str,
    pub label: String,
    pub href: String,
    pub private: bool,
    pub note: Option<String>,
}

#[derive(Template)]
#[template(path = "collection.html")]
pub struct CollectionPage {
    pub nav: Nav,
    pub owner: String,
    pub title: String,
    pub description: Option<String>,
    pub private: bool,
    pub updated: String,
    pub items: Vec<ItemRowView>,
}

#[derive(Deserialize)]
pub struct OwnerParam {
    owner: String,
}

#[derive(Deserialize)]
pub struct SlugParam {
    ns: String,
    slug: String,
}

pub async fn owner_page(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    path: ApiResult<ApiPath<OwnerParam>>,
) -> Response {
    async {
        let ApiPath(OwnerParam { owner }) = path?;
        let views = collections::of_namespace(&state, &caller, &owner).await?;
        Ok(render(&CollectionsPage {
            nav: Nav::new("", &caller, &csrf),
            owner,
            collections: views
                .into_iter()
                .map(|v| CollectionRow {
                    slug: collections::slug(&v.collection),
                    count: v.items.len(),
                    updated: format_ms(v.collection.updated_at_ms),
                    title: v.collection.title,
                    description: v.collection.description,
                    private: v.collection.private,
                })
                .collect(),
        }))
    }
    .await
    .unwrap_or_else(error_page)
}

pub async fn page(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    path: ApiResult<ApiPath<SlugParam>>,
) -> Response {
    async {
        let ApiPath(SlugParam { ns, slug }) = path?;
        let view = collections::get(&state, &caller, &format!("{ns}/{slug}")).await?;
        let public = state.public_url();
        let items = view
            .items
            .into_iter()
            .map(|item| match item.target {
                ItemRow::Repo(repo) => {
                    let id = format!("{}/{}", repo.namespace, repo.name);
                    ItemRowView {
                        href: format!("{public}/{}{id}", repo.repo_type.url_prefix()),
                        label: id.clone(),
                        id,
                        kind: repo.repo_type.as_str(),
                        private: repo.private,
                        note: item.note,
                    }
                }
                ItemRow::Collection(c) => {
                    let slug = collections::slug(&c);
                    ItemRowView {
                        href: format!("{public}/collections/{slug}"),
                        id: slug,
                        label: c.title,
                        kind: "collection",
                        private: c.private,
                        note: item.note,
                    }
                }
            })
            .collect();
        let c = view.collection;
        Ok(render(&CollectionPage {
            nav: Nav::new("", &caller, &csrf),
            updated: format_ms(c.updated_at_ms),
            owner: c.namespace,
            title: c.title,
            description: c.description,
            private: c.private,
            items,
        }))
    }
    .await
    .unwrap_or_else(error_page)
}
