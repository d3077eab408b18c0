//! `HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}`: file downloads. Regular files come from
//! git, LFS files straight from the blob store (no redirect; a small one held as a Xet file
//! from memory once downloaded: `repos::resolve_cache`), both with single-range support
//! and the headers `hf_hub_download` reads (`X-Repo-Commit`, quoted `ETag`, `X-Linked-*`).
//! Files held as Xet files also carry `X-Xet-Hash` and the `xet-auth` link, and when no
//! blob exists their bytes are rebuilt from xorbs as they stream. A GET of a repository's
//! designated file counts a download (`repos::listing::counts_as_download`).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, RepoAt};
use crate::http::range;
use crate::repos::content::{self, FileBytes, Opened};
use crate::repos::file_ranges::CanSendFiles;
use crate::repos::listing::{count_download, counts_as_download};
use crate::repos::{read_git, read_git_inline, resolve};
use crate::state::AppState;
use crate::throttle::answer_cache::{KeptBody, Reusable, TokenUse};
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use trove_db::TokenRole;
use trove_git::EntryKind;
use trove_types::{GitOid, Revision};
use trove_xet::XetHash;

/// The `{rev}` and `{*path}` of a resolve route (the repository is [`RepoAt`]'s).
#[derive(Deserialize)]
pub struct ResolvePath {
    rev: Revision,
    path: String,
}

/// `HEAD|GET /{prefix}{ns}/{name}/resolve/{rev}/{*path}`, mounted for the three repo types.
pub async fn serve(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    method: Method,
    conditions: Conditions,
    can_send_files: Option<Extension<CanSendFiles>>,
    ApiPath(ResolvePath { rev, path }): ApiPath<ResolvePath>,
) -> ApiResult<Response> {
    repo.require_content(&caller)?;
    let reuse = ReuseBasis::of(&repo, &caller);
    let counted = counts_as_download(repo.repo_type, &path);
    let get = method == Method::GET;
    // A file downloaded before: its revision found in the revision cache (or resolved from
    // the refs on this thread), and its entry (and a small blob's bytes) found by commit in
    // the resolve cache — nothing else read.
    let generation = repo.repo.created_at_ms;
    let revisions = &state.auth.revisions;
    let in_memory = |commit: GitOid| {
        let kind = state
            .resolve_cache
            .entry(repo.repo.id, generation, &commit, &path)?;
        let file = FileBytes::of(&repo, &kind)?;
        let bytes = match &file {
            FileBytes::Blob { blob, .. } if get && !conditions.none_match(blob.as_str()) => {
                Some(state.resolve_cache.blob(blob)?)
            }
            _ => None,
        };
        Some((commit, file, bytes))
    };
    let cached = match revisions.get(repo.repo.id, generation, rev.as_str(), repo.epochs) {
        Some(commit) => in_memory(commit),
        None => read_git_inline(&state, &repo, |git| {
            let commit = resolve(git, rev.as_str())?;
            revisions.put(repo.repo.id, generation, rev.as_str(), repo.epochs, &commit);
            Ok(in_memory(commit))
        })
        .await?
        .flatten(),
    };
    let (commit, file, blob_bytes) = match cached {
        Some(found) => found,
        None => read_file(&state, &repo, rev, path, get, conditions.clone()).await?,
    };

    let (etag, size) = match &file {
        FileBytes::Blob { blob, size, .. } => (blob.to_string(), *size),
        FileBytes::Lfs { oid, size, .. } => (oid.to_string(), *size),
    };
    let mut known_lfs = None;
    // Room for every header the answer carries by the time it is sent (this handler's,
    // every request's, the driver's): the map is not grown on the way.
    let mut out = HeaderMap::with_capacity(16);
    out.insert("x-repo-commit", header_value(commit.as_str())?);
    out.insert(header::ETAG, header_value(&format!("\"{etag}\""))?);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let FileBytes::Lfs { oid, .. } = &file {
        out.insert("x-linked-etag", header_value(&format!("\"{etag}\""))?);
        out.insert("x-linked-size", header_value(&size.to_string())?);
        // A file whose bytes we hold as a verified Xet file is offered to hf_xet too.
        let known = state
            .auth
            .lfs_downloads
            .lfs_download(&state.db, repo.repo.id, oid, repo.epochs)
            .await?;
        if let Some(xet) = &known.xet {
            out.insert(
                "x-xet-hash",
                header_value(&XetHash::from_bytes(xet.file_hash).hex())?,
            );
            let refresh = format!(
                "{}/api/{}/{}/{}/xet-read-token/{commit}",
                state.public_url(),
                repo.repo_type.plural(),
                repo.repo.namespace,
                repo.repo.name
            );
            out.insert(
                header::LINK,
                header_value(&format!("<{refresh}>; rel=\"xet-auth\""))?,
            );
        }
        // Deleted permanently by the repository's owners: its pointer stays in history, its
        // bytes are not served (nor their size and hashes confirmed to a HEAD).
        if known.deleted {
            return Err(ApiError::EntryNotFound {
                message: format!(
                    "The content of this file ({etag}) was deleted permanently from this \
                     repository"
                ),
                commit: Some(commit),
            });
        }
        known_lfs = Some(known);
    }
    if conditions.none_match(&etag) {
        let response = (StatusCode::NOT_MODIFIED, out).into_response();
        return Ok(ReuseBasis::mark(reuse, response, KeptBody::Empty));
    }
    // Redirect mode: a cross-origin 302 to a presigned bucket URL, carrying the metadata the
    // client reads from a 3xx (X-Repo-Commit, X-Linked-Etag, X-Linked-Size, ETag).
    if let FileBytes::Lfs { repo_id, oid, .. } = &file
        && let Some(url) = content::direct_url(&state, *repo_id, oid).await?
    {
        out.insert(header::LOCATION, header_value(&url)?);
        out.remove(header::CONTENT_TYPE);
        out.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        if method == Method::GET && counted {
            count_download(&state, repo.repo.id).await;
        }
        return Ok((StatusCode::FOUND, out, Body::empty()).into_response());
    }

    let range = range::requested_by(conditions.range.as_ref(), size)?;
    let (status, start, end) = match range {
        Some(r) => {
            out.insert(header::CONTENT_RANGE, header_value(&r.content_range(size))?);
            (StatusCode::PARTIAL_CONTENT, r.start, r.end)
        }
        None => (StatusCode::OK, 0, size),
    };
    out.insert(
        header::CONTENT_LENGTH,
        header_value(&(end - start).to_string())?,
    );
    if method == Method::HEAD {
        let response = (status, out, Body::empty()).into_response();
        return Ok(ReuseBasis::mark(reuse, response, KeptBody::Empty));
    }
    // One download = one GET of a designated file; a ranged GET past byte 0 continues one.
    if counted && start == 0 {
        count_download(&state, repo.repo.id).await;
    }
    let in_memory = match blob_bytes {
        Some(bytes) => Some(bytes),
        None => small_lfs_file(&state, &file, known_lfs.as_ref()).await?,
    };
    // Bytes from memory are what the resolve cache holds by the file's id (kept there when
    // read, up to its size limit), so the same request asked again can be answered from
    // there; one that counts a download goes the whole way every time.
    let kept_body = match &file {
        _ if in_memory.is_none() || (counted && start == 0) => None,
        FileBytes::Blob { size, .. } if *size > crate::repos::resolve_cache::MAX_BLOB as u64 => {
            None
        }
        FileBytes::Blob { blob, .. } => Some(KeptBody::Blob {
            blob: blob.clone(),
            start,
            end,
        }),
        FileBytes::Lfs { oid, .. } => Some(KeptBody::Lfs {
            oid: oid.clone(),
            start,
            end,
        }),
    };
    let opened = match in_memory {
        Some(bytes) => Some(content::Opened::blob(bytes, start, end)),
        None => {
            let range = range.map(|r| (r.start, r.end));
            let want_files = can_send_files.is_some();
            content::open_with(&state, &file, range, known_lfs, want_files).await?
        }
    };
    let Some(opened) = opened else {
        tracing::error!(file = ?file, "an LFS pointer names an object missing from the store");
        return Err(ApiError::EntryNotFound {
            message: format!("The content of this file ({etag}) is missing from the store"),
            commit: Some(commit),
        });
    };
    let response = download_response(status, out, opened);
    Ok(match kept_body {
        Some(body) => ReuseBasis::mark(reuse, response, body),
        None => response,
    })
}

