//! `trove migrate`'s metadata copy: every table covered, parents before children, values
//! through their declared types, triggers' derived rows not counted twice, sequences past
//! the copied ids, and a target holding another hub refused.

use crate::{TestResult, name, oid, repo_id, user};
use trove_db::testing::TestDb;
use trove_db::{COPIED_TABLES, CopyError, Db, NewScope, SKIPPED_TABLES, TokenRole};
use trove_types::RepoType;

#[tokio::test]
async fn every_sqlite_table_is_copied_or_skipped_with_a_reason() -> TestResult {
    let db = TestDb::sqlite().await;
    let tables = db.db().sqlite_tables().await?;
    assert!(tables.len() > 30, "{tables:?}");
    // Fails when a migration adds a table that trove migrate does not know about: add it
    // to COPIED_TABLES (in dependency order) or to SKIPPED_TABLES with the reason.
    let uncovered: Vec<_> = tables
        .iter()
        .filter(|t| {
            !COPIED_TABLES.contains(&t.as_str()) && !SKIPPED_TABLES.iter().any(|(s, _)| s == t)
        })
        .collect();
    assert!(
        uncovered.is_empty(),
        "neither copied nor skipped: {uncovered:?}"
    );
    db.db().check_tables_covered().await?;
    // And no stale or doubled entry.
    for table in COPIED_TABLES {
        assert!(
            tables.contains(&(*table).to_owned()),
            "{table} no longer exists"
        );
        assert!(
            !SKIPPED_TABLES.iter().any(|(s, _)| s == table),
            "{table} both"
        );
    }
    for (table, reason) in SKIPPED_TABLES {
        assert!(!reason.is_empty());
        assert!(
            tables.contains(&(*table).to_owned()),
            "{table} no longer exists"
        );
    }
    db.drop().await;
    Ok(())
}

#[tokio::test]
async fn parents_are_copied_before_their_children() -> TestResult {
    let db = TestDb::sqlite().await;
    let keys = db.db().sqlite_foreign_keys().await?;
    assert!(keys.len() > 20, "{keys:?}");
    let position = |t: &str| COPIED_TABLES.iter().position(|c| *c == t);
    for (child, parent) in &keys {
        let Some(c) = position(child) else {
            panic!("{child} has a foreign key but is not copied");
        };
        let p =
            position(parent).unwrap_or_else(|| panic!("{parent} (parent of {child}) not copied"));
        assert!(p <= c, "{parent} must be copied before {child}");
    }
    db.drop().await;
    Ok(())
}

/// A small hub on a SQLite file: users (one admin), an org membership, tokens (one
/// fine-grained, one revoked to leave a gap in the ids), a private repo with a like, a xorb
/// its owner uploaded to it.
async fn populated_source(dir: &std::path::Path) -> Result<Db, Box<dyn std::error::Error>> {
    let db = Db::open(&dir.join("trove.db")).await?;
    let alice = db
        .create_user(&name("alice"), Some("a@example.com"), true)
        .await?;
    let bob = user(&db, "bob").await;
    let org = db.create_org(&name("acme"), Some("Acme")).await?;
    db.set_org_member(org.id, bob.id, trove_db::OrgRole::Write)
        .await?;
    let repo = db
        .create_repo(
            RepoType::Model,
            &repo_id("alice/secret"),
            true,
            alice.id,
            1_000,
        )
        .await?;
    db.create_token(alice.id, "old", TokenRole::Write, &[1; 32], None, &[])
        .await?;
    db.create_token(
        alice.id,
        "scoped",
        TokenRole::FineGrained,
        &[2; 32],
        None,
        &[NewScope::Repo {
            repo_id: repo.id,
            permissions: vec!["repo.content.read".into()],
        }],
    )
    .await?;
    db.create_token(alice.id, "last", TokenRole::Read, &[3; 32], None, &[])
        .await?;
    // The highest id gone: AUTOINCREMENT never hands it out again, nor may PostgreSQL.
    db.revoke_token(alice.id, "last").await?;
    db.like(bob.id, repo.id, 2_000).await?;
    db.record_lfs_object(&oid(7), 42, 3_000).await?;
    // A xorb alice uploaded to her repository: its chunk, her repository's link and hers.
    let xorb = trove_db::XorbRecord {
        stored_bytes: 10,
        raw_bytes: 20,
        num_chunks: 1,
        chunk_index: vec![1; 40],
    };
    db.record_xorb(&[4; 32], &xorb, &[[5; 32]], 4_000).await?;
    let uploader = trove_db::XorbViewer {
        repo_id: repo.id,
        user_id: Some(alice.id),
        whole_namespace: true,
    };
    db.link_uploaded_xorb(uploader, &[4; 32], 4_000).await?;
    Ok(db)
}

