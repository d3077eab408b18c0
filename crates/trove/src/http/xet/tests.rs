//! The CAS endpoints driven through the real router: every hostile input gets a clean 4xx
//! and leaves nothing behind; reads never cross repositories.

use super::token::{self, CasGrant, Scope};
use crate::config::Config;
use crate::signing::UrlSigner;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use trove_db::Db;
use trove_store::LocalStore;
use trove_types::{RepoId, RepoName, RepoType};
use trove_xet::XetHash;
use trove_xet::hash;
use trove_xet::shard::{ShardFile, Term, testing::build_shard};
use trove_xet::xorb::testing::build_xorb;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    app: crate::http::router::App,
    repo_a: i64,
    repo_b: i64,
    /// A private repository of another owner, bob.
    repo_c: i64,
    alice: i64,
    bob: i64,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(tweak: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("trove.db")).await.expect("db");
    let store = LocalStore::open(dir.path().join("lfs"))
        .await
        .expect("store");
    let config = Config {
        data_dir: dir.path().to_owned(),
        public_url: Some("http://127.0.0.1:9".into()),
        ..Config::default()
    };
    let mut config = config;
    tweak(&mut config);
    let alice = db
        .create_user(&RepoName::parse("alice").expect("name"), None, false)
        .await
        .expect("user");
    // Public repositories: most tokens here name no user (an anonymous reader's), and every
    // CAS request is judged again against the repository's visibility.
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let id = RepoId::new(
            RepoName::parse("alice").expect("ns"),
            RepoName::parse(name).expect("name"),
        );
        ids.push(
            db.create_repo(RepoType::Model, &id, false, alice.id, 1)
                .await
                .expect("repo")
                .id,
        );
    }
    let bob = db
        .create_user(&RepoName::parse("bob").expect("name"), None, false)
        .await
        .expect("user");
    let bobs = RepoId::new(
        RepoName::parse("bob").expect("ns"),
        RepoName::parse("c").expect("name"),
    );
    let repo_c = db
        .create_repo(RepoType::Model, &bobs, false, bob.id, 1)
        .await
        .expect("repo")
        .id;
    let git = crate::git_runtime::GitRuntime::prepare_with_hook(&config, "/nonexistent".into())
        .expect("git runtime");
    let state = AppState::on(crate::context::Context::with_git(
        config,
        db,
        store,
        UrlSigner::new(b"test key".to_vec()),
        git,
    ));
    let app = crate::http::router::build(state.clone());
    Fixture {
        _dir: dir,
        state,
        app,
        repo_a: ids[0],
        repo_b: ids[1],
        repo_c,
        alice: alice.id,
        bob: bob.id,
    }
}

impl Fixture {
    /// A token naming no user that reaches its whole namespace (the namespace rule alone).
    fn token(&self, repo_id: i64, scope: Scope) -> String {
        self.token_as(repo_id, scope, None)
    }

    /// A token of `user_id`'s reaching its whole namespace, as a member's is.
    fn token_as(&self, repo_id: i64, scope: Scope, user_id: Option<i64>) -> String {
        self.grant(CasGrant {
            repo_id,
            scope,
            user_id,
            whole_namespace: true,
        })
    }

    fn grant(&self, grant: CasGrant) -> String {
        token::issue(&self.state.signer, grant, crate::clock::now_secs() + 600)
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, bytes, headers)
    }

    fn xorb_files(&self) -> usize {
        let dir = self.state.store.root().join("xorbs");
        walk_count(&dir)
    }
}

fn walk_count(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("json body")
}

/// Three 20 KB chunks in one xorb, and the file made of all of them.
struct Upload {
    xorb_bytes: Vec<u8>,
    xorb: XetHash,
    data: Vec<u8>,
    file: ShardFile,
}

