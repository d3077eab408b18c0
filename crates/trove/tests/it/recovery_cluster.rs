//! The check of a start after a crash on PostgreSQL, with nodes on one database and one
//! data dir: the node that checks serves while it walks (a request checks its repository
//! first), a node starting meanwhile waits for the `repo-check` lease, a checker that died
//! is taken over by the next node, and a checker that loses its lease stops checking and
//! keeps the markers. Skipped unless `TROVE_TEST_POSTGRES_URL` names a server.

use crate::app::TestApp;
use crate::recovery::{commit, create};
use axum::http::StatusCode;
use std::time::{Duration, Instant};
use trove::cluster::leases::REPO_CHECK;
use trove::repos::reconcile::{self, RunningMarker};
use trove_db::testing::{POSTGRES_URL_ENV, TestDb};

fn now_ms() -> i64 {
    trove::clock::now_ms()
}

/// A PostgreSQL database and a data dir for the nodes of one hub, and its first node.
async fn hub() -> Option<(TestDb, tempfile::TempDir, TestApp)> {
    let Some(pg) = TestDb::postgres().await else {
        eprintln!("{POSTGRES_URL_ENV} unset: skipped");
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let first = TestApp::node(pg.db(), dir.path()).await;
    Some((pg, dir, first))
}

/// The marker of a node killed with -9.
fn crashed(repos: &std::path::Path) -> std::path::PathBuf {
    let marker = RunningMarker::create(repos, "crashed").expect("marker");
    let left = RunningMarker::left_behind(repos).expect("read");
    std::mem::forget(marker);
    left.into_iter().next().expect("one marker")
}

#[tokio::test]
async fn the_checking_node_serves_during_its_walk_and_a_node_starting_meanwhile_waits() {
    let Some((pg, dir, a)) = hub().await else {
        return;
    };
    let repos = dir.path().join("repos");
    let early = a.state.git_dir(create(&a, "early").await);
    let later = a.state.git_dir(create(&a, "later").await);
    std::fs::write(early.join("refs/heads/main.lock"), b"").expect("lock");
    std::fs::write(later.join("refs/heads/main.lock"), b"").expect("lock");
    let marker = crashed(&repos);

    let claim = reconcile::claim(&a.state, &repos).await.expect("claim");
    assert!(claim.others.is_empty(), "{:?}", claim.others);
    assert_eq!(claim.left_behind, vec![marker.clone()]);
    let leased = claim.check.expect("a node alone after a crash checks");
    reconcile::start(&a.state).await.expect("start");
    assert!(a.state.repo_checks.pending());

    // Served before the walk: the commit checks its repository first.
    assert_eq!(commit(&a, "early", "a.txt").await, StatusCode::OK);
    assert!(!early.join("refs/heads/main.lock").exists());
    assert!(later.join("refs/heads/main.lock").exists());

    // A node starting while the walk runs waits for the lease.
    let b = TestApp::node(pg.db(), dir.path()).await;
    let b_presence = format!("node:{}", b.state.node.id());
    let b_repos = repos.clone();
    let waiting = tokio::spawn(async move {
        let claim = reconcile::claim(&b.state, &b_repos).await;
        (b, claim)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !waiting.is_finished(),
        "the second node went on while the first was checking"
    );
    // It has not even announced itself: it waits for the lease.
    assert!(
        pg.db()
            .lease(&b_presence, now_ms())
            .await
            .expect("db")
            .is_none(),
        "the second node announced itself while the first was checking"
    );
    let held = pg
        .db()
        .lease(REPO_CHECK, now_ms())
        .await
        .expect("db")
        .expect("held");
    assert_eq!(held.holder, a.state.node.id());

    let done = leased.run(&a.state).await.expect("walk");
    // Each repository checked once: by the request, or by the walk.
    let mut leftovers = done.leftovers.clone();
    leftovers.sort();
    let mut expected = vec![
        early.join("refs/heads/main.lock"),
        later.join("refs/heads/main.lock"),
    ];
    expected.sort();
    assert_eq!(leftovers, expected);
    assert!(!later.join("refs/heads/main.lock").exists());
    assert!(!a.state.repo_checks.pending());
    assert!(
        !marker.exists(),
        "the crashed node's marker outlived the walk"
    );
    // The walk released the lease: it is free, or already the waiting node's (which polls
    // for it and holds it while it makes its own claim — CI caught it there once).
    let after = pg.db().lease(REPO_CHECK, now_ms()).await.expect("db");
    assert!(
        after
            .as_ref()
            .is_none_or(|lease| lease.holder != a.state.node.id()),
        "the first node still holds the lease after its walk: {after:?}"
    );

    // The lease released, the second node goes on; it sees the first serving and checks
    // nothing.
    let (b, claim_b) = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the second node still waits after the walk")
        .expect("task");
    let claim_b = claim_b.expect("claim");
    assert!(claim_b.check.is_none());
    assert_eq!(claim_b.others, vec![a.state.node.id().to_owned()]);
    drop(b);
    pg.drop().await;
}

#[tokio::test]
async fn a_checker_that_died_mid_walk_is_taken_over_by_the_next_node() {
    let Some((pg, dir, a)) = hub().await else {
        return;
    };
    let repos = dir.path().join("repos");
    let locked = a.state.git_dir(create(&a, "locked").await);
    std::fs::write(locked.join("packed-refs.lock"), b"").expect("lock");
    let marker = crashed(&repos);
    // A node that took the lease to check, then died: its lease runs out (its presence
    // already has).
    let db = pg.db();
    assert!(
        db.try_lease(REPO_CHECK, "ghost", 2500, now_ms())
            .await
            .expect("db")
    );

    let started = Instant::now();
    let claim = reconcile::claim(&a.state, &repos).await.expect("claim");
    assert!(
        started.elapsed() >= Duration::from_millis(2000),
        "took the lease of a checker not yet expired"
    );
    assert!(claim.others.is_empty(), "{:?}", claim.others);
    let leased = claim.check.expect("the dead checker's walk is taken over");
    reconcile::start(&a.state).await.expect("start");
    let done = leased.run(&a.state).await.expect("walk");
    assert_eq!(done.leftovers, vec![locked.join("packed-refs.lock")]);
    assert!(!marker.exists());
    pg.drop().await;
}

#[tokio::test]
async fn a_checker_that_loses_its_lease_stops_checking_and_keeps_the_markers() {
    let Some((pg, dir, a)) = hub().await else {
        return;
    };
    let repos = dir.path().join("repos");
    let locked = a.state.git_dir(create(&a, "taken").await);
    std::fs::write(locked.join("config.lock"), b"").expect("lock");
    let marker = crashed(&repos);
    let claim = reconcile::claim(&a.state, &repos).await.expect("claim");
    let leased = claim.check.expect("checks");
    reconcile::start(&a.state).await.expect("start");

    // Another node holds the lease now (this one was cut off from the database long enough).
    let db = pg.db();
    assert!(
        db.release_lease(REPO_CHECK, a.state.node.id())
            .await
            .expect("db")
    );
    assert!(
        db.try_lease(REPO_CHECK, "other", 60_000, now_ms())
            .await
            .expect("db")
    );
    // The next renewal finds it taken.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.state.repo_checks.within_lease() {
        assert!(Instant::now() < deadline, "the lost lease went unnoticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A request goes on without checking: the lock may be the other node's.
    let tree = a
        .get("/api/models/admin/taken/tree/main")
        .token(&a.admin_token)
        .send()
        .await;
    assert_eq!(tree.status, StatusCode::OK, "{:?}", tree.error());
    assert!(locked.join("config.lock").exists());

    let walked = leased.run(&a.state).await;
    assert!(walked.is_err(), "{walked:?}");
    assert!(!a.state.repo_checks.pending());
    assert!(locked.join("config.lock").exists());
    assert!(
        marker.exists(),
        "the markers of an unfinished check are kept"
    );
    let held = db
        .lease(REPO_CHECK, now_ms())
        .await
        .expect("db")
        .expect("held");
    assert_eq!(held.holder, "other");
    pg.drop().await;
}