/// What makes a download's answer reusable for the same request (`throttle::answer_cache`),
/// known once the caller and the repository are: the epochs its lookups were made under, and
/// a caller whose standing the epochs follow — no credential, or a token the token cache
/// may keep (not fine-grained, not a web session's) — on a repository without a gate
/// (whether the caller passed it is read every time). `None`: never reused.
struct ReuseBasis {
    epochs: trove_db::Epochs,
    token: Option<TokenUse>,
    user: Option<std::sync::Arc<str>>,
}

impl ReuseBasis {
    fn of(repo: &crate::repos::RepoRef, caller: &Caller) -> Option<ReuseBasis> {
        let epochs = repo.epochs?;
        if repo.repo.gated.is_gated() {
            return None;
        }
        let (token, user) = match caller {
            Caller::Anonymous => (None, None),
            Caller::User { user, token, .. } => {
                if token.role == TokenRole::FineGrained {
                    return None;
                }
                let id = token.token_id?;
                let token = TokenUse {
                    id,
                    expires_at_ms: token.expires_at_ms,
                };
                (Some(token), Some(user.name.as_str().into()))
            }
        };
        Some(ReuseBasis {
            epochs,
            token,
            user,
        })
    }

    /// `response` marked reusable with its body at `body`, when `basis` allows.
    fn mark(basis: Option<ReuseBasis>, mut response: Response, body: KeptBody) -> Response {
        if let Some(ReuseBasis {
            epochs,
            token,
            user,
        }) = basis
        {
            response.extensions_mut().insert(Reusable {
                epochs,
                token,
                user,
                body,
            });
        }
        response
    }
}

