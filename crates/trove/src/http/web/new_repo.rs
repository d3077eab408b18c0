//! `/new`: a signed-in user creates a model, dataset or Space under their name or an
//! organization they may write to, through the API's use case (`repos::lifecycle`, the same
//! name rules and rights as `POST /api/repos/create`). A chosen license goes into the
//! card's metadata as a first commit (`repos::commit`). A refusal is shown in the form,
//! with what was typed, and the refusal's status.

use super::csrf::CsrfToken;
use super::{Nav, render};
use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult};
use crate::repos::commit::{PendingCommit, commit};
use crate::repos::{RepoRef, find_readable_exact, lifecycle, resolve, with_git};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use trove_git::{EntryKind, TreeOp};
use trove_types::{RepoPath, RepoType};

/// Licenses offered (Hub license ids); the card may name any other later.
pub const LICENSES: &[&str] = &[
    "apache-2.0",
    "mit",
    "bsd-3-clause",
    "gpl-3.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc0-1.0",
    "openrail",
    "llama3.1",
    "other",
];
/// Space SDKs, as `create_repo(space_sdk=…)` names them.
pub const SDKS: &[&str] = &["gradio", "streamlit", "docker", "static"];

#[derive(Default, Deserialize)]
pub struct NewRepoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "type")]
    repo_type: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    license: String,
    #[serde(default)]
    sdk: String,
}

#[derive(Template)]
#[template(path = "new_repo.html")]
pub struct NewRepoPage {
    pub nav: Nav,
    pub owners: Vec<String>,
    pub licenses: &'static [&'static str],
    pub sdks: &'static [&'static str],
    pub form: NewRepoForm,
    pub error: Option<String>,
}

/// The namespaces `caller` may create repositories in: their own, then their organizations
/// where their role writes.
fn owners(caller: &Caller) -> Vec<String> {
    let Caller::User { user, orgs, .. } = caller else {
        return Vec::new();
    };
    std::iter::once(user.name.clone())
        .chain(orgs.iter().map(|m| m.org.name.clone()))
        .filter(|ns| Access::in_namespace(caller, ns) >= Access::Write)
        .collect()
}

fn page(caller: &Caller, csrf: &CsrfToken, form: NewRepoForm, error: Option<String>) -> Response {
    render(&NewRepoPage {
        nav: Nav::new("", caller, csrf),
        owners: owners(caller),
        licenses: LICENSES,
        sdks: SDKS,
        form,
        error,
    })
}

#[derive(Deserialize)]
pub struct TypeQuery {
    #[serde(default, rename = "type")]
    repo_type: String,
}

/// `GET /new`; anonymous visitors are sent to log in first.
pub async fn form(
    caller: ApiResult<Caller>,
    csrf: CsrfToken,
    Query(query): Query<TypeQuery>,
) -> Response {
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return super::error_page(e),
    };
    if caller.is_anonymous() {
        return Redirect::to("/login?next=/new").into_response();
    }
    let form = NewRepoForm {
        repo_type: query.repo_type,
        visibility: "public".into(),
        ..NewRepoForm::default()
    };
    page(&caller, &csrf, form, None)
}

/// `POST /new`.
pub async fn create(
    State(state): State<AppState>,
    caller: ApiResult<Caller>,
    csrf: CsrfToken,
    headers: HeaderMap,
    form: Result<Form<NewRepoForm>, FormRejection>,
) -> Response {
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return super::error_page(e),
    };
    let form = match super::form_fields(form) {
        Ok(form) => form,
        Err(e) => return super::error_page(e),
    };
    if let Err(e) = CsrfToken::check(&state, &headers, &form.csrf) {
        return super::error_page(e);
    }
    match create_repo(&state, &caller, &form).await {
        Ok(path) => Redirect::to(&path).into_response(),
        Err(e) => {
            let status = e.public_parts().status;
            let message = crate::error::header_text(&e.public_parts().message);
            let mut response = page(&caller, &csrf, form, Some(message));
            *response.status_mut() = status;
            response
        }
    }
}

/// Checks the form as the API checks its body, creates the repository and answers its page.
async fn create_repo(state: &AppState, caller: &Caller, form: &NewRepoForm) -> ApiResult<String> {
    caller.require_user()?;
    let repo_type = match form.repo_type.as_str() {
        "" | "model" => RepoType::Model,
        "dataset" => RepoType::Dataset,
        "space" => RepoType::Space,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid repo type {other:?}"
            )));
        }
    };
    let private = match form.visibility.as_str() {
        "" | "public" => false,
        "private" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid visibility {other:?}"
            )));
        }
    };
    let sdk = match repo_type {
        RepoType::Space if SDKS.contains(&form.sdk.as_str()) => Some(form.sdk.as_str()),
        RepoType::Space => {
            return Err(ApiError::bad_request(
                "A Space needs an SDK: gradio, streamlit, docker or static",
            ));
        }
        _ => None,
    };
    let license = match form.license.as_str() {
        "" => None,
        l if LICENSES.contains(&l) => Some(l),
        other => return Err(ApiError::bad_request(format!("Unknown license {other:?}"))),
    };
    let name = form.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("Name the repository"));
    }
    let created = lifecycle::create_seeded(
        state,
        caller,
        repo_type,
        form.owner.trim(),
        name,
        private,
        sdk,
    )
    .await?;
    let repo = find_readable_exact(
        state,
        caller,
        repo_type,
        &created.repo.namespace,
        &created.repo.name,
    )
    .await?;
    if let Some(license) = license {
        set_license(state, caller, &repo, license).await?;
    }
    Ok(super::repo_path(&repo))
}

/// Writes `license` into the card's metadata: a new card for a model or dataset, a line in
/// a Space's seeded card.
async fn set_license(
    state: &AppState,
    caller: &Caller,
    repo: &RepoRef,
    license: &str,
) -> ApiResult<()> {
    let name = repo.repo.name.clone();
    let line = format!("license: {license}\n");
    let blob = with_git(state, repo, move |git| {
        let head = resolve(git, trove_types::DEFAULT_BRANCH)?;
        let seeded = match git.entry_at(&head, "README.md")? {
            Some(trove_git::Entry {
                kind: EntryKind::File {
                    blob, lfs: None, ..
                },
                ..
            }) => Some(String::from_utf8_lossy(&git.read_blob(&blob)?).into_owned()),
            _ => None,
        };
        let card = match seeded.as_deref().and_then(|c| c.strip_prefix("---\n")) {
            Some(rest) => format!("---\n{line}{rest}"),
            None => format!("---\n{line}---\n\n# {name}\n"),
        };
        Ok(git.write_blob(card.as_bytes())?)
    })
    .await?;
    let path = RepoPath::parse("README.md").map_err(ApiError::internal)?;
    let pending = PendingCommit {
        summary: format!("Set the license to {license}"),
        description: String::new(),
        parent_commit: None,
        ops: vec![TreeOp::Upsert { path, blob }],
    };
    commit(state, caller, repo, trove_types::DEFAULT_BRANCH, pending).await?;
    Ok(())
}
