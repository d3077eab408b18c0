//! A repository's page — `/{ns}/{name}`, `/datasets/{ns}/{name}`, `/spaces/{ns}/{name}`:
//! its card rendered from `README.md` (front matter left out, HTML sanitized), metadata
//! chips, tags linking to the browsing page, counters and a like button, the files at
//! `main`, a "use this" snippet, and for a gated repository its gate and a request form.
//! Readable only by those who may see the repo; everyone else gets the same answer as for
//! a repository that does not exist. Also the page's two forms: like, request access.

use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::{Nav, human_size, path_segments, render, repo_path, section_of};
use crate::auth::{Access, Caller};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::RepoAt;
use crate::markdown;
use crate::repos::card::card_body;
use crate::repos::{RepoRef, content, gating, likes, with_git};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use trove_git::EntryKind;
use trove_types::{DEFAULT_BRANCH, RepoType};

/// A card larger than this is not rendered (real cards are a few KiB).
const MAX_CARD_BYTES: u64 = 1 << 20;

pub struct TagLink {
    pub label: String,
    pub href: String,
}

pub struct FileRow {
    pub path: String,
    pub href: String,
    pub dir: bool,
    pub size: String,
    pub lfs: bool,
}

#[derive(Template)]
#[template(path = "repo.html")]
pub struct RepoPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub downloads: i64,
    pub likes: i64,
    pub updated: String,
    pub chips: Vec<(&'static str, String)>,
    pub tags: Vec<TagLink>,
    pub card_html: Option<String>,
    pub files: Vec<FileRow>,
    pub snippet: String,
    pub clone_url: String,
    /// The caller sees the gate and may ask to pass it.
    pub gate_form: bool,
    pub gate_note: Option<String>,
    /// A Space's status, logs and app (`space_partial.html`).
    pub space_html: Option<String>,
    /// A dataset's first rows (`dataset_preview.html`).
    pub preview: Option<super::preview::PreviewView>,
    /// A model the hub runs: the inference widget for its task.
    pub widget: Option<Widget>,
}

/// The inference widget of a model page: a form the page's script posts to the inference
/// API with the visitor's session.
pub struct Widget {
    pub task: &'static str,
    pub endpoint: String,
    /// The input the form starts with.
    pub example: String,
    /// What the input should hold, under it (fill-mask: the model's own mask token).
    pub help: Option<String>,
}

/// The widget for a model whose card names a task the hub runs; `root` is the listing of
/// `main`'s top folder (a fill-mask model's tokenizer files give its mask token).
async fn widget(
    state: &AppState,
    repo: &RepoRef,
    card_data: Option<&Value>,
    root: &[trove_git::Entry],
) -> Option<Widget> {
    if repo.repo_type != trove_types::RepoType::Model
        || !state.inference.config().enabled
        || repo.repo.inference_disabled
    {
        return None;
    }
    let card_data = card_data?;
    // The card's own switch turns the widget off as it turns off the API.
    if crate::inference::source::card_turns_inference_off(card_data.get("inference")) {
        return None;
    }
    let tag = card_data.get("pipeline_tag")?.as_str()?;
    let task = crate::inference::Task::parse(tag)?;
    let (example, help) = match task {
        crate::inference::Task::TextGeneration | crate::inference::Task::Conversational => {
            ("Once upon a time".to_owned(), None)
        }
        crate::inference::Task::TextClassification => ("I like you. I love you".to_owned(), None),
        crate::inference::Task::TokenClassification => {
            ("My name is Sarah and I live in London".to_owned(), None)
        }
        crate::inference::Task::FillMask => {
            // The model's own mask token, as the Hub's widget takes it: BERT's `[MASK]`
            // would be no mask at all to a RoBERTa tokenizer (`<mask>`), and a 422.
            let mask = crate::inference::source::mask_token(state, repo, root)
                .await
                .unwrap_or_else(|| "[MASK]".to_owned());
            (
                format!("Paris is the {mask} of France."),
                Some(format!(
                    "Write {mask} where the model should fill in a word."
                )),
            )
        }
        _ => ("That is a happy person".to_owned(), None),
    };
    Some(Widget {
        task: task.as_str(),
        endpoint: format!("/models/{}/{}", repo.repo.namespace, repo.repo.name),
        example,
        help,
    })
}

pub async fn page(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
) -> Response {
    match repo_at {
        Ok(RepoAt { repo, caller }) => repo_page(&state, &caller, &csrf, &repo).await,
        Err(e) => Err(e),
    }
    .unwrap_or_else(super::error_page)
}

/// The card's metadata worth a chip, in the Hub's order.
fn chips(card_data: Option<&Value>, params_total: Option<i64>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => {
                let all: Vec<String> = items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .take(8)
                    .collect();
                (!all.is_empty()).then(|| all.join(", "))
            }
            _ => None,
        }
    };
    if let Some(data) = card_data {
        for (key, label) in [
            ("license", "License"),
            ("pipeline_tag", "Task"),
            ("library_name", "Library"),
            ("language", "Languages"),
            ("datasets", "Datasets"),
            ("base_model", "Base model"),
        ] {
            if let Some(value) = data.get(key).and_then(text) {
                out.push((label, value));
            }
        }
    }
    if let Some(n) = params_total.filter(|n| *n > 0) {
        out.push(("Parameters", compact_params(n)));
    }
    out
}

