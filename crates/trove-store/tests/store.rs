//! Behaviour of the local blob store through its public API only.

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::io;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use trove_store::{LocalStore, PutOutcome, READ_CHUNK, Sha256Hex, StoreError, read_chunks};

type Body = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

fn oid_of(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex::from_digest(&Sha256::digest(bytes).into())
}

/// A body delivering `data` in chunks of `chunk` bytes.
fn body(data: &[u8], chunk: usize) -> Body {
    let chunks: Vec<_> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalStore::open(dir.path().join("store"))
        .await
        .expect("open store");
    (dir, store)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn assert_no_temp(store: &LocalStore) {
    let tmp = entries(&store.root().join("tmp"));
    assert!(tmp.is_empty(), "temp files left behind: {tmp:?}");
}

async fn read_all(store: &LocalStore, oid: &Sha256Hex) -> Vec<u8> {
    tokio::fs::read(store.local_path(oid))
        .await
        .expect("object readable")
}

#[tokio::test]
async fn put_stores_object_readable_at_local_path() {
    let (_dir, store) = store().await;
    let data = pattern(300_000, 1);
    let oid = oid_of(&data);

    let outcome = store
        .put(&oid, data.len() as u64, body(&data, 7_000))
        .await
        .expect("put");
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(
        store.size_of(&oid).await.expect("size"),
        Some(data.len() as u64)
    );
    assert_eq!(read_all(&store, &oid).await, data);
    let hex = oid.as_str();
    assert!(store.local_path(&oid).ends_with(format!(
        "objects/{}/{}/{hex}",
        &hex[..2],
        &hex[2..4]
    )));
    assert_no_temp(&store);

    let again = store
        .put(&oid, data.len() as u64, body(&data, 100_000))
        .await
        .expect("second put");
    assert_eq!(again, PutOutcome::AlreadyPresent);
    assert_no_temp(&store);
}

#[tokio::test]
async fn put_empty_object() {
    let (_dir, store) = store().await;
    let oid = oid_of(b"");
    let outcome = store.put(&oid, 0, body(b"", 1)).await.expect("put");
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(store.size_of(&oid).await.expect("size"), Some(0));
}

#[tokio::test]
async fn size_of_absent_object_is_none() {
    let (_dir, store) = store().await;
    assert_eq!(
        store.size_of(&oid_of(b"nothing")).await.expect("size"),
        None
    );
}

#[tokio::test]
async fn put_with_wrong_hash_is_refused_and_leaves_nothing() {
    let (_dir, store) = store().await;
    let data = pattern(3 << 20, 2);
    let claimed = oid_of(b"something else");

    let err = store
        .put(&claimed, data.len() as u64, body(&data, 64 << 10))
        .await
        .expect_err("must fail");
    match err {
        StoreError::HashMismatch { expected, actual } => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, oid_of(&data));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(store.size_of(&claimed).await.expect("size"), None);
    assert_eq!(store.size_of(&oid_of(&data)).await.expect("size"), None);
    assert_no_temp(&store);
}

#[tokio::test]
async fn put_with_too_many_bytes_stops_reading_early() {
    let (_dir, store) = store().await;
    // An endless body: the store must give up by itself once past the announced size.
    let endless: Body = Box::pin(stream::repeat_with(|| Ok(Bytes::from(vec![7u8; 1000]))));
    let oid = oid_of(&[7u8; 4500]);

    let err = tokio::time::timeout(Duration::from_secs(10), store.put(&oid, 4500, endless))
        .await
        .expect("put stopped reading")
        .expect_err("must fail");
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 4500,
                actual: 5000
            }
        ),
        "unexpected error {err:?}"
    );
    assert_eq!(store.size_of(&oid).await.expect("size"), None);
    assert_no_temp(&store);
}

#[tokio::test]
async fn put_with_too_few_bytes_is_refused() {
    let (_dir, store) = store().await;
    let data = pattern(10_000, 3);
    let oid = oid_of(&data);

    let err = store
        .put(&oid, 10_000, body(&data[..9_999], 1000))
        .await
        .expect_err("must fail");
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 10_000,
                actual: 9_999
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.size_of(&oid).await.expect("size"), None);
    assert_no_temp(&store);
}

