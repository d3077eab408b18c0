//! Dataset previews in process: the dataset page and the viewer show the first rows of the
//! card's configs, an unknown split is a 404 page, a private dataset's preview is a missing
//! page for outsiders, and a file that cannot be previewed is a note on a 200 page.

use crate::app::TestApp;
use axum::http::StatusCode;
use base64::Engine;
use serde_json::json;
use trove_db::TokenRole;

const CARD: &str = "---\nconfigs:\n- config_name: cities\n  data_files:\n  - split: train\n    path: csv/*.csv\n  - split: test\n    path: csv/test.tsv\n- config_name: questions\n  data_files: jsonl/*.jsonl\n---\n# Cities\n";

async fn commit_dataset(app: &TestApp, name: &str, private: bool, files: &[(&str, &[u8])]) {
    let created = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": name, "type": "dataset", "private": private}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.error());
    let mut body = format!(
        "{}\n",
        json!({"key": "header", "value": {"summary": "data", "description": ""}})
    );
    for (path, bytes) in files {
        let content = base64::engine::general_purpose::STANDARD.encode(bytes);
        body.push_str(&format!(
            "{}\n",
            json!({"key": "file", "value": {"path": path, "encoding": "base64", "content": content}})
        ));
    }
    let committed = app
        .post(&format!("/api/datasets/admin/{name}/commit/main"))
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(committed.status, StatusCode::OK, "{:?}", committed.error());
}

fn text(r: &crate::app::TestResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test]
async fn card_configs_and_splits_preview_their_first_rows() {
    let app = TestApp::new().await;
    commit_dataset(
        &app,
        "cities",
        false,
        &[
            ("README.md", CARD.as_bytes()),
            (
                "csv/a.csv",
                b"id,city\n1,\"Paris, FR\"\n2,<script>x</script>\n",
            ),
            ("csv/test.tsv", b"id\tcity\n9\tOslo\n"),
            ("jsonl/q.jsonl", b"{\"q\":\"why?\",\"n\":1}\n"),
        ],
    )
    .await;
    let page = app.get("/datasets/admin/cities").send().await;
    assert_eq!(page.status, StatusCode::OK);
    let body = text(&page);
    assert!(body.contains("Dataset preview"), "{body}");
    assert!(body.contains("Paris, FR"));
    assert!(
        body.contains("&#60;script&#62;x&#60;/script&#62;")
            || body.contains("&lt;script&gt;x&lt;/script&gt;"),
        "cells are escaped: {body}"
    );
    assert!(!body.contains("<script>x</script>"));
    assert!(body.contains("2 rows shown of the whole file"));
    assert!(body.contains("data-config=\"questions\""));
    assert!(body.contains("href=\"/datasets/admin/cities/viewer/cities/test\""));

    let test = app
        .get("/datasets/admin/cities/viewer/cities/test")
        .send()
        .await;
    assert_eq!(test.status, StatusCode::OK);
    assert!(text(&test).contains("Oslo"));
    let questions = app
        .get("/datasets/admin/cities/viewer/questions/train")
        .send()
        .await;
    assert!(text(&questions).contains("why?"));
    let default = app.get("/datasets/admin/cities/viewer").send().await;
    assert!(text(&default).contains("Paris, FR"));

    let missing = app
        .get("/datasets/admin/cities/viewer/cities/nope")
        .send()
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error().0, Some("EntryNotFound"));
    assert!(text(&missing).contains("<html"), "a page, not JSON");
}

#[tokio::test]
async fn a_private_datasets_preview_is_missing_for_outsiders() {
    let app = TestApp::new().await;
    commit_dataset(
        &app,
        "secret",
        true,
        &[("train.csv", b"col\nclassified value\n")],
    )
    .await;
    let outsider = app.user("otto", TokenRole::Read).await;
    let own = app
        .get("/datasets/admin/secret/viewer/default/train")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(text(&own).contains("classified value"));
    for path in [
        "/datasets/admin/secret/viewer/default/train",
        "/datasets/admin/secret",
    ] {
        let refused = app.get(path).token(&outsider).send().await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(refused.error().0, Some("RepoNotFound"));
        assert!(!text(&refused).contains("classified"));
        let anonymous = app.get(path).send().await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(!text(&anonymous).contains("classified"));
    }
}

#[tokio::test]
async fn files_that_cannot_be_previewed_are_notes() {
    let app = TestApp::new().await;
    let mut fake = vec![0u8; 1024];
    fake.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    fake.extend_from_slice(b"PAR1");
    commit_dataset(
        &app,
        "broken",
        false,
        &[
            ("data/train.parquet", &fake),
            ("data/test.jsonl", b"{\"a\":1}\nnot json\n"),
        ],
    )
    .await;
    let page = app.get("/datasets/admin/broken").send().await;
    assert_eq!(page.status, StatusCode::OK);
    let body = text(&page);
    assert!(body.contains("Preview unavailable"), "{body}");
    assert!(body.contains("footer is 2.0 GiB"), "{body}");
    // The default layout keeps one format per config: the Parquet files.
    assert!(!body.contains("data-split=\"test\""));
}
