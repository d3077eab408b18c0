//! What several nodes sharing one database rely on: leases (background work runs on one
//! node at a time, and moves to another when its holder stops renewing) and the
//! per-repository lock that serialises commits across nodes.

use crate::TestResult;
use std::time::Duration;
use trove_db::Backend;

trove_db::backend_tests! {
async fn a_shared_secret_is_the_first_stored_and_never_replaced(db) -> TestResult {
    let first = db.shared_secret("url-signing", &[1; 32]).await?;
    assert_eq!(first, vec![1; 32]);
    // A later node offers its own; it gets the stored one.
    assert_eq!(db.shared_secret("url-signing", &[2; 32]).await?, vec![1; 32]);
    // Secrets are independent of each other.
    assert_eq!(db.shared_secret("other", &[3; 40]).await?, vec![3; 40]);
    // Nodes starting at once all end with the same one.
    let mut racers = tokio::task::JoinSet::new();
    for node in 0..8_u8 {
        let db = db.clone();
        racers.spawn(async move { db.shared_secret("raced", &[node; 32]).await });
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(got) = racers.join_next().await {
        seen.insert(got??);
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    Ok(())
}

async fn a_lease_has_one_holder_until_it_expires_or_is_released(db) -> TestResult {
    let t0 = 1_000_000;
    assert!(db.try_lease("index", "node-a", 10_000, t0).await?);
    // Another node is refused while the lease runs; the holder renews it.
    assert!(!db.try_lease("index", "node-b", 10_000, t0 + 1).await?);
    assert!(db.try_lease("index", "node-a", 10_000, t0 + 5_000).await?);
    let held = db.lease("index", t0 + 5_001).await?.expect("held");
    assert_eq!((held.holder.as_str(), held.taken_at, held.expires_at), ("node-a", t0, t0 + 15_000));
    // Renewed until t0 + 15 000: still refused after the first term would have ended.
    assert!(!db.try_lease("index", "node-b", 10_000, t0 + 12_000).await?);
    // The holder stops renewing: once expired, the other node takes it over.
    assert!(db.lease("index", t0 + 15_000).await?.is_none());
    assert!(db.try_lease("index", "node-b", 10_000, t0 + 15_000).await?);
    let held = db.lease("index", t0 + 15_001).await?.expect("held");
    assert_eq!((held.holder.as_str(), held.taken_at), ("node-b", t0 + 15_000));
    // The old holder, back, cannot take it while it runs, nor release another's.
    assert!(!db.try_lease("index", "node-a", 10_000, t0 + 16_000).await?);
    assert!(!db.release_lease("index", "node-a").await?);
    // Released, it is free at once.
    assert!(db.release_lease("index", "node-b").await?);
    assert!(db.try_lease("index", "node-a", 10_000, t0 + 16_001).await?);
    // Leases are independent of each other.
    assert!(db.try_lease("gc", "node-b", 10_000, t0 + 16_002).await?);
    let names: Vec<(String, String)> = db
        .leases(t0 + 16_003)
        .await?
        .into_iter()
        .map(|l| (l.name, l.holder))
        .collect();
    assert_eq!(
        names,
        [("gc".to_owned(), "node-b".to_owned()), ("index".to_owned(), "node-a".to_owned())]
    );
    Ok(())
}

async fn of_nodes_racing_for_a_free_lease_exactly_one_wins(db) -> TestResult {
    for round in 0..5_i64 {
        let now = 2_000_000 + round * 100_000;
        let mut racers = tokio::task::JoinSet::new();
        for node in 0..8 {
            let db = db.clone();
            racers.spawn(async move {
                db.try_lease("webhooks", &format!("node-{node}"), 50_000, now).await
            });
        }
        let mut winners = 0;
        while let Some(won) = racers.join_next().await {
            if won?? {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    Ok(())
}

async fn a_released_lock_session_serves_the_next_lock_and_a_cut_one_is_replaced(db) -> TestResult {
    if db.backend() == Backend::Sqlite {
        return Ok(());
    }
    // Twenty commits in turn open one session, not twenty.
    for _ in 0..20 {
        db.lock_repo(11).await?.release().await?;
    }
    assert_eq!(db.idle_lock_sessions(), 1);
    // A kept session carries no lock: reused, it holds only the new one.
    let held = db.lock_repo(11).await?;
    assert_eq!(db.idle_lock_sessions(), 0);
    assert!(db.try_lock_repo(11).await?.is_none());
    let other = db.try_lock_repo(12).await?.expect("repository 12 is free");
    other.release().await?;
    held.release().await?;
    assert!(db.idle_lock_sessions() >= 1);
    // A granted guard dropped without release unlocks in the background.
    drop(db.lock_repo(11).await?);
    let mut freed = None;
    for _ in 0..100 {
        if let Some(lock) = db.try_lock_repo(11).await? {
            freed = Some(lock);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    freed.expect("a dropped guard frees its lock").release().await?;
    // The server cuts the kept sessions (a restart, an idle timeout): the next lock opens a
    // new session and still excludes the others.
    let admin_url = std::env::var(trove_db::testing::POSTGRES_URL_ENV)?;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await?;
    let (cut,): (i64,) = sqlx::query_as(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE state = 'idle' AND query LIKE 'SELECT pg_advisory_unlock%' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await?;
    assert!(cut >= 1, "no kept session to cut");
    let _ = sqlx::Connection::close(admin).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let held = db.lock_repo(11).await?;
    assert!(db.try_lock_repo(11).await?.is_none());
    held.release().await?;
    Ok(())
}

async fn the_repository_lock_serialises_across_sessions(db) -> TestResult {
    let held = db.lock_repo(7).await?;
    if db.backend() == Backend::Sqlite {
        // One process serves a SQLite hub: its in-process lock is the whole story.
        assert!(db.try_lock_repo(7).await?.is_some());
        held.release().await?;
        return Ok(());
    }
    // Another session (another node) cannot take repository 7, but can take repository 8.
    assert!(db.try_lock_repo(7).await?.is_none());
    let other = db.try_lock_repo(8).await?.expect("repository 8 is free");
    // Write transactions do not wait on repository locks (a different key space).
    let started = std::time::Instant::now();
    crate::user(&db, "writer").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // A waiter gets the lock once the holder releases it, not before.
    let waiter = {
        let db = db.clone();
        tokio::spawn(async move { db.lock_repo(7).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the waiter got a held lock");
    held.release().await?;
    let second = tokio::time::timeout(Duration::from_secs(10), waiter).await???;
    assert!(db.try_lock_repo(7).await?.is_none());
    // A guard dropped without release (a cancelled request, a node that died) frees the
    // lock when the server ends its session.
    drop(second);
    let mut freed = None;
    for _ in 0..100 {
        if let Some(lock) = db.try_lock_repo(7).await? {
            freed = Some(lock);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    freed.expect("a dropped guard frees its lock").release().await?;
    other.release().await?;
    Ok(())
}
}
