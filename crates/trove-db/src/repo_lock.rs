//! The per-repository lock that serialises commits to one repository across every node of
//! a hub on PostgreSQL.
//!
//! On PostgreSQL, [`Db::lock_repo`] takes a session-scoped advisory lock on a connection of
//! its own (outside the query pool, so a burst of commits to many repositories can never
//! starve the queries those commits make), keyed by the pair ([`REPO_LOCK_CLASS`],
//! repository id). The two-key form of PostgreSQL's advisory locks lives in a key space
//! apart from the one-key form that the write transactions and the migrations take, so the
//! repository locks never wait on those.
//!
//! Those connections are kept for the next lock ([`LockSessions`]): opening one costs a
//! TCP handshake and a SCRAM authentication, a few milliseconds of CPU on both sides, which
//! was most of a small commit's cost on PostgreSQL. Releasing unlocks on the session and
//! hands it back; a session is reused only when the server confirmed the unlock, so a
//! reused session never holds a lock. The keeper is not a bounded pool: a lock never waits
//! for a connection (a commit holding its repository's lock may take that repository's
//! reindexing lock, which a bounded pool could deadlock); at most [`IDLE_SESSIONS`](crate::lock_sessions::IDLE_SESSIONS) wait
//! idle, each for at most [`IDLE_FOR`](crate::lock_sessions::IDLE_FOR).
//!
//! A guard dropped without [`RepoLock::release`] unlocks in the background when it held
//! the lock, and closes its connection when it was still waiting (a cancelled request): the
//! server then ends the session and frees whatever it held. A node that dies closes its
//! sockets too, so a crashed node never leaves a repository locked.
//!
//! On SQLite there is one serving process, whose in-process lock is enough: the guard is
//! empty.

use crate::backend::Pool;
use crate::db::Db;
use crate::error::Result;
use crate::lock_sessions::LockSessions;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::sync::Arc;

/// The first key of every repository's commit lock: "trvr" in ASCII.
pub const REPO_LOCK_CLASS: i32 = 0x7472_7672;
/// The first key of every repository's reindexing lock: "trvi" in ASCII. A reindex runs
/// while its commit holds the commit lock, so the two are apart.
pub const INDEX_LOCK_CLASS: i32 = 0x7472_7669;

/// A repository's cross-node lock, held until released or dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RepoLock {
    held: Option<Held>,
}

/// The session of a PostgreSQL lock and what it locks.
struct Held {
    conn: PgConnection,
    class: i32,
    key: i32,
    /// Whether the server granted the lock (false while still waiting for it).
    granted: bool,
    sessions: Arc<LockSessions>,
}

impl std::fmt::Debug for RepoLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoLock")
            .field("held_in_database", &self.held.is_some())
            .finish()
    }
}

/// The second key of a repository's lock: its id folded into 32 bits. Two ids that fold
/// alike (4 294 967 296 apart) share a lock, which costs waiting, never correctness.
pub fn repo_lock_key(repo_id: i64) -> i32 {
    let folded = (repo_id ^ (repo_id >> 32)) & 0xffff_ffff;
    // The low 32 bits reinterpreted as a signed key.
    i32::from_ne_bytes((folded as u32).to_ne_bytes())
}

/// How a lock is asked for.
#[derive(Clone, Copy)]
enum Wait {
    /// `pg_advisory_lock`: until granted.
    Block,
    /// `pg_try_advisory_lock`: granted now or not at all.
    Try,
}

impl Db {
    /// Waits for, then holds, the lock of repository `repo_id` across every node sharing
    /// this database (PostgreSQL); on SQLite returns at once with an empty guard.
    pub async fn lock_repo(&self, repo_id: i64) -> Result<RepoLock> {
        self.advisory_lock(REPO_LOCK_CLASS, repo_id, Wait::Block)
            .await
            .map(|lock| lock.unwrap_or(RepoLock { held: None }))
    }

    /// Like [`Db::lock_repo`], the lock that serialises reindexing one repository, so that
    /// the last reindex to run, on whichever node, reads the newest head.
    pub async fn lock_repo_index(&self, repo_id: i64) -> Result<RepoLock> {
        self.advisory_lock(INDEX_LOCK_CLASS, repo_id, Wait::Block)
            .await
            .map(|lock| lock.unwrap_or(RepoLock { held: None }))
    }

    /// Takes the lock of repository `repo_id` only if it is free now: `None` when another
    /// session (another node) holds it. On SQLite always an empty guard.
    pub async fn try_lock_repo(&self, repo_id: i64) -> Result<Option<RepoLock>> {
        self.advisory_lock(REPO_LOCK_CLASS, repo_id, Wait::Try)
            .await
    }

