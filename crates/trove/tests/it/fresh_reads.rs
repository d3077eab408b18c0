//! A write is seen by the very next download. Downloads read through repository handles kept
//! between requests (`trove_git::KeptRepos`); these tests write behind such a handle's back —
//! a commit through the API, a push by `git` in another process (a pack, or loose objects),
//! `git gc` packing refs and objects and deleting the packs the handle had open — and check
//! that the next GET of the branch answers the new content and commit, many times over. The
//! read-only API (model info, tree listing, paths-info) reads through the same kept handles
//! and must answer the new commit and files as promptly.

use crate::app::TestApp;
use axum::http::StatusCode;
use std::path::Path;
use std::process::Command;
use trove_types::{RepoId, RepoName, RepoType};

/// Runs git in `dir` with no system or user configuration; its stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=Other Node",
            "-c",
            "user.email=other@example.com",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// GETs `file` of `admin/fresh` at `main` `times` times; each must answer `content` at
/// `commit`.
async fn expect_file(app: &TestApp, file: &str, content: &str, commit: &str, times: usize) {
    for _ in 0..times {
        let r = app
            .get(&format!("/admin/fresh/resolve/main/{file}"))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
        assert_eq!(String::from_utf8_lossy(&r.body), content);
        assert_eq!(r.header("x-repo-commit"), Some(commit));
    }
}

/// The model info, the tree of `main` and paths-info of `file` must all answer `commit`,
/// with `file` of `content`'s size.
async fn expect_api(app: &TestApp, file: &str, content: &str, commit: &str) {
    let info = app.get("/api/models/admin/fresh").send().await;
    assert_eq!(info.status, StatusCode::OK, "{:?}", info.error());
    assert_eq!(info.json()["sha"], commit, "model info");
    let tree = app.get("/api/models/admin/fresh/tree/main").send().await;
    assert_eq!(tree.status, StatusCode::OK, "{:?}", tree.error());
    let listed = tree.json();
    let entry = listed
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["path"] == file))
        .unwrap_or_else(|| panic!("{file} listed in {listed}"));
    assert_eq!(entry["size"], content.len(), "tree listing of {file}");
    let paths = app
        .post("/api/models/admin/fresh/paths-info/main")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("paths={file}&expand=true"))
        .send()
        .await;
    assert_eq!(paths.status, StatusCode::OK, "{:?}", paths.error());
    let found = paths.json();
    assert_eq!(found[0]["path"], file, "paths-info: {found}");
    assert_eq!(found[0]["size"], content.len(), "paths-info of {file}");
    assert_eq!(
        found[0]["lastCommit"]["id"], commit,
        "paths-info's last commit"
    );
}

#[tokio::test]
async fn every_write_is_seen_by_the_next_download() {
    // The writes below are another node's: git run on the shared folder itself, which no
    // epoch counts. A hub of several nodes is on PostgreSQL, where the caches that rest on
    // epochs (what a revision names among them) are off by default: as here.
    let app = TestApp::with_config(|config| config.auth.token_cache_ms = Some(0)).await;
    app.create_repo("fresh", "model").await;
    app.commit_files("fresh", "v0", &[("f.txt", "v0")]).await;
    let id = RepoId::new(
        RepoName::parse_namespace("admin").expect("name"),
        RepoName::parse("fresh").expect("name"),
    );
    let repo = app
        .state
        .db
        .repo_by_name(RepoType::Model, &id)
        .await
        .expect("query")
        .expect("the repository");
    let bare = app.state.git_dir(repo.id);
    let head = || git(&bare, &["rev-parse", "refs/heads/main"]);
    expect_file(&app, "f.txt", "v0", &head(), 3).await;
    assert!(
        !app.state.kept_repos.is_empty(),
        "the download kept its handle"
    );

    let scratch = tempfile::tempdir().expect("tempdir");
    let work = scratch.path().join("work");
    git(
        scratch.path(),
        &[
            "clone",
            "-q",
            bare.to_str().expect("utf-8 path"),
            work.to_str().expect("utf-8 path"),
        ],
    );
    for round in 1..=12 {
        let content = format!("v{round}");
        match round % 4 {
            // In process, through the API: loose objects and a loose ref.
            0 => {
                app.commit_files("fresh", &content, &[("f.txt", &content)])
                    .await
            }
            // Another process, as another node would: a push that lands as a pack (1) or as
            // loose objects (2), then (3) a push followed by `git gc`, which packs the refs
            // and the objects and deletes the packs and loose objects read so far.
            kind => {
                git(&work, &["fetch", "-q", "origin"]);
                git(&work, &["reset", "-q", "--hard", "origin/main"]);
                std::fs::write(work.join("f.txt"), &content).expect("write");
                git(&work, &["commit", "-q", "-am", &content]);
                let unpack = if kind == 1 { "1" } else { "1000" };
                let receive = format!("git -c receive.unpackLimit={unpack} receive-pack");
                git(
                    &work,
                    &[
                        "push",
                        "-q",
                        &format!("--receive-pack={receive}"),
                        "origin",
                        "HEAD:main",
                    ],
                );
                if kind == 3 {
                    git(&bare, &["gc", "-q", "--prune=now"]);
                    assert!(
                        bare.join("packed-refs").exists() && !bare.join("refs/heads/main").exists(),
                        "gc packed the branch"
                    );
                }
            }
        }
        expect_file(&app, "f.txt", &content, &head(), 5).await;
        expect_api(&app, "f.txt", &content, &head()).await;
        // A file added by this write, absent from every object the handle read before.
        let added = format!("added-{round}.txt");
        if round % 4 != 0 {
            std::fs::write(work.join(&added), &content).expect("write");
            git(&work, &["add", &added]);
            git(&work, &["commit", "-q", "-m", &added]);
            git(&work, &["push", "-q", "origin", "HEAD:main"]);
            expect_file(&app, &added, &content, &head(), 2).await;
            expect_api(&app, &added, &content, &head()).await;
        }
    }
}

