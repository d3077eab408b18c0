//! Signed-in requests through the token and repository caches (`throttle/token_cache.rs`,
//! `throttle/repo_cache.rs`): what a token resolves to and a repository's row are reused, but
//! a revocation, a disabled user, a membership change or a repository made private or
//! deleted takes effect for the very next request, whether this server or another process
//! on the same SQLite file made it.

use crate::app::TestApp;
use axum::http::StatusCode;
use serde_json::Value;
use std::time::Duration;
use trove_db::{Db, OrgRole, TokenRole};
use trove_types::RepoName;

/// The cache is off unless configured: these tests turn it on.
fn cached_for_a_second(config: &mut trove::config::Config) {
    config.auth.token_cache_ms = Some(1000);
}

async fn whoami(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let answer = app.get("/api/whoami-v2").token(token).send().await;
    let body = if answer.status == StatusCode::OK {
        answer.json()
    } else {
        Value::Null
    };
    (answer.status, body)
}

/// A second handle on the hub's database file — another process, as the admin CLI run beside
/// the server — and the row of model `repo` read through it.
async fn elsewhere(app: &TestApp, repo: &str) -> (Db, trove_db::Repo) {
    let other = Db::open(&app.state.config.data_dir.join("trove.db"))
        .await
        .expect("second handle");
    let id = trove_types::RepoId::parse(repo).expect("id");
    let row = other
        .repo_by_name(trove_types::RepoType::Model, &id)
        .await
        .expect("db")
        .expect("row");
    (other, row)
}

async fn status_of(app: &TestApp, token: &str) -> StatusCode {
    app.get("/admin/cached/resolve/main/a.txt")
        .token(token)
        .send()
        .await
        .status
}

