//! The HTTP surfaces, one folder each, and the one router that mounts them:
//! - [`api`]: the Hub's JSON API under `/api/` (huggingface_hub, the `hf` CLI).
//! - [`resolve`]: file downloads, `/{repo}/resolve/{rev}/{path}`; [`range`]: the one
//!   `Range` header rule every byte-serving surface applies.
//! - [`git`]: git smart HTTP (clone, fetch, push) and the pre-receive hook.
//! - [`lfs`]: the Git LFS batch, transfer and locking APIs.
//! - [`xet`]: Xet tokens and the CAS service under `/xet`.
//! - [`web`]: the web UI, server-rendered HTML.
//!
//! [`every_request`] is what every request goes through around the routes (its id, its
//! access line, panics, errors logged once…); [`driver`] reads and writes the connections.
//!
//! A handler parses the request, authorizes it, calls one use case of `repos` or
//! `accounts`, and renders the answer.

pub mod access_log;
pub mod api;
pub mod body_limit;
pub mod driver;
pub mod every_request;
pub mod extract;
pub mod git;
pub mod lfs;
pub mod metrics;
pub mod range;
pub mod request_id;
pub mod resolve;
pub mod router;
pub mod spaces;
pub mod web;
pub mod xet;
