//! Hostile identifiers in URLs: a NUL byte or a 5,000-character revision, and a NUL in a
//! folder path, are refused with 400 and a message on every route that takes them —
//! before anything reaches git (whose C API cannot take a NUL, and whose ref code has
//! length limits).

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn demo(app: &TestApp) {
    app.create_repo("demo", "model").await;
}

#[tokio::test]
async fn hostile_revisions_are_refused_on_every_route() {
    let app = TestApp::new().await;
    demo(&app).await;
    let long = "x".repeat(5000);
    let routes: [(Method, &str, Option<serde_json::Value>); 8] = [
        (Method::GET, "/api/models/admin/demo/tree/{rev}", None),
        (Method::GET, "/api/models/admin/demo/tree/{rev}/sub", None),
        (Method::GET, "/api/models/admin/demo/revision/{rev}", None),
        (Method::GET, "/api/models/admin/demo/commits/{rev}", None),
        (
            Method::POST,
            "/api/models/admin/demo/paths-info/{rev}",
            Some(json!({"paths": ["README.md"]})),
        ),
        (
            Method::POST,
            "/api/models/admin/demo/preupload/{rev}",
            Some(json!({"files": []})),
        ),
        (
            Method::POST,
            "/api/models/admin/demo/tag/{rev}",
            Some(json!({"tag": "v1"})),
        ),
        (Method::POST, "/api/models/admin/demo/commit/{rev}", None),
    ];
    for (method, template, body) in routes {
        for rev in ["%00", "main%00", "ma%0Ain", long.as_str()] {
            let uri = template.replace("{rev}", rev);
            let mut request = app.request(method.clone(), &uri).token(&app.admin_token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let answer = request.send().await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {uri}");
            let message = answer.error().1.unwrap_or_default().to_owned();
            assert!(
                message.contains("Invalid revision"),
                "{method} {uri}: {message}"
            );
        }
    }
}

#[tokio::test]
async fn hostile_folder_paths_are_refused() {
    let app = TestApp::new().await;
    demo(&app).await;
    for path in ["%00", "a%00b", "..", "a/../b", ".git"] {
        let uri = format!("/api/models/admin/demo/tree/main/{path}");
        let answer = app.get(&uri).send().await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            answer
                .error()
                .1
                .is_some_and(|m| m.starts_with("Invalid path")),
            "{uri}: {:?}",
            answer.error()
        );
    }
    // Slashes around the folder still name the root.
    let root = app.get("/api/models/admin/demo/tree/main//").send().await;
    assert_eq!(root.status, StatusCode::OK);
    // paths-info leaves out what cannot be a path, as it leaves out what is missing.
    let listed = app
        .post("/api/models/admin/demo/paths-info/main")
        .json(&json!({"paths": ["a\u{0}b", "../x", ".gitattributes"]}))
        .send()
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let paths: Vec<String> = listed
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(paths, vec![".gitattributes"]);
}

#[tokio::test]
async fn hidden_repos_answer_as_missing_before_the_revision_is_judged() {
    let app = TestApp::new().await;
    let private = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": "secret", "type": "model", "private": true}))
        .send()
        .await;
    assert_eq!(private.status, StatusCode::OK);
    for uri in [
        "/api/models/admin/secret/tree/%00",
        "/api/models/admin/nothing/tree/%00",
    ] {
        let answer = app.get(uri).send().await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(answer.error().0, Some("RepoNotFound"), "{uri}");
    }
}

#[tokio::test]
async fn one_extractor_finds_repos_by_type_prefix_and_git_suffix() {
    let app = TestApp::new().await;
    app.create_repo("rows", "dataset").await;
    let info = app.get("/api/datasets/admin/rows").send().await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json()["id"], "admin/rows");
    // The same name as a model does not exist.
    let model = app.get("/api/models/admin/rows").send().await;
    assert_eq!(model.status, StatusCode::UNAUTHORIZED);
    // git-lfs names the repository with `.git` and the type by prefix.
    for uri in [
        "/datasets/admin/rows.git/info/lfs/locks",
        "/datasets/admin/rows/info/lfs/locks",
    ] {
        let locks = app.get(uri).token(&app.admin_token).send().await;
        assert_eq!(locks.status, StatusCode::OK, "{uri}");
        assert_eq!(locks.json(), json!({"locks": []}), "{uri}");
        assert_eq!(
            locks.header("content-type"),
            Some("application/vnd.git-lfs+json"),
            "{uri}"
        );
    }
    let wrong_type = app
        .get("/admin/rows.git/info/lfs/locks")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(wrong_type.status, StatusCode::NOT_FOUND);
    assert_eq!(
        wrong_type.json(),
        json!({"message": "Repository not found"})
    );
    // The web page of a dataset, and a missing one as a page with the API's headers.
    let page = app.get("/datasets/admin/rows").send().await;
    assert_eq!(page.status, StatusCode::OK);
    let missing = app.get("/datasets/admin/nothing").send().await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.error().0, Some("RepoNotFound"));
    assert_eq!(
        missing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

/// A `.gitmodules` that git's fsck refuses would, once committed, make every later push to
/// the repository fail (receive-pack checks the trees a push introduces, which name it): the
/// commit API refuses it as git would, and nothing moves.
#[tokio::test]
async fn gitmodules_git_would_refuse_are_refused_by_the_commit_api() {
    use base64::Engine;
    let app = TestApp::new().await;
    demo(&app).await;
    let before = head(&app).await;
    let commit = |path: &str, content: &str, key: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(content);
        let op = if key == "file" {
            json!({"key": "file", "value": {"path": path, "encoding": "base64", "content": b64}})
        } else {
            json!({"key": "lfsFile", "value": {"path": path, "algo": "sha256",
                "oid": "a".repeat(64), "size": 3}})
        };
        format!(
            "{}\n{}\n",
            json!({"key": "header", "value": {"summary": "submodules", "description": ""}}),
            op
        )
    };
    let hostile = [
        (
            ".gitmodules",
            "[submodule \"x\"]\n\turl = --upload-pack=touch${IFS}/tmp/pwned\n",
            "file",
        ),
        (
            "sub/.GITMODULES",
            "[submodule \"x\"]\n\tupdate = !sh\n",
            "file",
        ),
        (
            ".gitmodules",
            "[submodule \"../../x\"]\n\turl = https://example.com/x\n",
            "file",
        ),
        (".gitmodules", "not config at all\n", "file"),
        (".gitmodules", "", "lfsFile"),
    ];
    for (path, content, key) in hostile {
        let answer = app
            .post("/api/models/admin/demo/commit/main")
            .token(&app.admin_token)
            .header("content-type", "application/x-ndjson")
            .body(commit(path, content, key))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}: {content}");
        assert!(answer.error().1.is_some(), "{path}");
    }
    assert_eq!(head(&app).await, before, "nothing was committed");
    let fine = app
        .post("/api/models/admin/demo/commit/main")
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(commit(
            ".gitmodules",
            "[submodule \"lib\"]\n\tpath = lib\n\turl = https://example.com/lib.git\n",
            "file",
        ))
        .send()
        .await;
    assert_eq!(fine.status, StatusCode::OK, "{:?}", fine.error());
}

async fn head(app: &TestApp) -> serde_json::Value {
    app.get("/api/models/admin/demo/revision/main")
        .send()
        .await
        .json()["sha"]
        .clone()
}
