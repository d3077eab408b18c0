//! Spaces in process: the runtime API's refusals (each a 4xx with `X-Error-Message`,
//! nothing stored), secrets never shown back, and a static Space built and served after a
//! commit once the supervisor runs.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::json;
use trove_db::TokenRole;

async fn create_space(app: &TestApp, name: &str) {
    let r = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": name, "type": "space", "sdk": "static"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
}

async fn commit_space(app: &TestApp, name: &str, files: &[(&str, &str)]) {
    use base64::Engine;
    let mut body = format!(
        "{}\n",
        json!({"key": "header", "value": {"summary": "app", "description": ""}})
    );
    for (path, text) in files {
        let content = base64::engine::general_purpose::STANDARD.encode(text);
        body.push_str(&format!(
            "{}\n",
            json!({"key": "file", "value": {"path": path, "encoding": "base64", "content": content}})
        ));
    }
    let r = app
        .post(&format!("/api/spaces/admin/{name}/commit/main"))
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
}

#[tokio::test]
async fn bad_secrets_variables_and_sleep_times_are_refused_and_nothing_is_stored() {
    let app = TestApp::new().await;
    create_space(&app, "demo").await;
    let admin = app.admin_token.clone();
    let cases = [
        (
            "/api/spaces/admin/demo/secrets",
            json!({"key": "1BAD", "value": "x"}),
        ),
        (
            "/api/spaces/admin/demo/secrets",
            json!({"key": "A-B", "value": "x"}),
        ),
        (
            "/api/spaces/admin/demo/secrets",
            json!({"key": "", "value": "x"}),
        ),
        (
            "/api/spaces/admin/demo/secrets",
            json!({"key": "BIG", "value": "x".repeat(65 << 10)}),
        ),
        (
            "/api/spaces/admin/demo/variables",
            json!({"key": "K", "value": "v", "description": "d".repeat(1001)}),
        ),
        (
            "/api/spaces/admin/demo/variables",
            json!({"key": "K", "value": "a\u{0}b"}),
        ),
        (
            "/api/spaces/admin/demo/variables",
            json!({"value": "no key"}),
        ),
        ("/api/spaces/admin/demo/sleeptime", json!({"seconds": -5})),
        (
            "/api/spaces/admin/demo/sleeptime",
            json!({"seconds": 10_000_000}),
        ),
        (
            "/api/spaces/admin/demo/sleeptime",
            json!({"seconds": "soon"}),
        ),
    ];
    for (uri, body) in cases {
        let r = app.post(uri).token(&admin).json(&body).send().await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri} {body}");
        // The Hub sends X-Error-Code only for the repo/revision/entry errors; a refusal
        // always carries X-Error-Message.
        let (_, message) = r.error();
        assert!(message.is_some_and(|m| !m.is_empty()), "{uri} {body}");
    }
    let secrets = app
        .get("/api/spaces/admin/demo/secrets")
        .token(&admin)
        .send()
        .await;
    assert_eq!(secrets.json(), json!({}));
    let variables = app
        .get("/api/spaces/admin/demo/variables")
        .token(&admin)
        .send()
        .await;
    assert_eq!(variables.json(), json!({}));
    let runtime = app
        .get("/api/spaces/admin/demo/runtime")
        .token(&admin)
        .send()
        .await;
    assert_eq!(runtime.status, StatusCode::OK);
    assert!(runtime.json().get("gcTimeout").is_none());
}

#[tokio::test]
async fn only_writers_manage_a_space_and_models_have_no_runtime() {
    let app = TestApp::new().await;
    create_space(&app, "demo").await;
    app.create_repo("model", "model").await;
    let reader = app.user("reader", TokenRole::Write).await;
    for (method, uri) in [
        (Method::POST, "/api/spaces/admin/demo/pause"),
        (Method::POST, "/api/spaces/admin/demo/restart"),
        (Method::GET, "/api/spaces/admin/demo/variables"),
        (Method::GET, "/api/spaces/admin/demo/secrets"),
    ] {
        let r = app.request(method, uri).token(&reader).send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(r.error().1.is_some(), "{uri}");
    }
    let r = app
        .post("/api/spaces/admin/demo/secrets")
        .token(&reader)
        .json(&json!({"key": "K", "value": "v"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .get("/api/models/admin/model/runtime")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().1.is_some());
}

#[tokio::test]
async fn secret_values_are_never_returned() {
    let app = TestApp::new().await;
    create_space(&app, "demo").await;
    let admin = app.admin_token.clone();
    let r = app
        .post("/api/spaces/admin/demo/secrets")
        .token(&admin)
        .json(&json!({"key": "TOKEN", "value": "hidden-value-123", "description": "d"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .post("/api/spaces/admin/demo/variables")
        .token(&admin)
        .json(&json!({"key": "SHOWN", "value": "shown-value"}))
        .send()
        .await;
    assert_eq!(r.json()["SHOWN"]["value"], "shown-value");
    for uri in [
        "/api/spaces/admin/demo/secrets",
        "/api/spaces/admin/demo/variables",
        "/api/spaces/admin/demo/runtime",
        "/api/spaces/admin/demo",
        "/spaces/admin/demo",
    ] {
        let r = app.get(uri).token(&admin).send().await;
        assert!(
            !String::from_utf8_lossy(&r.body).contains("hidden-value-123"),
            "{uri}"
        );
    }
    let secrets = app
        .get("/api/spaces/admin/demo/secrets")
        .token(&admin)
        .send()
        .await;
    assert_eq!(secrets.json()["TOKEN"]["description"], "d");
    assert!(secrets.json()["TOKEN"].get("value").is_none());
}

#[tokio::test]
async fn a_static_space_is_built_and_served_once_the_supervisor_runs() {
    let app = TestApp::new().await;
    create_space(&app, "site").await;
    trove::spaces::start(&app.state).await.expect("supervisor");
    commit_space(
        &app,
        "site",
        &[
            ("README.md", "---\nsdk: static\n---\n"),
            ("index.html", "<p>served</p>"),
        ],
    )
    .await;
    let mut stage = String::new();
    for _ in 0..200 {
        let r = app
            .get("/api/spaces/admin/site/runtime")
            .token(&app.admin_token)
            .send()
            .await;
        stage = r.json()["stage"].as_str().unwrap_or_default().to_owned();
        if stage == "RUNNING" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stage, "RUNNING");
    let r = app.get("/spaces/admin/site/app/").send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"<p>served</p>");
    let r = app
        .get("/spaces/admin/site/app/..%2F..%2Ftrove.db")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