fn org_names(me: &Value) -> Vec<String> {
    me["orgs"]
        .as_array()
        .expect("orgs")
        .iter()
        .map(|o| o["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn account_writes_on_this_node_take_effect_for_the_next_request() {
    let app = TestApp::with_config(cached_for_a_second).await;
    let db = &app.state.db;
    let token = app.user("bob", TokenRole::Read).await;
    let bob = db.user_by_name("bob").await.expect("db").expect("bob");
    let acme = db
        .create_org(&RepoName::parse_namespace("acme").expect("name"), None)
        .await
        .expect("org");

    let (status, me) = whoami(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(org_names(&me).is_empty());
    // Asked again: now a hit.
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    assert_eq!(app.state.auth.tokens.len(), 1, "the resolution is kept");

    db.set_org_member(acme.id, bob.id, OrgRole::Read)
        .await
        .expect("member");
    assert_eq!(org_names(&whoami(&app, &token).await.1), ["acme"], "joined");
    db.remove_org_member(acme.id, bob.id).await.expect("remove");
    assert!(org_names(&whoami(&app, &token).await.1).is_empty(), "left");

    db.set_user_fullname(bob.id, Some("Bob B."))
        .await
        .expect("fullname");
    assert_eq!(whoami(&app, &token).await.1["fullname"], "Bob B.");

    assert!(db.set_user_disabled(bob.id, true).await.expect("disable"));
    assert_eq!(
        whoami(&app, &token).await.0,
        StatusCode::UNAUTHORIZED,
        "a disabled user's token is refused at once"
    );
    assert!(db.set_user_disabled(bob.id, false).await.expect("enable"));
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);

    assert!(db.revoke_token(bob.id, "test").await.expect("revoke"));
    assert_eq!(
        whoami(&app, &token).await.0,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused at once"
    );
}

#[tokio::test]
async fn a_revocation_by_another_process_on_the_file_takes_effect_for_the_next_request() {
    // The default configuration: on a SQLite file the cache is on.
    let app = TestApp::new().await;
    assert!(app.state.db.shares_epochs());
    assert_eq!(
        app.state.config.auth.token_cache_ttl(true),
        Duration::from_millis(trove::config::DEFAULT_TOKEN_CACHE_MS)
    );
    let token = app.user("carol", TokenRole::Read).await;
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    assert_eq!(app.state.auth.tokens.len(), 1, "kept");

    // Another handle on the same file, as `trove token revoke` run beside the server: its
    // writes move the epochs file every process reads.
    let other = Db::open(&app.state.config.data_dir.join("trove.db"))
        .await
        .expect("second handle");
    let carol = other
        .user_by_name("carol")
        .await
        .expect("db")
        .expect("carol");
    assert!(other.revoke_token(carol.id, "test").await.expect("revoke"));
    assert_eq!(
        whoami(&app, &token).await.0,
        StatusCode::UNAUTHORIZED,
        "refused at once, not after the TTL"
    );
}

#[tokio::test]
async fn a_configured_zero_keeps_nothing_and_postgres_keeps_nothing_unless_configured() {
    let app = TestApp::with_config(|config| config.auth.token_cache_ms = Some(0)).await;
    let token = app.user("dave", TokenRole::Read).await;
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    assert!(app.state.auth.tokens.is_empty());
    assert!(app.state.auth.repos.is_empty());

    let defaults = trove::config::Config::default();
    assert_eq!(
        defaults.auth.token_cache_ttl(false),
        Duration::ZERO,
        "PostgreSQL"
    );
}

#[tokio::test]
async fn a_repository_made_private_or_deleted_elsewhere_is_refused_at_the_next_request() {
    let app = TestApp::new().await;
    let token = app.user("erin", TokenRole::Read).await;
    app.create_repo("cached", "model").await;
    app.commit_files("cached", "add", &[("a.txt", "hello")])
        .await;
    assert_eq!(status_of(&app, &token).await, StatusCode::OK);
    assert_eq!(status_of(&app, &token).await, StatusCode::OK);
    assert_eq!(app.state.auth.repos.len(), 1, "the row is kept");

    let (other, row) = elsewhere(&app, "admin/cached").await;
    other
        .update_repo_settings(row.id, Some(true), None, None, None)
        .await
        .expect("private");
    assert_eq!(
        status_of(&app, &token).await,
        StatusCode::NOT_FOUND,
        "private to erin at once"
    );
    let admin = app
        .get("/admin/cached/resolve/main/a.txt")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(admin.status, StatusCode::OK, "still the admin's");

    other
        .update_repo_settings(row.id, Some(false), None, None, None)
        .await
        .expect("public");
    assert_eq!(status_of(&app, &token).await, StatusCode::OK);
    assert!(other.delete_repo(row.id).await.expect("delete"));
    assert_eq!(
        status_of(&app, &token).await,
        StatusCode::NOT_FOUND,
        "gone at once"
    );
}

#[tokio::test]
async fn an_lfs_file_deleted_or_linked_again_elsewhere_is_answered_anew_at_the_next_request() {
    let app = TestApp::new().await;
    app.create_repo("weights", "model").await;
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let oid = crate::storage::lfs_upload(&app, "weights", &data).await;
    crate::storage::commit_pointer(&app, "weights", "w.bin", &oid, data.len()).await;
    let file = "/admin/weights/resolve/main/w.bin";
    let first = app.get(file).send().await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, data);
    assert_eq!(app.get(file).send().await.status, StatusCode::OK);
    assert_eq!(app.state.auth.lfs_downloads.len(), 1, "the answer is kept");

    let (other, repo) = elsewhere(&app, "admin/weights").await;
    let sha = trove_types::Sha256Hex::parse(&oid).expect("oid");
    let deleted = other
        .delete_repo_lfs_files(repo.id, std::slice::from_ref(&sha), 1)
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    let gone = app.get(file).send().await;
    assert_eq!(
        gone.status,
        StatusCode::NOT_FOUND,
        "deleted permanently: not served from the cache"
    );
    let (code, message) = gone.error();
    assert_eq!(code, Some("EntryNotFound"));
    assert!(
        message.is_some_and(|m| m.contains("deleted permanently")),
        "{message:?}"
    );
    let head = app.request(axum::http::Method::HEAD, file).send().await;
    assert_eq!(
        head.status,
        StatusCode::NOT_FOUND,
        "nor confirmed to a HEAD"
    );
    other
        .link_repo_object(repo.id, &sha, 2)
        .await
        .expect("link again");
    let again = app.get(file).send().await;
    assert_eq!(again.status, StatusCode::OK, "linked again");
    assert_eq!(again.body, data);
}
