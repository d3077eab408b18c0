//! Listings through the listing cache: an answer changes as soon as a write on this node
//! that can change it has returned (create, like, visibility, delete), and a private
//! repository never reaches, through a cached page, a caller who may not see it.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use trove_db::OrgRole;
use trove_types::RepoName;

/// The ids of a listing's page, as `token` (or anonymously) sees it.
async fn ids(app: &TestApp, uri: &str, token: Option<&str>) -> Vec<String> {
    let mut request = app.get(uri);
    if let Some(token) = token {
        request = request.token(token);
    }
    let page = request.send().await;
    assert_eq!(page.status, StatusCode::OK, "{uri}: {:?}", page.error());
    page.json()
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item["id"].as_str().expect("an id").to_owned())
        .collect()
}

async fn likes(app: &TestApp, uri: &str) -> Vec<i64> {
    let page = app.get(uri).send().await;
    assert_eq!(page.status, StatusCode::OK);
    page.json()
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item["likes"].as_i64().expect("likes"))
        .collect()
}

async fn send_ok(app: &TestApp, method: Method, uri: &str, body: Value) {
    let done = app
        .request(method, uri)
        .token(&app.admin_token)
        .json(&body)
        .send()
        .await;
    assert_eq!(done.status, StatusCode::OK, "{uri}: {:?}", done.error());
}

#[tokio::test]
async fn an_answer_changes_right_after_a_write_on_this_node() {
    let app = TestApp::new().await;
    let by_likes = "/api/models?author=admin&sort=likes";
    app.create_repo("one", "model").await;
    assert_eq!(ids(&app, by_likes, None).await, ["admin/one"]);
    // Asked again: the same answer, now from the cache.
    assert_eq!(ids(&app, by_likes, None).await, ["admin/one"]);

    app.create_repo("two", "model").await;
    let mut found = ids(&app, by_likes, None).await;
    found.sort();
    assert_eq!(found, ["admin/one", "admin/two"], "created");

    send_ok(&app, Method::POST, "/api/models/admin/two/like", json!({})).await;
    assert_eq!(ids(&app, by_likes, None).await, ["admin/two", "admin/one"]);
    assert_eq!(likes(&app, by_likes).await, [1, 0], "liked");
    send_ok(
        &app,
        Method::DELETE,
        "/api/models/admin/two/like",
        json!({}),
    )
    .await;
    assert_eq!(likes(&app, by_likes).await, [0, 0], "unliked");

    let settings = "/api/models/admin/two/settings";
    send_ok(&app, Method::PUT, settings, json!({"private": true})).await;
    assert_eq!(
        ids(&app, by_likes, None).await,
        ["admin/one"],
        "made private"
    );
    assert_eq!(
        ids(&app, by_likes, Some(&app.admin_token)).await.len(),
        2,
        "the owner still sees it"
    );
    send_ok(&app, Method::PUT, settings, json!({"private": false})).await;
    assert_eq!(
        ids(&app, by_likes, None).await.len(),
        2,
        "made public again"
    );

    let delete = json!({"name": "one", "type": "model"});
    send_ok(&app, Method::DELETE, "/api/repos/delete", delete).await;
    assert_eq!(ids(&app, by_likes, None).await, ["admin/two"], "deleted");
}

#[tokio::test]
async fn a_private_repo_never_reaches_a_viewer_who_cannot_see_it() {
    let app = TestApp::new().await;
    let db = &app.state.db;
    let acme = db
        .create_org(&RepoName::parse_namespace("acme").expect("name"), None)
        .await
        .expect("org");
    let alice_token = app.user("alice", trove_db::TokenRole::Read).await;
    let bob_token = app.user("bob", trove_db::TokenRole::Read).await;
    let user_id = |name: &'static str| async move {
        db.user_by_name(name).await.expect("db").expect("user").id
    };
    db.set_org_member(acme.id, user_id("alice").await, OrgRole::Read)
        .await
        .expect("member");
    for (name, private) in [("open", false), ("secret", true)] {
        let body = json!({"name": name, "organization": "acme", "type": "model",
                          "private": private});
        send_ok(&app, Method::POST, "/api/repos/create", body).await;
    }

    let uri = "/api/models?author=acme&sort=createdAt";
    // A member asks first: the page with the private repository is computed and kept.
    assert_eq!(
        ids(&app, uri, Some(&alice_token)).await,
        ["acme/secret", "acme/open"]
    );
    assert_eq!(ids(&app, uri, Some(&bob_token)).await, ["acme/open"]);
    assert_eq!(ids(&app, uri, None).await, ["acme/open"]);
    assert_eq!(
        ids(&app, &format!("{uri}&search=secret"), None).await,
        Vec::<String>::new()
    );

    // Joining the organization changes what bob may see, so his next listing shows it.
    db.set_org_member(acme.id, user_id("bob").await, OrgRole::Read)
        .await
        .expect("member");
    assert_eq!(
        ids(&app, uri, Some(&bob_token)).await,
        ["acme/secret", "acme/open"]
    );

    // A revoked token is refused before any cached page is looked at.
    assert!(
        db.revoke_token(user_id("alice").await, "test")
            .await
            .expect("revoke")
    );
    let refused = app.get(uri).token(&alice_token).send().await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&refused.body).contains("acme/secret"));
}
