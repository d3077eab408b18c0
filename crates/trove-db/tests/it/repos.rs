//! Repositories.

use crate::{TestResult, oid, repo_id, user};
use trove_db::DbError;
use trove_types::RepoType;

trove_db::backend_tests! {
async fn create_and_look_up_repos_case_insensitively(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let repo = db
        .create_repo(
            RepoType::Model,
            &repo_id("Alice/My-Model"),
            true,
            alice.id,
            42,
        )
        .await?;
    assert_eq!(
        (repo.namespace.as_str(), repo.name.as_str()),
        ("Alice", "My-Model")
    );
    assert!(repo.private);
    assert_eq!(repo.owner_user_id, Some(alice.id));
    assert_eq!((repo.created_at_ms, repo.updated_at_ms), (42, 42));
    assert_eq!(repo.repo_id()?, repo_id("Alice/My-Model"));

    let found = db
        .repo_by_name(RepoType::Model, &repo_id("alice/my-model"))
        .await?;
    assert_eq!(found.as_ref(), Some(&repo));
    // Same id, other type: a different repository.
    assert_eq!(
        db.repo_by_name(RepoType::Dataset, &repo_id("alice/my-model"))
            .await?,
        None
    );
    Ok(())
}
}

trove_db::backend_tests! {
async fn repo_ids_conflict_case_insensitively_within_a_type(db) -> TestResult {
    let alice = user(&db, "alice").await;
    db.create_repo(RepoType::Model, &repo_id("alice/m"), false, alice.id, 1)
        .await?;
    let err = db
        .create_repo(RepoType::Model, &repo_id("ALICE/M"), false, alice.id, 2)
        .await
        .expect_err("exists");
    assert!(matches!(err, DbError::Conflict { what: "repo" }), "{err:?}");
    db.create_repo(RepoType::Dataset, &repo_id("alice/m"), false, alice.id, 3)
        .await?;
    Ok(())
}
}

trove_db::backend_tests! {
async fn touch_moves_updated_at_forward_only(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let repo = db
        .create_repo(RepoType::Space, &repo_id("alice/s"), false, alice.id, 10)
        .await?;
    db.touch_repo(repo.id, 50).await?;
    db.touch_repo(repo.id, 20).await?;
    let found = db
        .repo_by_name(RepoType::Space, &repo_id("alice/s"))
        .await?
        .expect("exists");
    assert_eq!((found.created_at_ms, found.updated_at_ms), (10, 50));
    Ok(())
}
}

trove_db::backend_tests! {
async fn repo_stamps_page_through_ids_and_repos_of_type_reads_one_type(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let mut ids = Vec::new();
    for (i, (kind, name)) in [
        (RepoType::Model, "alice/a"),
        (RepoType::Space, "alice/b"),
        (RepoType::Dataset, "alice/c"),
        (RepoType::Space, "alice/d"),
        (RepoType::Model, "alice/e"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = 10 * (i as i64 + 1);
        ids.push(db.create_repo(kind, &repo_id(name), false, alice.id, at).await?.id);
    }
    db.touch_repo(ids[1], 500).await?;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = db.repo_stamps_after(after, 2).await?;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page);
    }
    assert_eq!(seen.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
    assert_eq!((seen[0].created_at_ms, seen[0].updated_at_ms), (10, 10));
    assert_eq!((seen[1].created_at_ms, seen[1].updated_at_ms), (20, 500));
    let spaces = db.repos_of_type(RepoType::Space).await?;
    assert_eq!(spaces.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[1], ids[3]]);
    Ok(())
}
}

trove_db::backend_tests! {
async fn deleting_a_repo_removes_its_object_links_but_not_the_objects(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let repo = db
        .create_repo(RepoType::Model, &repo_id("alice/m"), false, alice.id, 1)
        .await?;
    db.record_lfs_object(&oid(1), 100, 1).await?;
    db.link_repo_object(repo.id, &oid(1), 1).await?;

    assert!(db.delete_repo(repo.id).await?);
    assert!(!db.delete_repo(repo.id).await?);
    assert_eq!(
        db.repo_by_name(RepoType::Model, &repo_id("alice/m"))
            .await?,
        None
    );
    assert_eq!(db.repo_object_size(repo.id, &oid(1)).await?, None);
    assert_eq!(db.lfs_object_size(&oid(1)).await?, Some(100));

    // The name is free again, and the new repository does not inherit the old links.
    let again = db
        .create_repo(RepoType::Model, &repo_id("alice/m"), false, alice.id, 2)
        .await?;
    assert_eq!(db.repo_object_size(again.id, &oid(1)).await?, None);
    Ok(())
}
}
