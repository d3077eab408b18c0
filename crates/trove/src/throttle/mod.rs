//! Throttles shared by every request: the failed-authentication limiter, the
//! anonymous validate-yaml budget and the token last-used throttle; and the caches that
//! spare a request its lookups (`epoch_cache.rs`), or its whole way (`answer_cache.rs`).

pub mod answer_cache;
pub mod epoch_cache;
pub mod lfs_cache;
pub mod ratelimit;
pub mod repo_cache;
pub mod rev_cache;
pub mod token_cache;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Authentication's shared state: the failure limiter, the last-used throttle, and the
/// per-address budget of anonymous `validate-yaml` calls.
#[derive(Debug)]
pub struct AuthRuntime {
    pub failures: ratelimit::FailureLimiter,
    pub anonymous_validate: ratelimit::FailureLimiter,
    touched: Mutex<HashMap<i64, Instant>>,
    /// What recently seen tokens resolve to (see `token_cache.rs`).
    pub tokens: token_cache::TokenCache,
    /// The rows of recently asked repositories (see `repo_cache.rs`).
    pub repos: repo_cache::RepoRowCache,
    /// What recent LFS downloads needed to know of their objects (see `lfs_cache.rs`).
    pub lfs_downloads: lfs_cache::LfsDownloadCache,
    /// What recently resolved revisions named (see `rev_cache.rs`).
    pub revisions: rev_cache::RevisionCache,
    /// Whole download answers given lately (see `answer_cache.rs`).
    pub answers: answer_cache::AnswerCache,
}

/// A token's last-used time is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl AuthRuntime {
    /// `shares_epochs`: whether the database counts every process's writes
    /// ([`trove_db::Db::shares_epochs`]), which turns the token cache on by default.
    pub fn new(config: &crate::config::AuthConfig, shares_epochs: bool) -> AuthRuntime {
        AuthRuntime {
            failures: ratelimit::FailureLimiter::new(
                config.failure_burst,
                Duration::from_secs(config.failure_refill_secs),
            ),
            anonymous_validate: ratelimit::FailureLimiter::new(
                ratelimit::ANONYMOUS_VALIDATE_BURST,
                ratelimit::ANONYMOUS_VALIDATE_REFILL,
            ),
            touched: Mutex::new(HashMap::new()),
            tokens: token_cache::TokenCache::new(config.token_cache_ttl(shares_epochs)),
            repos: repo_cache::RepoRowCache::new(config.token_cache_ttl(shares_epochs)),
            lfs_downloads: lfs_cache::LfsDownloadCache::new(config.token_cache_ttl(shares_epochs)),
            revisions: rev_cache::RevisionCache::new(config.token_cache_ttl(shares_epochs)),
            answers: answer_cache::AnswerCache::new(config.token_cache_ttl(shares_epochs)),
        }
    }

    /// Whether the token's last use should be written now (and remember that it was).
    pub(crate) fn should_touch(&self, token_id: i64, now: Instant) -> bool {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        match touched.get(&token_id) {
            Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
            _ => {
                if touched.len() > 100_000 {
                    touched.retain(|_, at| now.duration_since(*at) < TOUCH_EVERY);
                }
                touched.insert(token_id, now);
                true
            }
        }
    }
}
