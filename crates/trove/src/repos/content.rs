//! Reading a byte range of a file at a commit, wherever its bytes are: a git blob, an LFS
//! object in the store, or a Xet file rebuilt from xorbs. For server-side readers (card,
//! safetensors headers, config.json), never for streaming downloads (see `resolve`).

use super::{RepoRef, with_git};
use crate::error::{ApiError, ApiResult};
use crate::repos::rebuild::{plan_file, write_plan};
use crate::state::AppState;
use tokio::io::AsyncReadExt;
use trove_git::EntryKind;

/// Reads `[start, start + len)` of a file (clamped to its size) into memory. `len` is the
/// caller's bound on memory; `Ok(None)` when the file's bytes are not held at all.
pub async fn read_range(
    state: &AppState,
    repo: &RepoRef,
    file: &EntryKind,
    start: u64,
    len: u64,
) -> ApiResult<Option<Vec<u8>>> {
    let EntryKind::File { blob, size, lfs } = file else {
        return Ok(None);
    };
    let end = start.saturating_add(len).min(*size);
    if start >= end {
        return Ok(Some(Vec::new()));
    }
    let Some(lfs) = lfs else {
        let blob = blob.clone();
        let bytes = with_git(state, repo, move |git| {
            git.read_blob(&blob).map_err(ApiError::internal)
        })
        .await?;
        return Ok(Some(
            bytes
                .get(start as usize..(end as usize).min(bytes.len()))
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        ));
    };
    let oid = &lfs.pointer.oid;
    if let Some((file, n)) = state.store.open_range(oid, start, end).await? {
        let mut out = Vec::with_capacity(n as usize);
        file.take(n).read_to_end(&mut out).await?;
        return Ok(Some(out));
    }
    let Some(xet) = state.db.xet_file_by_sha256(oid).await? else {
        return Ok(None);
    };
    let (plan, _) = plan_file(state, &xet, Some((start, end))).await?;
    let store = (*state.store).clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(plan.length as usize);
        write_plan(&store, &plan, &mut out).map(|_| out)
    })
    .await??;
    Ok(Some(bytes))
}
