//! One suite over the storage interface ([`Store`]), run against every backend: the local
//! directory always, and the S3 backend on a real S3 server when `TROVE_TEST_S3_URL`
//! (`s3://bucket?endpoint=http://127.0.0.1:PORT&region=R`, with `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`) is set, as `scripts/test.sh` does. Each S3 test writes under a
//! fresh key prefix of its own.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::time::Duration;
use trove_store::{
    PutOutcome, ReadyXorb, ReceivedXorb, S3Checksum, S3Config, Sha256Hex, Store, StoreError,
};

fn body(data: &[u8], piece: usize) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + Unpin {
    let parts: Vec<Result<Bytes, io::Error>> = data
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(parts)
}

fn oid_of(data: &[u8]) -> Sha256Hex {
    Sha256Hex::from_digest(&Sha256::digest(data).into())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2654435761)
                .wrapping_add(u64::from(seed)) as u8
                ^ (i >> 13) as u8
        })
        .collect()
}

async fn collect(mut s: trove_store::ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("stream chunk"));
    }
    out
}

/// The S3 server the test script started, if any: (config without prefix).
fn s3_config() -> Option<S3Config> {
    let url = std::env::var("TROVE_TEST_S3_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let rest = url
        .strip_prefix("s3://")
        .expect("TROVE_TEST_S3_URL starts with s3://");
    let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut endpoint = None;
    let mut region = "us-east-1".to_owned();
    let mut checksum = S3Checksum::default();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("endpoint", v)) => endpoint = Some(v.to_owned()),
            Some(("region", v)) => region = v.to_owned(),
            Some(("checksum", "sha256")) => checksum = S3Checksum::Sha256,
            _ => {}
        }
    }
    Some(S3Config {
        bucket: bucket.trim_end_matches('/').to_owned(),
        prefix: String::new(),
        endpoint,
        region,
        access_key_id: std::env::var("AWS_ACCESS_KEY_ID")
            .expect("AWS_ACCESS_KEY_ID with TROVE_TEST_S3_URL"),
        secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY")
            .expect("AWS_SECRET_ACCESS_KEY with TROVE_TEST_S3_URL"),
        session_token: None,
        checksum,
        memory: trove_store::SMALL_S3_MEMORY,
    })
}

/// Every backend to test, each on a fresh temp dir (and a fresh key prefix); the S3 store
/// with the small memory budget (every xorb through a staging file: the path the default's
/// packing budget falls back to when it is used up).
async fn backends() -> Vec<(&'static str, Store, tempfile::TempDir)> {
    backends_with(trove_store::SMALL_S3_MEMORY).await
}

/// An S3 store's memory budget large enough to pack and receive xorbs in memory (six 64 MiB
/// xorbs beside 512 MiB of publishes).
const IN_MEMORY: u64 = 896 << 20;

/// [`backends`], the S3 store with `memory` bytes for upload bodies.
async fn backends_with(memory: u64) -> Vec<(&'static str, Store, tempfile::TempDir)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Store::open_local(dir.path().join("lfs"))
        .await
        .expect("local store");
    out.push(("local", local, dir));
    if let Some(mut config) = s3_config() {
        config.prefix = format!("test-{}/", uuid::Uuid::new_v4().simple());
        config.memory = memory;
        let dir = tempfile::tempdir().expect("tempdir");
        let s3 = Store::open_s3(dir.path().join("lfs"), config)
            .await
            .expect("S3 store opens and probes");
        out.push(("s3", s3, dir));
    } else {
        eprintln!("TROVE_TEST_S3_URL not set: the S3 backend is not tested in this run");
    }
    out
}

