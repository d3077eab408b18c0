//! The per-repository lock that serialises commits to one repository across every node of
//! a hub on PostgreSQL.
//!
//! On PostgreSQL, [`Db::lock_repo`] opens a connection of its own (outside the pool, so a
//! burst of commits to many repositories can never starve the queries those commits make)
//! and takes a session-scoped advisory lock on it, keyed by the pair
//! ([`REPO_LOCK_CLASS`], repository id). The two-key form of PostgreSQL's advisory locks
//! lives in a key space apart from the one-key form that the write transactions and the
//! migrations take, so the repository locks never wait on those. The lock is held until
//! [`RepoLock::release`]; a guard dropped without it (a cancelled request) closes its
//! connection, and a node that dies closes it too: the server then ends the session and
//! frees the lock, so a crashed node never leaves a repository locked.
//!
//! On SQLite there is one serving process, whose in-process lock is enough: the guard is
//! empty.

use crate::backend::Pool;
use crate::{Db, Result};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The first key of every repository's commit lock: "trvr" in ASCII.
pub const REPO_LOCK_CLASS: i32 = 0x7472_7672;
/// The first key of every repository's reindexing lock: "trvi" in ASCII. A reindex runs
/// while its commit holds the commit lock, so the two are apart.
pub const INDEX_LOCK_CLASS: i32 = 0x7472_7669;

/// A repository's cross-node lock, held until released or dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RepoLock {
    conn: Option<PgConnection>,
}

impl std::fmt::Debug for RepoLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoLock")
            .field("held_in_database", &self.conn.is_some())
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

impl Db {
    /// Waits for, then holds, the lock of repository `repo_id` across every node sharing
    /// this database (PostgreSQL); on SQLite returns at once with an empty guard.
    pub async fn lock_repo(&self, repo_id: i64) -> Result<RepoLock> {
        self.advisory_lock(REPO_LOCK_CLASS, repo_id).await
    }

    /// Like [`Db::lock_repo`], the lock that serialises reindexing one repository, so that
    /// the last reindex to run, on whichever node, reads the newest head.
    pub async fn lock_repo_index(&self, repo_id: i64) -> Result<RepoLock> {
        self.advisory_lock(INDEX_LOCK_CLASS, repo_id).await
    }

    async fn advisory_lock(&self, class: i32, repo_id: i64) -> Result<RepoLock> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(RepoLock { conn: None }),
            Pool::Postgres(pool) => {
                let options = pool.connect_options();
                let mut conn = PgConnection::connect_with(&options).await?;
                sqlx::query("SELECT pg_advisory_lock($1, $2)")
                    .bind(class)
                    .bind(repo_lock_key(repo_id))
                    .execute(&mut conn)
                    .await?;
                Ok(RepoLock { conn: Some(conn) })
            }
        }
    }

    /// Takes the lock of repository `repo_id` only if it is free now: `None` when another
    /// session (another node) holds it. On SQLite always an empty guard.
    pub async fn try_lock_repo(&self, repo_id: i64) -> Result<Option<RepoLock>> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(Some(RepoLock { conn: None })),
            Pool::Postgres(pool) => {
                let options = pool.connect_options();
                let mut conn = PgConnection::connect_with(&options).await?;
                let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(REPO_LOCK_CLASS)
                    .bind(repo_lock_key(repo_id))
                    .fetch_one(&mut conn)
                    .await?;
                if taken {
                    Ok(Some(RepoLock { conn: Some(conn) }))
                } else {
                    let _ = conn.close().await;
                    Ok(None)
                }
            }
        }
    }
}

impl RepoLock {
    /// Frees the lock: ends the session that holds it (which releases every advisory lock
    /// it took) and waits for the server to have seen it.
    pub async fn release(mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            conn.close().await?;
        }
        Ok(())
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        // Dropping the connection closes its socket; the server ends the session and its
        // locks go with it.
        drop(self.conn.take());
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
