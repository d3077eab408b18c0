//! What every route does before its handler: bodies over the route's limit refused at once,
//! panics answered as 500 in the Hub's format, errors logged once and stripped.

use crate::app::TestApp;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use trove::error::ErrorReport;
use trove::http::every_request;

/// A body far over any limit, announced but never sent: the answer must come from the
/// header alone (a server that waited for the body would never answer a real client).
const HUGE: &str = "1000000000000";

#[tokio::test]
async fn declared_bodies_over_the_json_limit_are_refused_before_reading() {
    let app = TestApp::new().await;
    for uri in [
        "/api/repos/create",
        "/api/models/admin/demo/discussions",
        "/api/models/admin/demo/paths-info/main",
        "/api/validate-yaml",
        "/login",
    ] {
        let answer = app
            .post(uri)
            .token(&app.admin_token)
            .header("content-length", HUGE)
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
        let limit = app.state.config.limits.max_json_body_bytes;
        assert_eq!(
            answer.error().1,
            Some(format!("Payload too large: the limit is {limit} bytes").as_str()),
            "{uri}"
        );
        assert_eq!(answer.header("connection"), Some("close"), "{uri}");
    }
    // git-lfs reads its own error shape.
    let locks = app
        .post("/admin/demo.git/info/lfs/locks")
        .token(&app.admin_token)
        .header("content-length", HUGE)
        .send()
        .await;
    assert_eq!(locks.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        locks.header("content-type"),
        Some("application/vnd.git-lfs+json")
    );
    assert!(locks.json()["message"].is_string());
}

#[tokio::test]
async fn routes_with_larger_limits_keep_them() {
    let app = TestApp::new().await;
    app.create_repo("demo", "model").await;
    let limits = &app.state.config.limits;
    // Over the JSON limit but under the commit limit: the commit handler reads the body
    // (here an empty one, so the answer is about its content, not its size).
    let over_json = (limits.max_json_body_bytes as u64 + 1).to_string();
    let commit = app
        .post("/api/models/admin/demo/commit/main")
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .header("content-length", &over_json)
        .send()
        .await;
    assert_ne!(commit.status, StatusCode::PAYLOAD_TOO_LARGE);
    let over_commit = (limits.max_commit_bytes + 1).to_string();
    let commit = app
        .post("/api/models/admin/demo/commit/main")
        .token(&app.admin_token)
        .header("content-length", &over_commit)
        .send()
        .await;
    assert_eq!(commit.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A git push may be far larger than any JSON body.
    let push = app
        .post("/admin/demo.git/git-receive-pack")
        .token(&app.admin_token)
        .header("content-length", &over_json)
        .send()
        .await;
    assert_ne!(push.status, StatusCode::PAYLOAD_TOO_LARGE);
    let push = app
        .post("/admin/demo.git/git-receive-pack")
        .header("content-length", &u64::MAX.to_string())
        .send()
        .await;
    assert_eq!(push.status, StatusCode::PAYLOAD_TOO_LARGE);
    // git prints a plain-text refusal after `remote:`.
    assert_eq!(
        push.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

async fn boom() -> &'static str {
    panic!("the handler fell over")
}

/// Routes behind the rules every request goes through, as the server mounts them.
fn behind_every_request(app: &TestApp, routes: Router) -> Router {
    routes.layer(every_request::layer(app.state.clone()))
}

#[tokio::test]
async fn a_panic_is_a_500_in_the_hubs_format_logged_once() {
    let app = TestApp::new().await;
    let router = behind_every_request(
        &app,
        Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "ok" })),
    );
    let response = router
        .clone()
        .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response
            .headers()
            .get("x-error-message")
            .and_then(|v| v.to_str().ok()),
        Some("Internal Error")
    );
    assert!(response.headers().contains_key("x-request-id"));
    // Logged with its cause, then removed: nothing is logged twice.
    assert!(response.extensions().get::<ErrorReport>().is_none());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        json!({"error": "Internal Error"})
    );
    // The service survives: the next request is served.
    let fine = router
        .oneshot(Request::get("/fine").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(fine.status(), StatusCode::OK);
}

#[test]
fn a_panics_answer_carries_its_message_for_the_log() {
    let response = every_request::panic_answer(Box::new("the handler fell over"));
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let report = response
        .extensions()
        .get::<ErrorReport>()
        .expect("the panic is reported for the log");
    assert!(
        report
            .internal
            .as_deref()
            .is_some_and(|c| c.contains("the handler fell over")),
        "{report:?}"
    );
}