fn tmp_is_empty(store: &Store) -> bool {
    std::fs::read_dir(store.root().join("tmp"))
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_read_ranges() {
    for (name, store, _dir) in backends().await {
        let data = pattern(300_000, 1);
        let oid = oid_of(&data);
        assert_eq!(store.size_of(&oid).await.expect("size"), None, "{name}");
        let outcome = store
            .put(&oid, data.len() as u64, body(&data, 7_777))
            .await
            .expect("put");
        assert_eq!(outcome, PutOutcome::Stored, "{name}");
        assert_eq!(
            store.size_of(&oid).await.expect("size"),
            Some(data.len() as u64),
            "{name}"
        );
        for (start, end) in [
            (0, data.len()),
            (1, 2),
            (12_345, 250_001),
            (data.len(), data.len()),
        ] {
            let (stream, len) = store
                .open_range(&oid, start as u64, end as u64)
                .await
                .expect("open")
                .expect("present");
            assert_eq!(len, (end - start) as u64, "{name}");
            assert!(
                collect(stream).await == data[start..end],
                "{name} {start}..{end}"
            );
        }
        let past = store.open_range(&oid, 10, data.len() as u64 + 1).await;
        assert!(
            matches!(past, Err(StoreError::RangeNotSatisfiable { .. })),
            "{name}"
        );
        let again = store
            .put(&oid, data.len() as u64, body(&data, 65_536))
            .await
            .expect("put");
        assert_eq!(again, PutOutcome::AlreadyPresent, "{name}");
        assert_eq!(
            store.whole_objects().await.expect("list"),
            vec![(oid.clone(), data.len() as u64)],
            "{name}"
        );
        let copy = store
            .local_copy(&oid)
            .await
            .expect("copy")
            .expect("present");
        assert!(
            std::fs::read(copy.path()).expect("read copy") == data,
            "{name}"
        );
        drop(copy);
        assert!(store.remove_object(&oid).await.expect("remove"), "{name}");
        assert_eq!(store.size_of(&oid).await.expect("size"), None, "{name}");
        assert!(
            store.open_range(&oid, 0, 1).await.expect("open").is_none(),
            "{name}"
        );
        assert!(
            store.local_copy(&oid).await.expect("copy").is_none(),
            "{name}"
        );
        assert!(tmp_is_empty(&store), "{name}: no temp file left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hash_or_size_is_refused_and_nothing_is_visible() {
    for (name, store, _dir) in backends().await {
        let data = pattern(10_000, 2);
        let wrong = oid_of(b"something else");
        let err = store
            .put(&wrong, data.len() as u64, body(&data, 999))
            .await
            .expect_err("hash");
        assert!(
            matches!(err, StoreError::HashMismatch { .. }),
            "{name}: {err}"
        );
        let oid = oid_of(&data);
        let err = store
            .put(&oid, data.len() as u64 + 1, body(&data, 999))
            .await
            .expect_err("short");
        assert!(
            matches!(err, StoreError::SizeMismatch { .. }),
            "{name}: {err}"
        );
        let err = store
            .put(&oid, data.len() as u64 - 1, body(&data, 999))
            .await
            .expect_err("long");
        assert!(
            matches!(err, StoreError::SizeMismatch { .. }),
            "{name}: {err}"
        );
        for o in [&wrong, &oid] {
            assert_eq!(store.size_of(o).await.expect("size"), None, "{name}");
        }
        assert!(
            store.whole_objects().await.expect("list").is_empty(),
            "{name}"
        );
        assert!(tmp_is_empty(&store), "{name}: no temp file left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_publish_in_parts_and_multipart_uploads_complete_in_staging() {
    for (name, store, _dir) in backends().await {
        // Larger than one PUT: the S3 backend publishes it as a multipart upload.
        let whole = pattern(trove_store::SINGLE_PUT_MAX as usize + 3_000_001, 9);
        let whole_oid = oid_of(&whole);
        store
            .put(&whole_oid, whole.len() as u64, body(&whole, 1 << 20))
            .await
            .expect("put");
        let (stream, len) = store
            .open_range(&whole_oid, 0, whole.len() as u64)
            .await
            .expect("open")
            .expect("present");
        assert_eq!(len, whole.len() as u64, "{name}");
        assert!(collect(stream).await == whole, "{name}: bytes equal");

        let data = pattern(trove_store::SINGLE_PUT_MAX as usize + 3_000_001, 3);
        let oid = oid_of(&data);
        let part = 5 << 20;
        let id = store
            .multipart_begin(&oid, data.len() as u64, part)
            .await
            .expect("begin");
        let parts: Vec<&[u8]> = data.chunks(part as usize).collect();
        for n in (1..=parts.len()).rev() {
            store
                .multipart_put_part(&id, n as u32, body(parts[n - 1], 100_000))
                .await
                .expect("part");
        }
        assert_eq!(
            store.size_of(&oid).await.expect("size"),
            None,
            "{name}: not before complete"
        );
        store.multipart_complete(&id).await.expect("complete");
        // The verified whole is at hand for ingestion; in S3 mode it stays in staging (its
        // bytes go to the bucket as xorbs, never whole).
        let copy = store
            .local_copy(&oid)
            .await
            .expect("copy")
            .expect("present");
        assert!(
            std::fs::read(copy.path()).expect("read") == data,
            "{name}: bytes equal"
        );
        let in_store = store.size_of(&oid).await.expect("size");
        if store.is_remote() {
            assert_eq!(in_store, None, "{name}: never published whole");
        } else {
            assert_eq!(in_store, Some(data.len() as u64), "{name}");
        }
        drop(copy);
        store.remove_object(&oid).await.expect("remove");
        assert!(
            store.local_copy(&oid).await.expect("copy").is_none(),
            "{name}"
        );

        // A multipart upload whose bytes do not hash to the oid publishes nothing.
        let other = pattern(6 << 20, 4);
        let claimed = oid_of(b"not these bytes");
        let id = store
            .multipart_begin(&claimed, other.len() as u64, part)
            .await
            .expect("begin");
        for (i, p) in other.chunks(part as usize).enumerate() {
            store
                .multipart_put_part(&id, i as u32 + 1, body(p, 1 << 20))
                .await
                .expect("part");
        }
        let err = store.multipart_complete(&id).await.expect_err("hash");
        assert!(
            matches!(err, StoreError::HashMismatch { .. }),
            "{name}: {err}"
        );
        assert_eq!(store.size_of(&claimed).await.expect("size"), None, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xorbs_publish_list_read_trash_restore_discard() {
    for (name, store, _dir) in backends().await {
        let hex = "ab".repeat(32);
        let chunks = pattern(200_000, 5);
        let mut with_footer = chunks.clone();
        with_footer.extend_from_slice(b"FOOTER");
        assert!(!store.has_xorb(&hex).await.expect("has"), "{name}");
        let staged = store
            .stage_xorb(body(&with_footer, 33_333), 1 << 20)
            .await
            .expect("stage");
        let outcome = store
            .publish_xorb(staged, &hex, chunks.len() as u64)
            .await
            .expect("publish");
        assert_eq!(outcome, PutOutcome::Stored, "{name}");
        assert!(store.has_xorb(&hex).await.expect("has"), "{name}");
        assert_eq!(
            store.xorb_size(&hex).await.expect("size"),
            Some(chunks.len() as u64),
            "{name}"
        );
        assert_eq!(
            store.stored_xorbs().await.expect("list"),
            vec![(hex.clone(), chunks.len() as u64)],
            "{name}"
        );
        let part = store
            .open_xorb_range(&hex, 1000, 150_000)
            .await
            .expect("open")
            .expect("present");
        assert!(collect(part).await == chunks[1000..150_000], "{name}");
        let (s, h) = (store.clone(), hex.clone());
        let read = tokio::task::spawn_blocking(move || {
            let mut r = s.open_xorb_at(&h, 77).expect("open").expect("present");
            let mut out = Vec::new();
            r.read_to_end(&mut out).expect("read");
            out
        })
        .await
        .expect("join");
        assert!(read == chunks[77..], "{name}: blocking reader");
        let again = store
            .stage_xorb(body(&chunks, 1 << 16), 1 << 20)
            .await
            .expect("stage");
        assert_eq!(
            store
                .publish_xorb(again, &hex, chunks.len() as u64)
                .await
                .expect("publish"),
            PutOutcome::AlreadyPresent,
            "{name}"
        );

        let trashed = store
            .trash_xorb(&hex)
            .await
            .expect("trash")
            .expect("was stored");
        assert!(
            !store.has_xorb(&hex).await.expect("has"),
            "{name}: hidden while trashed"
        );
        assert!(
            store.stored_xorbs().await.expect("list").is_empty(),
            "{name}"
        );
        assert_eq!(
            store.trashed_xorbs().await.expect("list").len(),
            1,
            "{name}"
        );
        store.restore_xorb(&hex, trashed).await.expect("restore");
        assert!(store.has_xorb(&hex).await.expect("has"), "{name}: restored");
        assert!(
            store.trashed_xorbs().await.expect("list").is_empty(),
            "{name}"
        );
        let trashed = store
            .trash_xorb(&hex)
            .await
            .expect("trash")
            .expect("was stored");
        store.discard_trashed_xorb(trashed).await.expect("discard");
        assert!(!store.has_xorb(&hex).await.expect("has"), "{name}");
        assert!(
            store.trash_xorb(&hex).await.expect("trash").is_none(),
            "{name}"
        );
        assert!(
            store.trashed_xorbs().await.expect("list").is_empty(),
            "{name}"
        );
        assert!(
            store
                .open_xorb_range(&hex, 0, 1)
                .await
                .expect("open")
                .is_none(),
            "{name}"
        );

        let err = store
            .stage_xorb(body(&chunks, 1000), 100)
            .await
            .expect_err("limit");
        assert!(matches!(err, StoreError::TooLarge { limit: 100 }), "{name}");
        assert!(tmp_is_empty(&store), "{name}: no temp file left");
        store.probe().await.expect("probe");
    }
}

/// The blocking xorb reader works from a thread that never entered a runtime (a scoped
/// thread of the shard check's decoder, say): the S3 store waits on the runtime it was
/// opened in, not on the caller's, which such a thread does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_xorb_read_works_from_a_thread_outside_the_runtime() {
    for (name, store, _dir) in backends().await {
        let hex = "cd".repeat(32);
        let chunks = pattern(300_000, 9);
        let staged = store
            .stage_xorb(body(&chunks, 65_536), 1 << 20)
            .await
            .expect("stage");
        store
            .publish_xorb(staged, &hex, chunks.len() as u64)
            .await
            .expect("publish");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (s, h) = (store.clone(), hex.clone());
        let thread = std::thread::spawn(move || {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "a plain thread has no runtime"
            );
            let read = s.open_xorb_at(&h, 1234).map(|reader| {
                let mut out = Vec::new();
                reader.map(|mut r| r.read_to_end(&mut out).map(|_| out))
            });
            let absent = s.open_xorb_at(&"ef".repeat(32), 0).map(|r| r.is_none());
            let _ = done_tx.send((read, absent));
        });
        let (read, absent) = done_rx.await.expect("the reading thread answers");
        thread.join().expect("the reading thread ends");
        let read = read
            .unwrap_or_else(|e| panic!("{name}: open from a plain thread: {e}"))
            .expect("present")
            .expect("read");
        assert!(read == chunks[1234..], "{name}: the bytes from 1234 on");
        assert!(absent.expect("open"), "{name}: an absent xorb is None");
    }
}

/// A presigned URL fetches the object without credentials; a xorb URL bound to one range
/// fetches that range, and another range is refused.
/// Publishes a xorb put in the bucket (`ready`) as `hex`: stored (not there before), and
/// read back whole as `expected`.
async fn publish_and_read_back(store: &Store, ready: ReadyXorb, hex: &str, expected: &[u8]) {
    assert_eq!(
        store.publish_ready_xorb(ready, hex).await.expect("publish"),
        PutOutcome::Stored
    );
    let read = store
        .open_xorb_range(hex, 0, expected.len() as u64)
        .await
        .expect("open")
        .expect("present");
    assert_eq!(collect(read).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xorbs_packed_in_memory_go_to_the_bucket_within_the_budget() {
    use std::io::Write;
    for (name, store, _dir) in backends_with(IN_MEMORY).await {
        let xorb = 64 << 20;
        let Some(mut buffer) = store.xorb_buffer(1 << 20) else {
            assert_eq!(name, "local", "only the local store packs into files alone");
            continue;
        };
        // Sized for 1 MiB: writing past it fails, what was written stays.
        let chunks = pattern(700_000, 9);
        buffer.write_all(&chunks).expect("fits");
        assert!(buffer.write_all(&chunks).is_err(), "past its size");
        assert_eq!(buffer.len(), chunks.len());
        let hex = "cd".repeat(32);
        let ready = store
            .ready_xorb_buffer(buffer, &hex)
            .await
            .expect("put from memory");
        publish_and_read_back(&store, ready, &hex, &chunks).await;
        // Create-if-absent: a second copy of the same xorb is not put again.
        let mut again = store.xorb_buffer(1 << 20).expect("room again");
        again.write_all(&chunks).expect("fits");
        let ready = store.ready_xorb_buffer(again, &hex).await.expect("again");
        assert_eq!(
            store.publish_ready_xorb(ready, &hex).await.expect("again"),
            PutOutcome::AlreadyPresent
        );
        // The node-wide budget: six 64 MiB xorbs at once, then none until one is dropped
        // (its memory is reserved, not allocated, until written).
        let held: Vec<_> = (0..6)
            .map(|i| {
                store
                    .xorb_buffer(xorb)
                    .unwrap_or_else(|| panic!("room for {i}"))
            })
            .collect();
        assert!(store.xorb_buffer(xorb).is_none(), "the budget is used up");
        assert!(store.xorb_buffer(1).is_none(), "even for a small one");
        drop(held);
        assert!(store.xorb_buffer(xorb).is_some(), "given back on drop");
        assert!(tmp_is_empty(&store), "nothing staged on disk");
    }
}

/// A raw xorb the server packs is held as the pieces it is made of (records' headers and
/// the chunks' bytes as received) and put as one object, within its limit and the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xorbs_held_as_pieces_go_to_the_bucket_as_one_object() {
    for (name, store, _dir) in backends_with(IN_MEMORY).await {
        let Some(mut held) = store.xorb_pieces(1 << 20) else {
            assert_eq!(name, "local", "only the local store packs into files alone");
            continue;
        };
        let body = pattern(700_000, 13);
        // Uneven pieces, an empty one among them: sent in order, as one object.
        for piece in [
            &body[..8],
            &body[8..100_008],
            &body[100_008..100_008],
            &body[100_008..],
        ] {
            held.push(Bytes::copy_from_slice(piece))
                .expect("within the limit");
        }
        assert_eq!(held.len(), body.len() as u64);
        let hex = "ab".repeat(32);
        let ready = store
            .ready_xorb_pieces(held, &hex)
            .await
            .expect("put as pieces");
        publish_and_read_back(&store, ready, &hex, &body).await;
        // Past its limit: refused.
        let mut small = store.xorb_pieces(1 << 20).expect("room");
        small
            .push(Bytes::from(vec![0u8; 1 << 20]))
            .expect("exactly the limit");
        assert!(small.push(Bytes::from_static(b"x")).is_err(), "past it");
        drop(small);
        // The same node-wide budget as xorbs packed into buffers.
        let held: Vec<_> = (0..6)
            .map(|i| {
                store
                    .xorb_pieces(64 << 20)
                    .unwrap_or_else(|| panic!("room for {i}"))
            })
            .collect();
        assert!(
            store.xorb_pieces(64 << 20).is_none(),
            "the budget is used up"
        );
        assert!(store.xorb_buffer(1).is_none(), "for buffers too");
        drop(held);
        assert!(store.xorb_pieces(64 << 20).is_some(), "given back on drop");
        assert!(tmp_is_empty(&store), "nothing staged on disk");
    }
}

/// A client's xorb body is received (in memory in S3 mode while the budget has room, else
/// staged), published once validated (its first `content_len` bytes), create-if-absent;
/// one past its limit is refused and leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_xorbs_publish_from_memory_or_staging() {
    for (name, store, _dir) in backends_with(IN_MEMORY).await {
        let chunks = pattern(300_000, 11);
        let mut with_footer = chunks.clone();
        with_footer.extend_from_slice(b"FOOTER");
        let hex = "ef".repeat(32);
        let received = store
            .receive_xorb(body(&with_footer, 17_000), 1 << 20)
            .await
            .expect("receive");
        let in_memory = matches!(received, ReceivedXorb::Memory(_));
        assert_eq!(
            in_memory,
            name == "s3",
            "{name}: held in memory in S3 mode only"
        );
        if in_memory {
            assert!(tmp_is_empty(&store), "{name}: nothing staged on disk");
        }
        let outcome = store
            .publish_received_xorb(received, &hex, chunks.len() as u64)
            .await
            .expect("publish");
        assert_eq!(outcome, PutOutcome::Stored, "{name}");
        let read = store
            .open_xorb_range(&hex, 0, chunks.len() as u64)
            .await
            .expect("open")
            .expect("present");
        assert!(
            collect(read).await == chunks,
            "{name}: the footer is not published"
        );
        assert_eq!(
            store.xorb_size(&hex).await.expect("size"),
            Some(chunks.len() as u64),
            "{name}"
        );
        let again = store
            .receive_xorb(body(&chunks, 4096), 1 << 20)
            .await
            .expect("receive again");
        assert_eq!(
            store
                .publish_received_xorb(again, &hex, chunks.len() as u64)
                .await
                .expect("again"),
            PutOutcome::AlreadyPresent,
            "{name}"
        );
        let err = store
            .receive_xorb(body(&chunks, 1000), 100_000)
            .await
            .expect_err("limit");
        assert!(
            matches!(err, StoreError::TooLarge { limit: 100_000 }),
            "{name}"
        );
        assert!(tmp_is_empty(&store), "{name}: no temp file left");

        // With the node's budget for in-memory xorbs used up, it is staged instead.
        let held: Vec<_> = std::iter::from_fn(|| store.xorb_buffer(64 << 20)).collect();
        assert!(held.len() <= 6, "{name}");
        let hex2 = "ee".repeat(32);
        let received = store
            .receive_xorb(body(&chunks, 65_536), 1 << 20)
            .await
            .expect("receive");
        assert!(matches!(received, ReceivedXorb::Staged(_)), "{name}");
        store
            .publish_received_xorb(received, &hex2, chunks.len() as u64)
            .await
            .expect("publish staged");
        assert_eq!(
            store.xorb_size(&hex2).await.expect("size"),
            Some(chunks.len() as u64),
            "{name}"
        );
        drop(held);
        assert!(tmp_is_empty(&store), "{name}: the staging file is gone");
    }
}

/// Under the default memory budget no xorb is held whole: a server-built one has no memory
/// to be packed in, a client's 40 MiB one is staged, and its publish goes to the bucket in
/// parts (read back intact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_small_budget_xorbs_are_staged_and_published_in_parts() {
    for (name, store, _dir) in backends().await {
        if name == "local" {
            continue;
        }
        assert!(store.xorb_buffer(1 << 20).is_none(), "no packing budget");
        let chunks = pattern(40 << 20, 13);
        let hex = "ab".repeat(32);
        let received = store
            .receive_xorb(body(&chunks, 1 << 20), 66 << 20)
            .await
            .expect("receive");
        assert!(matches!(received, ReceivedXorb::Staged(_)), "staged");
        let outcome = store
            .publish_received_xorb(received, &hex, chunks.len() as u64)
            .await
            .expect("publish in parts");
        assert_eq!(outcome, PutOutcome::Stored);
        let read = store
            .open_xorb_range(&hex, 0, chunks.len() as u64)
            .await
            .expect("open")
            .expect("present");
        assert!(collect(read).await == chunks, "the same bytes");
        assert!(tmp_is_empty(&store), "no staging file left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_fetch_exactly_what_they_name() {
    for (name, store, _dir) in backends().await {
        let data = pattern(50_000, 6);
        let oid = oid_of(&data);
        store
            .put(&oid, data.len() as u64, body(&data, 4096))
            .await
            .expect("put");
        let ttl = Duration::from_secs(60);
        let Some(url) = store.presign_object(&oid, ttl).await.expect("presign") else {
            assert_eq!(name, "local", "only the local store streams everything");
            continue;
        };
        let got = http_get(&url, None).await;
        assert_eq!(got.0, 200, "{name}");
        assert!(got.1 == data, "{name}");

        let hex = "cd".repeat(32);
        let staged = store
            .stage_xorb(body(&data, 4096), 1 << 20)
            .await
            .expect("stage");
        store
            .publish_xorb(staged, &hex, data.len() as u64)
            .await
            .expect("publish");
        let url = store
            .presign_xorb(&hex, Some((100, 1099)), ttl)
            .await
            .expect("presign")
            .expect("a bucket URL");
        let got = http_get(&url, Some("bytes=100-1099")).await;
        assert_eq!(got.0, 206, "{name}");
        assert!(got.1 == data[100..1100], "{name}");
        let other = http_get(&url, Some("bytes=0-49999")).await;
        assert_eq!(other.0, 403, "{name}: another range is refused");
    }
}

/// A GET with an optional `Range`: (status, body). Plain HTTP/1.1 over a TCP socket, as the
/// test server is on loopback.
async fn http_get(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut conn = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(r) = range {
        req.push_str(&format!("Range: {r}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end")
        + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut bodyb = raw[split..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bodyb = dechunk(&bodyb);
    }
    (status, bodyb)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
    out
}

/// Wrong credentials, a missing bucket and an unreachable endpoint fail at open, with the
/// store's own error, not later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_s3_configuration_fails_at_open() {
    let Some(good) = s3_config() else {
        eprintln!("TROVE_TEST_S3_URL not set: skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "wrong secret",
            S3Config {
                secret_access_key: "not-the-secret".into(),
                ..good.clone()
            },
        ),
        (
            "missing bucket",
            S3Config {
                bucket: "no-such-bucket-trove".into(),
                ..good.clone()
            },
        ),
        (
            "unreachable",
            S3Config {
                endpoint: Some(format!("http://127.0.0.1:{}", closed_port())),
                ..good.clone()
            },
        ),
    ];
    for (what, config) in cases {
        let started = std::time::Instant::now();
        let err = Store::open_s3(dir.path().join("lfs"), config)
            .await
            .expect_err(what);
        // A store that answers refuses (Backend); one that does not answer is out of reach.
        let kind_as_expected = match &err {
            StoreError::Unreachable { .. } => what == "unreachable",
            StoreError::Backend { .. } => what != "unreachable",
            _ => false,
        };
        assert!(kind_as_expected, "{what}: {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: fails promptly"
        );
        eprintln!("{what}: {err}");
    }
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
