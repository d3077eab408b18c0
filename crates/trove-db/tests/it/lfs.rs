//! LFS objects and the repositories allowed to reference them.

use crate::{TestResult, oid, repo_id, user};
use trove_db::DbError;
use trove_types::RepoType;

trove_db::backend_tests! {
async fn recording_is_idempotent_and_keeps_the_first_size(db) -> TestResult {
    assert_eq!(db.lfs_object_size(&oid(1)).await?, None);
    db.record_lfs_object(&oid(1), 100, 1).await?;
    db.record_lfs_object(&oid(1), 999, 2).await?;
    assert_eq!(db.lfs_object_size(&oid(1)).await?, Some(100));
    Ok(())
}
}

trove_db::backend_tests! {
async fn sizes_beyond_i64_are_refused(db) -> TestResult {
    let err = db
        .record_lfs_object(&oid(1), u64::MAX, 1)
        .await
        .expect_err("too large");
    assert!(matches!(err, DbError::OutOfRange { .. }), "{err:?}");
    Ok(())
}
}

trove_db::backend_tests! {
async fn objects_are_visible_only_through_repos_they_are_linked_to(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let mallory = user(&db, "mallory").await;
    let private = db
        .create_repo(RepoType::Model, &repo_id("alice/secret"), true, alice.id, 1)
        .await?;
    let other = db
        .create_repo(RepoType::Model, &repo_id("mallory/m"), false, mallory.id, 1)
        .await?;

    db.record_lfs_object(&oid(1), 100, 1).await?;
    db.link_repo_object(private.id, &oid(1), 1).await?;
    db.link_repo_object(private.id, &oid(1), 2).await?; // idempotent

    assert_eq!(db.repo_object_size(private.id, &oid(1)).await?, Some(100));
    assert_eq!(db.repo_object_size(other.id, &oid(1)).await?, None);
    assert_eq!(db.repo_object_size(private.id, &oid(2)).await?, None);
    Ok(())
}
}

trove_db::backend_tests! {
async fn linking_needs_a_recorded_object_and_an_existing_repo(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let repo = db
        .create_repo(RepoType::Model, &repo_id("alice/m"), false, alice.id, 1)
        .await?;
    let err = db
        .link_repo_object(repo.id, &oid(9), 1)
        .await
        .expect_err("not recorded");
    assert!(matches!(err, DbError::NotFound { .. }), "{err:?}");
    db.record_lfs_object(&oid(9), 1, 1).await?;
    let err = db
        .link_repo_object(repo.id + 50, &oid(9), 1)
        .await
        .expect_err("no repo");
    assert!(matches!(err, DbError::NotFound { .. }), "{err:?}");
    Ok(())
}
}

trove_db::backend_tests! {
async fn batch_sizes_cover_only_linked_objects(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let repo = db
        .create_repo(RepoType::Dataset, &repo_id("alice/d"), false, alice.id, 1)
        .await?;
    let other = db
        .create_repo(RepoType::Dataset, &repo_id("alice/e"), false, alice.id, 1)
        .await?;

    // 1000 oids, as in the largest LFS batch request: more than one query chunk.
    let oids: Vec<_> = (0..1000u32)
        .map(|i| trove_types::Sha256Hex::parse(&format!("{i:064x}")).expect("valid hex"))
        .collect();
    for (i, o) in oids.iter().enumerate() {
        if i % 3 == 0 {
            db.record_lfs_object(o, i as u64, 1).await?;
            db.link_repo_object(repo.id, o, 1).await?;
        } else if i % 3 == 1 {
            // Recorded, but linked to another repository only.
            db.record_lfs_object(o, i as u64, 1).await?;
            db.link_repo_object(other.id, o, 1).await?;
        }
    }
    let mut asked = oids.clone();
    asked.push(oids[0].clone()); // duplicates are harmless
    let sizes = db.repo_objects_sizes(repo.id, &asked).await?;
    assert_eq!(sizes.len(), 334);
    for (i, o) in oids.iter().enumerate() {
        assert_eq!(
            sizes.get(o).copied(),
            (i % 3 == 0).then_some(i as u64),
            "oid {i}"
        );
    }
    assert!(db.repo_objects_sizes(repo.id, &[]).await?.is_empty());
    Ok(())
}
}

