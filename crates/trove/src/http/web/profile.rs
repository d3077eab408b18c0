//! `/{name}`: a user's or an organization's page — their models, datasets and Spaces as the
//! caller may see them (the listing use case decides, as for the API), the organizations a
//! user belongs to, and an organization's members with their roles for its members.

use super::csrf::CsrfToken;
use super::listing::RepoRow;
use super::{Nav, render};
use crate::auth::{Access, Caller};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::api::search::list_query;
use crate::http::extract::{ApiPath, QueryParams};
use crate::repos::{listing, repo_url};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use trove_types::RepoType;

/// Repositories listed per type.
const PER_TYPE: u32 = 100;

pub struct Section {
    pub title: &'static str,
    pub repos: Vec<RepoRow>,
}

#[derive(Template)]
#[template(path = "profile.html")]
pub struct ProfilePage {
    pub nav: Nav,
    pub name: String,
    pub kind: &'static str,
    pub sections: Vec<Section>,
    pub orgs: Vec<String>,
    /// Shown to members only: (user, role).
    pub members: Vec<(String, &'static str)>,
    pub empty: bool,
}

pub async fn page(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    path: ApiResult<ApiPath<String>>,
) -> Response {
    async {
        let ApiPath(name) = path?;
        let not_found = || ApiError::NotFound(format!("No user or organization named {name:?}"));
        let (name, kind, orgs, members): (String, _, Vec<String>, Vec<(String, &'static str)>) =
            match state.db.user_by_name(&name).await? {
                Some(user) => {
                    let orgs = state
                        .db
                        .memberships(user.id)
                        .await?
                        .into_iter()
                        .map(|m| m.org.name)
                        .collect();
                    (user.name, "User", orgs, Vec::new())
                }
                None => {
                    let org = state.db.org_by_name(&name).await?.ok_or_else(not_found)?;
                    let member = Access::in_namespace(&caller, &org.name) >= Access::Read;
                    let members = if member {
                        state
                            .db
                            .org_members(org.id)
                            .await?
                            .into_iter()
                            .map(|(u, role)| (u.name, role.as_str()))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    (org.name, "Organization", Vec::new(), members)
                }
            };
        let mut sections = Vec::new();
        for (repo_type, title) in [
            (RepoType::Model, "Models"),
            (RepoType::Dataset, "Datasets"),
            (RepoType::Space, "Spaces"),
        ] {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("author", &name)
                .append_pair("sort", "lastModified")
                .finish();
            let list = list_query(repo_type, &QueryParams::parse(&query), PER_TYPE)?;
            let page = listing::list(&state, &caller, list).await?;
            sections.push(Section {
                title,
                repos: page
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
                        downloads: l.index.downloads.to_string(),
                        likes: l.index.likes.to_string(),
                        private: l.repo.private,
                    })
                    .collect(),
            });
        }
        Ok(render(&ProfilePage {
            nav: Nav::new("", &caller, &csrf),
            empty: sections.iter().all(|s| s.repos.is_empty()),
            name: name.clone(),
            kind,
            sections,
            orgs,
            members,
        }))
    }
    .await
    .unwrap_or_else(super::error_page)
}
