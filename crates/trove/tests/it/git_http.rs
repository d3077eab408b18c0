//! git's smart HTTP answers the server gives without starting git: the credential probe git
//! posts before a large push (a lone flush-pkt), answered as receive-pack itself answers it,
//! after the same authorization.

use crate::app::TestApp;
use axum::http::StatusCode;
use trove_db::TokenRole;

const RECEIVE_PACK: &str = "/admin/demo.git/git-receive-pack";
const REQUEST_TYPE: &str = "application/x-git-receive-pack-request";

#[tokio::test]
async fn the_probe_before_a_large_push_gets_receive_packs_own_empty_answer() {
    let app = TestApp::new().await;
    app.create_repo("demo", "model").await;
    let before = app.get("/api/models/admin/demo").send().await.json()["sha"].clone();
    // As git sends it: a declared length of 4, the flush-pkt, no compression.
    let probe = app
        .post(RECEIVE_PACK)
        .token(&app.admin_token)
        .header("content-type", REQUEST_TYPE)
        .header("content-length", "4")
        .body(b"0000".to_vec())
        .send()
        .await;
    // The same bytes without a declared length are handed to receive-pack itself.
    let by_git = app
        .post(RECEIVE_PACK)
        .token(&app.admin_token)
        .header("content-type", REQUEST_TYPE)
        .body(b"0000".to_vec())
        .send()
        .await;
    for answer in [&probe, &by_git] {
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.header("content-type"),
            Some("application/x-git-receive-pack-result")
        );
        assert_eq!(
            answer.header("cache-control"),
            Some("no-cache, max-age=0, must-revalidate")
        );
    }
    assert!(by_git.body.is_empty(), "{:?}", by_git.body);
    assert_eq!(probe.body, by_git.body);
    let after = app.get("/api/models/admin/demo").send().await.json()["sha"].clone();
    assert_eq!(before, after);
}

#[tokio::test]
async fn the_probe_is_authorized_like_the_push_it_announces() {
    let app = TestApp::new().await;
    app.create_repo("demo", "model").await;
    let probe = |token: Option<String>| {
        let mut request = app
            .post(RECEIVE_PACK)
            .header("content-type", REQUEST_TYPE)
            .header("content-length", "4")
            .body(b"0000".to_vec());
        if let Some(token) = &token {
            request = request.token(token);
        }
        request.send()
    };
    // Anonymous: git asks its credential helpers on this answer.
    let anonymous = probe(None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        anonymous
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")),
        "{:?}",
        anonymous.headers
    );
    // Signed in with a read token: neither a writer nor a contributor.
    let reader = app.user("bob", TokenRole::Read).await;
    assert_eq!(probe(Some(reader)).await.status, StatusCode::FORBIDDEN);
    // A contributor (a write token, someone else's repository) may push to the pull
    // requests they opened, which the hook checks: the probe passes, as receive-pack's did.
    let contributor = app.user("carol", TokenRole::Write).await;
    assert_eq!(probe(Some(contributor)).await.status, StatusCode::OK);
    // A probe of the wrong content type is refused as any request of it would be.
    let wrong_type = app
        .post(RECEIVE_PACK)
        .token(&app.admin_token)
        .header("content-type", "text/plain")
        .header("content-length", "4")
        .body(b"0000".to_vec())
        .send()
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
}
