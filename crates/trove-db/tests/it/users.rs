//! User accounts.

use crate::{TestResult, name};
use trove_db::DbError;

trove_db::backend_tests! {
async fn create_and_look_up_users(db) -> TestResult {
    assert_eq!(db.count_users().await?, 0);
    let alice = db
        .create_user(&name("Alice"), Some("a@example.com"), true)
        .await?;
    assert_eq!(alice.name, "Alice");
    assert!(alice.is_admin && !alice.disabled);
    assert!(alice.created_at_ms > 0);

    assert_eq!(db.user_by_name("alice").await?.as_ref(), Some(&alice));
    assert_eq!(db.user_by_name("ALICE").await?.as_ref(), Some(&alice));
    assert_eq!(db.user_by_id(alice.id).await?.as_ref(), Some(&alice));
    assert_eq!(db.user_by_name("bob").await?, None);
    assert_eq!(db.user_by_id(alice.id + 100).await?, None);
    assert_eq!(db.count_users().await?, 1);
    Ok(())
}
}

trove_db::backend_tests! {
async fn user_names_conflict_case_insensitively(db) -> TestResult {
    db.create_user(&name("alice"), None, false).await?;
    let err = db
        .create_user(&name("ALICE"), None, false)
        .await
        .expect_err("name is taken");
    assert!(matches!(err, DbError::Conflict { what: "user" }), "{err:?}");
    assert_eq!(db.count_users().await?, 1);
    Ok(())
}
}

trove_db::backend_tests! {
async fn disabling_a_user(db) -> TestResult {
    let alice = db.create_user(&name("alice"), None, false).await?;
    assert!(db.set_user_disabled(alice.id, true).await?);
    assert!(
        db.user_by_id(alice.id)
            .await?
            .expect("still exists")
            .disabled
    );
    assert!(db.set_user_disabled(alice.id, false).await?);
    assert!(
        !db.user_by_id(alice.id)
            .await?
            .expect("still exists")
            .disabled
    );
    assert!(!db.set_user_disabled(alice.id + 1, true).await?);
    Ok(())
}
}
