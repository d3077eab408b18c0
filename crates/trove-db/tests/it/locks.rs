//! Git LFS locks: one per path and repository, listed by page, removed by id.

use crate::{TestResult, repo_id, user};
use trove_db::{LockOutcome, LockQuery};
use trove_types::RepoType;

trove_db::backend_tests! {
async fn a_path_is_locked_once_per_repository(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let bob = user(&db, "bob").await;
    let a = db
        .create_repo(RepoType::Model, &repo_id("alice/a"), false, alice.id, 1)
        .await?;
    let b = db
        .create_repo(RepoType::Model, &repo_id("alice/b"), false, alice.id, 1)
        .await?;
    let LockOutcome::Created(first) = db
        .create_lfs_lock(a.id, "w.bin", Some("refs/heads/main"), alice.id, 5)
        .await?
    else {
        panic!("first lock must be created");
    };
    assert_eq!(first.owner_name, "alice");
    assert_eq!(first.ref_name.as_deref(), Some("refs/heads/main"));
    let again = db.create_lfs_lock(a.id, "w.bin", None, bob.id, 6).await?;
    assert_eq!(again, LockOutcome::AlreadyLocked(first.clone()));
    // Another repository, same path: independent.
    assert!(matches!(
        db.create_lfs_lock(b.id, "w.bin", None, bob.id, 7).await?,
        LockOutcome::Created(_)
    ));
    assert_eq!(db.lfs_lock(a.id, first.id).await?, Some(first.clone()));
    assert_eq!(db.lfs_lock(b.id, first.id).await?, None, "ids are per repo");
    assert!(db.delete_lfs_lock(a.id, first.id).await?);
    assert!(!db.delete_lfs_lock(a.id, first.id).await?);
    assert!(matches!(
        db.create_lfs_lock(a.id, "w.bin", None, bob.id, 8).await?,
        LockOutcome::Created(_)
    ));
    Ok(())
}
}

trove_db::backend_tests! {
async fn locks_list_by_filter_and_page(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let bob = user(&db, "bob").await;
    let repo = db
        .create_repo(RepoType::Dataset, &repo_id("alice/d"), true, alice.id, 1)
        .await?;
    for (i, owner) in [alice.id, bob.id, alice.id].into_iter().enumerate() {
        db.create_lfs_lock(repo.id, &format!("f{i}"), None, owner, 1)
            .await?;
    }
    let all = db
        .list_lfs_locks(
            repo.id,
            &LockQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(
        all.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(),
        ["f0", "f1", "f2"]
    );
    let page = db
        .list_lfs_locks(
            repo.id,
            &LockQuery {
                limit: 2,
                after_id: Some(all[0].id),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].path, "f1");
    let bobs = db
        .list_lfs_locks(
            repo.id,
            &LockQuery {
                limit: 10,
                owner_user_id: Some(bob.id),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(bobs.len(), 1);
    let by_path = db
        .list_lfs_locks(
            repo.id,
            &LockQuery {
                limit: 10,
                path: Some("f2"),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(by_path.len(), 1);
    let by_id = db
        .list_lfs_locks(
            repo.id,
            &LockQuery {
                limit: 10,
                id: Some(all[1].id),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(by_id[0].path, "f1");
    // Deleting the repository removes its locks.
    assert!(db.delete_repo(repo.id).await?);
    assert!(
        db.list_lfs_locks(
            repo.id,
            &LockQuery {
                limit: 10,
                ..Default::default()
            }
        )
        .await?
        .is_empty()
    );
    Ok(())
}
}
