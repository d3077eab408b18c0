//! The main answers of the Hub API as the client reads them: repo info, tree, commits,
//! whoami, and the error headers, snapshotted with volatile values (ids, dates, commit ids)
//! redacted.

use crate::app::TestApp;
use axum::http::StatusCode;
use serde_json::json;
use trove_db::TokenRole;

/// `README.md` with a card and `config.json`, committed to `admin/demo` through the commit API.
async fn demo_repo(app: &TestApp) {
    app.create_repo("demo", "model").await;
    app.commit_files(
        "demo",
        "Add the card",
        &[
            (
                "README.md",
                "---\nlicense: mit\npipeline_tag: text-classification\ntags: [demo]\n---\n# Demo\n",
            ),
            ("config.json", "{\"model_type\": \"bert\"}\n"),
        ],
    )
    .await;
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

#[tokio::test]
async fn refs_and_paths_info_as_the_client_reads_them() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let branch = app
        .post("/api/models/admin/demo/branch/dev")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(branch.status, StatusCode::OK, "{:?}", branch.error());
    insta::assert_json_snapshot!("branch_created", branch.json());
    let tag = app
        .post("/api/models/admin/demo/tag/main")
        .token(&app.admin_token)
        .json(&json!({"tag": "v1", "message": "first"}))
        .send()
        .await;
    assert_eq!(tag.status, StatusCode::OK, "{:?}", tag.error());
    let refs = app
        .get("/api/models/admin/demo/refs?include_prs=1")
        .send()
        .await;
    assert_eq!(refs.status, StatusCode::OK);
    insta::assert_json_snapshot!("refs", refs.json(), {
        ".*[].targetCommit" => "[commit]",
    });
    let without_prs = app.get("/api/models/admin/demo/refs").send().await;
    assert!(without_prs.json().get("pullRequests").is_none());
    let paths = app
        .post("/api/models/admin/demo/paths-info/main")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("paths=README.md&paths=missing&paths=config.json&expand=true")
        .send()
        .await;
    assert_eq!(paths.status, StatusCode::OK);
    insta::assert_json_snapshot!("paths_info", paths.json(), {
        "[].lastCommit.id" => "[commit]",
        "[].lastCommit.date" => "[date]",
    });
}

#[tokio::test]
async fn discussions_as_the_client_reads_them() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let opened = app
        .post("/api/models/admin/demo/discussions")
        .token(&app.admin_token)
        .json(&json!({"title": "Typo in the card", "description": "It says *Demo*."}))
        .send()
        .await;
    assert_eq!(opened.status, StatusCode::OK, "{:?}", opened.error());
    let redactions = || {
        insta::dynamic_redaction(|value, _| {
            if value.as_str().is_some() {
                "[redacted]".into()
            } else {
                value
            }
        })
    };
    insta::assert_json_snapshot!("discussion_opened", opened.json(), {
        ".createdAt" => "[date]",
    });
    let comment = app
        .post("/api/models/admin/demo/discussions/1/comment")
        .token(&app.admin_token)
        .json(&json!({"comment": "Fixed <soon>"}))
        .send()
        .await;
    assert_eq!(comment.status, StatusCode::OK, "{:?}", comment.error());
    insta::assert_json_snapshot!("discussion_comment", comment.json(), {
        ".newMessage.id" => "[id]",
        ".newMessage.createdAt" => "[date]",
        ".newMessage.data.latest.updatedAt" => "[date]",
    });
    let id = comment.json()["newMessage"]["id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let edited = app
        .post(&format!(
            "/api/models/admin/demo/discussions/1/comment/{id}/edit"
        ))
        .token(&app.admin_token)
        .json(&json!({"content": "Fixed now"}))
        .send()
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.error());
    let closed = app
        .post("/api/models/admin/demo/discussions/1/status")
        .token(&app.admin_token)
        .json(&json!({"status": "closed"}))
        .send()
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.error());
    insta::assert_json_snapshot!("discussion_closed", closed.json(), {
        ".newStatus.id" => "[id]",
        ".newStatus.createdAt" => "[date]",
    });
    let pr = app
        .post("/api/models/admin/demo/discussions")
        .token(&app.admin_token)
        .json(&json!({"title": "Add a file", "pullRequest": true}))
        .send()
        .await;
    assert_eq!(pr.status, StatusCode::OK, "{:?}", pr.error());
    let list = app.get("/api/models/admin/demo/discussions").send().await;
    assert_eq!(list.status, StatusCode::OK);
    insta::assert_json_snapshot!("discussion_list", list.json(), {
        ".discussions[].createdAt" => "[date]",
    });
    let details = app.get("/api/models/admin/demo/discussions/1").send().await;
    assert_eq!(details.status, StatusCode::OK);
    insta::assert_json_snapshot!("discussion_details", details.json(), {
        ".createdAt" => "[date]",
        ".events[].id" => "[id]",
        ".events[].createdAt" => "[date]",
        ".events[].data.latest.updatedAt" => "[date]",
        ".events[].data.history[].updatedAt" => "[date]",
    });
    let pr_details = app
        .get("/api/models/admin/demo/discussions/2?diff=1")
        .send()
        .await;
    assert_eq!(pr_details.status, StatusCode::OK);
    insta::assert_json_snapshot!("pull_request_details", pr_details.json(), {
        ".createdAt" => "[date]",
        ".events[].id" => "[id]",
        ".events[].createdAt" => "[date]",
        ".events[].data.latest.updatedAt" => "[date]",
        ".events[].data.oid" => redactions(),
    });
}

