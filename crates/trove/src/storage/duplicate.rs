//! Copying a repository's large files to another repository without copying a byte
//! (`POST /api/{type}s/{repo}/lfs-files/duplicate`, what the client's `copy_files` and
//! cross-repository `CommitOperationCopy` call before committing): the target repository is
//! linked to the same LFS objects — the same Xet files and xorbs — so its commit may name
//! them. The caller must read the source's files and write the target; a refusal writes
//! nothing, and the links of one request are made in one transaction.

use crate::auth::Caller;
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::{RepoRef, find_readable};
use trove_types::{RepoType, Sha256Hex};
use trove_xet::XetHash;

/// Most files one request may name (the client sends batches of 500).
pub const MAX_FILES: usize = 1000;

/// One file the caller asks to copy, as the client names it.
#[derive(Debug, Clone)]
pub struct FileToCopy {
    pub sha256: String,
    /// The Xet hash the client read from the source's tree; when given, it must be the
    /// hash of a Xet file holding those bytes.
    pub xet_hash: Option<String>,
}

/// A file that could not be copied, and why (the client raises them all together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub sha256: String,
    pub error: String,
}

/// What a request asked and what it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Duplicated {
    pub linked: u64,
    pub failed: Vec<Failure>,
}

/// Links the large files `files` of `source` to the repository `target_type`
/// `target_name` (`namespace/name`). Access first: the source's files readable (else
/// `GatedRepo`), the target visible (else `RepoNotFound`) and writable (else 403/401).
/// Malformed oids refuse the whole request; files the source does not hold are reported
/// in `failed` and the others are linked.
pub async fn duplicate(
    state: &Context,
    caller: &Caller,
    source: &RepoRef,
    target_type: RepoType,
    target_name: &str,
    files: &[FileToCopy],
) -> ApiResult<Duplicated> {
    source.require_content(caller)?;
    let Some((namespace, name)) = target_name.split_once('/') else {
        return Err(ApiError::bad_request(format!(
            "Invalid target repository {target_name:?}: expected namespace/name"
        )));
    };
    let target = find_readable(state, caller, target_type, namespace, name).await?;
    target.require_write(caller)?;
    if files.len() > MAX_FILES {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_FILES} files may be duplicated per request"
        )));
    }
    let wanted = files
        .iter()
        .map(|f| {
            let oid = Sha256Hex::parse(&f.sha256)
                .map_err(|_| ApiError::bad_request(format!("Invalid sha256: {:?}", f.sha256)))?;
            let xet = f
                .xet_hash
                .as_deref()
                .map(|h| {
                    XetHash::parse(h)
                        .map_err(|_| ApiError::bad_request(format!("Invalid xetHash: {h:?}")))
                })
                .transpose()?;
            Ok((oid, xet))
        })
        .collect::<ApiResult<Vec<_>>>()?;

    let oids: Vec<Sha256Hex> = wanted.iter().map(|(o, _)| o.clone()).collect();
    let held = state.db.repo_objects_sizes(source.repo.id, &oids).await?;
    let mut result = Duplicated::default();
    let mut to_link = Vec::with_capacity(wanted.len());
    for (oid, xet) in wanted {
        if !held.contains_key(&oid) {
            result.failed.push(Failure {
                sha256: oid.as_str().to_owned(),
                error: "Not found in the source repository".into(),
            });
            continue;
        }
        if let Some(xet) = xet
            && !xet_file_holds(state, &xet, &oid).await?
        {
            result.failed.push(Failure {
                sha256: oid.as_str().to_owned(),
                error: format!("Xet hash {xet} does not hold these bytes"),
            });
            continue;
        }
        to_link.push(oid);
    }
    result.linked = state
        .db
        .link_repo_objects(target.repo.id, &to_link, now_ms())
        .await?;
    tracing::info!(
        source.id = source.repo.id,
        target.id = target.repo.id,
        asked = files.len(),
        linked = result.linked,
        failed = result.failed.len(),
        "storage.lfs_files_duplicated"
    );
    Ok(result)
}

/// Whether Xet file `xet` is recorded with SHA-256 `oid`.
async fn xet_file_holds(state: &Context, xet: &XetHash, oid: &Sha256Hex) -> ApiResult<bool> {
    Ok(state
        .db
        .xet_file(&xet.to_bytes())
        .await?
        .is_some_and(|f| &f.sha256 == oid))
}
