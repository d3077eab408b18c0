//! The web pages in process: who may see which page (owner, org member, outsider,
//! anonymous × public, private, gated repositories), refusals as HTML pages with the API's
//! status and error headers, raw files never interpreted, cards sanitized, and forms
//! refused without their CSRF token.

use crate::app::TestApp;
use axum::http::StatusCode;
use serde_json::json;
use trove_db::{OrgRole, TokenRole};
use trove_types::RepoName;

struct World {
    app: TestApp,
    member: String,
    outsider: String,
    /// The commit of each repository, by name.
    commits: std::collections::HashMap<&'static str, String>,
}

/// Org `acme` with member `mia` (read) and outsider `otto`; repos `acme/open` (public),
/// `acme/secret` (private) and `acme/gate` (gated), each with a README, a folder and a file.
async fn world() -> World {
    let app = TestApp::new().await;
    let member = app.user("mia", TokenRole::Read).await;
    let outsider = app.user("otto", TokenRole::Write).await;
    let db = &app.state.db;
    let org = db
        .create_org(&RepoName::parse_namespace("acme").expect("name"), None)
        .await
        .expect("org");
    let mia = db.user_by_name("mia").await.expect("db").expect("mia");
    db.set_org_member(org.id, mia.id, OrgRole::Read)
        .await
        .expect("member");
    let mut commits = std::collections::HashMap::new();
    for (name, settings) in [
        ("open", json!({})),
        ("secret", json!({"private": true})),
        ("gate", json!({"gated": "manual"})),
    ] {
        let created = app
            .post("/api/repos/create")
            .token(&app.admin_token)
            .json(&json!({"name": name, "organization": "acme"}))
            .send()
            .await;
        assert_eq!(created.status, StatusCode::OK, "{:?}", created.error());
        let body = [
            json!({"key": "header", "value": {"summary": "First files", "description": ""}}),
            json!({"key": "file", "value": {"path": "README.md", "encoding": "base64",
                "content": "IyBIZWxsbwoKPHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pgo="}}),
            json!({"key": "file", "value": {"path": "src/a.py", "encoding": "base64",
                "content": "cHJpbnQoIjxiPmhpPC9iPiIpCg=="}}),
        ]
        .iter()
        .map(|v| format!("{v}\n"))
        .collect::<String>();
        let committed = app
            .post(&format!("/api/models/acme/{name}/commit/main"))
            .token(&app.admin_token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        assert_eq!(committed.status, StatusCode::OK, "{:?}", committed.error());
        let commit = committed.json()["commitOid"]
            .as_str()
            .expect("commit oid")
            .to_owned();
        commits.insert(name, commit);
        if settings != json!({}) {
            let changed = app
                .request(
                    axum::http::Method::PUT,
                    &format!("/api/models/acme/{name}/settings"),
                )
                .token(&app.admin_token)
                .json(&settings)
                .send()
                .await;
            assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.error());
        }
    }
    World {
        app,
        member,
        outsider,
        commits,
    }
}

/// The pages of a repository, and whether each shows files (gated for outsiders).
fn pages(repo: &str, commit: &str) -> Vec<(String, bool)> {
    vec![
        (format!("/acme/{repo}"), false),
        (format!("/acme/{repo}/tree/main"), false),
        (format!("/acme/{repo}/tree/main/src"), false),
        (format!("/acme/{repo}/commits/main"), false),
        (format!("/acme/{repo}/discussions"), false),
        (format!("/acme/{repo}/blob/main/src/a.py"), true),
        (format!("/acme/{repo}/raw/main/src/a.py"), true),
        (format!("/acme/{repo}/commit/{commit}"), true),
    ]
}

