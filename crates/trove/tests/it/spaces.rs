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
    commit_space_to(app, name, "main", files).await;
}

/// A commit to `main`, or with `target` = `"main?create_pr=1"` a pull request.
async fn commit_space_to(app: &TestApp, name: &str, target: &str, files: &[(&str, &str)]) {
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
        .post(&format!("/api/spaces/admin/{name}/commit/{target}"))
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
    trove::spaces::start(&app.state.space_host())
        .await
        .expect("supervisor");
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

/// The Spaces that exist when the supervisor starts are built one after the other by its
/// start queue (one build at a time by default), every one of them, and a paused one is
/// left paused.
#[tokio::test]
async fn the_spaces_found_at_start_are_all_built_in_turn() {
    let app = TestApp::new().await;
    let names = ["s1", "s2", "s3", "s4"];
    for (i, name) in names.iter().enumerate() {
        create_space(&app, name).await;
        let page = format!("<p>{i}</p>");
        commit_space(
            &app,
            name,
            &[
                ("README.md", "---\nsdk: static\n---\n"),
                ("index.html", &page),
            ],
        )
        .await;
    }
    create_space(&app, "held").await;
    let r = app
        .post("/api/spaces/admin/held/pause")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    let queue = trove::spaces::start(&app.state.space_host())
        .await
        .expect("supervisor")
        .expect("spaces are enabled in tests");
    tokio::time::timeout(std::time::Duration::from_secs(30), queue)
        .await
        .expect("the start queue ends")
        .expect("the start queue does not panic");
    for (i, name) in names.iter().enumerate() {
        let page = format!("<p>{i}</p>");
        let uri = format!("/spaces/admin/{name}/app/");
        assert_eq!(
            wait_for_app(&app, &uri, page.as_bytes()).await,
            page.as_bytes()
        );
    }
    let stage = wait_stage(&app, "held", &["PAUSED"]).await;
    assert_eq!(stage["stage"], "PAUSED");
}

/// Polls the app's root until it answers `want` (bounded: 10 s).
async fn wait_for_app(app: &TestApp, uri: &str, want: &[u8]) -> Vec<u8> {
    let mut last = Vec::new();
    for _ in 0..200 {
        let r = app.get(uri).token(&app.admin_token).send().await;
        last = r.body.to_vec();
        if r.status == StatusCode::OK && last == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}

async fn serving_site(app: &TestApp, name: &str) {
    create_space(app, name).await;
    trove::spaces::start(&app.state.space_host())
        .await
        .expect("supervisor");
    commit_space(
        app,
        name,
        &[
            ("README.md", "---\nsdk: static\n---\n"),
            ("index.html", "v1"),
        ],
    )
    .await;
    let uri = format!("/spaces/admin/{name}/app/");
    assert_eq!(wait_for_app(app, &uri, b"v1").await, b"v1");
}

#[tokio::test]
async fn a_merged_pull_request_rebuilds_the_space() {
    let app = TestApp::new().await;
    serving_site(&app, "site").await;
    commit_space_to(&app, "site", "main?create_pr=1", &[("index.html", "v2")]).await;
    // The pull request's own ref moving does not touch the app.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = app.get("/spaces/admin/site/app/").send().await;
    assert_eq!(r.body, b"v1");
    let r = app
        .post("/api/spaces/admin/site/discussions/1/merge")
        .token(&app.admin_token)
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    assert_eq!(
        wait_for_app(&app, "/spaces/admin/site/app/", b"v2").await,
        b"v2"
    );
}

#[tokio::test]
async fn a_deleted_space_stops_and_its_files_go() {
    let app = TestApp::new().await;
    serving_site(&app, "site").await;
    let spaces_dir = app.state.config.data_dir.join("spaces");
    let ids = || -> Vec<String> {
        std::fs::read_dir(&spaces_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids().len(), 1, "one space has files");
    let r = app
        .request(Method::DELETE, "/api/repos/delete")
        .token(&app.admin_token)
        .json(&json!({"name": "site", "type": "space"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    let r = app.get("/spaces/admin/site/app/").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let mut left = ids();
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = ids();
    }
    assert!(left.is_empty(), "files of the deleted space: {left:?}");
    // A new Space of the same name starts from nothing.
    create_space(&app, "site").await;
    let r = app
        .get("/api/spaces/admin/site/runtime")
        .token(&app.admin_token)
        .send()
        .await;
    assert_ne!(r.json()["stage"], "RUNNING");
}

#[tokio::test]
async fn a_moved_space_serves_at_its_new_url_and_the_old_one_redirects() {
    let app = TestApp::new().await;
    serving_site(&app, "site").await;
    let r = app
        .post("/api/repos/move")
        .token(&app.admin_token)
        .json(&json!({"fromRepo": "admin/site", "toRepo": "admin/renamed", "type": "space"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    assert_eq!(
        wait_for_app(&app, "/spaces/admin/renamed/app/", b"v1").await,
        b"v1"
    );
    let r = app
        .get("/spaces/admin/site/app/index.html")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/spaces/admin/renamed/app/index.html")
    );
    // A push to the moved Space rebuilds it at its new name.
    commit_space(&app, "renamed", &[("index.html", "v2")]).await;
    assert_eq!(
        wait_for_app(&app, "/spaces/admin/renamed/app/", b"v2").await,
        b"v2"
    );
}

#[tokio::test]
async fn a_space_made_private_is_hidden_from_the_next_request_and_its_connections_end() {
    let app = TestApp::new().await;
    serving_site(&app, "site").await;
    let open = app.state.spaces.connection_token(
        app.state
            .db
            .repo_by_name(
                trove_types::RepoType::Space,
                &trove_types::RepoId::parse("admin/site").expect("id"),
            )
            .await
            .expect("db")
            .expect("row")
            .id,
    );
    let r = app.get("/spaces/admin/site/app/").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .request(Method::PUT, "/api/spaces/admin/site/settings")
        .token(&app.admin_token)
        .json(&json!({"private": true}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    assert!(open.is_cancelled(), "connections opened before are ended");
    let r = app.get("/spaces/admin/site/app/").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let outsider = app.user("outsider", TokenRole::Read).await;
    let r = app
        .get("/spaces/admin/site/app/")
        .token(&outsider)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get("/spaces/admin/site/app/")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_duplicate_has_the_history_and_variables_but_not_the_secrets() {
    let app = TestApp::new().await;
    let admin = app.admin_token.clone();
    create_space(&app, "site").await;
    commit_space(
        &app,
        "site",
        &[
            ("README.md", "---\nsdk: static\n---\n"),
            ("index.html", "v1"),
        ],
    )
    .await;
    for (kind, key, value) in [
        ("variables", "SHOWN", "from-source"),
        ("variables", "REPLACED", "old"),
        ("secrets", "SOURCE_SECRET", "do-not-copy"),
    ] {
        let r = app
            .post(&format!("/api/spaces/admin/site/{kind}"))
            .token(&admin)
            .json(&json!({"key": key, "value": value}))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = app
        .post("/api/spaces/admin/site/duplicate")
        .token(&admin)
        .json(&json!({
            "repository": "admin/copy",
            "visibility": "private",
            "hardware": "t4-small",
            "sleepTimeSeconds": 3600,
            "secrets": [{"key": "NEW_SECRET", "value": "given"}],
            "variables": [{"key": "REPLACED", "value": "new", "description": "d"}],
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    assert_eq!(r.json()["url"], "http://127.0.0.1:9/spaces/admin/copy");
    let source = app.get("/api/spaces/admin/site").token(&admin).send().await;
    let copy = app.get("/api/spaces/admin/copy").token(&admin).send().await;
    assert_eq!(copy.json()["sha"], source.json()["sha"]);
    assert_eq!(copy.json()["private"], true);
    let r = app
        .get("/spaces/admin/copy/resolve/main/index.html")
        .token(&admin)
        .send()
        .await;
    assert_eq!(r.body, b"v1");
    let variables = app
        .get("/api/spaces/admin/copy/variables")
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(variables["SHOWN"]["value"], "from-source");
    assert_eq!(variables["REPLACED"]["value"], "new");
    let secrets = app
        .get("/api/spaces/admin/copy/secrets")
        .token(&admin)
        .send()
        .await
        .json();
    assert!(secrets.get("NEW_SECRET").is_some());
    assert!(secrets.get("SOURCE_SECRET").is_none(), "{secrets}");
    let runtime = app
        .get("/api/spaces/admin/copy/runtime")
        .token(&admin)
        .send()
        .await;
    assert_eq!(runtime.status, StatusCode::OK);
    // Again: the copy exists (409 with its URL, as `exist_ok` expects).
    let r = app
        .post("/api/spaces/admin/site/duplicate")
        .token(&admin)
        .json(&json!({"repository": "admin/copy"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["url"], "http://127.0.0.1:9/spaces/admin/copy");
}

#[tokio::test]
async fn bad_duplicates_are_refused_and_nothing_is_created() {
    let app = TestApp::new().await;
    let admin = app.admin_token.clone();
    create_space(&app, "site").await;
    let private = app
        .request(Method::PUT, "/api/spaces/admin/site/settings")
        .token(&admin)
        .json(&json!({"private": true}))
        .send()
        .await;
    assert_eq!(private.status, StatusCode::OK);
    let outsider = app.user("outsider", TokenRole::Write).await;
    let cases = [
        (
            &admin,
            json!({"repository": "admin/bad name"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            json!({"repository": "admin/x", "visibility": "protected"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            json!({"repository": "admin/x", "sleepTimeSeconds": -5}),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            json!({"repository": "admin/x", "secrets": [{"key": "1BAD", "value": "v"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (&admin, json!({"to": "admin/x"}), StatusCode::BAD_REQUEST),
        // A private source does not exist for others.
        (
            &outsider,
            json!({"repository": "outsider/x"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (token, body, status) in cases {
        let r = app
            .post("/api/spaces/admin/site/duplicate")
            .token(token)
            .json(&body)
            .send()
            .await;
        assert_eq!(r.status, status, "{body}");
        assert!(r.error().1.is_some_and(|m| !m.is_empty()), "{body}");
    }
    for id in ["admin/x", "outsider/x"] {
        let r = app
            .get(&format!("/api/spaces/{id}"))
            .token(&admin)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}");
    }
    // A namespace one may not create in.
    create_space(&app, "public").await;
    let r = app
        .post("/api/spaces/admin/public/duplicate")
        .token(&outsider)
        .json(&json!({"repository": "admin/y"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.get("/api/spaces/admin/y").token(&admin).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn wait_stage(app: &TestApp, name: &str, done: &[&str]) -> serde_json::Value {
    let mut last = json!(null);
    for _ in 0..200 {
        last = app
            .get(&format!("/api/spaces/admin/{name}/runtime"))
            .token(&app.admin_token)
            .send()
            .await
            .json();
        if done.iter().any(|s| last["stage"] == *s) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn a_docker_space_without_a_usable_engine_reports_why_and_a_bad_port_is_a_config_error() {
    let app = TestApp::new().await;
    create_space(&app, "boat").await;
    trove::spaces::start(&app.state.space_host())
        .await
        .expect("supervisor");
    commit_space(
        &app,
        "boat",
        &[
            ("README.md", "---\nsdk: docker\napp_port: 99999\n---\n"),
            ("Dockerfile", "FROM scratch\n"),
        ],
    )
    .await;
    let rt = wait_stage(&app, "boat", &["CONFIG_ERROR"]).await;
    assert_eq!(rt["stage"], "CONFIG_ERROR", "{rt}");
    assert!(
        rt["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("app_port")),
        "{rt}"
    );
    commit_space(
        &app,
        "boat",
        &[("README.md", "---\nsdk: docker\napp_port: 8080\n---\n")],
    )
    .await;
    // Until the new revision's verdict replaces the bad port's.
    let mut rt = json!(null);
    for _ in 0..200 {
        rt = wait_stage(&app, "boat", &["CONFIG_ERROR", "BUILD_ERROR", "RUNNING"]).await;
        if !rt["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("app_port")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if trove::spaces::build::container_engine().await.is_none() {
        assert_eq!(rt["stage"], "CONFIG_ERROR", "{rt}");
        assert_eq!(
            rt["errorMessage"],
            "docker SDK needs a container engine; none is usable on this host"
        );
    } else {
        assert_ne!(rt["stage"], "CONFIG_ERROR", "an engine is usable: {rt}");
    }
    // The hub goes on serving.
    let r = app.get("/api/spaces/admin/boat").send().await;
    assert_eq!(r.status, StatusCode::OK);
}
