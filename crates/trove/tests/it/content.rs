//! File bytes through the router: an LFS batch upload and download round trip, resolve of the
//! uploaded object and of a regular file, and the one `Range` rule on both download surfaces
//! (hostile values ignored → 200, unsatisfiable → 416), with snapshots of the batch answers.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const LFS_JSON: &str = "application/vnd.git-lfs+json";

/// Values a `Range` header may hold that are not one valid byte range: all ignored.
const IGNORED_RANGES: [&str; 10] = [
    "bytes=abc",
    "bytes=",
    "bytes=,",
    "bytes=5",
    "bytes=--1",
    "bytes=x-5",
    "bytes=-",
    "bytes=0-1,5-6",
    "items=0-1",
    "bytes=1-2-3",
];

fn data() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// The path and query of a signed URL (the test app's public origin dropped).
fn local(href: &str) -> String {
    let at = href.find("/_lfs/").expect("a transfer URL");
    href[at..].to_owned()
}

async fn create(app: &TestApp, name: &str, kind: &str) {
    let r = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": name, "type": kind}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
}

async fn batch(app: &TestApp, repo_path: &str, operation: &str, oid: &str, size: usize) -> Value {
    let r = app
        .post(&format!("{repo_path}.git/info/lfs/objects/batch"))
        .token(&app.admin_token)
        .header("accept", LFS_JSON)
        .json(&json!({
            "operation": operation, "transfers": ["basic"],
            "objects": [{"oid": oid, "size": size}], "hash_algo": "sha256"
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    assert_eq!(r.header("content-type"), Some(LFS_JSON));
    r.json()
}

async fn commit_pointer(app: &TestApp, api_repo: &str, oid: &str, size: usize) {
    let body = [
        json!({"key": "header", "value": {"summary": "Add the weights", "description": ""}}),
        json!({"key": "lfsFile", "value": {"path": "weights.bin", "algo": "sha256", "oid": oid, "size": size}}),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let r = app
        .post(&format!("/api/{api_repo}/commit/main"))
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
}

/// `uri` answers `data` whole for no Range and for every ignored one, the right slice for
/// valid ones, and 416 with `bytes */size` for unsatisfiable ones.
async fn check_ranges(app: &TestApp, uri: &str, data: &[u8]) {
    let get = |range: Option<&str>| {
        let mut req = app.get(uri).token(&app.admin_token);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };
    let whole = get(None).await;
    assert_eq!(whole.status, StatusCode::OK, "{uri}");
    assert_eq!(whole.body, data, "{uri}");
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    for spec in IGNORED_RANGES {
        let r = get(Some(spec)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri} {spec:?}");
        assert_eq!(r.body, data, "{uri} {spec:?}");
        assert_eq!(r.header("content-range"), None);
    }
    let size = data.len();
    for (spec, start, end) in [
        ("bytes=2-4", 2, 5),
        ("bytes=4990-", 4990, size),
        ("bytes=-10", size - 10, size),
        ("bytes=100-999999", 100, size),
    ] {
        let r = get(Some(spec)).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{uri} {spec}");
        assert_eq!(r.body, &data[start..end], "{uri} {spec}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{}/{size}", end - 1).as_str())
        );
    }
    for spec in ["bytes=5000-", "bytes=10-5", "bytes=-0"] {
        let r = get(Some(spec)).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{uri} {spec}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{size}").as_str())
        );
    }
}

#[tokio::test]
async fn lfs_upload_and_download_round_trip_with_ranges() {
    let app = TestApp::new().await;
    create(&app, "weights", "dataset").await;
    let data = data();
    let oid = hex::encode(Sha256::digest(&data));

    let planned = batch(&app, "/datasets/admin/weights", "upload", &oid, data.len()).await;
    insta::assert_json_snapshot!("lfs_batch_upload", planned, {
        ".objects[].actions.upload.href" => "[signed upload URL]",
        ".objects[].actions.verify.href" => "[verify URL]",
    });
    let upload = planned["objects"][0]["actions"]["upload"]["href"]
        .as_str()
        .expect("href");
    let put = app
        .request(Method::PUT, &local(upload))
        .body(data.clone())
        .send()
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.error());
    let verified = app
        .post("/datasets/admin/weights.git/info/lfs/verify")
        .token(&app.admin_token)
        .json(&json!({"oid": oid, "size": data.len()}))
        .send()
        .await;
    assert_eq!(verified.status, StatusCode::OK);
    assert_eq!(verified.json(), json!({"oid": oid, "size": data.len()}));
    // Held now: no actions, the client skips the upload.
    let again = batch(&app, "/datasets/admin/weights", "upload", &oid, data.len()).await;
    insta::assert_json_snapshot!("lfs_batch_upload_held", again);

    let download = batch(
        &app,
        "/datasets/admin/weights",
        "download",
        &oid,
        data.len(),
    )
    .await;
    insta::assert_json_snapshot!("lfs_batch_download", download, {
        ".objects[].actions.download.href" => "[signed download URL]",
    });
    let href = download["objects"][0]["actions"]["download"]["href"]
        .as_str()
        .expect("href");
    check_ranges(&app, &local(href), &data).await;

    commit_pointer(&app, "datasets/admin/weights", &oid, data.len()).await;
    check_ranges(
        &app,
        "/datasets/admin/weights/resolve/main/weights.bin",
        &data,
    )
    .await;
    let head = app
        .request(
            Method::HEAD,
            "/datasets/admin/weights/resolve/main/weights.bin",
        )
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("x-linked-size"), Some("5000"));
    assert_eq!(head.header("etag"), Some(format!("\"{oid}\"").as_str()));
    // Small and held as a Xet file: the ranges above after the first GET came from memory.
    let sha = trove_types::Sha256Hex::parse(&oid).expect("oid");
    assert_eq!(
        app.state.resolve_cache.lfs(&sha).as_deref(),
        Some(&data[..]),
        "kept whole after its first download"
    );
}

#[tokio::test]
async fn batch_errors_are_per_object() {
    let app = TestApp::new().await;
    create(&app, "errs", "model").await;
    let r = app
        .post("/admin/errs.git/info/lfs/objects/batch")
        .token(&app.admin_token)
        .json(&json!({
            "operation": "download",
            "objects": [{"oid": "not-an-oid", "size": 3}, {"oid": "a".repeat(64), "size": -1}]
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    insta::assert_json_snapshot!("lfs_batch_object_errors", r.json());
    let r = app
        .post("/admin/errs.git/info/lfs/objects/batch")
        .token(&app.admin_token)
        .json(&json!({"operation": "upload", "objects": [{"oid": "b".repeat(64), "size": -5}]}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    insta::assert_json_snapshot!("lfs_batch_upload_invalid_size", r.json());
}

#[tokio::test]
async fn a_regular_file_follows_the_same_range_rule() {
    let app = TestApp::new().await;
    create(&app, "plain", "model").await;
    let data = data();
    use base64::Engine;
    let body = [
        json!({"key": "header", "value": {"summary": "Add a file", "description": ""}}),
        json!({"key": "file", "value": {"path": "data.bin", "encoding": "base64",
            "content": base64::engine::general_purpose::STANDARD.encode(&data)}}),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let r = app
        .post("/api/models/admin/plain/commit/main")
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    check_ranges(&app, "/admin/plain/resolve/main/data.bin", &data).await;
    // A revision with a control character is refused before git sees it.
    let r = app
        .get("/admin/plain/resolve/ma%01in/data.bin")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
