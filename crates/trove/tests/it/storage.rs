//! One chunk store: plain LFS uploads are cut into Xet chunks on the server and packed into
//! xorbs, deduplicated against everything the store holds, and read back through the one
//! reconstruction path.

use crate::app::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use trove_types::Sha256Hex;
use trove_xet::XetHash;
use trove_xet::chunk::{MAX_CHUNK, chunk_all};

const LFS_JSON: &str = "application/vnd.git-lfs+json";

/// `len` incompressible, reproducible bytes.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Bytes of every xorb in the store.
pub(crate) fn xorb_bytes(root: &Path) -> u64 {
    let Ok(dirs) = std::fs::read_dir(root.join("xorbs")) else {
        return 0;
    };
    dirs.flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

async fn create(app: &TestApp, name: &str) {
    let r = app
        .post("/api/repos/create")
        .token(&app.admin_token)
        .json(&json!({"name": name}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
}

/// Asks the LFS batch API of model `repo` (`admin/…`) to upload `data`: its oid and the
/// signed transfer URL's path and query, `None` when the hub holds the object already.
pub(crate) async fn plan_lfs_upload(
    app: &TestApp,
    repo: &str,
    data: &[u8],
) -> (String, Option<String>) {
    let oid = hex::encode(Sha256::digest(data));
    let r = app
        .post(&format!("/admin/{repo}.git/info/lfs/objects/batch"))
        .token(&app.admin_token)
        .header("accept", LFS_JSON)
        .json(&json!({
            "operation": "upload", "transfers": ["basic"],
            "objects": [{"oid": oid, "size": data.len()}], "hash_algo": "sha256"
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    let planned: Value = r.json();
    let path = planned["objects"][0]["actions"]["upload"]["href"]
        .as_str()
        .map(|href| href[href.find("/_lfs/").expect("a transfer URL")..].to_owned());
    (oid, path)
}

/// PUTs `data` to the transfer URL path `url`, expecting 200.
pub(crate) async fn put_lfs_object(app: &TestApp, url: &str, data: &[u8]) {
    let put = app
        .request(Method::PUT, url)
        .body(data.to_vec())
        .send()
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.error());
}

/// Uploads `data` to model `name` through the LFS basic transfer; returns its oid.
pub(crate) async fn lfs_upload(app: &TestApp, name: &str, data: &[u8]) -> String {
    let (oid, url) = plan_lfs_upload(app, name, data).await;
    put_lfs_object(app, &url.expect("an upload action"), data).await;
    oid
}

pub(crate) async fn commit_pointer(app: &TestApp, name: &str, path: &str, oid: &str, size: usize) {
    let body = [
        json!({"key": "header", "value": {"summary": "weights", "description": ""}}),
        json!({"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}}),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let r = app
        .post(&format!("/api/models/admin/{name}/commit/main"))
        .token(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
}

#[tokio::test]
async fn an_lfs_upload_becomes_a_xet_file_with_the_clients_file_hash() {
    let app = TestApp::new().await;
    create(&app, "ckpt").await;
    let data = random_bytes(1, 3 << 20);
    let oid = lfs_upload(&app, "ckpt", &data).await;
    let sha = Sha256Hex::parse(&oid).expect("oid");

    let file = app
        .state
        .db
        .xet_file_by_sha256(&sha)
        .await
        .expect("query")
        .expect("held as a Xet file");
    let chunks: Vec<(XetHash, u64)> = chunk_all(&data).iter().map(|c| (c.hash, c.len)).collect();
    assert_eq!(
        XetHash::from_bytes(file.file_hash),
        trove_xet::hash::file_hash(&chunks),
        "the file hash a Xet client computes for the same bytes"
    );
    assert!(
        !app.state.store.staging().local_path(&sha).exists(),
        "no whole-file copy is left beside the xorbs"
    );
    // Incompressible bytes: the xorbs hold the data plus one 8-byte header per chunk.
    let stored = xorb_bytes(app.state.store.root());
    assert_eq!(stored, data.len() as u64 + 8 * chunks.len() as u64);

    commit_pointer(&app, "ckpt", "model.bin", &oid, data.len()).await;
    let got = app
        .get("/admin/ckpt/resolve/main/model.bin")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.body == data,
        "the bytes read back through reconstruction"
    );
    // The download kept its xorbs' indices: the next one plans from them, the same bytes.
    assert!(!app.state.xorb_indices.is_empty());
    let again = app
        .get("/admin/ckpt/resolve/main/model.bin")
        .token(&app.admin_token)
        .send()
        .await;
    assert!(again.status == StatusCode::OK && again.body == data);
    let ranged = app
        .get("/admin/ckpt/resolve/main/model.bin")
        .token(&app.admin_token)
        .header("range", "bytes=1000000-1500000")
        .send()
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert!(ranged.body == data[1_000_000..=1_500_000]);
}

/// Bytes that exercise every packing choice: random (stored raw), half-precision-like
/// weights (byte-grouped), long runs of zeros (repeated chunks), text (LZ4).
fn mixed_bytes() -> Vec<u8> {
    let mut data = random_bytes(31, 1_300_000);
    data.extend((0..1_500_000u32).flat_map(|i| {
        let r = random_bytes(u64::from(i / 1000), 1)[0];
        [r, 0x3c | (r & 1)]
    }));
    data.extend(std::iter::repeat_n(0u8, 700_000));
    data.extend(b"the same words again and again ".repeat(30_000));
    data.extend(random_bytes(32, 999_999));
    data
}

/// Every xorb file of the store: (name, bytes), sorted.
fn xorb_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(root.join("xorbs"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| {
            (
                f.file_name().to_string_lossy().into_owned(),
                std::fs::read(f.path()).expect("read xorb"),
            )
        })
        .collect();
    out.sort();
    out
}

async fn held_file(app: &TestApp, oid: &Sha256Hex) -> trove_db::XetFile {
    app.state
        .db
        .xet_file_by_sha256(oid)
        .await
        .expect("query")
        .expect("a Xet file")
}

async fn repo_id(app: &TestApp, name: &str) -> i64 {
    app.state
        .db
        .repo_by_name(
            trove_types::RepoType::Model,
            &trove_types::RepoId::parse(&format!("admin/{name}")).expect("id"),
        )
        .await
        .expect("query")
        .expect("repo")
        .id
}

/// The basic transfer chunks a body while it arrives; a multipart upload or a migration
/// chunks the stored object in one pass. Both must build the very same xorbs and file.
#[tokio::test]
async fn a_streamed_upload_and_a_one_pass_ingestion_build_the_same_xorbs_and_file() {
    let data = mixed_bytes();
    let oid = Sha256Hex::parse(&hex::encode(Sha256::digest(&data))).expect("oid");

    let streamed = TestApp::new().await;
    create(&streamed, "w").await;
    assert_eq!(lfs_upload(&streamed, "w", &data).await, oid.as_str());

    let one_pass = TestApp::new().await;
    create(&one_pass, "w").await;
    let id = repo_id(&one_pass, "w").await;
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data.clone()))]);
    one_pass
        .state
        .store
        .put(&oid, data.len() as u64, body)
        .await
        .expect("put");
    let report = trove::repos::ingest::ingest_object(&one_pass.state, id, &oid, data.len() as u64)
        .await
        .expect("ingest");
    assert!(
        report.new_chunks < report.chunks,
        "{report:?}: the zeros repeat"
    );
    assert!(report.new_xorbs >= 1);

    let (a, b) = (
        held_file(&streamed, &oid).await,
        held_file(&one_pass, &oid).await,
    );
    assert_eq!(a.file_hash, b.file_hash);
    assert_eq!(a.terms, b.terms, "the same terms over the same xorbs");
    let chunks: Vec<(XetHash, u64)> = chunk_all(&data).iter().map(|c| (c.hash, c.len)).collect();
    assert_eq!(
        XetHash::from_bytes(a.file_hash),
        trove_xet::hash::file_hash(&chunks)
    );
    let xorbs = xorb_files(streamed.state.store.root());
    assert!(!xorbs.is_empty());
    assert!(
        xorbs == xorb_files(one_pass.state.store.root()),
        "byte-identical xorbs under the same names"
    );
    for app in [&streamed, &one_pass] {
        assert!(
            app.state.store.size_of(&oid).await.expect("size").is_none(),
            "the whole-file copy is gone"
        );
    }

    // The same body in pieces of uneven sizes, as a connection delivers it: chunks span
    // pieces and batches, and still the same xorbs and file come out.
    let pieced = TestApp::new().await;
    create(&pieced, "w").await;
    let id = repo_id(&pieced, "w").await;
    trove::repos::lfs::receive(
        &pieced.state,
        id,
        &oid,
        data.len() as u64,
        uneven_pieces(&data),
    )
    .await
    .expect("receive");
    let c = held_file(&pieced, &oid).await;
    assert_eq!((c.file_hash, &c.terms), (a.file_hash, &a.terms));
    assert!(xorbs == xorb_files(pieced.state.store.root()));
    assert!(
        pieced
            .state
            .store
            .size_of(&oid)
            .await
            .expect("size")
            .is_none()
    );
}

/// `data` as a body stream of pieces from 1 byte to about 300 KB.
fn uneven_pieces(
    data: &[u8],
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin + 'static
{
    let mut pieces = Vec::new();
    let (mut at, mut size) = (0, 1);
    while at < data.len() {
        let end = (at + size).min(data.len());
        pieces.push(Ok(bytes::Bytes::copy_from_slice(&data[at..end])));
        at = end;
        size = (size * 7 + 13) % 300_000 + 1;
    }
    futures_util::stream::iter(pieces)
}

/// Files in the store's `tmp/`.
pub(crate) fn temp_files(root: &Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(root.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .collect()
}

/// A body that breaks off midway (the client went away), or that runs past its announced
/// size, after several MiB were packed: refused, and nothing of it stays — no xorb, no
/// chunk-index entry, no staging file.
#[tokio::test]
async fn an_upload_cut_short_or_too_long_leaves_nothing() {
    let app = TestApp::new().await;
    create(&app, "w").await;
    let id = repo_id(&app, "w").await;
    let data = random_bytes(43, 20 << 20);
    let oid = Sha256Hex::parse(&hex::encode(Sha256::digest(&data))).expect("oid");
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = data[..12 << 20]
        .chunks(256 << 10)
        .map(|p| Ok(bytes::Bytes::copy_from_slice(p)))
        .chain([Err(std::io::Error::other("connection reset"))])
        .collect();
    let cut = futures_util::stream::iter(pieces);
    let err = trove::repos::lfs::receive(&app.state, id, &oid, data.len() as u64, cut)
        .await
        .expect_err("a broken body");
    assert!(format!("{err:?}").contains("connection reset"), "{err:?}");
    // One byte short of its announced size, then a byte too many.
    let short = uneven_pieces(&data[..data.len() - 1]);
    trove::repos::lfs::receive(&app.state, id, &oid, data.len() as u64, short)
        .await
        .expect_err("short");
    let mut long = data.clone();
    long.push(0);
    trove::repos::lfs::receive(
        &app.state,
        id,
        &oid,
        data.len() as u64,
        uneven_pieces(&long),
    )
    .await
    .expect_err("long");

    assert!(
        app.state
            .db
            .xet_file_by_sha256(&oid)
            .await
            .expect("query")
            .is_none()
    );
    let hashes: Vec<[u8; 32]> = chunk_all(&data).iter().map(|c| c.hash.to_bytes()).collect();
    assert!(
        app.state
            .db
            .chunk_locations(&hashes)
            .await
            .expect("query")
            .is_empty(),
        "no chunk of the refused bodies is indexed"
    );
    assert_eq!(xorb_bytes(app.state.store.root()), 0, "no xorb published");
    let left = temp_files(app.state.store.root());
    assert!(left.is_empty(), "staging left: {left:?}");

    // The whole body afterwards goes through, once the same bytes are known: a second
    // upload of them to another repo writes nothing new.
    trove::repos::lfs::receive(
        &app.state,
        id,
        &oid,
        data.len() as u64,
        uneven_pieces(&data),
    )
    .await
    .expect("receive");
    let stored = xorb_bytes(app.state.store.root());
    assert!(stored > data.len() as u64);
    create(&app, "v").await;
    let other = repo_id(&app, "v").await;
    trove::repos::lfs::receive(
        &app.state,
        other,
        &oid,
        data.len() as u64,
        uneven_pieces(&data),
    )
    .await
    .expect("receive again");
    assert_eq!(
        xorb_bytes(app.state.store.root()),
        stored,
        "nothing written twice"
    );
    assert!(temp_files(app.state.store.root()).is_empty());
}

/// A body that does not hash to the oid it was announced as is refused, and the chunks the
/// stage found while it arrived are never used: no xorb, no chunk-index entry, no file.
#[tokio::test]
async fn a_body_with_the_wrong_sha256_leaves_nothing_visible_and_no_chunk_indexed() {
    let app = TestApp::new().await;
    create(&app, "w").await;
    let data = random_bytes(41, 3 << 20);
    let mut claimed = data.clone();
    claimed[12_345] ^= 1;
    let oid = hex::encode(Sha256::digest(&claimed));
    let r = app
        .post("/admin/w.git/info/lfs/objects/batch")
        .token(&app.admin_token)
        .header("accept", LFS_JSON)
        .json(&json!({
            "operation": "upload", "transfers": ["basic"],
            "objects": [{"oid": oid, "size": data.len()}], "hash_algo": "sha256"
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.error());
    let planned: Value = r.json();
    let href = planned["objects"][0]["actions"]["upload"]["href"]
        .as_str()
        .expect("an upload action");
    let at = href.find("/_lfs/").expect("a transfer URL");
    let put = app
        .request(Method::PUT, &href[at..])
        .body(data.clone())
        .send()
        .await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST, "{:?}", put.error());

    let sha = Sha256Hex::parse(&oid).expect("oid");
    assert!(
        app.state
            .db
            .xet_file_by_sha256(&sha)
            .await
            .expect("query")
            .is_none()
    );
    let hashes: Vec<[u8; 32]> = chunk_all(&data).iter().map(|c| c.hash.to_bytes()).collect();
    assert!(
        app.state
            .db
            .chunk_locations(&hashes)
            .await
            .expect("query")
            .is_empty(),
        "no chunk of the refused body is indexed"
    );
    assert_eq!(xorb_bytes(app.state.store.root()), 0, "no xorb written");
    assert!(
        app.state.store.size_of(&sha).await.expect("size").is_none(),
        "the whole-file copy is gone"
    );
    let tmp: Vec<_> = std::fs::read_dir(app.state.store.root().join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");

    // The right bytes afterwards go through.
    lfs_upload(&app, "w", &data).await;
    assert!(xorb_bytes(app.state.store.root()) > data.len() as u64);
}

#[tokio::test]
async fn a_changed_variant_costs_only_its_changed_bytes() {
    let app = TestApp::new().await;
    create(&app, "base").await;
    create(&app, "tuned").await;
    let base = random_bytes(2, 4 << 20);
    lfs_upload(&app, "base", &base).await;
    let after_base = xorb_bytes(app.state.store.root());

    // 10% of the bytes changed in one run, 1 KiB inserted elsewhere.
    let mut tuned = base.clone();
    let changed = random_bytes(3, base.len() / 10);
    tuned[1 << 20..(1 << 20) + changed.len()].copy_from_slice(&changed);
    let insert_at = 3 << 20;
    tuned.splice(insert_at..insert_at, random_bytes(4, 1024));
    let oid = lfs_upload(&app, "tuned", &tuned).await;
    let growth = xorb_bytes(app.state.store.root()) - after_base;
    let edited = (changed.len() + 1024) as u64;
    // Each edit boundary may cost up to two chunks on either side that straddle it.
    let slack = 4 * MAX_CHUNK as u64;
    assert!(
        growth >= edited && growth <= edited + slack,
        "growth {growth} for {edited} changed bytes"
    );

    // The same bytes again, to another repository: nothing new is stored.
    create(&app, "copy").await;
    lfs_upload(&app, "copy", &tuned).await;
    assert_eq!(
        xorb_bytes(app.state.store.root()) - after_base,
        growth,
        "a second upload of held bytes stores nothing"
    );
    commit_pointer(&app, "copy", "model.bin", &oid, tuned.len()).await;
    let got = app
        .get("/admin/copy/resolve/main/model.bin")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == tuned);
}

/// One upload of N × 64 MiB of new bytes fills its xorbs to the format's limit: ⌈N⌉ xorbs,
/// plus one for what the records' headers push past the last. (In S3 mode the last 64 MiB
/// are cut in two halves instead, the same count: `ingest::stream::tail_limit`.)
#[tokio::test]
async fn an_upload_of_new_bytes_fills_its_xorbs() {
    let app = TestApp::new().await;
    create(&app, "big").await;
    let cap = trove_xet::pack::MAX_PACKED_BYTES;
    let data = random_bytes(64, 2 * cap as usize);
    let oid = lfs_upload(&app, "big", &data).await;
    let oid = Sha256Hex::parse(&oid).expect("oid");
    let file = held_file(&app, &oid).await;
    let terms = trove_xet::shard::decode_terms(&file.terms).expect("terms");
    let mut xorbs: Vec<XetHash> = terms.iter().map(|t| t.xorb).collect();
    xorbs.dedup();
    assert_eq!(xorbs.len(), 3, "{terms:?}");
    let stored: Vec<u64> = xorb_files(app.state.store.root())
        .iter()
        .map(|(_, bytes)| bytes.len() as u64)
        .collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    let full = stored
        .iter()
        .filter(|&&len| len + 256 * 1024 >= cap)
        .count();
    assert_eq!(full, 2, "two xorbs within 256 KiB of the cap: {stored:?}");
}

#[tokio::test]
async fn repeated_chunks_within_one_file_are_stored_once() {
    let app = TestApp::new().await;
    create(&app, "zeros").await;
    let data = vec![0u8; 10 * MAX_CHUNK + 123];
    let oid = lfs_upload(&app, "zeros", &data).await;
    // Ten identical maximal chunks and a tail, each stored once and compressed.
    let stored = xorb_bytes(app.state.store.root());
    assert!(stored < 4096, "stored {stored}");
    commit_pointer(&app, "zeros", "z.bin", &oid, data.len()).await;
    let got = app
        .get("/admin/zeros/resolve/main/z.bin")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == data);
}

#[tokio::test]
async fn migration_moves_whole_objects_into_the_chunk_store_and_can_run_again() {
    let app = TestApp::new().await;
    create(&app, "legacy").await;
    let repo = app
        .state
        .db
        .repo_by_name(
            trove_types::RepoType::Model,
            &trove_types::RepoId::parse("admin/legacy").expect("id"),
        )
        .await
        .expect("query")
        .expect("repo");
    // An object as stores held them before: whole, recorded and linked, no Xet file.
    let data = random_bytes(11, 700_000);
    let oid = Sha256Hex::parse(&hex::encode(Sha256::digest(&data))).expect("oid");
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data.clone()))]);
    app.state
        .store
        .put(&oid, data.len() as u64, body)
        .await
        .expect("put");
    app.state
        .db
        .record_lfs_object(&oid, data.len() as u64, 1)
        .await
        .expect("record");
    app.state
        .db
        .link_repo_object(repo.id, &oid, 1)
        .await
        .expect("link");
    // An orphan nobody links is left for GC.
    let orphan = random_bytes(12, 1000);
    let orphan_oid = Sha256Hex::parse(&hex::encode(Sha256::digest(&orphan))).expect("oid");
    app.state
        .store
        .put(
            &orphan_oid,
            orphan.len() as u64,
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(orphan))]),
        )
        .await
        .expect("put");

    let report = trove::storage::migrate::migrate(&app.state, |_, _| {})
        .await
        .expect("migrate");
    assert_eq!(
        (report.migrated, report.unlinked_skipped, report.failed),
        (1, 1, 0)
    );
    assert!(!app.state.store.staging().local_path(&oid).exists());
    assert!(
        app.state
            .db
            .xet_file_by_sha256(&oid)
            .await
            .expect("query")
            .is_some()
    );
    let again = trove::storage::migrate::migrate(&app.state, |_, _| {})
        .await
        .expect("migrate again");
    assert_eq!(again.migrated, 0, "nothing left to do");

    commit_pointer(&app, "legacy", "old.bin", oid.as_str(), data.len()).await;
    let got = app
        .get("/admin/legacy/resolve/main/old.bin")
        .token(&app.admin_token)
        .send()
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == data);
}

#[tokio::test]
async fn fsck_names_the_files_a_damaged_xorb_affects() {
    let app = TestApp::new().await;
    create(&app, "checked").await;
    let data = random_bytes(21, 500_000);
    let oid = lfs_upload(&app, "checked", &data).await;
    let clean = trove::storage::fsck::check(&app.state).await.expect("fsck");
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!((clean.xorbs_checked, clean.files_checked), (1, 1));
    assert!(clean.chunks_checked >= 4);

    // Flip one byte inside the (raw-stored) chunk data of the only xorb.
    let xorb = std::fs::read_dir(app.state.store.root().join("xorbs"))
        .expect("xorbs")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).expect("prefix").flatten())
        .next()
        .expect("a xorb")
        .path();
    let mut bytes = std::fs::read(&xorb).expect("read");
    bytes[1000] ^= 0xff;
    std::fs::write(&xorb, bytes).expect("write");

    let report = trove::storage::fsck::check(&app.state).await.expect("fsck");
    assert!(!report.is_clean());
    assert_eq!(report.damaged_xorbs.len(), 1);
    assert_eq!(report.damaged_files.len(), 1);
    assert_eq!(report.damaged_files[0].name, oid);
}