#[tokio::test]
async fn every_page_answers_who_may_see_it_like_the_api() {
    let w = world().await;
    let who: [(&str, Option<&str>); 4] = [
        ("owner", Some(w.app.admin_token.as_str())),
        ("member", Some(w.member.as_str())),
        ("outsider", Some(w.outsider.as_str())),
        ("anonymous", None),
    ];
    for repo in ["open", "secret", "gate"] {
        for (page, files) in pages(repo, &w.commits[repo]) {
            for (name, token) in who {
                let mut request = w.app.get(&page);
                if let Some(token) = token {
                    request = request.token(token);
                }
                let response = request.send().await;
                let insider = matches!(name, "owner" | "member");
                let (status, code) = match (repo, name) {
                    (_, _) if insider => (StatusCode::OK, None),
                    ("open", _) => (StatusCode::OK, None),
                    ("secret", "anonymous") => (StatusCode::UNAUTHORIZED, Some("RepoNotFound")),
                    ("secret", _) => (StatusCode::NOT_FOUND, Some("RepoNotFound")),
                    ("gate", "anonymous") if files => (StatusCode::UNAUTHORIZED, Some("GatedRepo")),
                    ("gate", _) if files => (StatusCode::FORBIDDEN, Some("GatedRepo")),
                    _ => (StatusCode::OK, None),
                };
                assert_eq!(response.status, status, "{name} on {page}");
                assert_eq!(response.error().0, code, "{name} on {page}");
                let content_type = response.header("content-type").unwrap_or_default();
                if page.contains("/raw/") && status == StatusCode::OK {
                    assert_eq!(content_type, "text/plain; charset=utf-8");
                } else {
                    assert_eq!(content_type, "text/html; charset=utf-8", "{name} on {page}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_private_page_is_exactly_a_missing_one_for_outsiders() {
    let w = world().await;
    for page in [
        "/acme/secret/tree/main/src",
        "/acme/secret/blob/main/src/a.py",
    ] {
        let hidden = w.app.get(page).token(&w.outsider).send().await;
        let missing = w
            .app
            .get(&page.replace("secret", "nothing"))
            .token(&w.outsider)
            .send()
            .await;
        assert_eq!(hidden.status, missing.status);
        assert_eq!(hidden.body, missing.body);
    }
}

#[tokio::test]
async fn pages_show_files_history_and_diffs() {
    let w = world().await;
    let text = |r: &crate::app::TestResponse| String::from_utf8_lossy(&r.body).into_owned();
    let tree = w.app.get("/acme/open/tree/main").send().await;
    let html = text(&tree);
    assert!(html.contains("href=\"/acme/open/tree/main/src\""), "{html}");
    assert!(html.contains("First files"), "last commit shown: {html}");
    let blob = w.app.get("/acme/open/blob/main/src/a.py").send().await;
    let html = text(&blob);
    // Highlighted on the server, the code's HTML still escaped.
    assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>hi"), "{html}");
    assert!(html.contains("class=\"hl-"), "highlighted: {html}");
    let commit = w
        .app
        .get(&format!("/acme/open/commit/{}", w.commits["open"]))
        .send()
        .await;
    let html = text(&commit);
    assert!(
        html.contains("First files") && html.contains("src/a.py"),
        "{html}"
    );
    assert!(html.contains("class=\"add\""), "{html}");
    let card = text(&w.app.get("/acme/open").send().await);
    assert!(card.contains("<h1>Hello</h1>"), "{card}");
    assert!(!card.contains("<script>alert"), "{card}");
    let missing = w.app.get("/acme/open/blob/main/nope.txt").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error().0, Some("EntryNotFound"));
    assert_eq!(
        missing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let bad_page = w.app.get("/acme/open/commits/main?p=x").send().await;
    assert_eq!(bad_page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn raw_files_are_never_interpreted() {
    let w = world().await;
    let raw = w.app.get("/acme/open/raw/main/src/a.py").send().await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.header("content-security-policy"), Some("sandbox"));
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(raw.body, b"print(\"<b>hi</b>\")\n");
}

#[tokio::test]
async fn forms_from_a_session_need_its_csrf_token() {
    let w = world().await;
    let db = &w.app.state.db;
    let otto = db.user_by_name("otto").await.expect("db").expect("otto");
    let phc = trove::auth::password::hash_password("otto's long password").expect("hash");
    db.set_password_hash(otto.id, &phc).await.expect("password");
    let login = w
        .app
        .post("/api/login")
        .json(&json!({"username": "otto", "password": "otto's long password"}))
        .send()
        .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.error());
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_owned();
    let opened = w
        .app
        .post("/api/models/acme/open/discussions")
        .token(&w.outsider)
        .json(&json!({"title": "Question", "description": "Hi"}))
        .send()
        .await;
    assert_eq!(opened.status, StatusCode::OK, "{:?}", opened.error());
    let post = |csrf: &str| {
        w.app
            .post("/acme/open/discussions/1")
            .header("cookie", &cookie)
            .header("origin", crate::app::PUBLIC_URL)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("action=comment&comment=hello+there&csrf={csrf}"))
            .send()
    };
    let refused = post("forged").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let page = w
        .app
        .get("/acme/open/discussions/1")
        .header("cookie", &cookie)
        .send()
        .await;
    let html = String::from_utf8_lossy(&page.body).into_owned();
    assert!(!html.contains("hello there"));
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    let accepted = post(&csrf).await;
    assert_eq!(
        accepted.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        accepted.error()
    );
    let page = w.app.get("/acme/open/discussions/1").send().await;
    assert!(String::from_utf8_lossy(&page.body).contains("hello there"));
    // Logging out is a form too.
    let logout = |body: String| {
        w.app
            .post("/logout")
            .header("cookie", &cookie)
            .header("origin", crate::app::PUBLIC_URL)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_eq!(logout(String::new()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        logout(format!("csrf={csrf}")).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn profiles_list_what_the_caller_may_see_and_members_to_members() {
    let w = world().await;
    let text = |r: &crate::app::TestResponse| String::from_utf8_lossy(&r.body).into_owned();
    let member = text(&w.app.get("/acme").token(&w.member).send().await);
    assert!(
        member.contains("acme/secret") && member.contains("acme/open"),
        "{member}"
    );
    assert!(
        member.contains("class=\"list members\"") && member.contains(">mia<"),
        "{member}"
    );
    let outsider = w.app.get("/acme").token(&w.outsider).send().await;
    assert_eq!(outsider.status, StatusCode::OK);
    let outsider = text(&outsider);
    assert!(
        outsider.contains("acme/open") && !outsider.contains("acme/secret"),
        "{outsider}"
    );
    assert!(!outsider.contains("class=\"list members\""), "{outsider}");
    let user = text(&w.app.get("/mia").send().await);
    assert!(user.contains("href=\"/acme\""), "{user}");
    let nobody = w.app.get("/nobody-here").send().await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    assert_eq!(
        nobody.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[tokio::test]
async fn tokens_page_needs_a_session_and_never_lets_a_token_mint_tokens() {
    let w = world().await;
    let anonymous = w.app.get("/settings/tokens").send().await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    let minted = w
        .app
        .post("/settings/tokens")
        .token(&w.outsider)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=x&role=write")
        .send()
        .await;
    assert_eq!(minted.status, StatusCode::FORBIDDEN);
    let otto = w
        .app
        .state
        .db
        .user_by_name("otto")
        .await
        .expect("db")
        .expect("otto");
    let tokens = w.app.state.db.list_tokens(otto.id).await.expect("tokens");
    assert_eq!(tokens.len(), 1, "nothing written");
}

#[tokio::test]
async fn settings_are_for_admins_and_change_what_the_api_changes() {
    let w = world().await;
    let cases = [
        (
            "/acme/open/settings",
            Some(w.app.admin_token.as_str()),
            StatusCode::OK,
        ),
        (
            "/acme/open/settings",
            Some(w.member.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "/acme/open/settings",
            Some(w.outsider.as_str()),
            StatusCode::FORBIDDEN,
        ),
        ("/acme/open/settings", None, StatusCode::UNAUTHORIZED),
        (
            "/acme/secret/settings",
            Some(w.outsider.as_str()),
            StatusCode::NOT_FOUND,
        ),
        (
            "/acme/gate/settings",
            Some(w.app.admin_token.as_str()),
            StatusCode::OK,
        ),
    ];
    for (page, token, status) in cases {
        let mut request = w.app.get(page);
        if let Some(token) = token {
            request = request.token(token);
        }
        assert_eq!(request.send().await.status, status, "{page} as {token:?}");
    }
    let form = |token: &str, body: &str| {
        w.app
            .post("/acme/open/settings")
            .token(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
    };
    let refused = form(&w.outsider, "action=visibility&value=private").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad = form(&w.app.admin_token, "action=visibility&value=sideways").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        w.app.get("/acme/open").send().await.status,
        StatusCode::OK,
        "nothing changed"
    );
    let done = form(&w.app.admin_token, "action=visibility&value=private").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        w.app.get("/acme/open").send().await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// What Chromium sends with a page request.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test]
async fn unknown_pages_and_refusals_are_html_to_a_browser_only() {
    let app = TestApp::new().await;
    let html = |r: &crate::app::TestResponse| {
        r.header("content-type") == Some("text/html; charset=utf-8")
            && String::from_utf8_lossy(&r.body).contains("<!doctype html>")
    };
    let page = app
        .get("/no/such/page/here")
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(html(&page), "{:?}", page.headers);
    assert!(String::from_utf8_lossy(&page.body).contains("404 Not Found"));
    assert_eq!(page.error().0, Some("EntryNotFound"));

    // The same path for a script keeps the Hub's JSON, byte for byte.
    let script = app.get("/no/such/page/here").send().await;
    assert_eq!(script.status, StatusCode::NOT_FOUND);
    assert_eq!(script.header("content-type"), Some("application/json"));
    assert_eq!(
        script.json(),
        json!({"error": "Not found: /no/such/page/here"})
    );

    let wrong_method = app
        .request(axum::http::Method::DELETE, "/models")
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(html(&wrong_method));
    // For a script the same refusal is the Hub's error shape, with the router's `Allow`.
    let script = app
        .request(axum::http::Method::DELETE, "/models")
        .send()
        .await;
    assert_eq!(script.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        script.header("x-error-message"),
        Some("DELETE is not allowed on this path")
    );
    assert_eq!(
        script.json(),
        json!({"error": "DELETE is not allowed on this path"})
    );
    assert!(script.header("allow").is_some_and(|a| a.contains("GET")));

    // Client surfaces never turn into pages, whatever the Accept header says.
    for path in [
        "/api/no-such-endpoint",
        "/acme/m/resolve/main/config.json",
        "/acme/m/info/lfs/locks",
    ] {
        let r = app.get(path).header("accept", BROWSER_ACCEPT).send().await;
        assert!(
            r.status.is_client_error() || r.status.is_server_error(),
            "{path}"
        );
        assert!(!html(&r), "{path}: {:?}", r.headers);
    }
}

/// A `multipart/form-data` body: text fields, then files `(name, bytes)`.
fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----trove-test-boundary-7d1";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (file_name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn uploads_through_the_page_commit_with_the_api_rules() {
    let w = world().await;
    let upload = |token: &str, fields: &[(&str, &str)], files: &[(&str, &[u8])]| {
        let (content_type, body) = multipart(fields, files);
        w.app
            .post("/acme/open/upload/main")
            .token(token)
            .header("content-type", &content_type)
            .body(body)
            .send()
    };
    let admin = w.app.admin_token.clone();
    let form = w
        .app
        .get("/acme/open/upload/main")
        .token(&admin)
        .send()
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&form.body).contains("enctype=\"multipart/form-data\""));
    let tree = w.app.get("/acme/open/tree/main").token(&admin).send().await;
    assert!(String::from_utf8_lossy(&tree.body).contains("/acme/open/upload/main"));

    // A text file stays in git; a `.bin` goes through LFS, as the client would send it.
    let weights = vec![7u8; 3000];
    let done = upload(
        &admin,
        &[
            ("target", "branch"),
            ("summary", "Add notes and weights"),
            ("folder", "docs"),
        ],
        &[("notes.txt", b"hello from the page\n"), ("w.bin", &weights)],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{:?}", done.error());
    let location = done.header("location").expect("location").to_owned();
    assert!(location.starts_with("/acme/open/commit/"), "{location}");
    let commit = w.app.get(&location).token(&admin).send().await;
    assert_eq!(commit.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&commit.body).contains("Add notes and weights"));
    let listed = w
        .app
        .get("/api/models/acme/open/tree/main/docs")
        .token(&admin)
        .send()
        .await
        .json();
    let entry = |name: &str| {
        listed
            .as_array()
            .expect("list")
            .iter()
            .find(|e| e["path"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {listed}"))
    };
    assert!(entry("docs/notes.txt")["lfs"].is_null());
    assert_eq!(entry("docs/w.bin")["lfs"]["size"], 3000);
    let fetched = w
        .app
        .get("/acme/open/resolve/main/docs/w.bin")
        .token(&admin)
        .send()
        .await;
    assert_eq!(fetched.body, weights);

    // An outsider may not commit to the branch, but may open a pull request.
    let before = main_head(&w.app).await;
    let refused = upload(&w.outsider, &[("target", "branch")], &[("x.txt", b"x")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(main_head(&w.app).await, before, "nothing written");
    let pr = upload(
        &w.outsider,
        &[("target", "pr"), ("summary", "Suggest a file")],
        &[("x.txt", b"x")],
    )
    .await;
    assert_eq!(pr.status, StatusCode::SEE_OTHER, "{:?}", pr.error());
    assert_eq!(pr.header("location"), Some("/acme/open/discussions/1"));
    assert_eq!(
        main_head(&w.app).await,
        before,
        "a pull request leaves main alone"
    );

    // Bad input: no file, an escaping path, an unknown target; a hidden repository.
    let none = upload(&admin, &[("target", "branch")], &[]).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let escaping = upload(&admin, &[("folder", "../up")], &[("x.txt", b"x")]).await;
    assert_eq!(escaping.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = upload(&admin, &[("target", "tag")], &[("x.txt", b"x")]).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown
            .error()
            .1
            .is_some_and(|m| m.contains("Unknown target"))
    );
    let (content_type, body) = multipart(&[], &[("x.txt", b"x")]);
    let hidden = w
        .app
        .post("/acme/secret/upload/main")
        .token(&w.outsider)
        .header("content-type", &content_type)
        .body(body)
        .send()
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(main_head(&w.app).await, before, "nothing written");
}

/// The commit `main` of `acme/open` points at.
async fn main_head(app: &TestApp) -> serde_json::Value {
    app.get("/api/models/acme/open/revision/main")
        .send()
        .await
        .json()["sha"]
        .clone()
}

#[tokio::test]
async fn files_are_edited_and_created_in_the_browser() {
    let w = world().await;
    let admin = w.app.admin_token.clone();
    let form = |path: &str, token: &str, body: String| {
        w.app
            .post(path)
            .token(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let blob = |token: &str| {
        w.app
            .get("/acme/open/blob/main/src/a.py")
            .token(token)
            .send()
    };
    let text = |r: &crate::app::TestResponse| String::from_utf8_lossy(&r.body).into_owned();
    assert!(text(&blob(&admin).await).contains("/acme/open/edit/main/src/a.py"));
    assert!(!text(&blob(&w.outsider).await).contains("/edit/main/"));
    let page = w
        .app
        .get("/acme/open/edit/main/src/a.py")
        .token(&admin)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        text(&page).contains("print(&#34;&#60;b&#62;hi&#60;/b&#62;&#34;)"),
        "{}",
        text(&page)
    );

    let before = main_head(&w.app).await;
    let edited = form(
        "/acme/open/edit/main/src/a.py",
        &admin,
        "content=print(1)%0D%0Aprint(2)%0D%0A&summary=&target=branch".into(),
    )
    .send()
    .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{:?}", edited.error());
    assert!(
        edited
            .header("location")
            .is_some_and(|l| l.starts_with("/acme/open/commit/"))
    );
    let raw = w.app.get("/acme/open/raw/main/src/a.py").send().await;
    assert_eq!(
        raw.body, b"print(1)\nprint(2)\n",
        "CRLF from the textarea becomes LF"
    );
    let commits = w
        .app
        .get("/api/models/acme/open/commits/main")
        .send()
        .await
        .json();
    assert_eq!(commits[0]["title"], "Update src/a.py");
    assert_ne!(main_head(&w.app).await, before);

    // Outsiders may only propose; a hidden repo is missing; a bad target is refused.
    let head = main_head(&w.app).await;
    let refused = form(
        "/acme/open/edit/main/src/a.py",
        &w.outsider,
        "content=x&target=branch".into(),
    )
    .send()
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let proposed = form(
        "/acme/open/edit/main/src/a.py",
        &w.outsider,
        "content=x&target=pr".into(),
    )
    .send()
    .await;
    assert_eq!(
        proposed.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        proposed.error()
    );
    assert_eq!(
        proposed.header("location"),
        Some("/acme/open/discussions/1")
    );
    assert_eq!(main_head(&w.app).await, head);
    let hidden = form(
        "/acme/secret/edit/main/src/a.py",
        &w.outsider,
        "content=x&target=pr".into(),
    )
    .send()
    .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let bad = form(
        "/acme/open/edit/main/src/a.py",
        &admin,
        "content=x&target=tag".into(),
    )
    .send()
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // New files: created once, then the path is taken; an escaping path is 422.
    let created = form(
        "/acme/open/new/main",
        &admin,
        "path=docs/new.md&content=%23+New%0D%0A".into(),
    )
    .send()
    .await;
    assert_eq!(
        created.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        created.error()
    );
    let raw = w.app.get("/acme/open/raw/main/docs/new.md").send().await;
    assert_eq!(raw.body, b"# New\n");
    let again = form(
        "/acme/open/new/main",
        &admin,
        "path=docs/new.md&content=x".into(),
    )
    .send()
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let escaping = form("/acme/open/new/main", &admin, "path=../x&content=x".into())
        .send()
        .await;
    assert_eq!(escaping.status, StatusCode::UNPROCESSABLE_ENTITY);
    let huge = form(
        "/acme/open/new/main",
        &admin,
        format!("path=big.txt&content={}", "a".repeat(1_100_000)),
    )
    .send()
    .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn repositories_are_created_on_the_new_page_with_the_api_rules() {
    let w = world().await;
    let text = |r: &crate::app::TestResponse| String::from_utf8_lossy(&r.body).into_owned();
    let anonymous = w.app.get("/new").send().await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    let page = w
        .app
        .get("/new?type=dataset")
        .token(&w.outsider)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = text(&page);
    assert!(html.contains("<option value=\"otto\""), "{html}");
    assert!(
        !html.contains("<option value=\"acme\""),
        "a read member may not create there"
    );
    let post = |token: &str, body: &str| {
        w.app
            .post("/new")
            .token(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
    };
    let made = post(
        &w.outsider,
        "type=model&owner=otto&name=tiny&visibility=private&license=mit",
    )
    .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", text(&made));
    assert_eq!(made.header("location"), Some("/otto/tiny"));
    let info = w
        .app
        .get("/api/models/otto/tiny")
        .token(&w.outsider)
        .send()
        .await
        .json();
    assert_eq!(info["private"], true);
    assert_eq!(info["cardData"]["license"], "mit", "{info}");
    assert_eq!(
        w.app.get("/api/models/otto/tiny").send().await.status,
        StatusCode::UNAUTHORIZED
    );

    let space = post(
        &w.outsider,
        "type=space&owner=otto&name=app&sdk=static&license=apache-2.0",
    )
    .await;
    assert_eq!(space.status, StatusCode::SEE_OTHER, "{}", text(&space));
    let readme = w
        .app
        .get("/spaces/otto/app/raw/main/README.md")
        .send()
        .await;
    let readme = text(&readme);
    assert!(
        readme.starts_with("---\nlicense: apache-2.0\n") && readme.contains("sdk: static"),
        "{readme}"
    );

    // Refusals are shown in the form, with what was typed and the API's status.
    for (body, status, says) in [
        (
            "type=model&owner=acme&name=nope",
            StatusCode::FORBIDDEN,
            "namespace",
        ),
        (
            "type=model&owner=otto&name=tiny",
            StatusCode::CONFLICT,
            "already",
        ),
        (
            "type=model&owner=otto&name=bad%2Fname",
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "type=space&owner=otto&name=nosdk",
            StatusCode::BAD_REQUEST,
            "SDK",
        ),
        (
            "type=model&owner=otto&name=x&license=made-up",
            StatusCode::BAD_REQUEST,
            "license",
        ),
    ] {
        let refused = post(&w.outsider, body).await;
        assert_eq!(refused.status, status, "{body}: {}", text(&refused));
        let html = text(&refused);
        assert!(
            html.contains("class=\"error\"") && html.contains(says),
            "{body}: {html}"
        );
        assert!(html.contains("<form class=\"stack new-repo\""), "{body}");
    }
    assert_eq!(
        w.app
            .get("/api/models/otto/x")
            .token(&w.outsider)
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND,
        "nothing written"
    );
}

#[tokio::test]
async fn settings_rename_and_delete_with_the_name_typed() {
    let w = world().await;
    let admin = w.app.admin_token.clone();
    let act = |path: &str, token: &str, body: &str| {
        w.app
            .post(path)
            .token(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
    };
    let page = w.app.get("/acme/open/settings").token(&admin).send().await;
    let html = String::from_utf8_lossy(&page.body).into_owned();
    assert!(html.contains("value=\"move\"") && html.contains("value=\"delete\""));

    let bad = act("/acme/open/settings", &admin, "action=move&value=no-slash").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let moved = act(
        "/acme/open/settings",
        &admin,
        "action=move&value=acme/renamed",
    )
    .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{:?}", moved.error());
    assert_eq!(moved.header("location"), Some("/acme/renamed/settings"));
    assert_eq!(
        w.app.get("/api/models/acme/renamed").send().await.status,
        StatusCode::OK
    );

    // Only admins; a member's refusal changes nothing. (After the move: a token's first use
    // is recorded in the background, and the move's database transaction is not yet immune
    // to that concurrent write: see the report on `Db::move_repo`.)
    let refused = act(
        "/acme/renamed/settings",
        &w.member,
        "action=move&value=acme/other",
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Deleting needs the full name typed; a wrong one deletes nothing.
    let wrong = act(
        "/acme/renamed/settings",
        &admin,
        "action=delete&value=renamed",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.error().1.is_some_and(|m| m.contains("acme/renamed")));
    assert_eq!(
        w.app.get("/api/models/acme/renamed").send().await.status,
        StatusCode::OK
    );
    let by_member = act(
        "/acme/renamed/settings",
        &w.member,
        "action=delete&value=acme/renamed",
    )
    .await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    let deleted = act(
        "/acme/renamed/settings",
        &admin,
        "action=delete&value=acme/renamed",
    )
    .await;
    assert_eq!(
        deleted.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        deleted.error()
    );
    assert_eq!(deleted.header("location"), Some("/acme"));
    assert_eq!(
        w.app
            .get("/api/models/acme/renamed")
            .token(&admin)
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_upload_from_a_session_needs_its_csrf_token_before_any_file() {
    let w = world().await;
    let db = &w.app.state.db;
    let otto = db.user_by_name("otto").await.expect("db").expect("otto");
    let phc = trove::auth::password::hash_password("otto's long password").expect("hash");
    db.set_password_hash(otto.id, &phc).await.expect("password");
    let login = w
        .app
        .post("/api/login")
        .json(&json!({"username": "otto", "password": "otto's long password"}))
        .send()
        .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.error());
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_owned();
    let send = |fields: &[(&str, &str)]| {
        let (content_type, body) = multipart(fields, &[("x.txt", b"x")]);
        w.app
            .post("/acme/open/upload/main")
            .header("cookie", &cookie)
            .header("origin", crate::app::PUBLIC_URL)
            .header("content-type", &content_type)
            .body(body)
            .send()
    };
    for fields in [
        vec![("target", "pr")],
        vec![("csrf", "forged"), ("target", "pr")],
    ] {
        let refused = send(&fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{fields:?}");
    }
    let listed = w
        .app
        .get("/api/models/acme/open/discussions")
        .send()
        .await
        .json();
    assert_eq!(listed["count"], 0, "nothing opened: {listed}");
    let page = w
        .app
        .get("/acme/open/upload/main")
        .header("cookie", &cookie)
        .send()
        .await;
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    let accepted = send(&[("csrf", &csrf), ("target", "pr")]).await;
    assert_eq!(
        accepted.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        accepted.error()
    );
}

#[tokio::test]
async fn a_model_page_shows_a_widget_unless_its_card_turns_inference_off() {
    let app = TestApp::new().await;
    let text = |r: &crate::app::TestResponse| String::from_utf8_lossy(&r.body).into_owned();
    app.create_repo("on", "model").await;
    app.commit_files(
        "on",
        "card",
        &[(
            "README.md",
            "---\npipeline_tag: feature-extraction\n---\n# On\n",
        )],
    )
    .await;
    app.create_repo("off", "model").await;
    app.commit_files(
        "off",
        "card",
        &[(
            "README.md",
            "---\npipeline_tag: feature-extraction\ninference: false\n---\n# Off\n",
        )],
    )
    .await;
    let on = app.get("/admin/on").token(&app.admin_token).send().await;
    assert_eq!(on.status, StatusCode::OK);
    assert!(
        text(&on).contains("data-task=\"feature-extraction\""),
        "{}",
        text(&on)
    );
    let off = app.get("/admin/off").token(&app.admin_token).send().await;
    assert_eq!(off.status, StatusCode::OK);
    assert!(!text(&off).contains("class=\"widget\""), "{}", text(&off));
}
