//! Collections in process: the JSON the client parses, who may see and change what, the 409
//! that carries the existing slug, and refusals that write nothing.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::json;
use trove_db::TokenRole;

async fn create(app: &TestApp, token: &str, body: serde_json::Value) -> crate::app::TestResponse {
    app.post("/api/collections")
        .token(token)
        .json(&body)
        .send()
        .await
}

#[tokio::test]
async fn a_collection_answers_in_the_clients_shape_and_a_taken_title_echoes_its_slug() {
    let app = TestApp::new().await;
    let admin = app.admin_token.clone();
    let made = create(
        &app,
        &admin,
        json!({"title": "Recent Models", "namespace": "admin"}),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{:?}", made.error());
    let c = made.json();
    let slug = c["slug"].as_str().expect("slug").to_owned();
    assert!(slug.starts_with("admin/recent-models-"), "{slug}");
    for key in [
        "title",
        "owner",
        "items",
        "lastUpdated",
        "position",
        "private",
        "theme",
        "upvotes",
    ] {
        assert!(!c[key].is_null(), "{key} in {c}");
    }
    let again = create(
        &app,
        &admin,
        json!({"title": "recent models", "namespace": "admin"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["slug"], slug.as_str());
    app.create_repo("m", "model").await;
    let added = app
        .post(&format!("/api/collections/{slug}/items"))
        .token(&admin)
        .json(&json!({"item": {"id": "admin/m", "type": "model"}, "note": "hi"}))
        .send()
        .await;
    assert_eq!(added.status, StatusCode::OK, "{:?}", added.error());
    let item = &added.json()["items"][0];
    assert_eq!(item["id"], "admin/m");
    assert_eq!(item["type"], "model");
    assert_eq!(item["note"]["text"], "hi");
    assert_eq!(item["_id"].as_str().map(str::len), Some(24));
    let patched = app
        .request(Method::PATCH, &format!("/api/collections/{slug}"))
        .token(&admin)
        .json(&json!({"description": "d"}))
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json()["data"]["description"], "d");
}

#[tokio::test]
async fn read_tokens_and_strangers_cannot_change_a_collection_and_nothing_is_written() {
    let app = TestApp::new().await;
    let admin = app.admin_token.clone();
    let reader = app.user("rita", TokenRole::Read).await;
    let stranger = app.user("sam", TokenRole::Write).await;
    let slug = create(
        &app,
        &admin,
        json!({"title": "Shared", "namespace": "admin"}),
    )
    .await
    .json()["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let own = create(&app, &reader, json!({"title": "Mine", "namespace": "rita"})).await;
    assert_eq!(
        own.status,
        StatusCode::FORBIDDEN,
        "a read token may not write"
    );
    for token in [&reader, &stranger] {
        let r = app
            .request(Method::PATCH, &format!("/api/collections/{slug}"))
            .token(token)
            .json(&json!({"title": "taken over"}))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.error().1.is_some(), "X-Error-Message");
        let r = app
            .request(Method::DELETE, &format!("/api/collections/{slug}"))
            .token(token)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let anon = app
        .request(Method::DELETE, &format!("/api/collections/{slug}"))
        .send()
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let still = app.get(&format!("/api/collections/{slug}")).send().await;
    assert_eq!(still.status, StatusCode::OK);
    assert_eq!(still.json()["title"], "Shared");
}

#[tokio::test]
async fn a_private_collection_is_missing_for_everyone_outside_its_namespace() {
    let app = TestApp::new().await;
    let admin = app.admin_token.clone();
    let stranger = app.user("sam", TokenRole::Write).await;
    let slug = create(
        &app,
        &admin,
        json!({"title": "Hidden", "namespace": "admin", "private": true}),
    )
    .await
    .json()["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let seen = app
        .get(&format!("/api/collections/{slug}"))
        .token(&stranger)
        .send()
        .await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND);
    let listed = app
        .get("/api/collections?owner=admin")
        .token(&stranger)
        .send()
        .await;
    assert_eq!(listed.json(), json!([]));
    let listed = app
        .get("/api/collections?owner=admin")
        .token(&admin)
        .send()
        .await;
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1));
}
