//! `POST /api/{T}/{repo}/commit/{rev}`: the NDJSON commit. The body is read as a stream, line
//! by line (bounded per line and in total); each line is validated and inline files are written
//! as git blobs as they arrive; nothing is visible until the branch moves.

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, RepoAt, RevParam};
use crate::repos::commit::{PendingCommit, commit, commit_to_ref, lfs_file_op};
use crate::repos::discussions;
use crate::repos::{RepoRef, with_git};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use base64::Engine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trove_git::TreeOp;
use trove_types::{RepoPath, Sha256Hex};

#[derive(Deserialize)]
struct Line {
    key: String,
    value: Value,
}

#[derive(Deserialize)]
struct Header {
    summary: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "parentCommit")]
    parent_commit: Option<String>,
}

#[derive(Deserialize)]
struct InlineFile {
    path: String,
    content: String,
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct LfsFile {
    path: String,
    algo: Option<String>,
    oid: String,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Deleted {
    path: String,
}

fn parse<T: for<'de> Deserialize<'de>>(line_no: usize, key: &str, value: Value) -> ApiResult<T> {
    serde_json::from_value(value).map_err(|e| {
        ApiError::bad_request(format!("Line {line_no}: invalid {key:?} operation: {e}"))
    })
}

/// An invalid or escaping path is 422, as on the Hub.
fn repo_path(line_no: usize, path: &str) -> ApiResult<RepoPath> {
    RepoPath::parse(path).map_err(|e| ApiError::UnprocessableEntity(format!("Line {line_no}: {e}")))
}

/// Reads the operations, writing inline blobs as they come.
struct OperationReader<'a> {
    state: &'a AppState,
    repo: &'a RepoRef,
    header: Option<Header>,
    ops: Vec<TreeOp>,
}

impl OperationReader<'_> {
    async fn line(&mut self, line_no: usize, raw: &[u8]) -> ApiResult<()> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let line: Line = serde_json::from_slice(raw).map_err(|e| {
            ApiError::bad_request(format!(
                "Line {line_no}: not a JSON object with key and value: {e}"
            ))
        })?;
        if self.header.is_none() {
            if line.key != "header" {
                return Err(ApiError::bad_request(
                    "The first line must be the commit header",
                ));
            }
            let header: Header = parse(line_no, "header", line.value)?;
            if header.summary.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "The commit summary must not be empty",
                ));
            }
            self.header = Some(header);
            return Ok(());
        }
        let op = match line.key.as_str() {
            "file" => {
                let f: InlineFile = parse(line_no, "file", line.value)?;
                let path = repo_path(line_no, &f.path)?;
                if !matches!(f.encoding.as_deref(), None | Some("base64")) {
                    return Err(ApiError::bad_request(format!(
                        "Line {line_no}: only base64 encoding is supported"
                    )));
                }
                let content = base64::engine::general_purpose::STANDARD
                    .decode(f.content.as_bytes())
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "Line {line_no}: invalid base64 content for {path}"
                        ))
                    })?;
                // What git's fsck would refuse on a push must not enter through a commit.
                if trove_git::is_gitmodules_name(path.file_name())
                    && let Some(why) = trove_git::gitmodules_problem(&content)
                {
                    return Err(ApiError::bad_request(format!("Line {line_no}: {why}")));
                }
                let blob = with_git(self.state, self.repo, move |git| {
                    Ok(git.write_blob(&content)?)
                })
                .await?;
                TreeOp::Upsert { path, blob }
            }
            "lfsFile" => {
                let f: LfsFile = parse(line_no, "lfsFile", line.value)?;
                let path = repo_path(line_no, &f.path)?;
                if trove_git::is_gitmodules_name(path.file_name()) {
                    return Err(ApiError::bad_request(format!(
                        "Line {line_no}: {path} must be a regular file, not a large (LFS) file"
                    )));
                }
                if !matches!(f.algo.as_deref(), None | Some("sha256")) {
                    return Err(ApiError::bad_request(format!(
                        "Line {line_no}: only sha256 LFS objects are supported"
                    )));
                }
                let oid = Sha256Hex::parse(&f.oid)
                    .map_err(|e| ApiError::bad_request(format!("Line {line_no}: {e}")))?;
                lfs_file_op(self.state, self.repo, path, oid, f.size).await?
            }
            "deletedFile" => {
                let d: Deleted = parse(line_no, "deletedFile", line.value)?;
                TreeOp::DeleteFile {
                    path: repo_path(line_no, &d.path)?,
                }
            }
            "deletedFolder" => {
                let d: Deleted = parse(line_no, "deletedFolder", line.value)?;
                let path = RepoPath::parse_folder(&d.path)
                    .map_err(|e| ApiError::UnprocessableEntity(format!("Line {line_no}: {e}")))?;
                TreeOp::DeleteFolder { path }
            }
            "header" => {
                return Err(ApiError::bad_request(format!(
                    "Line {line_no}: a second header"
                )));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Line {line_no}: unknown operation {other:?}"
                )));
            }
        };
        self.ops.push(op);
        Ok(())
    }
}

