//! Listing and search of repositories (`list_models`, `list_datasets`, `list_spaces`): the
//! index answers, filtered by what the caller may see.

use super::listing_cache::{CachedPage, ListingCache, ListingKey};
use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::ApiResult;
use trove_db::{ListQuery, Listed, Page};
use trove_types::RepoType;

/// One page of repositories matching `query`; its visibility is replaced by the caller's.
pub async fn list(
    state: &Context,
    caller: &Caller,
    mut query: ListQuery,
) -> ApiResult<Page<Listed>> {
    query.visibility = Access::listing_visibility(caller);
    Ok(state.db.list_repos(&query).await?)
}

/// One page of repositories matching `query` as the caller may see it, rendered by `render`
/// (`view` names how, for the cache key): from the listing cache when a fresh answer to the
/// same query for a caller who sees the same repositories is there, else queried, rendered
/// and kept (see [`super::listing_cache`]).
pub async fn list_rendered(
    state: &Context,
    cache: &ListingCache,
    caller: &Caller,
    mut query: ListQuery,
    view: String,
    render: impl FnOnce(&Page<Listed>) -> ApiResult<Vec<u8>>,
) -> ApiResult<CachedPage> {
    query.visibility = Access::listing_visibility(caller);
    let key = ListingKey::new(&query, view);
    // Read before the query: an answer computed across a write is then never kept.
    let epoch = state.db.listing_epoch();
    if let Some(page) = epoch.and_then(|epoch| cache.get(&key, epoch)) {
        return Ok(page);
    }
    let page = state.db.list_repos(&query).await?;
    let rendered = CachedPage {
        body: render(&page)?.into(),
        next: page.next,
    };
    if let Some(epoch) = epoch {
        cache.put(key, epoch, rendered.clone());
    }
    Ok(rendered)
}

/// Which requests of a file count as a download of the repository, as the Hub counts them:
/// for models the "query files" (`config.json`, `config.yaml`, `hyperparams.yaml`,
/// `meta.yaml` at the root, and each `.gguf` or `.nemo` file, which are whole models); for
/// datasets the root `README.md`, which `load_dataset` always fetches. Spaces are not counted.
pub fn counts_as_download(repo_type: RepoType, path: &str) -> bool {
    match repo_type {
        RepoType::Model => {
            matches!(
                path,
                "config.json" | "config.yaml" | "hyperparams.yaml" | "meta.yaml"
            ) || path.ends_with(".gguf")
                || path.ends_with(".nemo")
        }
        RepoType::Dataset => path == "README.md",
        RepoType::Space => false,
    }
}

/// Counts one download of a repository now. A failure is logged: the download goes on.
pub async fn count_download(state: &Context, repo_id: i64) {
    if let Err(e) = state
        .db
        .count_download(repo_id, now_ms() / 86_400_000)
        .await
    {
        tracing::warn!(repo.id = repo_id, error = %e, "download not counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designated_download_files() {
        assert!(counts_as_download(RepoType::Model, "config.json"));
        assert!(counts_as_download(RepoType::Model, "q4/model-Q4_K_M.gguf"));
        assert!(!counts_as_download(RepoType::Model, "sub/config.json"));
        assert!(!counts_as_download(RepoType::Model, "model.safetensors"));
        assert!(counts_as_download(RepoType::Dataset, "README.md"));
        assert!(!counts_as_download(RepoType::Dataset, "data/train.csv"));
        assert!(!counts_as_download(RepoType::Space, "config.json"));
    }
}
