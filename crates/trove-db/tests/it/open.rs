//! Opening files, reopening them, and sharing one file between two handles.

use crate::{TestResult, name, oid};
use trove_db::{Db, TokenRole};

#[tokio::test]
async fn migrations_run_on_a_fresh_file_and_reopening_keeps_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("trove.db");
    let db = Db::open(&path).await?;
    assert_eq!(db.count_users().await?, 0);
    db.create_user(&name("alice"), Some("alice@example.com"), true)
        .await?;
    db.close().await;

    let db = Db::open(&path).await?;
    let alice = db
        .user_by_name("alice")
        .await?
        .expect("alice survives a reopen");
    assert!(alice.is_admin);
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    assert_eq!(db.count_users().await?, 1);
    db.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_file_write_concurrently_without_lock_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("trove.db");
    let server = Db::open(&path).await?;
    let cli = Db::open(&path).await?;
    let owner = server.create_user(&name("owner"), None, false).await?;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40u8 {
        let db = if i % 2 == 0 {
            server.clone()
        } else {
            cli.clone()
        };
        let owner_id = owner.id;
        tasks.spawn(async move {
            db.create_user(&name(&format!("user{i}")), None, false)
                .await?;
            db.create_token(
                owner_id,
                &format!("token{i}"),
                TokenRole::Read,
                &[i; 32],
                None,
                &[],
            )
            .await?;
            db.record_lfs_object(&oid(i), u64::from(i), 1).await?;
            db.record_lfs_object(&oid(0), 7, 1).await?;
            db.touch_token(1, i64::from(i)).await?;
            Ok::<_, trove_db::DbError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    assert_eq!(cli.count_users().await?, 41);
    assert_eq!(server.list_tokens(owner.id).await?.len(), 40);
    Ok(())
}