#[tokio::test]
async fn a_hub_is_copied_with_its_ids_types_counts_and_sequences() -> TestResult {
    let Some(target) = TestDb::postgres().await else {
        eprintln!("TROVE_TEST_POSTGRES_URL unset: skipped");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let source = populated_source(dir.path()).await?;
    let pg = target.db();
    let claim = pg.claim_for_migration("hub-a").await?;
    assert!(!claim.resumed);
    let mut total = 0;
    for table in COPIED_TABLES {
        total += source
            .copy_table_to(&pg, table, "hub-a", &mut |_| {})
            .await?;
    }
    assert!(total >= 12, "{total} rows");
    pg.reset_sequences(&source).await?;
    for table in COPIED_TABLES {
        assert_eq!(
            source.count_rows(table).await?,
            pg.count_rows(table).await?,
            "{table}"
        );
    }

    // Ids and typed values as the source had them.
    let (a, b) = (
        source.user_by_name("alice").await?.expect("alice"),
        pg.user_by_name("alice").await?.expect("alice copied"),
    );
    assert_eq!(
        (a.id, a.is_admin, a.email.clone()),
        (b.id, b.is_admin, b.email.clone())
    );
    assert!(b.is_admin, "BOOLEAN from SQLite's 0/1");
    let repo = pg
        .repo_by_name(RepoType::Model, &repo_id("alice/secret"))
        .await?
        .expect("repo copied");
    assert!(repo.private);
    assert!(
        pg.user_uploaded_xorb(b.id, &[4; 32]).await?,
        "the uploader's xorb (BYTEA) is still hers"
    );
    let (_, owner) = pg
        .token_owner_by_hash(&[2; 32], trove_db::unix_now_ms())
        .await?
        .expect("the fine-grained token's hash (BYTEA) finds it");
    assert_eq!(owner.id, a.id);
    // The like trigger was off during the copy: one like, counted once.
    let index = pg.repo_index(repo.id).await?.expect("index row");
    assert_eq!(index.likes, 1);

    // New rows take ids after the copied ones, and after the revoked token's.
    let carol = pg.create_user(&name("carol"), None, false).await?;
    assert!(carol.id > b.id);
    let token = pg
        .create_token(carol.id, "t", TokenRole::Read, &[9; 32], None, &[])
        .await?;
    assert!(token.id > 3, "token id {} reuses a revoked one", token.id);

    // Resuming finds this hub's steps; another hub is refused.
    let again = pg.claim_for_migration("hub-a").await?;
    assert!(again.resumed);
    assert!(again.done.contains("table:users"));
    let other = pg.claim_for_migration("hub-b").await;
    assert!(
        matches!(other, Err(CopyError::OtherHub { .. })),
        "{other:?}"
    );
    source.close().await;
    target.drop().await;
    Ok(())
}

#[tokio::test]
async fn a_target_with_data_and_no_migration_is_refused() -> TestResult {
    let Some(target) = TestDb::postgres().await else {
        eprintln!("TROVE_TEST_POSTGRES_URL unset: skipped");
        return Ok(());
    };
    let pg = target.db();
    user(&pg, "someone").await;
    let refused = pg.claim_for_migration("hub-a").await;
    assert!(
        matches!(&refused, Err(CopyError::NotEmpty { table }) if table == "users"),
        "{refused:?}"
    );
    assert_eq!(
        pg.migration_step_count("hub").await?,
        None,
        "nothing written"
    );
    target.drop().await;
    Ok(())
}