    /// Sessions kept idle for the next repository lock (diagnostics and tests).
    pub fn idle_lock_sessions(&self) -> usize {
        self.lock_sessions.idle_count()
    }

    /// Closes the sessions kept for repository locks.
    pub(crate) async fn close_lock_sessions(&self) {
        self.lock_sessions.close_all().await;
    }

    /// The lock on a kept session when one is idle (and answers), else on a new one.
    async fn advisory_lock(
        &self,
        class: i32,
        repo_id: i64,
        wait: Wait,
    ) -> Result<Option<RepoLock>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Some(RepoLock { held: None }));
        };
        let key = repo_lock_key(repo_id);
        if let Some(conn) = self.lock_sessions.take() {
            let held = Held::new(conn, class, key, &self.lock_sessions);
            match held.acquire(wait).await {
                Ok(lock) => return Ok(lock),
                // A kept session the server has cut meanwhile: a new one below.
                Err(error) => {
                    tracing::debug!(%error, "kept lock session failed; opening a new one")
                }
            }
        }
        let conn = open_session(&pool.connect_options()).await?;
        Held::new(conn, class, key, &self.lock_sessions)
            .acquire(wait)
            .await
    }
}

async fn open_session(options: &PgConnectOptions) -> Result<PgConnection> {
    Ok(PgConnection::connect_with(options).await?)
}

impl Held {
    fn new(conn: PgConnection, class: i32, key: i32, sessions: &Arc<LockSessions>) -> Held {
        Held {
            conn,
            class,
            key,
            granted: false,
            sessions: Arc::clone(sessions),
        }
    }

    /// Asks the server for the lock. The guard exists before the query is sent, so a
    /// caller cancelled while waiting drops it ungranted, which closes the session.
    async fn acquire(self, wait: Wait) -> Result<Option<RepoLock>> {
        let mut lock = RepoLock { held: Some(self) };
        let Some(held) = lock.held.as_mut() else {
            return Ok(Some(lock));
        };
        let granted = match wait {
            Wait::Block => {
                sqlx::query("SELECT pg_advisory_lock($1, $2)")
                    .bind(held.class)
                    .bind(held.key)
                    .execute(&mut held.conn)
                    .await?;
                true
            }
            Wait::Try => {
                let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(held.class)
                    .bind(held.key)
                    .fetch_one(&mut held.conn)
                    .await?;
                taken
            }
        };
        if granted {
            held.granted = true;
            return Ok(Some(lock));
        }
        // Not taken: the session holds nothing and can serve the next lock.
        if let Some(held) = lock.held.take()
            && let Some(spare) = held.sessions.put(held.conn)
        {
            let _ = spare.close().await;
        }
        Ok(None)
    }

    /// Unlocks on the session; kept for reuse only when the server confirms the unlock,
    /// closed otherwise (which frees the lock with the session).
    async fn unlock(mut self) -> Result<()> {
        let unlocked = sqlx::query_as::<_, (bool,)>("SELECT pg_advisory_unlock($1, $2)")
            .bind(self.class)
            .bind(self.key)
            .fetch_one(&mut self.conn)
            .await;
        match unlocked {
            Ok((true,)) => {
                if let Some(spare) = self.sessions.put(self.conn) {
                    spare.close().await?;
                }
                Ok(())
            }
            Ok((false,)) => {
                tracing::warn!(
                    class = self.class,
                    key = self.key,
                    "repository lock was not held at release; closing its session"
                );
                self.conn.close().await?;
                Ok(())
            }
            // The connection is dropped: the server ends the session and frees the lock.
            Err(error) => Err(error.into()),
        }
    }
}

impl RepoLock {
    /// Frees the lock and waits for the server to have seen it.
    pub async fn release(mut self) -> Result<()> {
        match self.held.take() {
            Some(held) if held.granted => held.unlock().await,
            Some(held) => {
                held.conn.close().await?;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        // A granted lock is unlocked in the background and its session kept; a lock still
        // being waited for (a cancelled request) has a query in flight: dropping the
        // connection closes its socket, and the server ends the session with its locks.
        if held.granted
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(error) = held.unlock().await {
                    tracing::debug!(%error, "repository lock released by closing its session");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::repo_lock_key;

    #[test]
    fn small_ids_keep_their_value_and_large_ones_fold() {
        assert_eq!(repo_lock_key(1), 1);
        assert_eq!(repo_lock_key(123_456), 123_456);
        assert_ne!(repo_lock_key(1 << 40), repo_lock_key(1));
        assert_eq!(repo_lock_key(0xffff_ffff), -1);
    }
}