/// The answer to a commit, as `create_commit` reads it into a `CommitInfo`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitAnswer {
    success: bool,
    commit_oid: String,
    commit_url: String,
    commit_message: String,
    hook_output: &'static str,
    /// `null` unless the commit opened or updated a pull request.
    pull_request_url: Option<String>,
}

/// A body declared larger than `max_commit_bytes` never gets here: the router's body limit
/// for this route refuses it first.
pub async fn create_commit(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    query: QueryParams,
    body: Body,
) -> ApiResult<Json<CommitAnswer>> {
    let rev = rev.as_str();
    // Who may commit depends on the target, decided before the body is read: a new pull
    // request (any contributor), an existing one (its author or a writer), a branch (writers).
    let target = if query.flag("create_pr") {
        repo.require_contribute(&caller)?;
        Target::NewPullRequest
    } else if let Some(num) = discussions::pr_number(rev) {
        Target::PullRequest(
            discussions::pull_request_for_commit(&state, &caller, &repo, num).await?,
        )
    } else {
        repo.require_write(&caller)?;
        Target::Branch
    };
    let limits = &state.config.limits;

    let mut reader = OperationReader {
        state: &state,
        repo: &repo,
        header: None,
        ops: Vec::new(),
    };
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let mut line_no = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}")))?;
        total += chunk.len() as u64;
        if total > limits.max_commit_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: limits.max_commit_bytes,
            });
        }
        let mut rest: &[u8] = &chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            buffer.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            line_no += 1;
            reader.line(line_no, &buffer).await?;
            buffer.clear();
        }
        buffer.extend_from_slice(rest);
        if buffer.len() > limits.max_commit_line_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: limits.max_commit_line_bytes as u64,
            });
        }
    }
    line_no += 1;
    reader.line(line_no, &buffer).await?;

    let Some(header) = reader.header else {
        return Err(ApiError::bad_request(
            "Empty commit: the body must start with a header line",
        ));
    };
    let summary = header.summary.clone();
    let pending = PendingCommit {
        summary: header.summary,
        description: header.description,
        parent_commit: header.parent_commit,
        ops: reader.ops,
    };
    let (oid, pull_request) = match target {
        Target::Branch => (commit(&state, &caller, &repo, rev, pending).await?, None),
        Target::NewPullRequest => {
            let (oid, pr) =
                discussions::open_with_commit(&state, &caller, &repo, rev, pending).await?;
            (oid, Some(pr))
        }
        Target::PullRequest(pr) => {
            let oid = commit_to_ref(&state, &caller, &repo, rev, pending).await?;
            let pr = discussions::record_commit(&state, &caller, &repo, pr, &oid, &summary).await?;
            (oid, Some(pr))
        }
    };
    let pull_request_url =
        pull_request.map(|pr| format!("{}/discussions/{}", repo.url(&state), pr.num));
    Ok(Json(CommitAnswer {
        success: true,
        commit_oid: oid.to_string(),
        commit_url: format!("{}/commit/{oid}", repo.url(&state)),
        commit_message: summary,
        hook_output: "",
        pull_request_url,
    }))
}

/// Where a commit goes, and so who may make it.
enum Target {
    Branch,
    NewPullRequest,
    PullRequest(trove_db::Discussion),
}
