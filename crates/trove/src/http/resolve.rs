//! `HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}`: file downloads. Regular files come from
//! git, LFS files straight from the blob store (no redirect), both with single-range support
//! and the headers `hf_hub_download` reads (`X-Repo-Commit`, quoted `ETag`, `X-Linked-*`).
//! Files held as Xet files also carry `X-Xet-Hash` and the `xet-auth` link, and when no
//! blob exists their bytes are rebuilt from xorbs as they stream. A GET of a repository's
//! designated file counts a download (`repos::listing::counts_as_download`).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiPath;
use crate::repos::listing::{count_download, counts_as_download};
use crate::repos::rebuild::{plan_file, stream_plan};
use crate::repos::{find_readable, resolve, with_git};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use trove_git::EntryKind;
use trove_types::{GitOid, RepoType, Sha256Hex};
use trove_xet::XetHash;

pub async fn model(
    state: State<AppState>,
    caller: Caller,
    method: Method,
    headers: HeaderMap,
    ApiPath(p): ApiPath<(String, String, String, String)>,
) -> ApiResult<Response> {
    serve(state, caller, method, headers, RepoType::Model, p).await
}

pub async fn dataset(
    state: State<AppState>,
    caller: Caller,
    method: Method,
    headers: HeaderMap,
    ApiPath(p): ApiPath<(String, String, String, String)>,
) -> ApiResult<Response> {
    serve(state, caller, method, headers, RepoType::Dataset, p).await
}

pub async fn space(
    state: State<AppState>,
    caller: Caller,
    method: Method,
    headers: HeaderMap,
    ApiPath(p): ApiPath<(String, String, String, String)>,
) -> ApiResult<Response> {
    serve(state, caller, method, headers, RepoType::Space, p).await
}

/// What resolving a path at a revision found.
enum Target {
    Regular {
        commit: GitOid,
        blob: GitOid,
        size: u64,
    },
    Lfs {
        commit: GitOid,
        oid: Sha256Hex,
        size: u64,
    },
}

async fn serve(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    headers: HeaderMap,
    repo_type: RepoType,
    (ns, name, rev, path): (String, String, String, String),
) -> ApiResult<Response> {
    let repo = find_readable(&state, &caller, repo_type, &ns, &name).await?;
    repo.require_content(&caller)?;
    let counted = counts_as_download(repo_type, &path);
    let target = with_git(&state, &repo, move |git| {
        let commit = resolve(git, &rev)?;
        match git.entry_at(&commit, &path)? {
            Some(trove_git::Entry {
                kind: EntryKind::File { blob, size, lfs },
                ..
            }) => Ok(match lfs {
                Some(lfs) => Target::Lfs {
                    commit,
                    oid: lfs.pointer.oid,
                    size: lfs.pointer.size,
                },
                None => Target::Regular { commit, blob, size },
            }),
            _ => Err(ApiError::entry_not_found(&path, Some(commit))),
        }
    })
    .await?;

    let (commit, etag, size) = match &target {
        Target::Regular { commit, blob, size } => (commit.clone(), blob.to_string(), *size),
        Target::Lfs { commit, oid, size } => (commit.clone(), oid.to_string(), *size),
    };
    let mut out = HeaderMap::new();
    out.insert("x-repo-commit", header_value(commit.as_str())?);
    out.insert(header::ETAG, header_value(&format!("\"{etag}\""))?);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if matches!(target, Target::Lfs { .. }) {
        out.insert("x-linked-etag", header_value(&format!("\"{etag}\""))?);
        out.insert("x-linked-size", header_value(&size.to_string())?);
    }
    // A file whose bytes we hold as a verified Xet file is offered to hf_xet too.
    let xet_file = match &target {
        Target::Lfs { oid, .. } => state.db.xet_file_by_sha256(oid).await?,
        Target::Regular { .. } => None,
    };
    if let Some(file) = &xet_file {
        out.insert(
            "x-xet-hash",
            header_value(&XetHash::from_bytes(file.file_hash).hex())?,
        );
        let refresh = format!(
            "{}/api/{}/{}/{}/xet-read-token/{commit}",
            state.public_url(),
            repo_type.plural(),
            repo.repo.namespace,
            repo.repo.name
        );
        out.insert(
            header::LINK,
            header_value(&format!("<{refresh}>; rel=\"xet-auth\""))?,
        );
    }
    if if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }

    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => parse_range(spec, size)?,
        None => None,
    };
    let (status, start, end) = match range {
        Some((start, end)) => {
            out.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{}/{size}", end - 1))?,
            );
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        None => (StatusCode::OK, 0, size),
    };
    out.insert(
        header::CONTENT_LENGTH,
        header_value(&(end - start).to_string())?,
    );
    if method == Method::HEAD {
        return Ok((status, out, Body::empty()).into_response());
    }
    // One download = one GET of a designated file; a ranged GET past byte 0 continues one.
    if counted && start == 0 {
        count_download(&state, repo.repo.id).await;
    }

    let body = match target {
        Target::Regular { blob, .. } => {
            let bytes = with_git(&state, &repo, move |git| {
                git.read_blob(&blob).map_err(ApiError::internal)
            })
            .await?;
            let slice = bytes
                .get(start as usize..end as usize)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            Body::from(slice)
        }
        Target::Lfs { oid, .. } => {
            let Some((file, len)) = state.store.open_range(&oid, start, end).await? else {
                if let Some(file) = &xet_file {
                    // Held as xorbs only: rebuild the bytes on the fly (the LFS bridge).
                    let (plan, _) = plan_file(&state, file, Some((start, end))).await?;
                    let body = Body::from_stream(stream_plan((*state.store).clone(), plan));
                    return Ok((status, out, body).into_response());
                }
                tracing::error!(oid = %oid, "an LFS pointer names an object missing from the store");
                return Err(ApiError::EntryNotFound {
                    message: format!("The content of this file ({oid}) is missing from the store"),
                    commit: Some(commit),
                });
            };
            Body::from_stream(trove_store::read_chunks(file, len))
        }
    };
    Ok((status, out, body).into_response())
}

