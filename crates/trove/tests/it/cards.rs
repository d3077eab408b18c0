//! Hostile model cards: refused within a budget with a warning (the commit succeeds),
//! parsed once per README blob when the commit is indexed, and anonymous validation
//! limited per address.

use crate::app::TestApp;
use axum::http::StatusCode;
use base64::Engine;
use serde_json::json;

async fn commit_readme(app: &TestApp, readme: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(readme);
    let lines = [
        json!({"key": "header", "value": {"summary": "card", "description": ""}}),
        json!({"key": "file", "value": {"path": "README.md", "encoding": "base64", "content": b64}}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let committed = app
        .post("/api/models/admin/cards/commit/main")
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(committed.status, StatusCode::OK, "{:?}", committed.error());
}

#[tokio::test]
async fn an_alias_bomb_card_commits_with_a_warning_parsed_once_at_commit() {
    let app = TestApp::new().await;
    app.create_repo("cards", "model").await;
    // Issue #11: a 20 KB anchor referenced 2,500 times.
    let mut readme = format!("---\nlicense: mit\na: &a \"{}\"\nb: [", "x".repeat(20_000));
    readme.push_str(&vec!["*a"; 2500].join(","));
    readme.push_str("]\n---\n# Card\n");
    commit_readme(&app, &readme).await;

    // The reindex of the commit stored the parse of the README blob before any read.
    let tree = app.get("/api/models/admin/cards/tree/main").send().await;
    let blob = tree
        .json()
        .as_array()
        .and_then(|files| files.iter().find(|f| f["path"] == "README.md"))
        .and_then(|f| f["oid"].as_str())
        .expect("README.md oid")
        .to_owned();
    let repo = app
        .state
        .db
        .repo_by_name(
            trove_types::RepoType::Model,
            &trove_types::RepoId::parse("admin/cards").expect("repo id"),
        )
        .await
        .expect("db")
        .expect("repo");
    let stored = app
        .state
        .db
        .card_parse(repo.id, &blob)
        .await
        .expect("db")
        .expect("parsed at commit");
    let warning = stored.warning.expect("refused");
    assert!(warning.contains("too costly"), "{warning}");
    assert_eq!(stored.data_json, None);

    for _ in 0..3 {
        let info = app.get("/api/models/admin/cards").send().await;
        assert_eq!(info.status, StatusCode::OK);
        let info = info.json();
        assert_eq!(info["cardWarnings"], json!([warning]));
        assert!(info.get("cardData").is_none());
    }
}

#[tokio::test]
async fn anonymous_validate_yaml_is_limited_per_address_and_tokens_are_not() {
    let app = TestApp::new().await;
    let body = json!({"content": "---\nlicense: mit\n---\n", "repoType": "model"});
    let mut limited = None;
    for _ in 0..40 {
        let answer = app.post("/api/validate-yaml").json(&body).send().await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status, StatusCode::OK);
    }
    let limited = limited.expect("anonymous calls are limited");
    assert!(limited.header("retry-after").is_some());
    let with_token = app
        .post("/api/validate-yaml")
        .token(&app.admin_token)
        .json(&body)
        .send()
        .await;
    assert_eq!(with_token.status, StatusCode::OK);
    assert_eq!(with_token.json()["warnings"], json!([]));
}
