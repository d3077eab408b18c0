//! `/settings/tokens`: the signed-in user lists, creates (read, write, or fine-grained
//! with repositories or namespaces, permissions and an expiry) and revokes their own access
//! tokens, through the same accounts use cases as the CLI. A new token's secret is shown
//! once, on the page that answers the creating form, and never again.

use super::csrf::CsrfToken;
use super::{Nav, render};
use crate::accounts::tokens::{self, TokenSpec};
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use trove_db::{ScopeTarget, TokenRole};

/// The longest lifetime a token made here may have.
const MAX_DAYS: i64 = 3_650;
/// The longest token name.
const MAX_NAME: usize = 100;

pub struct TokenRow {
    pub name: String,
    pub role: &'static str,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub nav: Nav,
    pub tokens: Vec<TokenRow>,
    /// The secret of the token just created, shown this once.
    pub created: Option<(String, String)>,
    pub error: Option<String>,
}

fn date(ms: i64) -> String {
    format_ms(ms).get(..10).unwrap_or_default().to_owned()
}

async fn tokens_page(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfToken,
    created: Option<(String, String)>,
    error: Option<String>,
) -> ApiResult<Response> {
    let user = caller.require_user()?;
    let tokens = state
        .db
        .list_tokens(user.id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            scopes: t
                .scopes
                .iter()
                .map(|s| {
                    let target = match &s.target {
                        ScopeTarget::Repo {
                            namespace, name, ..
                        } => format!("{namespace}/{name}"),
                        ScopeTarget::Namespace(namespace) => format!("{namespace}/*"),
                    };
                    format!("{target}: {}", s.permissions.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
            name: t.name,
            role: t.role.as_str(),
            created: date(t.created_at_ms),
            last_used: t
                .last_used_at_ms
                .map(date)
                .unwrap_or_else(|| "never".into()),
            expires: t.expires_at_ms.map(date).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let mut response = render(&TokensPage {
        nav: Nav::new("", caller, csrf),
        tokens,
        created,
        error: error.clone(),
    });
    // The secret must not be kept by caches or shown again by the back button.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// Signed-out visitors are sent to the login form, which brings them back.
fn login_first(caller: &Caller) -> Option<Response> {
    caller
        .is_anonymous()
        .then(|| Redirect::to("/login?next=/settings/tokens").into_response())
}

pub async fn page(State(state): State<AppState>, caller: Caller, csrf: CsrfToken) -> Response {
    if let Some(redirect) = login_first(&caller) {
        return redirect;
    }
    tokens_page(&state, &caller, &csrf, None, None)
        .await
        .unwrap_or_else(super::error_page)
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    name: String,
    /// read | write | fineGrained
    role: String,
    /// Fine-grained: `TYPE:NS/NAME` or `NS/NAME` per line or comma.
    #[serde(default)]
    repos: String,
    #[serde(default)]
    namespaces: String,
    /// Fine-grained: repo.content.read, repo.write, discussion.write (checkboxes).
    #[serde(default)]
    read: Option<String>,
    #[serde(default)]
    write: Option<String>,
    #[serde(default)]
    discuss: Option<String>,
    /// Days until it expires; empty = never.
    #[serde(default)]
    days: String,
}

fn list(text: &str) -> Vec<String> {
    text.split([',', '\n', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The form as a token spec, or why it is not one.
fn spec_of(form: &CreateForm) -> Result<TokenSpec, String> {
    let name = form.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "A token needs a name of 1 to {MAX_NAME} characters."
        ));
    }
    let role = match form.role.as_str() {
        "read" => TokenRole::Read,
        "write" => TokenRole::Write,
        "fineGrained" => TokenRole::FineGrained,
        other => return Err(format!("Unknown role {other:?}.")),
    };
    let lifetime_ms = match form.days.trim() {
        "" => None,
        days => match days.parse::<i64>() {
            Ok(d) if (1..=MAX_DAYS).contains(&d) => Some(d * 86_400_000),
            _ => return Err(format!("Expiry must be 1 to {MAX_DAYS} days.")),
        },
    };
    let mut permissions = Vec::new();
    if role == TokenRole::FineGrained {
        for (flag, permission) in [
            (&form.read, crate::auth::policy::PERM_CONTENT_READ),
            (&form.write, crate::auth::policy::PERM_WRITE),
            (&form.discuss, crate::auth::policy::PERM_DISCUSSION_WRITE),
        ] {
            if flag.is_some() {
                permissions.push(permission.to_owned());
            }
        }
    }
    let (repos, namespaces) = if role == TokenRole::FineGrained {
        (list(&form.repos), list(&form.namespaces))
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(TokenSpec {
        name: name.to_owned(),
        role: Some(role),
        repos: repos
            .into_iter()
            .map(|r| {
                if r.contains(':') {
                    r
                } else {
                    format!("model:{r}")
                }
            })
            .collect(),
        namespaces,
        permissions,
        lifetime_ms,
    })
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    headers: HeaderMap,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Response {
    if let Some(redirect) = login_first(&caller) {
        return redirect;
    }
    async {
        let form = super::form_fields(form)?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        let user = caller.require_user()?;
        // A token made from a page is the user's own: a session may, a token may not mint
        // tokens (it could outlive its own scope).
        if let Caller::User { token, .. } = &caller
            && token.token_id.is_some()
        {
            return Err(ApiError::Forbidden(
                "Tokens are created from a signed-in browser session".into(),
            ));
        }
        let spec = match spec_of(&form) {
            Ok(spec) => spec,
            Err(message) => return tokens_page(&state, &caller, &csrf, None, Some(message)).await,
        };
        let name = spec.name.clone();
        match tokens::create(&state.db, &user.name, user, spec).await {
            Ok((secret, _)) => {
                tokens_page(&state, &caller, &csrf, Some((name, secret)), None).await
            }
            Err(e) => tokens_page(&state, &caller, &csrf, None, Some(format!("{e:#}."))).await,
        }
    }
    .await
    .unwrap_or_else(super::error_page)
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Response {
    if let Some(redirect) = login_first(&caller) {
        return redirect;
    }
    async {
        let form = super::form_fields(form)?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        let user = caller.require_user()?;
        if !tokens::revoke(&state.db, &user.name, user, &form.name)
            .await
            .map_err(ApiError::internal)?
        {
            return Err(ApiError::NotFound(format!(
                "No token named {:?}",
                form.name
            )));
        }
        Ok(Redirect::to("/settings/tokens").into_response())
    }
    .await
    .unwrap_or_else(super::error_page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(role: &str, days: &str) -> CreateForm {
        CreateForm {
            csrf: String::new(),
            name: "laptop".into(),
            role: role.into(),
            repos: "acme/a, dataset:acme/b".into(),
            namespaces: String::new(),
            read: Some("on".into()),
            write: None,
            discuss: None,
            days: days.into(),
        }
    }

    #[test]
    fn forms_become_token_specs_or_say_why_not() {
        let spec = spec_of(&form("fineGrained", "30")).expect("spec");
        assert_eq!(spec.repos, ["model:acme/a", "dataset:acme/b"]);
        assert_eq!(spec.permissions, ["repo.content.read"]);
        assert_eq!(spec.lifetime_ms, Some(30 * 86_400_000));
        let spec = spec_of(&form("read", "")).expect("spec");
        assert!(spec.repos.is_empty() && spec.permissions.is_empty());
        assert!(spec_of(&form("root", "")).is_err());
        assert!(spec_of(&form("read", "0")).is_err());
        assert!(spec_of(&form("read", "99999")).is_err());
        let mut nameless = form("read", "");
        nameless.name = " ".into();
        assert!(spec_of(&nameless).is_err());
    }
}