#[tokio::test]
async fn search_listing_as_the_client_reads_it() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let listing = app
        .get("/api/models?search=dem&full=true&cardData=true")
        .send()
        .await;
    assert_eq!(listing.status, StatusCode::OK);
    insta::assert_json_snapshot!("search_full", listing.json(), {
        "[]._id" => "[id]",
        "[].sha" => "[commit]",
        "[].createdAt" => "[date]",
        "[].lastModified" => "[date]",
    });
    let short = app.get("/api/models?author=admin").send().await;
    assert_eq!(short.status, StatusCode::OK);
    insta::assert_json_snapshot!("search_default", short.json(), {
        "[]._id" => "[id]",
        "[].sha" => "[commit]",
        "[].createdAt" => "[date]",
        "[].lastModified" => "[date]",
    });
}

#[tokio::test]
async fn error_answers_as_the_client_reads_them() {
    let app = TestApp::new().await;
    demo_repo(&app).await;
    let cases = [
        ("GET", "/api/models/admin/demo/tree/main/nowhere", None),
        ("GET", "/api/models/admin/demo/revision/nope", None),
        ("GET", "/api/models/admin/nothing", None),
        ("GET", "/api/widgets/admin/demo", None),
        (
            "POST",
            "/api/repos/create",
            Some(json!({"name": "demo", "type": "model"})),
        ),
        ("GET", "/api/models/admin/demo/discussions/99", None),
        (
            "POST",
            "/admin/demo.git/info/lfs/locks",
            Some(json!({"path": "x"})),
        ),
    ];
    let mut answers = Vec::new();
    for (method, uri, body) in cases {
        let mut request = match method {
            "GET" => app.get(uri),
            _ => app.post(uri),
        };
        if let Some(body) = &body {
            request = request.json(body);
        }
        if uri != "/admin/demo.git/info/lfs/locks" {
            request = request.token(&app.admin_token);
        }
        let answer = request.send().await;
        answers.push(json!({
            "request": format!("{method} {uri}"),
            "status": answer.status.as_u16(),
            "x-error-code": answer.header("x-error-code"),
            "x-error-message": answer.header("x-error-message"),
            "x-repo-commit": answer.header("x-repo-commit").map(|_| "[commit]"),
            "content-type": answer.header("content-type"),
            "lfs-authenticate": answer.header("lfs-authenticate"),
            "body": answer.json(),
        }));
    }
    insta::assert_json_snapshot!("error_answers", answers);
}
