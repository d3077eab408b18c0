//! Start-up recovery: what a killed process leaves on disk (a repository folder missing
//! under its row, stale git lock files, staging and orphan folders) is put right by
//! `repos::reconcile`, and the repository answers again — also when the check runs in the
//! background and a request reaches the repository first.

use crate::app::TestApp;
use axum::http::StatusCode;
use serde_json::json;
use trove::repos::reconcile::{self, RunningMarker};

pub(crate) async fn create(app: &TestApp, name: &str) -> i64 {
    let created = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": name, "type": "model"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.error());
    let id = trove_types::RepoId::new(
        trove_types::RepoName::parse("admin").expect("name"),
        trove_types::RepoName::parse(name).expect("name"),
    );
    app.state
        .db
        .repo_by_name(trove_types::RepoType::Model, &id)
        .await
        .expect("db")
        .expect("created")
        .id
}

pub(crate) async fn commit(app: &TestApp, name: &str, file: &str) -> StatusCode {
    let lines = [
        json!({"key": "header", "value": {"summary": "Add", "description": ""}}),
        json!({"key": "file", "value": {"path": file, "encoding": "base64", "content": "aGk="}}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    app.post(&format!("/api/models/admin/{name}/commit/main"))
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .status
}

async fn answers(app: &TestApp, name: &str) {
    for uri in [
        format!("/api/models/admin/{name}"),
        format!("/api/models/admin/{name}/tree/main"),
        format!("/api/models/admin/{name}/refs"),
        format!("/api/models/admin/{name}/commits/main"),
    ] {
        let got = app.get(&uri).token(&app.admin_token).send().await;
        assert_eq!(got.status, StatusCode::OK, "{uri}: {:?}", got.error());
    }
}

#[tokio::test]
async fn a_missing_git_folder_is_initialised_again() {
    let app = TestApp::new().await;
    let id = create(&app, "lost").await;
    std::fs::remove_dir_all(app.state.git_dir(id)).expect("remove");
    let done = trove::repos::reconcile::reconcile(&app.state)
        .await
        .expect("reconcile");
    assert_eq!(done.reinitialised, vec![id]);
    answers(&app, "lost").await;
    assert_eq!(commit(&app, "lost", "a.txt").await, StatusCode::OK);
}

#[tokio::test]
async fn stale_lock_files_are_removed_and_commits_succeed() {
    let app = TestApp::new().await;
    let id = create(&app, "locked").await;
    let dir = app.state.git_dir(id);
    for lock in [
        "refs/heads/main.lock",
        "config.lock",
        "packed-refs.lock",
        "HEAD.lock",
    ] {
        std::fs::write(dir.join(lock), b"").expect("lock");
    }
    std::fs::create_dir_all(dir.join("objects/tmp_objdir-incoming-x")).expect("quarantine");
    let done = trove::repos::reconcile::reconcile(&app.state)
        .await
        .expect("reconcile");
    assert_eq!(done.leftovers.len(), 5, "{:?}", done.leftovers);
    assert!(!dir.join("refs/heads/main.lock").exists());
    assert_eq!(commit(&app, "locked", "a.txt").await, StatusCode::OK);
    answers(&app, "locked").await;
}

#[tokio::test]
async fn staging_and_orphan_folders_are_cleared_and_the_id_reused_cleanly() {
    let app = TestApp::new().await;
    let data = app.state.config.data_dir.clone();
    let staged = trove::repos::folders::staging_dir(&data.join("repos")).join("x.git");
    std::fs::create_dir_all(&staged).expect("staged");
    let orphan = data.join("repos/999.git");
    std::fs::create_dir_all(&orphan).expect("orphan");
    let id = create(&app, "kept").await;
    let done = trove::repos::reconcile::reconcile(&app.state)
        .await
        .expect("reconcile");
    assert_eq!(done.orphans, vec![orphan.clone()]);
    assert!(!staged.exists() && !orphan.exists());
    assert!(app.state.git_dir(id).exists());
    answers(&app, "kept").await;
    // Nothing is left to do a second time.
    let again = trove::repos::reconcile::reconcile(&app.state)
        .await
        .expect("reconcile");
    assert_eq!(again, Default::default());
}

#[tokio::test]
async fn a_deleted_repo_can_be_created_again_under_the_same_name() {
    let app = TestApp::new().await;
    create(&app, "again").await;
    let deleted = app
        .request(axum::http::Method::DELETE, "/api/repos/delete")
        .token(&app.admin_token)
        .json(&json!({"name": "again", "type": "model"}))
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.error());
    create(&app, "again").await;
    answers(&app, "again").await;
}

#[tokio::test]
async fn a_request_before_the_walk_checks_its_repository_first() {
    let app = TestApp::new().await;
    let locked = create(&app, "early").await;
    let other = create(&app, "later").await;
    let lost = create(&app, "gone").await;
    let dir = app.state.git_dir(locked);
    std::fs::write(dir.join("refs/heads/main.lock"), b"").expect("lock");
    std::fs::write(app.state.git_dir(other).join("config.lock"), b"").expect("lock");
    std::fs::remove_dir_all(app.state.git_dir(lost)).expect("remove");

    reconcile::start(&app.state).await.expect("start");
    assert!(app.state.repo_checks.pending());
    // Before the walk: the commit checks its repository (and waits for nothing stale).
    assert_eq!(commit(&app, "early", "a.txt").await, StatusCode::OK);
    assert!(!dir.join("refs/heads/main.lock").exists());
    answers(&app, "gone").await;
    // The one not reached by a request still has its lock until the walk.
    assert!(app.state.git_dir(other).join("config.lock").exists());

    let done = reconcile::check_all(&app.state).await.expect("walk");
    assert!(!app.state.repo_checks.pending());
    assert!(!app.state.git_dir(other).join("config.lock").exists());
    assert_eq!(done.reinitialised, vec![lost]);
    // Each repository was checked once: by the request, or by the walk.
    let mut leftovers = done.leftovers.clone();
    leftovers.sort();
    let mut expected = vec![
        dir.join("refs/heads/main.lock"),
        app.state.git_dir(other).join("config.lock"),
    ];
    expected.sort();
    assert_eq!(leftovers, expected);
    assert!(done.failed.is_empty());
    // A lock taken from now on belongs to a live write: requests no longer check.
    std::fs::write(dir.join("packed-refs.lock"), b"").expect("lock");
    answers(&app, "early").await;
    assert!(dir.join("packed-refs.lock").exists());
}

#[tokio::test]
async fn a_folder_removed_while_nothing_is_checked_is_put_back_on_first_use() {
    let app = TestApp::new().await;
    let id = create(&app, "vanished").await;
    std::fs::remove_dir_all(app.state.git_dir(id)).expect("remove");
    assert!(!app.state.repo_checks.pending());
    answers(&app, "vanished").await;
    assert_eq!(commit(&app, "vanished", "a.txt").await, StatusCode::OK);
}

#[tokio::test]
async fn a_folder_removed_while_nothing_is_checked_is_put_back_by_a_download() {
    let app = TestApp::new().await;
    let id = create(&app, "downloaded").await;
    assert_eq!(commit(&app, "downloaded", "a.txt").await, StatusCode::OK);
    std::fs::remove_dir_all(app.state.git_dir(id)).expect("remove");
    assert!(!app.state.repo_checks.pending());
    // The download opens the repository, finds it missing and puts it back: the history is
    // gone (a.txt with it), the fresh initial commit answers.
    let lost = app
        .get("/admin/downloaded/resolve/main/a.txt")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(lost.status, StatusCode::NOT_FOUND, "{:?}", lost.error());
    assert!(app.state.git_dir(id).exists());
    let fresh = app
        .get("/admin/downloaded/resolve/main/.gitattributes")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{:?}", fresh.error());
    assert!(!fresh.body.is_empty());
}

#[tokio::test]
async fn a_folder_removed_while_nothing_is_checked_is_put_back_by_git() {
    let app = TestApp::new().await;
    let id = create(&app, "fetched").await;
    std::fs::remove_dir_all(app.state.git_dir(id)).expect("remove");
    assert!(!app.state.repo_checks.pending());
    // The refs advertisement hands the folder to a git process: it is put back first.
    let refs = app
        .get("/admin/fetched.git/info/refs?service=git-upload-pack")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(refs.status, StatusCode::OK, "{:?}", refs.error());
    assert!(
        String::from_utf8_lossy(&refs.body).contains("refs/heads/main"),
        "{}",
        String::from_utf8_lossy(&refs.body)
    );
    assert!(app.state.git_dir(id).exists());
}

#[test]
fn running_markers_tell_a_clean_stop_from_a_dead_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        RunningMarker::left_behind(dir.path())
            .expect("read")
            .is_empty()
    );
    // A clean stop removes its marker.
    let clean = RunningMarker::create(dir.path(), "node/a").expect("create");
    clean.remove().expect("remove");
    assert!(
        RunningMarker::left_behind(dir.path())
            .expect("read")
            .is_empty()
    );
    // A process that dies leaves its own, one per start even under one node id.
    let dead = RunningMarker::create(dir.path(), "node-a").expect("create");
    std::mem::forget(dead);
    let again = RunningMarker::create(dir.path(), "node-a").expect("create");
    let left = RunningMarker::left_behind(dir.path()).expect("read");
    assert_eq!(left.len(), 2, "{left:?}");
    for marker in &left {
        RunningMarker::remove_path(marker).expect("remove");
    }
    assert!(
        RunningMarker::left_behind(dir.path())
            .expect("read")
            .is_empty()
    );
    drop(again);
}