#[tokio::test]
async fn a_deleted_repository_is_not_served_from_a_kept_handle() {
    let app = TestApp::new().await;
    app.create_repo("fresh", "model").await;
    app.commit_files("fresh", "old", &[("f.txt", "old")]).await;
    let r = app.get("/admin/fresh/resolve/main/f.txt").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let deleted = app
        .request(axum::http::Method::DELETE, "/api/repos/delete")
        .token(&app.admin_token)
        .json(&serde_json::json!({"name": "fresh", "organization": "admin", "type": "model"}))
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.error());
    // Anonymous, as the Hub answers a repository it cannot show: 401 RepoNotFound.
    let r = app.get("/admin/fresh/resolve/main/f.txt").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error().0, Some("RepoNotFound"));
    // The same name again, a new repository: its own content, never the old one's.
    app.create_repo("fresh", "model").await;
    app.commit_files("fresh", "new", &[("f.txt", "new")]).await;
    for _ in 0..3 {
        let r = app.get("/admin/fresh/resolve/main/f.txt").send().await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
        assert_eq!(r.body, b"new");
    }
}

/// The reads every request makes (the token, the repository row) run on SQLite connections
/// kept between requests (`trove_db`'s readers); a token revoked by another process on the
/// same database (`trove token revoke` beside the server) and a repository made private
/// must be refused by the very next request, with those connections warm.
#[tokio::test]
async fn a_revoked_token_and_a_repo_made_private_are_refused_by_the_next_request() {
    let app = TestApp::new().await;
    app.create_repo("fresh", "model").await;
    app.commit_files("fresh", "v0", &[("f.txt", "v0")]).await;
    let reader = app.user("reader", trove_db::TokenRole::Read).await;
    // A token's request to a repository reads the token and the repository's row in one
    // read transaction (`Db::token_member_and_repo`): a second, unrevoked reader is refused
    // the repository made private by the next request too.
    let other = app.user("other", trove_db::TokenRole::Read).await;
    let get = |token: Option<&str>| {
        let mut request = app.get("/admin/fresh/resolve/main/f.txt");
        if let Some(token) = token {
            request = request.token(token);
        }
        request.send()
    };
    for _ in 0..20 {
        assert_eq!(get(Some(&reader)).await.status, StatusCode::OK);
        assert_eq!(get(Some(&other)).await.status, StatusCode::OK);
        assert_eq!(get(None).await.status, StatusCode::OK);
    }

    let cli = trove_db::Db::open(&app.state.config.data_dir.join("trove.db"))
        .await
        .expect("a second handle, as the admin CLI opens");
    let user = cli
        .user_by_name("reader")
        .await
        .expect("query")
        .expect("the user");
    assert!(cli.revoke_token(user.id, "test").await.expect("revoke"));
    let refused = get(Some(&reader)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "revoked at once");

    let private = app
        .request(axum::http::Method::PUT, "/api/models/admin/fresh/settings")
        .token(&app.admin_token)
        .json(&serde_json::json!({"private": true}))
        .send()
        .await;
    assert_eq!(private.status, StatusCode::OK, "{:?}", private.error());
    let hidden = get(None).await;
    assert_eq!(hidden.status, StatusCode::UNAUTHORIZED, "private at once");
    assert_eq!(hidden.error().0, Some("RepoNotFound"));
    let hidden = get(Some(&other)).await;
    assert_eq!(
        hidden.status,
        StatusCode::NOT_FOUND,
        "private at once for a signed-in reader"
    );
    assert_eq!(hidden.error().0, Some("RepoNotFound"));
    assert_eq!(
        get(Some(&app.admin_token)).await.status,
        StatusCode::OK,
        "its owner still reads it"
    );
    cli.close().await;
}