#[tokio::test]
async fn body_error_midway_leaves_nothing_visible() {
    let (_dir, store) = store().await;
    let data = pattern(4 << 20, 4);
    let oid = oid_of(&data);
    // Enough bytes for batches to be in flight when the error arrives.
    let good = stream::iter(
        data[..3 << 20]
            .chunks(256 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let failing: Body = Box::pin(good.chain(stream::once(async {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        ))
    })));

    let err = store
        .put(&oid, data.len() as u64, failing)
        .await
        .expect_err("must fail");
    match err {
        StoreError::Body(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(store.size_of(&oid).await.expect("size"), None);
    assert_no_temp(&store);
}

#[tokio::test]
async fn dropped_put_removes_its_temp_file() {
    let (_dir, store) = store().await;
    let data = pattern(2 << 20, 5);
    let oid = oid_of(&data);
    // The client sends half, then stalls forever; the caller gives up (drops the future).
    let half = stream::iter(vec![Ok(Bytes::copy_from_slice(&data[..1 << 20]))]);
    let stalled: Body = Box::pin(half.chain(stream::pending()));

    let result = tokio::time::timeout(
        Duration::from_millis(200),
        store.put(&oid, data.len() as u64, stalled),
    )
    .await;
    assert!(result.is_err(), "put should still be waiting for the body");
    assert_eq!(store.size_of(&oid).await.expect("size"), None);
    assert_no_temp(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_the_same_oid_both_succeed() {
    let (_dir, store) = store().await;
    let data = pattern(5 << 20, 6);
    let oid = oid_of(&data);

    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (store, oid, data) = (store.clone(), oid.clone(), data.clone());
            tokio::spawn(async move {
                store
                    .put(&oid, data.len() as u64, body(&data, 100_000 + i * 4096))
                    .await
            })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.expect("task").expect("put");
        assert!(matches!(
            outcome,
            PutOutcome::Stored | PutOutcome::AlreadyPresent
        ));
    }
    assert_eq!(read_all(&store, &oid).await, data);
    let dir = store.local_path(&oid).parent().expect("parent").to_owned();
    assert_eq!(entries(&dir), vec![oid.to_string()]);
    assert_no_temp(&store);
}

#[tokio::test]
async fn put_of_64_mib_streams_through() {
    let (_dir, store) = store().await;
    const CHUNK: usize = 64 << 10;
    const CHUNKS: usize = 1024; // 64 MiB in total, generated lazily, never held whole
    let chunk_at = |i: usize| Bytes::from(pattern(CHUNK, (i % 251) as u8));
    let mut hasher = Sha256::new();
    for i in 0..CHUNKS {
        hasher.update(chunk_at(i));
    }
    let oid = Sha256Hex::from_digest(&hasher.finalize().into());
    let lazy: Body = Box::pin(stream::iter(0..CHUNKS).map(move |i| Ok(chunk_at(i))));

    let outcome = store
        .put(&oid, (CHUNK * CHUNKS) as u64, lazy)
        .await
        .expect("put");
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(
        store.size_of(&oid).await.expect("size"),
        Some((CHUNK * CHUNKS) as u64)
    );
    assert_no_temp(&store);
}

#[tokio::test]
async fn open_range_checks_bounds() {
    let (_dir, store) = store().await;
    let data = pattern(1000, 7);
    let oid = oid_of(&data);
    store.put(&oid, 1000, body(&data, 333)).await.expect("put");

    let read = async |start: u64, end: u64| {
        let (file, len) = store
            .open_range(&oid, start, end)
            .await
            .expect("open")
            .expect("present");
        assert_eq!(len, end - start);
        let mut out = Vec::new();
        file.take(len).read_to_end(&mut out).await.expect("read");
        out
    };
    assert_eq!(read(0, 1000).await, data);
    assert_eq!(read(100, 250).await, &data[100..250]);
    assert_eq!(read(999, 1000).await, &data[999..]);
    assert_eq!(read(1000, 1000).await, b"");

    for (start, end) in [(0, 1001), (500, 400), (1001, 1002)] {
        let err = store
            .open_range(&oid, start, end)
            .await
            .expect_err("out of bounds");
        assert!(
            matches!(err, StoreError::RangeNotSatisfiable { size: 1000, .. }),
            "{err:?}"
        );
    }
    assert!(
        store
            .open_range(&oid_of(b"absent"), 0, 0)
            .await
            .expect("open")
            .is_none()
    );
}

#[tokio::test]
async fn read_chunks_streams_a_range_in_bounded_chunks() {
    let (_dir, store) = store().await;
    let data = pattern(READ_CHUNK * 3 + 1234, 9);
    let oid = oid_of(&data);
    let size = data.len() as u64;
    store
        .put(&oid, size, body(&data, 65_536))
        .await
        .expect("put");

    for (start, end) in [(0, size), (100, size - 7), (5, 5), (size - 1, size)] {
        let (file, len) = store
            .open_range(&oid, start, end)
            .await
            .expect("open")
            .expect("present");
        let chunks: Vec<Bytes> = read_chunks(file, len)
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        assert!(
            chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= READ_CHUNK)
        );
        assert_eq!(chunks.concat(), &data[start as usize..end as usize]);
    }
}

#[tokio::test]
async fn read_chunks_reports_a_file_shorter_than_promised() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("short");
    std::fs::write(&path, pattern(1000, 3)).expect("write");
    let file = tokio::fs::File::open(&path).await.expect("open");
    let results: Vec<_> = read_chunks(file, 5000).collect().await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].as_ref().expect("first chunk").len(), 1000);
    let err = results[1].as_ref().expect_err("then an error");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

