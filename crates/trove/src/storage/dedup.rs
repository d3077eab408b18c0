//! Global dedup from the chunk index: a client about to upload a file asks about its first
//! chunk and its key chunks; for one the store holds, the answer describes the xorbs of the
//! newest file containing it, so a client whose cache is cold (another machine, a CI runner)
//! still references what the store holds instead of uploading it again.
//!
//! An upload cut short (the client killed, a node gone, a laptop closed) leaves xorbs stored
//! and linked to the repository that no file names yet. A writer's query also finds a chunk
//! in one of those, when it is a key chunk or a xorb's first (where an upload's first file
//! starts): the answer describes that xorb alone, so the retry from another machine, whose
//! cache never saw the first attempt, does not send it again.
//!
//! Scope: only files linked to the querying token's repository (`dedup_scope = "repo"`, the
//! default) or to a repository of its namespace (`"namespace"`, for tokens of users who may
//! read every repository there) are considered, and xorbs uploaded to those or by the token's
//! user, so an answer never confirms bytes held for anybody else. A chunk found only outside
//! the scope, or not a chunk clients ask about, gets the same "no match" as an unknown one.

use crate::config::DedupScope;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use std::time::Duration;
use trove_db::XorbViewer;
use trove_xet::XetHash;
use trove_xet::dedup;
use trove_xet::shard::decode_terms;
use trove_xet::xorb::XorbIndex;

/// How long a client may use an answer. Far below the GC grace period, so every xorb an
/// answer names outlives the client's use of it.
pub const ANSWER_TTL: Duration = Duration::from_secs(24 * 3600);
/// Newest files looked at for one query.
const CANDIDATE_FILES: u32 = 16;
/// Largest answer, in shard bytes (the protocol's shard size).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// The answer to a global-dedup query for `chunk` from `viewer` (a token's repository and
/// user), asked with a token that may (`may_write`) or may not upload to it: a keyed shard,
/// or `None` for "no match".
pub async fn answer(
    state: &Context,
    viewer: XorbViewer,
    may_write: bool,
    chunk: &XetHash,
) -> ApiResult<Option<Vec<u8>>> {
    let repo_id = viewer.repo_id;
    let raw = chunk.to_bytes();
    let Some(at) = state.db.chunk_locations(&[raw]).await?.remove(&raw) else {
        return Ok(None);
    };
    let xorb = XetHash::from_bytes(at.xorb);
    // The namespace scope answers only tokens that may read the whole namespace.
    let namespace_wide =
        state.config.storage.dedup_scope == DedupScope::Namespace && viewer.whole_namespace;
    let files = state
        .db
        .dedup_files_naming(&at.xorb, repo_id, namespace_wide, CANDIDATE_FILES)
        .await?;
    let newest = files.iter().find_map(|f| {
        let terms = decode_terms(&f.terms)?;
        (dedup::terms_cover(&terms, &xorb, at.index)
            && dedup::is_queryable(chunk, &xorb, at.index, &terms))
        .then_some(terms)
    });
    // The hit's xorb first, then the file's in the order it reads them.
    let mut order = vec![xorb];
    match newest {
        Some(terms) => {
            for t in &terms {
                if !order.contains(&t.xorb) {
                    order.push(t.xorb);
                }
            }
        }
        // Only an uploader learns what uploads cut short left: a reader of the repository
        // has no use for it, and it describes bytes no commit has published yet.
        None if may_write
            && (at.index == 0 || dedup::is_key_chunk(chunk))
            && uploaded_in_scope(state, viewer, &at.xorb, namespace_wide).await? => {}
        None => return Ok(None),
    }
    let wanted: Vec<[u8; 32]> = order.iter().map(XetHash::to_bytes).collect();
    let blobs = state.db.xorb_indices(&wanted).await?;
    let mut xorbs: Vec<(XetHash, XorbIndex)> = Vec::with_capacity(order.len());
    let mut budget = MAX_ANSWER_BYTES;
    for h in order {
        let Some(blob) = blobs.get(&h.to_bytes()) else {
            continue;
        };
        let index = XorbIndex::decode(blob).map_err(ApiError::internal)?;
        let cost = dedup::answer_bytes(&index);
        if cost > budget {
            break;
        }
        budget -= cost;
        xorbs.push((h, index));
    }
    let key: [u8; 32] = rand::random();
    let n = xorbs.len();
    let shard = tokio::task::spawn_blocking(move || {
        let refs: Vec<(XetHash, &XorbIndex)> = xorbs.iter().map(|(h, i)| (*h, i)).collect();
        dedup::answer_shard(&refs, key, ANSWER_TTL)
    })
    .await?
    .map_err(ApiError::internal)?;
    tracing::info!(chunk = %chunk, repo_id, xorbs = n, bytes = shard.len(), "storage.dedup_answered");
    Ok(Some(shard))
}

/// Whether xorb `xorb` was uploaded to the viewer's repository (or, `namespace_wide`, to a
/// repository of its namespace), or by the viewer's user to any repository: a retry of an
/// upload cut short may come through another repository's token, and the user sent those
/// bytes themselves.
async fn uploaded_in_scope(
    state: &Context,
    viewer: XorbViewer,
    xorb: &[u8; 32],
    namespace_wide: bool,
) -> ApiResult<bool> {
    if state
        .db
        .xorb_uploaded_to(xorb, viewer.repo_id, namespace_wide)
        .await?
    {
        return Ok(true);
    }
    Ok(match viewer.user_id {
        Some(user_id) => state.db.user_uploaded_xorb(user_id, xorb).await?,
        None => false,
    })
}
