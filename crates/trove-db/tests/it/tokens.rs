//! API tokens.

use crate::{TestResult, user};
use trove_db::{DbError, TokenRole};

trove_db::backend_tests! {
async fn create_look_up_list_and_revoke_tokens(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let read = db
        .create_token(alice.id, "laptop", TokenRole::Read, b"hash-1", None, &[])
        .await?;
    let write = db
        .create_token(alice.id, "ci", TokenRole::Write, b"hash-2", None, &[])
        .await?;
    assert_eq!(read.role, TokenRole::Read);
    assert_eq!(read.last_used_at_ms, None);

    let (token, owner) = db
        .token_owner_by_hash(b"hash-2", 0)
        .await?
        .expect("known hash");
    assert_eq!(token, write);
    assert_eq!(owner, alice);
    assert_eq!(db.token_owner_by_hash(b"unknown", 0).await?, None);

    assert_eq!(
        db.list_tokens(alice.id).await?,
        vec![read.clone(), write.clone()]
    );

    assert!(db.revoke_token(alice.id, "laptop").await?);
    assert!(!db.revoke_token(alice.id, "laptop").await?);
    assert_eq!(db.token_owner_by_hash(b"hash-1", 0).await?, None);
    assert_eq!(db.list_tokens(alice.id).await?, vec![write]);
    Ok(())
}
}

trove_db::backend_tests! {
async fn token_names_are_unique_per_user(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let bob = user(&db, "bob").await;
    db.create_token(alice.id, "laptop", TokenRole::Read, b"a", None, &[])
        .await?;
    let err = db
        .create_token(alice.id, "laptop", TokenRole::Write, b"b", None, &[])
        .await
        .expect_err("duplicate name");
    assert!(
        matches!(err, DbError::Conflict { what: "token" }),
        "{err:?}"
    );
    // Another user may reuse the name.
    db.create_token(bob.id, "laptop", TokenRole::Read, b"c", None, &[])
        .await?;

    let err = db
        .create_token(alice.id + 99, "x", TokenRole::Read, b"d", None, &[])
        .await
        .expect_err("no user");
    assert!(matches!(err, DbError::NotFound { .. }), "{err:?}");
    Ok(())
}
}

trove_db::backend_tests! {
async fn disabled_users_tokens_do_not_authenticate(db) -> TestResult {
    let alice = user(&db, "alice").await;
    db.create_token(
        alice.id,
        "laptop",
        TokenRole::Write,
        b"secret-hash",
        None,
        &[],
    )
    .await?;
    db.set_user_disabled(alice.id, true).await?;
    assert_eq!(db.token_owner_by_hash(b"secret-hash", 0).await?, None);
    db.set_user_disabled(alice.id, false).await?;
    assert!(db.token_owner_by_hash(b"secret-hash", 0).await?.is_some());
    Ok(())
}
}

trove_db::backend_tests! {
async fn touching_a_token_records_last_use_and_never_goes_back(db) -> TestResult {
    let alice = user(&db, "alice").await;
    let token = db
        .create_token(alice.id, "laptop", TokenRole::Read, b"h", None, &[])
        .await?;
    db.touch_token(token.id, 2_000).await?;
    db.touch_token(token.id, 1_000).await?;
    let listed = db.list_tokens(alice.id).await?;
    assert_eq!(listed[0].last_used_at_ms, Some(2_000));
    Ok(())
}
}

#[test]
fn roles_round_trip() {
    for role in [TokenRole::Read, TokenRole::Write] {
        assert_eq!(TokenRole::parse(role.as_str()), Some(role));
    }
    assert_eq!(TokenRole::parse("admin"), None);
}

trove_db::backend_tests! {
async fn account_writes_move_the_account_epoch(db) -> TestResult {
    // A cache of token resolutions trusts this counter: every write that can change what a
    // token resolves to must move it once it has returned, and reads must not.
    let alice = user(&db, "alice").await;
    db.create_token(alice.id, "laptop", TokenRole::Read, b"hash-1", None, &[])
        .await?;
    let org = db
        .create_org(&trove_types::RepoName::parse_namespace("acme")?, None)
        .await?;
    let mut last = db.account_epoch();
    let mut moved = |what: &str| {
        let now = db.account_epoch();
        assert!(now > last, "{what} moves the account epoch");
        last = now;
    };
    db.set_org_member(org.id, alice.id, trove_db::OrgRole::Write)
        .await?;
    moved("a membership granted");
    db.set_org_member(org.id, alice.id, trove_db::OrgRole::Read)
        .await?;
    moved("a role changed");
    db.remove_org_member(org.id, alice.id).await?;
    moved("a membership withdrawn");
    db.set_user_fullname(alice.id, Some("A")).await?;
    moved("a display name");
    db.set_user_disabled(alice.id, true).await?;
    moved("a user disabled");
    db.set_user_disabled(alice.id, false).await?;
    moved("a user enabled");
    db.revoke_token(alice.id, "laptop").await?;
    moved("a token revoked");

    let before = db.account_epoch();
    db.token_owner_by_hash(b"hash-1", 0).await?;
    db.memberships(alice.id).await?;
    assert_eq!(db.account_epoch(), before, "reads leave it");
    Ok(())
}
}