const PART: u64 = 256 << 10;

/// An object of two full parts and a short last one, and an upload begun for it.
async fn begin_three_parts(store: &LocalStore) -> (Vec<u8>, Sha256Hex, String) {
    let data = pattern((2 * PART + PART / 3) as usize, 8);
    let oid = oid_of(&data);
    let id = store
        .multipart_begin(&oid, data.len() as u64, PART)
        .await
        .expect("begin");
    (data, oid, id)
}

fn part_of(data: &[u8], n: u32) -> &[u8] {
    let start = (u64::from(n - 1) * PART) as usize;
    &data[start..(start + PART as usize).min(data.len())]
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(bytes)))
}

#[tokio::test]
async fn multipart_happy_path_with_short_last_part() {
    let (_dir, store) = store().await;
    let (data, oid, id) = begin_three_parts(&store).await;
    assert!(uuid::Uuid::try_parse(&id).is_ok());

    for n in 1..=3 {
        let part = part_of(&data, n);
        let etag = store
            .multipart_put_part(&id, n, body(part, 50_000))
            .await
            .expect("part");
        assert_eq!(etag, etag_of(part));
    }
    assert_eq!(
        store.size_of(&oid).await.expect("size"),
        None,
        "not visible before complete"
    );

    let outcome = store.multipart_complete(&id).await.expect("complete");
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(read_all(&store, &oid).await, data);
    assert!(entries(&store.root().join("multipart")).is_empty());
    assert_no_temp(&store);

    let err = store
        .multipart_complete(&id)
        .await
        .expect_err("already completed");
    assert!(matches!(err, StoreError::UploadNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn multipart_parts_may_arrive_out_of_order_and_survive_reopen() {
    let (dir, store) = store().await;
    let (data, oid, id) = begin_three_parts(&store).await;
    store
        .multipart_put_part(&id, 3, body(part_of(&data, 3), 10_000))
        .await
        .expect("part 3");
    store
        .multipart_put_part(&id, 1, body(part_of(&data, 1), 10_000))
        .await
        .expect("part 1");
    drop(store);

    let store = LocalStore::open(dir.path().join("store"))
        .await
        .expect("reopen");
    store
        .multipart_put_part(&id, 2, body(part_of(&data, 2), 10_000))
        .await
        .expect("part 2");
    assert_eq!(
        store.multipart_complete(&id).await.expect("complete"),
        PutOutcome::Stored
    );
    assert_eq!(read_all(&store, &oid).await, data);
}

#[tokio::test]
async fn multipart_part_of_wrong_length_is_refused_and_not_counted() {
    let (_dir, store) = store().await;
    let (data, _oid, id) = begin_three_parts(&store).await;
    store
        .multipart_put_part(&id, 1, body(part_of(&data, 1), 65_536))
        .await
        .expect("part 1");

    // Too short: a full part's length was expected.
    let err = store
        .multipart_put_part(&id, 2, body(&part_of(&data, 2)[1..], 65_536))
        .await
        .expect_err("short");
    assert!(
        matches!(err, StoreError::PartSizeMismatch { part: 2, expected: PART, actual } if actual == PART - 1),
        "{err:?}"
    );
    // Too long: the last part is short.
    let err = store
        .multipart_put_part(&id, 3, body(part_of(&data, 2), 65_536))
        .await
        .expect_err("long");
    assert!(
        matches!(err, StoreError::PartSizeMismatch { part: 3, .. }),
        "{err:?}"
    );
    // A failed resend of a finished part un-counts it.
    let err = store
        .multipart_put_part(&id, 1, body(b"tiny", 4))
        .await
        .expect_err("short resend");
    assert!(
        matches!(
            err,
            StoreError::PartSizeMismatch {
                part: 1,
                expected: PART,
                actual: 4
            }
        ),
        "{err:?}"
    );

    let err = store
        .multipart_complete(&id)
        .await
        .expect_err("parts missing");
    match err {
        StoreError::MissingParts { missing } => assert_eq!(missing, vec![1, 2, 3]),
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test]
async fn multipart_complete_with_missing_part_keeps_the_upload() {
    let (_dir, store) = store().await;
    let (data, oid, id) = begin_three_parts(&store).await;
    store
        .multipart_put_part(&id, 1, body(part_of(&data, 1), 100_000))
        .await
        .expect("part 1");
    store
        .multipart_put_part(&id, 3, body(part_of(&data, 3), 100_000))
        .await
        .expect("part 3");

    let err = store
        .multipart_complete(&id)
        .await
        .expect_err("part 2 missing");
    match err {
        StoreError::MissingParts { missing } => assert_eq!(missing, vec![2]),
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(store.size_of(&oid).await.expect("size"), None);

    store
        .multipart_put_part(&id, 2, body(part_of(&data, 2), 100_000))
        .await
        .expect("part 2");
    assert_eq!(
        store.multipart_complete(&id).await.expect("complete"),
        PutOutcome::Stored
    );
    assert_eq!(read_all(&store, &oid).await, data);
}

#[tokio::test]
async fn multipart_resent_part_replaces_the_first() {
    let (_dir, store) = store().await;
    let (data, oid, id) = begin_three_parts(&store).await;
    let wrong = pattern(PART as usize, 99);
    store
        .multipart_put_part(&id, 2, body(&wrong, 100_000))
        .await
        .expect("wrong bytes, right length");
    for n in 1..=3 {
        let etag = store
            .multipart_put_part(&id, n, body(part_of(&data, n), 30_000))
            .await
            .expect("part");
        assert_eq!(etag, etag_of(part_of(&data, n)));
    }
    assert_eq!(
        store.multipart_complete(&id).await.expect("complete"),
        PutOutcome::Stored
    );
    assert_eq!(read_all(&store, &oid).await, data);
}

#[tokio::test]
async fn multipart_hash_mismatch_discards_the_upload() {
    let (_dir, store) = store().await;
    let (data, oid, id) = begin_three_parts(&store).await;
    let mut corrupted = part_of(&data, 2).to_vec();
    corrupted[1234] ^= 1;
    store
        .multipart_put_part(&id, 1, body(part_of(&data, 1), 100_000))
        .await
        .expect("part 1");
    store
        .multipart_put_part(&id, 2, body(&corrupted, 100_000))
        .await
        .expect("part 2");
    store
        .multipart_put_part(&id, 3, body(part_of(&data, 3), 100_000))
        .await
        .expect("part 3");

    let err = store
        .multipart_complete(&id)
        .await
        .expect_err("hash mismatch");
    assert!(
        matches!(&err, StoreError::HashMismatch { expected, .. } if *expected == oid),
        "{err:?}"
    );
    assert_eq!(store.size_of(&oid).await.expect("size"), None);
    assert!(entries(&store.root().join("multipart")).is_empty());
    assert_no_temp(&store);
    let err = store
        .multipart_put_part(&id, 1, body(part_of(&data, 1), 100_000))
        .await
        .expect_err("discarded");
    assert!(matches!(err, StoreError::UploadNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn multipart_already_present_object() {
    let (_dir, store) = store().await;
    let (data, oid, id) = begin_three_parts(&store).await;
    store
        .put(&oid, data.len() as u64, body(&data, 1 << 20))
        .await
        .expect("put");
    for n in 1..=3 {
        store
            .multipart_put_part(&id, n, body(part_of(&data, n), 1 << 20))
            .await
            .expect("part");
    }
    assert_eq!(
        store.multipart_complete(&id).await.expect("complete"),
        PutOutcome::AlreadyPresent
    );
    assert!(entries(&store.root().join("multipart")).is_empty());
    assert_no_temp(&store);
}

#[tokio::test]
async fn multipart_part_numbers_outside_the_upload_are_refused() {
    let (_dir, store) = store().await;
    let (_data, _oid, id) = begin_three_parts(&store).await;
    for n in [0, 4, u32::MAX] {
        let err = store
            .multipart_put_part(&id, n, body(b"x", 1))
            .await
            .expect_err("bad part");
        assert!(
            matches!(err, StoreError::InvalidPartNumber { parts: 3, .. }),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn multipart_begin_refuses_unusable_part_sizes() {
    let (_dir, store) = store().await;
    let oid = oid_of(b"x");
    for (size, part_size) in [(10, 0), (10_001, 1)] {
        let err = store
            .multipart_begin(&oid, size, part_size)
            .await
            .expect_err("bad part size");
        assert!(matches!(err, StoreError::InvalidPartSize { .. }), "{err:?}");
    }
    assert_no_temp(&store);
}

#[tokio::test]
async fn multipart_abort_discards_everything() {
    let (_dir, store) = store().await;
    let (data, oid, id) = begin_three_parts(&store).await;
    store
        .multipart_put_part(&id, 1, body(part_of(&data, 1), 100_000))
        .await
        .expect("part 1");
    store.multipart_abort(&id).await.expect("abort");
    assert!(entries(&store.root().join("multipart")).is_empty());
    assert_no_temp(&store);
    assert_eq!(store.size_of(&oid).await.expect("size"), None);

    let err = store.multipart_abort(&id).await.expect_err("gone");
    assert!(matches!(err, StoreError::UploadNotFound { .. }), "{err:?}");
    let err = store.multipart_complete(&id).await.expect_err("gone");
    assert!(matches!(err, StoreError::UploadNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn invalid_upload_ids_are_refused() {
    let (_dir, store) = store().await;
    let (_data, _oid, id) = begin_three_parts(&store).await;
    let bad = [
        "../x".to_owned(),
        String::new(),
        "..".to_owned(),
        id.to_uppercase(),
        format!("{{{id}}}"),
        id.replace('-', ""),
        format!("urn:uuid:{id}"),
        format!("{id}/../{id}"),
        format!("{id} "),
    ];
    for s in &bad {
        let err = store
            .multipart_put_part(s, 1, body(b"x", 1))
            .await
            .expect_err("bad id");
        assert!(matches!(err, StoreError::InvalidUploadId), "{s:?}: {err:?}");
        let err = store.multipart_complete(s).await.expect_err("bad id");
        assert!(matches!(err, StoreError::InvalidUploadId), "{s:?}: {err:?}");
        let err = store.multipart_abort(s).await.expect_err("bad id");
        assert!(matches!(err, StoreError::InvalidUploadId), "{s:?}: {err:?}");
    }
    let unknown = uuid::Uuid::new_v4().hyphenated().to_string();
    let err = store
        .multipart_put_part(&unknown, 1, body(b"x", 1))
        .await
        .expect_err("unknown id");
    assert!(matches!(err, StoreError::UploadNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn open_removes_stale_temp_files_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("store");
    let store = LocalStore::open(root.clone()).await.expect("open");
    let old = root.join("tmp").join("put-old");
    let fresh = root.join("tmp").join("put-fresh");
    std::fs::write(&old, b"partial").expect("write");
    std::fs::write(&fresh, b"in flight").expect("write");
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .expect("open")
        .set_modified(two_days_ago)
        .expect("set mtime");
    drop(store);

    let _store = LocalStore::open(root.clone()).await.expect("reopen");
    assert_eq!(entries(&root.join("tmp")), vec!["put-fresh".to_owned()]);
}
