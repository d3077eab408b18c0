//! The main answers of the Hub API as the client reads them: repo info, tree, commits,
//! whoami, and the error headers, snapshotted with volatile values (ids, dates, commit ids)
//! redacted.

use crate::app::TestApp;
use axum::http::StatusCode;
use base64::Engine;
use serde_json::json;
use trove_db::TokenRole;

/// `README.md` with a card and `config.json`, committed to `admin/demo` through the commit API.
async fn demo_repo(app: &TestApp) {
    let created = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": "demo", "type": "model"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.error());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let lines = [
        json!({"key": "header", "value": {"summary": "Add the card", "description": ""}}),
        json!({"key": "file", "value": {"path": "README.md", "encoding": "base64",
            "content": b64("---\nlicense: mit\npipeline_tag: text-classification\ntags: [demo]\n---\n# Demo\n")}}),
        json!({"key": "file", "value": {"path": "config.json", "encoding": "base64",
            "content": b64("{\"model_type\": \"bert\"}\n")}}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let committed = app
        .post("/api/models/admin/demo/commit/main")
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(committed.status, StatusCode::OK, "{:?}", committed.error());
}

#[tokio::test]
async fn repo_info_as_the_client_reads_it() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let info = app
        .get("/api/models/admin/demo?expand=sha&expand=siblings&expand=cardData&expand=tags&expand=private")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(info.status, StatusCode::OK);
    insta::assert_json_snapshot!(info.json(), {
        ".sha" => "[commit]",
        "._id" => "[id]",
    });
    let full = app.get("/api/models/admin/demo").send().await;
    assert_eq!(full.status, StatusCode::OK);
    insta::assert_json_snapshot!("repo_info_default_fields", full.json(), {
        ".sha" => "[commit]",
        ".createdAt" => "[date]",
        ".lastModified" => "[date]",
        "._id" => "[id]",
    });
}

#[tokio::test]
async fn tree_and_commits_as_the_client_reads_them() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let tree = app.get("/api/models/admin/demo/tree/main").send().await;
    assert_eq!(tree.status, StatusCode::OK);
    insta::assert_json_snapshot!(tree.json(), {
        "[].lastCommit.id" => "[commit]",
        "[].lastCommit.date" => "[date]",
    });
    let commits = app.get("/api/models/admin/demo/commits/main").send().await;
    assert_eq!(commits.status, StatusCode::OK);
    insta::assert_json_snapshot!(commits.json(), {
        "[].id" => "[commit]",
        "[].date" => "[date]",
    });
}

#[tokio::test]
async fn missing_and_hidden_repos_answer_alike() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let private = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": "secret", "type": "model", "private": true}))
        .send()
        .await;
    assert_eq!(private.status, StatusCode::OK);
    let bob = app.user("bob", TokenRole::Read).await;
    for path in ["/api/models/admin/secret", "/api/models/admin/nothing-here"] {
        let anonymous = app.get(path).send().await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            anonymous.error(),
            (Some("RepoNotFound"), Some("Repository not found"))
        );
        let signed_in = app.get(path).token(&bob).send().await;
        assert_eq!(signed_in.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(signed_in.body, anonymous.body, "{path}");
    }
}

#[tokio::test]
async fn bad_revisions_are_refused_before_git() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let long = "x".repeat(5000);
    for rev in ["main%00", "%00", long.as_str()] {
        let answer = app
            .get(&format!("/api/models/admin/demo/commits/{rev}"))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{rev}");
        assert!(
            answer.error().1.is_some_and(|m| m.contains("revision")),
            "{:?}",
            answer.error()
        );
    }
    let unknown = app.get("/api/models/admin/demo/commits/nope").send().await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error().0, Some("RevisionNotFound"));
}

#[tokio::test]
async fn whoami_of_the_first_admin() {
    let app = TestApp::new().await;
    let me = app
        .get("/api/whoami-v2")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK);
    insta::assert_json_snapshot!(me.json(), {
        ".id" => "[id]",
        ".auth.accessToken.createdAt" => "[date]",
    });
}