trove_db::backend_tests! {
async fn a_download_learns_deletion_and_xet_file_in_one_query(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let repo = db
        .create_repo(RepoType::Model, &repo_id("alice/m"), false, alice.id, 1)
        .await?;
    // Neither deleted nor held as a Xet file.
    let none = db.lfs_download(repo.id, &oid(1)).await?;
    assert!(!none.deleted && none.xet.is_none());

    // Held as a Xet file (of no xorb: terms are opaque here).
    let file = trove_db::XetFile {
        file_hash: [7; 32],
        size: 3,
        sha256: oid(1),
        terms: vec![1, 2, 3],
    };
    db.record_xet_file(repo.id, &file, &[], 5).await?;
    let held = db.lfs_download(repo.id, &oid(1)).await?;
    assert_eq!(held.xet.as_ref(), Some(&file));
    assert!(!held.deleted);
    assert_eq!(db.xet_file_by_sha256(&oid(1)).await?, held.xet);

    // Deleted permanently from the repository: said so, the Xet file still named.
    assert_eq!(db.delete_repo_lfs_files(repo.id, &[oid(1)], 6).await?, 1);
    let gone = db.lfs_download(repo.id, &oid(1)).await?;
    assert!(gone.deleted);
    assert_eq!(gone.deleted, db.repo_lfs_file_deleted(repo.id, &oid(1)).await?);
    assert_eq!(gone.xet.as_ref(), Some(&file));
    // Another repository is not concerned by that deletion.
    let other = db
        .create_repo(RepoType::Model, &repo_id("alice/n"), false, alice.id, 1)
        .await?;
    assert!(!db.lfs_download(other.id, &oid(1)).await?.deleted);
    // Linked again: served again.
    db.link_repo_object(repo.id, &oid(1), 7).await?;
    assert!(!db.lfs_download(repo.id, &oid(1)).await?.deleted);

    // Several chunkings of the same bytes: the oldest one, the same as xet_file_by_sha256's,
    // and the smaller hash between two of the same time.
    let newer = trove_db::XetFile {
        file_hash: [2; 32],
        ..file.clone()
    };
    db.record_xet_file(repo.id, &newer, &[], 9).await?;
    assert_eq!(db.lfs_download(repo.id, &oid(1)).await?.xet.as_ref(), Some(&file));
    let same_time = trove_db::XetFile {
        file_hash: [5; 32],
        ..file.clone()
    };
    db.record_xet_file(repo.id, &same_time, &[], 5).await?;
    let picked = db.lfs_download(repo.id, &oid(1)).await?;
    assert_eq!(picked.xet.as_ref(), Some(&same_time));
    assert_eq!(db.xet_file_by_sha256(&oid(1)).await?, picked.xet);
    assert!(!picked.deleted);
    Ok(())
}
}

trove_db::backend_tests! {
async fn an_uploaded_xorb_is_known_to_its_repository_or_namespace_only(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let bob = user(&db, "bob").await;
    let m1 = db
        .create_repo(RepoType::Model, &repo_id("alice/m1"), false, alice.id, 1)
        .await?;
    let m2 = db
        .create_repo(RepoType::Model, &repo_id("alice/m2"), false, alice.id, 1)
        .await?;
    let other = db
        .create_repo(RepoType::Model, &repo_id("bob/m"), false, bob.id, 1)
        .await?;
    let record = trove_db::XorbRecord {
        stored_bytes: 10,
        raw_bytes: 10,
        num_chunks: 1,
        chunk_index: vec![0; 8],
    };
    let (xorb, unlinked) = ([7u8; 32], [8u8; 32]);
    db.record_xorb(&xorb, &record, &[[9u8; 32]], 1).await?;
    db.record_xorb(&unlinked, &record, &[[10u8; 32]], 1).await?;
    db.link_repo_xorb(m1.id, &xorb, 2).await?;

    assert!(db.xorb_uploaded_to(&xorb, m1.id, false).await?);
    assert!(!db.xorb_uploaded_to(&xorb, m2.id, false).await?);
    assert!(db.xorb_uploaded_to(&xorb, m2.id, true).await?);
    assert!(!db.xorb_uploaded_to(&xorb, other.id, true).await?);
    assert!(!db.xorb_uploaded_to(&unlinked, m1.id, true).await?);
    Ok(())
}
}