fn upload() -> Upload {
    let chunks: Vec<Vec<u8>> = (0..3u32)
        .map(|i| {
            (0..20_000u32)
                .map(|j| ((i * 7919 + j * 31) % 253) as u8)
                .collect()
        })
        .collect();
    let (xorb_bytes, xorb) = build_xorb(&chunks);
    let hashes: Vec<XetHash> = chunks.iter().map(|c| hash::chunk_hash(c)).collect();
    let sized: Vec<(XetHash, u64)> = hashes.iter().map(|h| (*h, 20_000)).collect();
    let data: Vec<u8> = chunks.concat();
    let file = ShardFile {
        file_hash: hash::file_hash(&sized),
        terms: vec![Term {
            xorb,
            chunk_start: 0,
            chunk_end: 3,
            unpacked_len: 60_000,
        }],
        verification: Some(vec![hash::range_hash(&hashes)]),
        sha256: Some(Sha256::digest(&data).into()),
    };
    Upload {
        xorb_bytes,
        xorb,
        data,
        file,
    }
}

fn xorb_uri(h: &XetHash) -> String {
    format!("/xet/v1/xorbs/default/{}", h.hex())
}

#[tokio::test]
async fn xorb_upload_is_idempotent_and_visible() {
    let f = fixture().await;
    let u = upload();
    let w = f.token(f.repo_a, Scope::Write);
    let (s, b, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["was_inserted"], true);
    let (s, b, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["was_inserted"], false);
    let (s, _, h) = f
        .call(Method::HEAD, &xorb_uri(&u.xorb), Some(&w), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-length"], u.xorb_bytes.len().to_string().as_str());
    assert_eq!(f.xorb_files(), 1);
}

#[tokio::test]
async fn bad_xorbs_are_refused_and_store_nothing() {
    let f = fixture().await;
    let u = upload();
    let w = f.token(f.repo_a, Scope::Write);
    let other = hash::chunk_hash(b"not this xorb");

    // Wrong hash in the path.
    let (s, _, h) = f
        .call(
            Method::POST,
            &xorb_uri(&other),
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        h["x-error-message"]
            .to_str()
            .expect("ascii")
            .contains("hash mismatch")
    );
    // Truncated body.
    let cut = u.xorb_bytes[..u.xorb_bytes.len() - 10].to_vec();
    let (s, _, _) = f
        .call(Method::POST, &xorb_uri(&u.xorb), Some(&w), &[], cut)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Empty body, garbage body, malformed hash.
    let (s, _, _) = f
        .call(Method::POST, &xorb_uri(&u.xorb), Some(&w), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&w),
            &[],
            vec![0xff; 1000],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/xorbs/default/xyz",
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Over the size cap: refused before it is all read.
    let huge = vec![0u8; (trove_xet::xorb::MAX_XORB_UPLOAD_BYTES + 1) as usize];
    let (s, _, _) = f
        .call(Method::POST, &xorb_uri(&u.xorb), Some(&w), &[], huge)
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(f.xorb_files(), 0);
    let (s, _, _) = f
        .call(Method::HEAD, &xorb_uri(&u.xorb), Some(&w), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        walk_count(&f.state.store.root().join("tmp")),
        0,
        "no temp file left"
    );
}

#[tokio::test]
async fn tokens_are_checked() {
    let f = fixture().await;
    let u = upload();
    let r = f.token(f.repo_a, Scope::Read);
    let w = f.token(f.repo_a, Scope::Write);
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            None,
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&r),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a read token cannot upload");
    let forged = w.replace(&format!(".{}.", f.repo_a), &format!(".{}.", f.repo_b));
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&forged),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let expired = token::issue(
        &f.state.signer,
        CasGrant {
            repo_id: f.repo_a,
            scope: Scope::Write,
            user_id: None,
            whole_namespace: true,
        },
        1,
    );
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&expired),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = f
        .call(Method::POST, "/xet/v1/shards", Some(&r), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(f.xorb_files(), 0);
}

