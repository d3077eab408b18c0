//! Xet: the Hub's token endpoints and the CAS service `hf_xet` uploads to and downloads from.
//!
//! - [`token`]: CAS tokens, and `xet-{read,write}-token` on the Hub API.
//! - [`cas`]: the CAS HTTP endpoints under `{public}/xet`.
//!
//! Formats live in the `trove-xet` crate; xorbs in the blob store; indices in the database.

pub mod cas;
pub mod token;

use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post};

/// The CAS routes, to be nested under `/xet`.
pub fn cas_router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/xorbs/{prefix}/{hash}",
            post(cas::upload_xorb).head(cas::head_xorb),
        )
        .route("/v1/shards", post(cas::upload_shard))
        .route("/v2/shards", post(cas::upload_shard_v2))
        .route("/v1/reconstructions/{file_id}", get(cas::reconstruction_v1))
        .route("/v2/reconstructions/{file_id}", get(cas::reconstruction_v2))
        .route("/v1/files/{file_id}", get(cas::head_file))
        .route("/v1/chunks/{prefix}/{hash}", get(cas::dedup_query))
        .route("/v1/telemetry", post(cas::telemetry))
        .route("/fetch/{xorb}", get(cas::fetch))
        .fallback(cas::not_offered)
}

#[cfg(test)]
mod tests;
