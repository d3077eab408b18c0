//! The PostgreSQL sessions a repository lock ([`RepoLock`](crate::RepoLock)) held and
//! released, kept for the next lock: opening one costs a TCP connection and an
//! authentication (see `repo_lock.rs`).

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Idle lock sessions kept at most.
pub const IDLE_SESSIONS: usize = 8;
/// How long an idle lock session is kept before it is closed rather than reused (a server
/// restart or a firewall's idle timeout may have cut it meanwhile).
pub const IDLE_FOR: Duration = Duration::from_secs(60);

/// PostgreSQL sessions that held a repository lock and released it, kept for the next one.
#[derive(Default)]
pub(crate) struct LockSessions {
    idle: Mutex<Vec<IdleSession>>,
}

struct IdleSession {
    conn: PgConnection,
    since: Instant,
}

impl std::fmt::Debug for LockSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockSessions")
            .field("idle", &self.lock_idle().len())
            .finish()
    }
}

impl LockSessions {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<IdleSession>> {
        // A poisoned list only means a thread panicked while pushing or popping; the
        // sessions in it are still whole.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sessions are kept now.
    pub(crate) fn idle_count(&self) -> usize {
        self.lock_idle().len()
    }

    /// The most recently released session that is still fresh; older ones are dropped.
    pub(crate) fn take(&self) -> Option<PgConnection> {
        let mut idle = self.lock_idle();
        idle.retain(|session| session.since.elapsed() < IDLE_FOR);
        idle.pop().map(|session| session.conn)
    }

    /// Closes every kept session (the handle is closing).
    pub(crate) async fn close_all(&self) {
        let idle: Vec<IdleSession> = std::mem::take(&mut *self.lock_idle());
        for session in idle {
            let _ = session.conn.close().await;
        }
    }

    /// Keeps `conn` for the next lock, or hands it back when enough are kept.
    pub(crate) fn put(&self, conn: PgConnection) -> Option<PgConnection> {
        let mut idle = self.lock_idle();
        if idle.len() >= IDLE_SESSIONS {
            return Some(conn);
        }
        idle.push(IdleSession {
            conn,
            since: Instant::now(),
        });
        None
    }
}
