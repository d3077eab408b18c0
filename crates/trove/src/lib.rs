//! Trove: a self-hostable Hugging Face Hub. The library holds the whole server so that the
//! binary (`main.rs`) and the in-process tests (`tests/it/`) build the same application.
//!
//! The layers, top to bottom (each may use the ones below it, never one above):
//! - [`cli`]: the command line — `serve` and the admin verbs.
//! - [`http`]: the HTTP surfaces — the Hub JSON API, file downloads, git smart HTTP, Git LFS,
//!   Xet CAS and the web UI — with the one router. Handlers parse, authorize, call one use
//!   case and render.
//! - [`repos`], [`accounts`]: the use cases, where the rules live.
//! - [`auth`]: who is asking and what they may do.
//! - infrastructure: [`state`], [`config`], [`git_runtime`], [`error`], [`signing`], [`clock`], [`markdown`], [`highlight`].

pub mod accounts;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod collections;
pub mod config;
pub mod context;
pub mod error;
pub mod events;
pub mod git_runtime;
pub mod hash_ahead;
pub mod highlight;
pub mod http;
pub mod inference;
pub mod markdown;
pub mod repos;
pub mod signing;
pub mod spaces;
pub mod state;
pub mod storage;
pub mod throttle;
pub mod webhooks;

/// The whole HTTP application on `state`: every route and layer the server runs.
pub fn app(state: state::AppState) -> http::router::App {
    http::router::build(state)
}