/// `7241732096` → `7.24B`, as the Hub writes model sizes.
fn compact_params(n: i64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// How to use the repository from code, with this hub's address.
fn snippet(state: &AppState, repo: &RepoRef, library: Option<&str>) -> String {
    let id = format!("{}/{}", repo.repo.namespace, repo.repo.name);
    let endpoint = state.public_url();
    let mut out = format!(
        "# export HF_ENDPOINT={endpoint}\nfrom huggingface_hub import snapshot_download\n\npath = snapshot_download(\"{id}\"{})\n",
        match repo.repo_type {
            RepoType::Model => "",
            RepoType::Dataset => ", repo_type=\"dataset\"",
            RepoType::Space => ", repo_type=\"space\"",
        }
    );
    match (repo.repo_type, library) {
        (RepoType::Model, Some("transformers") | None) => out.push_str(&format!(
            "\n# transformers\nfrom transformers import AutoModel\nmodel = AutoModel.from_pretrained(\"{id}\")\n"
        )),
        (RepoType::Dataset, _) => out.push_str(&format!(
            "\n# datasets\nfrom datasets import load_dataset\nds = load_dataset(\"{id}\")\n"
        )),
        _ => {}
    }
    out
}

async fn repo_page(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfToken,
    repo: &RepoRef,
) -> ApiResult<Response> {
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
    let path = repo_path(repo);
    let readme = entries.iter().find(|e| e.path == "README.md");
    let card_html = match readme.map(|e| &e.kind) {
        Some(kind @ EntryKind::File { size, .. }) if *size <= MAX_CARD_BYTES => {
            content::read_range(state, repo, kind, 0, *size)
                .await?
                .map(|bytes| {
                    markdown::render_card(
                        card_body(&String::from_utf8_lossy(&bytes)),
                        &markdown::CardLinks {
                            resolve_base: format!("{path}/resolve/{DEFAULT_BRANCH}/"),
                            blob_base: format!("{path}/blob/{DEFAULT_BRANCH}/"),
                        },
                    )
                })
        }
        _ => None,
    };
    let files = entries
        .iter()
        .map(|e| {
            let (verb, dir) = match e.kind {
                EntryKind::Dir { .. } => ("tree", true),
                EntryKind::File { .. } => ("blob", false),
            };
            FileRow {
                path: e.path.clone(),
                href: format!("{path}/{verb}/{DEFAULT_BRANCH}/{}", path_segments(&e.path)),
                dir,
                size: match &e.kind {
                    EntryKind::File { size, .. } => human_size(*size),
                    EntryKind::Dir { .. } => String::new(),
                },
                lfs: matches!(&e.kind, EntryKind::File { lfs: Some(_), .. }),
            }
        })
        .collect();
    let (section, _) = section_of(repo_type);
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
    let card_data: Option<Value> = index
        .as_ref()
        .and_then(|i| i.card_data_json.as_deref())
        .and_then(|j| serde_json::from_str(j).ok());
    let chips = chips(
        card_data.as_ref(),
        index.as_ref().and_then(|i| i.params_total),
    );
    let library = index.as_ref().and_then(|i| i.library_name.clone());
    let gate_note = match (repo.repo.gated.is_gated(), repo.access, caller.user()) {
        (true, Access::Gated, Some(user)) => state
            .db
            .access_request_status(repo.repo.id, user.id)
            .await?
            .map(|status| format!("Your access request is {}.", status.as_str())),
        _ => None,
    };
    Ok(render(&RepoPage {
        nav: Nav::new(section, caller, csrf),
        head: RepoHead::of(repo, "card", DEFAULT_BRANCH),
        downloads: index.as_ref().map_or(0, |i| i.downloads),
        likes: index.as_ref().map_or(0, |i| i.likes),
        updated: format_ms(repo.repo.updated_at_ms)
            .get(..10)
            .unwrap_or_default()
            .to_owned(),
        chips,
        tags,
        card_html,
        files,
        snippet: snippet(state, repo, library.as_deref()),
        clone_url: url,
        gate_form: repo.access == Access::Gated && gate_note.is_none(),
        gate_note,
        space_html: super::space::page_partial(state, repo),
        preview: super::preview::section(state, caller, repo).await,
        widget: widget(state, repo, card_data.as_ref(), &entries).await,
    }))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /{repo}/like`: the signed-in visitor likes the repository.
pub async fn like(
    State(state): State<AppState>,
    headers: HeaderMap,
    repo_at: ApiResult<RepoAt>,
    Form(form): Form<CsrfForm>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        likes::like(&state, &caller, &repo).await?;
        Ok::<_, ApiError>(Redirect::to(&repo_path(&repo)).into_response())
    }
    .await
    .unwrap_or_else(super::error_page)
}

/// `POST /{repo}/ask-access`: the signed-in visitor asks to pass the repository's gate.
pub async fn ask_access(
    State(state): State<AppState>,
    headers: HeaderMap,
    repo_at: ApiResult<RepoAt>,
    Form(form): Form<CsrfForm>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        gating::ask(&state, &caller, &repo, None).await?;
        Ok::<_, ApiError>(Redirect::to(&repo_path(&repo)).into_response())
    }
    .await
    .unwrap_or_else(super::error_page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_show_card_metadata_and_parameters() {
        let data = serde_json::json!({
            "license": "mit", "language": ["en", "fr"], "base_model": "acme/base", "x": 1
        });
        let chips = chips(Some(&data), Some(7_241_732_096));
        assert_eq!(
            chips,
            vec![
                ("License", "mit".to_owned()),
                ("Languages", "en, fr".to_owned()),
                ("Base model", "acme/base".to_owned()),
                ("Parameters", "7.24B".to_owned()),
            ]
        );
    }
}