async fn store_xorb(f: &Fixture, u: &Upload) {
    let w = f.token(f.repo_a, Scope::Write);
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn shard_registers_a_file_readable_only_through_its_repo() {
    let f = fixture().await;
    let u = upload();
    store_xorb(&f, &u).await;
    let w = f.token(f.repo_a, Scope::Write);
    let (s, b, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&w),
            &[],
            build_shard(std::slice::from_ref(&u.file)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["result"], 1);

    // The file is now an LFS object of repo A with the SHA-256 we computed.
    let sha = trove_types::Sha256Hex::from_digest(&Sha256::digest(&u.data).into());
    assert_eq!(
        f.state
            .db
            .repo_object_size(f.repo_a, &sha)
            .await
            .expect("q"),
        Some(60_000)
    );
    assert_eq!(
        f.state
            .db
            .repo_object_size(f.repo_b, &sha)
            .await
            .expect("q"),
        None
    );

    let file_uri = format!("/xet/v2/reconstructions/{}", u.file.file_hash.hex());
    let ra = f.token(f.repo_a, Scope::Read);
    let rb = f.token(f.repo_b, Scope::Read);
    let (s, _, _) = f.call(Method::GET, &file_uri, Some(&rb), &[], vec![]).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "repo B's token must not read repo A's file"
    );

    // A ranged reconstruction through v2, then the signed fetch, rebuilds the right bytes.
    let (s, b, _) = f
        .call(
            Method::GET,
            &file_uri,
            Some(&ra),
            &[("range", "bytes=25000-44999")],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let r = json(&b);
    assert_eq!(r["offset_into_first_range"], 5000);
    assert_eq!(r["terms"][0]["range"]["start"], 1);
    assert_eq!(r["terms"][0]["range"]["end"], 3);
    let entry = &r["xorbs"][u.xorb.hex()][0];
    let url = entry["url"].as_str().expect("url");
    let path = url.strip_prefix("http://127.0.0.1:9").expect("our origin");
    let (bs, be) = (
        entry["ranges"][0]["bytes"]["start"].as_u64().expect("n"),
        entry["ranges"][0]["bytes"]["end"].as_u64().expect("n"),
    );
    let range = format!("bytes={bs}-{be}");
    let (s, bytes, _) = f
        .call(Method::GET, path, None, &[("range", &range)], vec![])
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes.as_slice(), &u.xorb_bytes[bs as usize..=be as usize]);
    // Bytes outside the signed range are refused, as is a tampered URL.
    let wider = format!("bytes=0-{be}");
    if bs > 0 {
        let (s, _, _) = f
            .call(Method::GET, path, None, &[("range", &wider)], vec![])
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let tampered = path.replace(&format!("range={bs}-"), "range=0-");
    let (s, _, _) = f.call(Method::GET, &tampered, None, &[], vec![]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // v1 answers the same plan with per-range fetch_info.
    let (s, b, _) = f
        .call(
            Method::GET,
            &file_uri.replace("/v2/", "/v1/"),
            Some(&ra),
            &[],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = json(&b);
    assert_eq!(
        r["fetch_info"][u.xorb.hex()][0]["url_range"]["end"],
        u.xorb_bytes.len() - 1
    );
    // Past the end: 416.
    let (s, _, _) = f
        .call(
            Method::GET,
            &file_uri,
            Some(&ra),
            &[("range", "bytes=60000-")],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn bad_shards_are_refused_and_register_nothing() {
    let f = fixture().await;
    let u = upload();
    store_xorb(&f, &u).await;
    let w = f.token(f.repo_a, Scope::Write);
    let missing = hash::chunk_hash(b"no such xorb");

    let mut cases: Vec<(&str, ShardFile)> = Vec::new();
    let mut c = u.file.clone();
    c.terms[0].xorb = missing;
    cases.push(("missing xorb", c));
    let mut c = u.file.clone();
    c.terms[0].chunk_end = 9;
    cases.push(("chunk range out of bounds", c));
    let mut c = u.file.clone();
    c.verification = Some(vec![hash::chunk_hash(b"forged")]);
    cases.push(("wrong verification hash", c));
    let mut c = u.file.clone();
    c.sha256 = Some([0u8; 32]);
    cases.push(("wrong sha256", c));
    let mut c = u.file.clone();
    c.terms[0].unpacked_len = 59_999;
    cases.push(("wrong unpacked length", c));
    let mut c = u.file.clone();
    c.file_hash = missing;
    cases.push(("wrong file hash", c));

    for (what, file) in cases {
        let (s, b, _) = f
            .call(
                Method::POST,
                "/xet/v1/shards",
                Some(&w),
                &[],
                build_shard(&[file]),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    let shard = build_shard(std::slice::from_ref(&u.file));
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&w),
            &[],
            shard[..shard.len() / 2].to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "truncated shard");
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&w),
            &[],
            b"garbage".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // One bad file spoils the whole shard: the good one is not registered either.
    let mut bad = u.file.clone();
    bad.terms[0].xorb = missing;
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&w),
            &[],
            build_shard(&[u.file.clone(), bad]),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        f.state
            .db
            .xet_file(&u.file.file_hash.to_bytes())
            .await
            .expect("q"),
        None
    );
    let sha = trove_types::Sha256Hex::from_digest(&Sha256::digest(&u.data).into());
    assert_eq!(f.state.db.lfs_object_size(&sha).await.expect("q"), None);
}

/// Registers `u` (xorb and shard) for repository `repo`.
async fn register(f: &Fixture, repo: i64, u: &Upload) {
    let w = f.token(repo, Scope::Write);
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&w),
            &[],
            build_shard(std::slice::from_ref(&u.file)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
}

fn chunk_hashes(u: &Upload) -> Vec<XetHash> {
    u.data.chunks(20_000).map(hash::chunk_hash).collect()
}

/// The dedup query for `chunk` with a write token of `repo` (an uploader's).
async fn dedup(f: &Fixture, repo: i64, chunk: &XetHash) -> (StatusCode, Vec<u8>) {
    dedup_as(f, &f.token(repo, Scope::Write), chunk).await
}

/// The dedup query for `chunk` with `token`.
async fn dedup_as(f: &Fixture, token: &str, chunk: &XetHash) -> (StatusCode, Vec<u8>) {
    let uri = format!("/xet/v1/chunks/default/{}", chunk.hex());
    let (s, b, _) = f.call(Method::GET, &uri, Some(token), &[], vec![]).await;
    (s, b)
}

#[tokio::test]
async fn dedup_answers_a_files_first_chunk_with_its_xorbs_within_the_repo() {
    use trove_xet::dedup::{is_key_chunk, testing::client_lookup};
    let f = fixture().await;
    let u = upload();
    register(&f, f.repo_a, &u).await;
    let chunks = chunk_hashes(&u);

    let (s, body) = dedup(&f, f.repo_a, &chunks[0]).await;
    assert_eq!(s, StatusCode::OK);
    // The client finds the whole file in the answer, from its first chunk on.
    assert_eq!(client_lookup(&body, &chunks), Some((3, u.xorb, 0, 3)));

    // A chunk in the middle of a file, unless it is a key chunk, is not one clients ask about.
    if !is_key_chunk(&chunks[1]) {
        assert_eq!(
            dedup(&f, f.repo_a, &chunks[1]).await.0,
            StatusCode::NOT_FOUND
        );
    }
    // Unknown chunks, and the same chunk asked by another repository (of the same owner
    // under the default per-repository scope, or of another owner) get "no match".
    let unknown = hash::chunk_hash(b"never stored");
    assert_eq!(dedup(&f, f.repo_a, &unknown).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        dedup(&f, f.repo_b, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        dedup(&f, f.repo_c, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );

    // Malformed hashes are refused; another key prefix matches nothing.
    let t = f.token(f.repo_a, Scope::Write);
    let (s, _, h) = f
        .call(
            Method::GET,
            "/xet/v1/chunks/default-merkledb/xyz",
            Some(&t),
            &[],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(h.contains_key("x-error-message"));
    let (s, _, _) = f
        .call(
            Method::GET,
            &format!("/xet/v1/chunks/other/{}", chunks[0].hex()),
            Some(&t),
            &[],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Without a token: 401.
    let (s, _, _) = f
        .call(
            Method::GET,
            &format!("/xet/v1/chunks/default-merkledb/{}", chunks[0].hex()),
            None,
            &[],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_upload_cut_short_answers_its_uploaders_retry_from_another_machine() {
    use trove_xet::dedup::{is_key_chunk, testing::client_lookup};
    let f = fixture().await;
    let u = upload();
    // The first attempt stored its xorb and was cut short before its shard: no file names
    // the xorb, and the retry comes from a machine whose cache never saw it.
    let w = f.token(f.repo_a, Scope::Write);
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let chunks = chunk_hashes(&u);

    // The xorb's first chunk (where the upload's first file starts) finds the xorb, and
    // the client dedups the whole file against it.
    let (s, body) = dedup(&f, f.repo_a, &chunks[0]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(client_lookup(&body, &chunks), Some((3, u.xorb, 0, 3)));
    // A chunk inside it that is no key chunk is still not one clients ask about.
    if !is_key_chunk(&chunks[1]) {
        assert_eq!(
            dedup(&f, f.repo_a, &chunks[1]).await.0,
            StatusCode::NOT_FOUND
        );
    }
    // A reader of the repository, another repository of the same owner (per-repository
    // scope) and another owner's get "no match".
    let r = f.token(f.repo_a, Scope::Read);
    assert_eq!(dedup_as(&f, &r, &chunks[0]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        dedup(&f, f.repo_b, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        dedup(&f, f.repo_c, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_upload_cut_short_answers_its_uploader_from_any_repository_and_nobody_else() {
    use trove_xet::dedup::testing::client_lookup;
    let f = fixture().await;
    let u = upload();
    // Alice's upload to her repository, cut short before its shard.
    let w = f.token_as(f.repo_a, Scope::Write, Some(f.alice));
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&w),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let chunks = chunk_hashes(&u);
    // Her retry may go to a repository of another owner (a pull request to bob's): her
    // writer's query finds what she sent. Bob's, and a token naming no user, do not.
    let alice_at_c = f.token_as(f.repo_c, Scope::Write, Some(f.alice));
    let (s, body) = dedup_as(&f, &alice_at_c, &chunks[0]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(client_lookup(&body, &chunks), Some((3, u.xorb, 0, 3)));
    let bob_at_c = f.token_as(f.repo_c, Scope::Write, Some(f.bob));
    assert_eq!(
        dedup_as(&f, &bob_at_c, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        dedup(&f, f.repo_c, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );
    // A reader learns nothing of it, even hers.
    let alice_reads = f.token_as(f.repo_c, Scope::Read, Some(f.alice));
    assert_eq!(
        dedup_as(&f, &alice_reads, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn namespace_scope_answers_the_owners_other_repos_only() {
    use trove_xet::dedup::testing::client_lookup;
    let f = fixture_with(|c| c.storage.dedup_scope = crate::config::DedupScope::Namespace).await;
    let u = upload();
    register(&f, f.repo_a, &u).await;
    let chunks = chunk_hashes(&u);
    let (s, body) = dedup(&f, f.repo_b, &chunks[0]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(client_lookup(&body, &chunks[..2]), Some((2, u.xorb, 0, 2)));
    assert_eq!(
        dedup(&f, f.repo_c, &chunks[0]).await.0,
        StatusCode::NOT_FOUND
    );
    // Nor a token of the same namespace that reaches its repository alone (a contributor's,
    // or an anonymous reader's of a public repository).
    for (scope, user_id) in [(Scope::Write, Some(f.bob)), (Scope::Read, None)] {
        let one_repo = f.grant(CasGrant {
            repo_id: f.repo_b,
            scope,
            user_id,
            whole_namespace: false,
        });
        assert_eq!(
            dedup_as(&f, &one_repo, &chunks[0]).await.0,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn dedup_query_answers_no_match_and_grants_are_not_offered() {
    let f = fixture().await;
    let r = f.token(f.repo_a, Scope::Read);
    let h = hash::chunk_hash(b"x").hex();
    let (s, _, _) = f
        .call(
            Method::GET,
            &format!("/xet/v1/chunks/default-merkledb/{h}"),
            Some(&r),
            &[],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/xorb-grants/default/x",
            Some(&r),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the client falls back to direct xorb upload on 404"
    );
}

fn ndjson_frames(body: &[u8]) -> Vec<Value> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(json)
        .collect()
}

#[tokio::test]
async fn v2_shards_stream_progress_and_a_terminal_frame() {
    let f = fixture().await;
    let u = upload();
    store_xorb(&f, &u).await;
    let w = f.token(f.repo_a, Scope::Write);

    let mut bad = u.file.clone();
    bad.verification = Some(vec![hash::chunk_hash(b"forged")]);
    let (s, b, _) = f
        .call(
            Method::POST,
            "/xet/v2/shards",
            Some(&w),
            &[],
            build_shard(&[bad]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "v2 reports refusals in the stream");
    let frames = ndjson_frames(&b);
    assert_eq!(frames[0]["type"], "validating");
    let last = frames.last().expect("frames");
    assert_eq!(last["type"], "error");
    assert_eq!(last["retryable"], false);
    assert!(
        last["message"]
            .as_str()
            .expect("message")
            .contains("verification")
    );
    assert_eq!(
        f.state
            .db
            .xet_file(&u.file.file_hash.to_bytes())
            .await
            .expect("q"),
        None
    );

    let (s, b, _) = f
        .call(
            Method::POST,
            "/xet/v2/shards",
            Some(&w),
            &[],
            build_shard(std::slice::from_ref(&u.file)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ndjson_frames(&b).last().expect("frames")["type"], "result");
    assert!(
        f.state
            .db
            .xet_file(&u.file.file_hash.to_bytes())
            .await
            .expect("q")
            .is_some()
    );

    let r = f.token(f.repo_a, Scope::Read);
    let (s, _, _) = f
        .call(Method::POST, "/xet/v2/shards", Some(&r), &[], vec![])
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "auth errors stay plain HTTP statuses"
    );
}

#[tokio::test]
async fn a_xorb_held_for_another_owner_is_unknown_until_uploaded_for_this_repo() {
    let f = fixture().await;
    let u = upload();
    store_xorb(&f, &u).await;
    let wa = f.token(f.repo_a, Scope::Write);
    let shard = build_shard(std::slice::from_ref(&u.file));
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&wa),
            &[],
            shard.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let sha = trove_types::Sha256Hex::from_digest(&Sha256::digest(&u.data).into());

    // A repo of the same namespace sees it: the client reuses xorbs from its cache.
    let rb = f.token(f.repo_b, Scope::Read);
    let (s, _, _) = f
        .call(Method::HEAD, &xorb_uri(&u.xorb), Some(&rb), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::OK);

    // Bob's repo's token learns nothing about alice's xorb: HEAD answers as for a random hash…
    let wc = f.token(f.repo_c, Scope::Write);
    let rc = f.token(f.repo_c, Scope::Read);
    for token in [&wc, &rc] {
        let (s, _, _) = f
            .call(Method::HEAD, &xorb_uri(&u.xorb), Some(token), &[], vec![])
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "HEAD must not confirm A's xorb");
    }
    // … and a shard naming it cannot register the file for bob's repo.
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&wc),
            &[],
            shard.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        f.state
            .db
            .repo_object_size(f.repo_c, &sha)
            .await
            .expect("q"),
        None
    );
    let file_uri = format!("/xet/v2/reconstructions/{}", u.file.file_hash.hex());
    let (s, _, _) = f.call(Method::GET, &file_uri, Some(&rc), &[], vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The client flow for bob's repo: upload the xorb (its bytes are checked, not trusted), then the
    // shard. The store keeps one copy; bob's repo now references it and reads the file.
    let (s, _, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&wc),
            &[],
            u.xorb_bytes[..u.xorb_bytes.len() - 1].to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a damaged re-upload is refused");
    let (s, b, _) = f
        .call(
            Method::POST,
            &xorb_uri(&u.xorb),
            Some(&wc),
            &[],
            u.xorb_bytes.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json(&b)["was_inserted"],
        true,
        "new for this repo, whatever others hold"
    );
    assert_eq!(f.xorb_files(), 1);
    let (s, _, _) = f
        .call(Method::HEAD, &xorb_uri(&u.xorb), Some(&rc), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b, _) = f
        .call(Method::POST, "/xet/v1/shards", Some(&wc), &[], shard)
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(
        f.state
            .db
            .repo_object_size(f.repo_c, &sha)
            .await
            .expect("q"),
        Some(60_000)
    );
    let (s, _, _) = f.call(Method::GET, &file_uri, Some(&rc), &[], vec![]).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_repo_references_the_xorbs_of_files_linked_to_it() {
    let f = fixture().await;
    let u = upload();
    store_xorb(&f, &u).await;
    let wa = f.token(f.repo_a, Scope::Write);
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&wa),
            &[],
            build_shard(std::slice::from_ref(&u.file)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let rc = f.token(f.repo_c, Scope::Read);
    let (s, _, _) = f
        .call(Method::HEAD, &xorb_uri(&u.xorb), Some(&rc), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Bob's repo receives the same bytes another way (an LFS upload links the object).
    let sha = trove_types::Sha256Hex::from_digest(&Sha256::digest(&u.data).into());
    crate::repos::lfs::publish(&f.state, f.repo_c, &sha, 60_000)
        .await
        .expect("link");
    let (s, _, _) = f
        .call(Method::HEAD, &xorb_uri(&u.xorb), Some(&rc), &[], vec![])
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn reconstruction_and_fetch_ranges_follow_the_one_rule() {
    let f = fixture().await;
    let u = upload();
    store_xorb(&f, &u).await;
    let wa = f.token(f.repo_a, Scope::Write);
    let (s, _, _) = f
        .call(
            Method::POST,
            "/xet/v1/shards",
            Some(&wa),
            &[],
            build_shard(std::slice::from_ref(&u.file)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let ra = f.token(f.repo_a, Scope::Read);
    let file_uri = format!("/xet/v2/reconstructions/{}", u.file.file_hash.hex());
    // An unparsable Range is ignored: the whole file's plan.
    for spec in ["bytes=--1", "bytes=x-5", "bytes=", "bytes=0-1,5-6"] {
        let (s, b, _) = f
            .call(
                Method::GET,
                &file_uri,
                Some(&ra),
                &[("range", spec)],
                vec![],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{spec}");
        assert_eq!(json(&b)["offset_into_first_range"], 0, "{spec}");
    }
    let (s, _, h) = f
        .call(
            Method::GET,
            &file_uri,
            Some(&ra),
            &[("range", "bytes=70000-")],
            vec![],
        )
        .await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], "bytes */60000");
    // The signed fetch: an ignored Range sends the signed range.
    let (_, b, _) = f.call(Method::GET, &file_uri, Some(&ra), &[], vec![]).await;
    let r = json(&b);
    let url = r["xorbs"][u.xorb.hex()][0]["url"].as_str().expect("url");
    let path = url.strip_prefix("http://127.0.0.1:9").expect("our origin");
    let (s, bytes, _) = f
        .call(Method::GET, path, None, &[("range", "bytes=abc")], vec![])
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes, u.xorb_bytes);
}
