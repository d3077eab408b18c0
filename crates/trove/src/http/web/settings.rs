//! `/{repo}/settings`: a repository's admins change its visibility, gating and whether it
//! takes discussions, and handle the access-request queue of a gated repository (accept,
//! reject), rename or move it, and delete it (its full name typed to confirm). Every change
//! is the API's use case (`repos::settings`, `repos::gating`, `repos::lifecycle`), so the
//! same people may make it and it is audited the same way; others get the API's refusal.

use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::{Nav, render, repo_path, section_of};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::RepoAt;
use crate::repos::gating::{self, Who};
use crate::repos::settings::{self, Change};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use trove_db::{Gating, RequestStatus};

pub struct RequestRow {
    pub user: String,
    pub status: &'static str,
    pub when: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub private: bool,
    pub gating: &'static str,
    pub discussions_disabled: bool,
    /// Only model repositories run inference: the switch shows on their page only.
    pub is_model: bool,
    pub inference_disabled: bool,
    pub requests: Vec<RequestRow>,
    pub action: String,
}

pub async fn page(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        repo.require_admin(&caller)?;
        let mut requests = Vec::new();
        if repo.repo.gated.is_gated() {
            for status in [
                RequestStatus::Pending,
                RequestStatus::Accepted,
                RequestStatus::Rejected,
            ] {
                for r in gating::list(&state, &caller, &repo, status).await? {
                    requests.push(RequestRow {
                        user: r.user.name,
                        status: status.as_str(),
                        when: crate::clock::format_ms(r.updated_at_ms)
                            .get(..10)
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
            }
        }
        let (section, _) = section_of(repo.repo_type);
        Ok::<_, ApiError>(render(&SettingsPage {
            nav: Nav::new(section, &caller, &csrf),
            head: RepoHead::of(&repo, "settings", trove_types::DEFAULT_BRANCH),
            private: repo.repo.private,
            gating: match repo.repo.gated {
                Gating::Off => "off",
                Gating::Auto => "auto",
                Gating::Manual => "manual",
            },
            discussions_disabled: repo.repo.discussions_disabled,
            is_model: repo.repo_type == trove_types::RepoType::Model,
            inference_disabled: repo.repo.inference_disabled,
            requests,
            action: format!("{}/settings", repo_path(&repo)),
        }))
    }
    .await
    .unwrap_or_else(super::error_page)
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    /// visibility | gating | discussions | request | move | delete
    action: String,
    #[serde(default)]
    value: String,
    /// For `request`: whose.
    #[serde(default)]
    user: String,
}

pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    repo_at: ApiResult<RepoAt>,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let form = super::form_fields(form)?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        let invalid = || ApiError::bad_request(format!("Invalid value {:?}", form.value));
        let mut change = Change::default();
        match form.action.as_str() {
            "visibility" => {
                change.private = Some(match form.value.as_str() {
                    "private" => true,
                    "public" => false,
                    _ => return Err(invalid()),
                });
            }
            "gating" => {
                change.gated = Some(match form.value.as_str() {
                    "off" => Gating::Off,
                    "auto" => Gating::Auto,
                    "manual" => Gating::Manual,
                    _ => return Err(invalid()),
                });
            }
            "discussions" => {
                change.discussions_disabled = Some(match form.value.as_str() {
                    "off" => true,
                    "on" => false,
                    _ => return Err(invalid()),
                });
            }
            "inference" => {
                change.inference_disabled = Some(match form.value.as_str() {
                    "off" => true,
                    "on" => false,
                    _ => return Err(invalid()),
                });
            }
            "request" => {
                let status = match form.value.as_str() {
                    "accepted" => RequestStatus::Accepted,
                    "rejected" => RequestStatus::Rejected,
                    _ => return Err(invalid()),
                };
                gating::decide(
                    &state,
                    &caller,
                    &repo,
                    Who::Name(form.user.clone()),
                    status,
                    None,
                    false,
                )
                .await?;
            }
            "move" => {
                let to = form.value.trim();
                crate::repos::settings::move_repo(&state, &caller, &repo, to).await?;
                let to = trove_types::RepoId::parse(to)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                return Ok(
                    Redirect::to(&format!("/{}{to}/settings", repo.repo_type.url_prefix()))
                        .into_response(),
                );
            }
            "delete" => {
                repo.require_admin(&caller)?;
                let full_name = format!("{}/{}", repo.repo.namespace, repo.repo.name);
                if form.value.trim() != full_name {
                    return Err(ApiError::bad_request(format!(
                        "Type {full_name} to confirm the deletion"
                    )));
                }
                crate::repos::lifecycle::delete(&state, &caller, &repo).await?;
                return Ok(Redirect::to(&format!("/{}", repo.repo.namespace)).into_response());
            }
            other => return Err(ApiError::bad_request(format!("Unknown action {other:?}"))),
        }
        if form.action != "request" {
            settings::update(&state, &caller, &repo, change).await?;
        }
        Ok(Redirect::to(&format!("{}/settings", repo_path(&repo))).into_response())
    }
    .await
    .unwrap_or_else(super::error_page)
}