/// The commit `rev` names, the file at `path` in it and, for a GET of a regular file the
/// client does not have (`etags`), its bytes: read from git on a blocking thread (the tree
/// walked, the blob read), in one visit to the repository, and kept in the resolve cache for the
/// next download of the same commit and path.
async fn read_file(
    state: &AppState,
    repo: &crate::repos::RepoRef,
    rev: Revision,
    path: String,
    get: bool,
    etags: Conditions,
) -> ApiResult<(trove_types::GitOid, FileBytes, Option<Bytes>)> {
    let for_repo = repo.clone();
    let resolved = state.resolve_cache.clone();
    let generation = repo.repo.created_at_ms;
    // The handle is one kept from an earlier download when there is one idle (reads only,
    // refs and packs looked at afresh: see `repos::read_git`).
    let state_for_git = state.clone();
    read_git(state, repo, move |git| {
        let commit = resolve(git, rev.as_str())?;
        state_for_git.auth.revisions.put(
            for_repo.repo.id,
            generation,
            rev.as_str(),
            for_repo.epochs,
            &commit,
        );
        let entry = git.entry_at(&commit, &path)?;
        let file = match &entry {
            Some(trove_git::Entry {
                kind: kind @ EntryKind::File { .. },
                ..
            }) => {
                resolved.put_entry(for_repo.repo.id, generation, &commit, &path, kind);
                FileBytes::of(&for_repo, kind)
            }
            _ => None,
        };
        let Some(file) = file else {
            return Err(ApiError::entry_not_found(&path, Some(commit)));
        };
        let bytes = match &file {
            FileBytes::Blob { blob, .. } if get && !etags.none_match(blob.as_str()) => {
                let bytes = Bytes::from(git.read_blob(blob)?);
                resolved.put_blob(blob, &bytes);
                Some(bytes)
            }
            _ => None,
        };
        Ok((commit, file, bytes))
    })
    .await
}

/// The bytes of a small LFS file held as a Xet file (at most `resolve_cache::MAX_LFS`;
/// `known`: what `Db::lfs_download` answers for it now), from the resolve cache, or read
/// whole from the store and kept there. `None` for any other file — and for one whose bytes
/// read now are not its object, which the caller then serves as before, as it would
/// without the cache.
async fn small_lfs_file(
    state: &AppState,
    file: &FileBytes,
    known: Option<&trove_db::LfsDownload>,
) -> ApiResult<Option<Bytes>> {
    let FileBytes::Lfs { oid, size, .. } = file else {
        return Ok(None);
    };
    let held = known.is_some_and(|known| known.xet.is_some() && !known.deleted);
    if !held || *size > crate::repos::resolve_cache::MAX_LFS {
        return Ok(None);
    }
    if let Some(bytes) = state.resolve_cache.lfs(oid) {
        return Ok(Some(bytes));
    }
    let Some(mut opened) = content::open_with(state, file, None, known.cloned(), false).await?
    else {
        return Ok(None);
    };
    let whole = content::read_whole(&mut opened, *size).await?;
    if whole.len() as u64 != *size || !state.resolve_cache.put_lfs(oid, &whole) {
        tracing::error!(%oid, read = whole.len(), "an LFS file's bytes read from the store are not its object");
        return Ok(None);
    }
    Ok(Some(whole))
}

/// A download's response: the opened bytes as the body, and when they are also file ranges
/// (`Opened::files`), those as an extension for `http::driver` to `sendfile` instead.
pub fn download_response(status: StatusCode, headers: HeaderMap, opened: Opened) -> Response {
    // The headers made for it become the response's own (no copy into a second map).
    let mut response = Response::new(Body::from_stream(opened.stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if let Some(files) = opened.files {
        response.extensions_mut().insert(files);
    }
    response
}

/// The request headers a download answers by: `If-None-Match` and `Range` (taken alone, not
/// a copy of every header).
#[derive(Clone)]
pub struct Conditions {
    if_none_match: Option<HeaderValue>,
    range: Option<HeaderValue>,
}

impl Conditions {
    /// Whether `If-None-Match` names `etag` (quoted or not, weak or strong).
    fn none_match(&self, etag: &str) -> bool {
        self.if_none_match
            .as_ref()
            .is_some_and(|v| if_none_match(v, etag))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Conditions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Conditions {
            if_none_match: parts.headers.get(header::IF_NONE_MATCH).cloned(),
            range: parts.headers.get(header::RANGE).cloned(),
        })
    }
}

fn header_value(s: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(ApiError::internal)
}

/// Whether an `If-None-Match` value names `etag`.
fn if_none_match(value: &HeaderValue, etag: &str) -> bool {
    value.to_str().ok().is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().trim_start_matches("W/").trim_matches('"') == etag)
    })
}
