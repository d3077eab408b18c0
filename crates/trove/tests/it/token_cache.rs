//! Signed-in requests through the token cache (`throttle/token_cache.rs`): what a token resolves
//! to is reused, but a revocation, a disabled user or a membership change made on this node
//! takes effect for the very next request; one made by another process on the same database
//! within the cache's TTL.

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
async fn a_revocation_by_another_process_takes_effect_within_the_ttl() {
    let app = TestApp::with_config(cached_for_a_second).await;
    let token = app.user("carol", TokenRole::Read).await;
    assert_eq!(whoami(&app, &token).await.0, StatusCode::OK);
    assert_eq!(app.state.auth.tokens.len(), 1);

    // Another handle on the same database: its writes do not move this node's epoch, as
    // another node's (or `trove token revoke` run beside the server) would not.
    let other = Db::open(&app.state.config.data_dir.join("trove.db"))
        .await
        .expect("second handle");
    let carol = other
        .user_by_name("carol")
        .await
        .expect("db")
        .expect("carol");
    assert!(other.revoke_token(carol.id, "test").await.expect("revoke"));

    let ttl = app.state.config.auth.token_cache_ttl();
    assert_eq!(ttl, Duration::from_secs(1), "as configured");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(whoami(&app, &token).await.0, StatusCode::UNAUTHORIZED);
}
