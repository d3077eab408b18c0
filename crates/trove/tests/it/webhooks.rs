//! Webhooks in process: management refusals, and a commit's event queued, delivered by the
//! worker's own code to a receiver on loopback with the secret, and logged; targets on
//! loopback refused when the webhook is made and, for webhooks made while they were
//! allowed, when it is delivered.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use trove_db::TokenRole;

/// What the receiver saw: each POST's secret header and body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A receiver on 127.0.0.1 recording each POST.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let secret = headers
                    .get("x-webhook-secret")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                record.lock().expect("lock").push((secret, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn a_commit_is_delivered_with_the_secret_and_logged() {
    // The receiver is on loopback: the operator's opt-in lets deliveries go there.
    let app = TestApp::with_config(|c| c.webhooks.allow_private_targets = true).await;
    let admin = app.admin_token.clone();
    let (url, seen) = receiver().await;
    app.create_repo("m", "model").await;
    let made = app
        .post("/api/settings/webhooks")
        .token(&admin)
        .json(
            &json!({"url": url, "watched": [{"type": "model", "name": "admin/m"}],
                      "domains": ["repo"], "secret": "s"}),
        )
        .send()
        .await;
    assert_eq!(made.status, StatusCode::OK, "{:?}", made.error());
    let id = made.json()["webhook"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.commit_files("m", "one", &[("a.txt", "a")]).await;
    let deliverer =
        trove::webhooks::delivery::Deliverer::new(&app.state.config.webhooks).expect("deliverer");
    // Events are queued by spawned tasks (the repo's creation may race the webhook's):
    // drain until the commit's event has been delivered (bounded).
    let content = json!({"action": "update", "scope": "repo.content"});
    let mut delivered = None;
    for _ in 0..100 {
        deliverer.run_due(&app.state).await.expect("run");
        delivered = seen
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, body)| body["event"] == content)
            .cloned();
        if delivered.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (secret, body) = delivered.expect("the commit's event was delivered");
    assert_eq!(secret.as_deref(), Some("s"));
    assert_eq!(body["repo"]["name"], "admin/m");
    assert_eq!(body["webhook"]["id"], id.as_str());
    assert_eq!(body["updatedRefs"][0]["ref"], "refs/heads/main");
    let log = app
        .get(&format!("/api/settings/webhooks/{id}/deliveries"))
        .token(&admin)
        .send()
        .await
        .json();
    let entry = log
        .as_array()
        .and_then(|l| l.iter().find(|e| e["event"] == "update repo.content"))
        .expect("the commit's delivery is logged");
    assert_eq!(entry["state"], "delivered");
    assert_eq!(entry["status"], 200);
}

#[tokio::test]
async fn webhooks_are_their_owners_only_and_bad_targets_are_refused() {
    let app = TestApp::new().await;
    let admin = app.admin_token.clone();
    let reader = app.user("rita", TokenRole::Read).await;
    let other = app.user("sam", TokenRole::Write).await;
    let watched = json!([{"type": "user", "name": "admin"}]);
    for url in [
        "ftp://127.0.0.1/x",
        "not a url",
        "http://",
        "javascript:alert(1)",
    ] {
        let r = app
            .post("/api/settings/webhooks")
            .token(&admin)
            .json(&json!({"url": url, "watched": watched}))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(r.error().1.is_some());
    }
    let r = app
        .post("/api/settings/webhooks")
        .token(&reader)
        .json(&json!({"url": "https://hooks.example.com/x", "watched": watched}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let made = app
        .post("/api/settings/webhooks")
        .token(&admin)
        .json(&json!({"url": "https://hooks.example.com/x", "watched": watched}))
        .send()
        .await;
    let id = made.json()["webhook"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = app
        .request(Method::DELETE, &format!("/api/settings/webhooks/{id}"))
        .token(&other)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(&format!("/api/settings/webhooks/{id}"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["webhook"]["disabled"], false);
}

/// The log entry of the commit's event on webhook `id`, once it has had an attempt.
async fn logged_attempt(app: &TestApp, id: &str) -> Option<Value> {
    let log = app
        .get(&format!("/api/settings/webhooks/{id}/deliveries"))
        .token(&app.admin_token)
        .send()
        .await
        .json();
    log.as_array()?
        .iter()
        .find(|e| e["event"] == "update repo.content" && e["attempts"].as_i64() >= Some(1))
        .cloned()
}

#[tokio::test]
async fn loopback_targets_are_refused_when_made_and_when_delivered() {
    let (url, seen) = receiver().await;
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/hook")
        .to_owned();
    let watched = json!([{"type": "user", "name": "admin"}]);

    // Default policy: a URL naming a non-public address, or localhost, is refused at once.
    let app = TestApp::new().await;
    for target in [
        url.clone(),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/hook".to_owned(),
        "http://0.0.0.0/hook".to_owned(),
    ] {
        let r = app
            .post("/api/settings/webhooks")
            .token(&app.admin_token)
            .json(&json!({"url": target, "watched": watched}))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{target}");
        assert_eq!(r.error().0, Some("WebhookTargetNotAllowed"), "{target}");
        assert!(
            r.error().1.is_some_and(|m| m.contains("is not allowed")),
            "{target}: {:?}",
            r.error()
        );
    }
    let none = app
        .get("/api/settings/webhooks")
        .token(&app.admin_token)
        .send()
        .await
        .json();
    assert_eq!(none, json!([]), "nothing was written");

    // Webhooks made while the operator allowed private targets, then delivered by a worker
    // under the default policy (a restart without the opt-in): by address and by a name
    // that resolves to loopback (through the hosts file), neither reaches the receiver.
    let app = TestApp::with_config(|c| c.webhooks.allow_private_targets = true).await;
    app.create_repo("m", "model").await;
    let mut ids = Vec::new();
    for target in [url.clone(), format!("http://localhost:{port}/hook")] {
        let made = app
            .post("/api/settings/webhooks")
            .token(&app.admin_token)
            .json(&json!({"url": target, "watched": watched, "domains": ["repo"]}))
            .send()
            .await;
        assert_eq!(made.status, StatusCode::OK, "{:?}", made.error());
        ids.push(
            made.json()["webhook"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    app.commit_files("m", "one", &[("a.txt", "a")]).await;
    let deliverer =
        trove::webhooks::delivery::Deliverer::new(&trove::config::WebhooksConfig::default())
            .expect("deliverer");
    let mut logged = Vec::new();
    for _ in 0..100 {
        deliverer.run_due(&app.state).await.expect("run");
        logged.clear();
        for id in &ids {
            if let Some(entry) = logged_attempt(&app, id).await {
                logged.push(entry);
            }
        }
        if logged.len() == ids.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        logged.len(),
        2,
        "both deliveries were attempted: {logged:?}"
    );
    assert_eq!(
        logged[0]["error"],
        "the target address 127.0.0.1 is not allowed: loopback"
    );
    assert_eq!(
        logged[1]["error"],
        "the target host localhost is not allowed: it resolves only to loopback addresses"
    );
    for entry in &logged {
        assert_eq!(
            entry["state"], "pending",
            "a failed attempt, retried: {entry}"
        );
        assert_eq!(entry["status"], Value::Null);
    }
    assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");
}
