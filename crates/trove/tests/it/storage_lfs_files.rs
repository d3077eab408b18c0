//! A repository's large files through the Hub API: listing them (paged, with where history
//! uses each) and deleting them permanently, after which the repository no longer serves the
//! bytes and GC frees whatever no other repository needs.

use crate::app::TestApp;
use crate::storage_gc::{commit, random_bytes, send_ok, upload, xorb_bytes};
use axum::http::{Method, StatusCode};
use serde_json::json;
use trove::storage::gc;
use trove_db::TokenRole;

const LIST: &str = "/api/models/admin/lf/lfs-files";
const BATCH: &str = "/api/models/admin/lf/lfs-files/batch";

#[tokio::test]
async fn owners_list_and_delete_large_files_and_gc_frees_what_nobody_needs() {
    let app = TestApp::new().await;
    for name in ["lf", "other"] {
        send_ok(
            &app,
            Method::POST,
            "/api/repos/create",
            json!({"name": name}),
        )
        .await;
    }
    let a = random_bytes(1, 300_000);
    let b = random_bytes(2, 200_000);
    let oid_a = upload(&app, "lf", &a).await;
    let oid_b = upload(&app, "lf", &b).await;
    commit(&app, "lf", "main", "a.bin", &oid_a, a.len()).await;
    commit(&app, "lf", "main", "dir/b.bin", &oid_b, b.len()).await;
    // Another repository holds b too.
    upload(&app, "other", &b).await;
    commit(&app, "other", "main", "b.bin", &oid_b, b.len()).await;

    // Anyone who may read the (public) repository may list; the default page holds both.
    let reader = app.user("reader", TokenRole::Write).await;
    let r = app.get(LIST).token(&reader).send().await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    let mut items: Vec<serde_json::Value> = r.json().as_array().expect("array").clone();
    items.sort_by_key(|i| i["filename"].as_str().unwrap_or("").to_owned());
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["filename"], "a.bin");
    assert_eq!(items[0]["fileOid"], oid_a.as_str());
    assert_eq!(items[0]["oid"], oid_a.as_str());
    assert_eq!(items[0]["size"], 300_000);
    assert_eq!(items[0]["ref"], "refs/heads/main");
    assert!(
        items[0]["pushedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(items[1]["filename"], "dir/b.bin");

    // Paged: one item and a Link to the next page, which has the other and no Link.
    let r = app
        .get(&format!("{LIST}?limit=1"))
        .token(&reader)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
    let link = r.header("link").expect("a next link").to_owned();
    let next = &link[link.find("/api/").expect("path")..link.find('>').expect("end")];
    let r2 = app.get(next).token(&reader).send().await;
    assert_eq!(r2.json().as_array().map(Vec::len), Some(1));
    assert_ne!(r.json()[0]["oid"], r2.json()[0]["oid"]);
    assert!(r2.header("link").is_none());

    // Bad paging input: 400 with the error headers.
    for q in ["limit=0", "limit=abc", "cursor=zz"] {
        let r = app.get(&format!("{LIST}?{q}")).token(&reader).send().await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.error().1.is_some(), "{q}");
    }

    // Deleting needs admin rights on the repository; bad oids are refused whole.
    let r = app
        .post(BATCH)
        .token(&reader)
        .json(&json!({"deletions": {"sha": [oid_a], "rewriteHistory": true}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(BATCH)
        .token(&app.admin_token)
        .json(&json!({"deletions": {"sha": [oid_a, "nope"], "rewriteHistory": true}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().1.is_some());
    let too_many: Vec<String> = (0..1001).map(|i| format!("{i:064x}")).collect();
    let r = app
        .post(BATCH)
        .token(&app.admin_token)
        .json(&json!({"deletions": {"sha": too_many}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.get(LIST).token(&reader).send().await;
    assert_eq!(
        r.json().as_array().map(Vec::len),
        Some(2),
        "nothing was deleted"
    );

    let r = app
        .post(BATCH)
        .token(&app.admin_token)
        .json(&json!({"deletions": {"sha": [oid_a, oid_b], "rewriteHistory": false}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    let r = app.get(LIST).token(&reader).send().await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(0));

    // The pointers stay in history; the bytes are gone from this repository only.
    for path in ["a.bin", "dir/b.bin"] {
        let r = app
            .get(&format!("/admin/lf/resolve/main/{path}"))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = app.get("/admin/other/resolve/main/b.bin").send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b);

    // GC frees a's bytes (nobody else needs them) and keeps b's.
    let before = xorb_bytes(app.state.store.root());
    let report = gc::collect(&app.state, 0, false).await.expect("gc");
    assert_eq!(report.objects_forgotten, 1, "{report:?}");
    let freed = before - xorb_bytes(app.state.store.root());
    assert!(
        (300_000..=300_000 + 8 * 16).contains(&freed),
        "freed {freed}"
    );
    let r = app.get("/admin/other/resolve/main/b.bin").send().await;
    assert_eq!(r.body, b);
}