fn header_value(s: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(s).map_err(ApiError::internal)
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/").trim_matches('"') == etag)
        })
}

/// Parses a single `bytes=` range into `[start, end)`. `Ok(None)` means "serve the whole
/// file" (multi-range or unknown units, which RFC 9110 lets us ignore); 416 when unsatisfiable.
pub fn parse_range(spec: &str, size: u64) -> ApiResult<Option<(u64, u64)>> {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if ranges.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = ranges.trim().split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = ApiError::RangeNotSatisfiable { size };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b
            .parse()
            .map_err(|_| ApiError::bad_request("Invalid Range header"))?;
        if n == 0 || size == 0 {
            return Err(unsatisfiable);
        }
        return Ok(Some((size.saturating_sub(n), size)));
    }
    let start: u64 = a
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid Range header"))?;
    if start >= size {
        return Err(unsatisfiable);
    }
    let end = if b.is_empty() {
        size
    } else {
        let last: u64 = b
            .parse()
            .map_err(|_| ApiError::bad_request("Invalid Range header"))?;
        if last < start {
            return Err(unsatisfiable);
        }
        last.saturating_add(1).min(size)
    };
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(spec: &str, size: u64) -> Option<(u64, u64)> {
        parse_range(spec, size).expect("satisfiable")
    }

    #[test]
    fn ranges_as_the_client_sends_them() {
        assert_eq!(range("bytes=0-100000", 10), Some((0, 10)));
        assert_eq!(range("bytes=100-1109", 5000), Some((100, 1110)));
        assert_eq!(range("bytes=4000-", 5000), Some((4000, 5000)));
        assert_eq!(range("bytes=-10", 5000), Some((4990, 5000)));
        assert_eq!(range("bytes=-10000", 5000), Some((0, 5000)));
    }

    #[test]
    fn unsatisfiable_and_ignored_ranges() {
        assert!(matches!(
            parse_range("bytes=5000-", 5000),
            Err(ApiError::RangeNotSatisfiable { size: 5000 })
        ));
        assert!(matches!(
            parse_range("bytes=10-5", 5000),
            Err(ApiError::RangeNotSatisfiable { .. })
        ));
        assert!(matches!(
            parse_range("bytes=-0", 5000),
            Err(ApiError::RangeNotSatisfiable { .. })
        ));
        assert!(matches!(
            parse_range("bytes=x-5", 5000),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(range("bytes=0-1,5-6", 5000), None);
        assert_eq!(range("items=0-1", 5000), None);
    }
}
