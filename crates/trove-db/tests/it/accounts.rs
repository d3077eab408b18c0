//! Organizations, fine-grained and expiring tokens, repository settings and moves, access
//! requests and the audit log.

use crate::{TestResult, user};
use trove_db::{
    DbError, Gating, NewAuditEvent, NewScope, OrgRole, RequestStatus, ScopeTarget, TokenRole,
};
use trove_types::{RepoId, RepoName, RepoType};

fn id(s: &str) -> RepoId {
    let (ns, name) = s.split_once('/').expect("ns/name");
    RepoId::new(
        RepoName::parse(ns).expect("ns"),
        RepoName::parse(name).expect("name"),
    )
}

trove_db::backend_tests! {
async fn a_name_is_a_user_or_an_org_never_both(db) -> TestResult {
    let ana = user(&db, "ana").await;
    let acme = db
        .create_org(&RepoName::parse_namespace("acme")?, None)
        .await?;
    assert!(matches!(
        db.create_org(&RepoName::parse_namespace("ANA")?, None)
            .await,
        Err(DbError::Conflict { .. })
    ));
    assert!(matches!(
        db.create_user(&RepoName::parse_namespace("Acme")?, None, false)
            .await,
        Err(DbError::Conflict { .. })
    ));
    db.set_org_member(acme.id, ana.id, OrgRole::Write).await?;
    db.set_org_member(acme.id, ana.id, OrgRole::Admin).await?;
    let members = db.org_members(acme.id).await?;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].1, OrgRole::Admin);
    assert_eq!(db.count_org_admins(acme.id).await?, 1);
    let mine = db.memberships(ana.id).await?;
    assert_eq!(mine[0].org.name, "acme");
    assert!(db.remove_org_member(acme.id, ana.id).await?);
    assert!(!db.remove_org_member(acme.id, ana.id).await?);
    assert!(db.memberships(ana.id).await?.is_empty());
    Ok(())
}
}

trove_db::backend_tests! {
async fn expired_tokens_are_not_found_and_scopes_follow_moves(db) -> TestResult {
    let bo = user(&db, "bo").await;
    let repo = db
        .create_repo(RepoType::Model, &id("bo/detector"), true, bo.id, 1)
        .await?;
    db.create_token(bo.id, "short", TokenRole::Read, b"h1", Some(1_000), &[])
        .await?;
    assert!(db.token_owner_by_hash(b"h1", 999).await?.is_some());
    assert_eq!(db.token_owner_by_hash(b"h1", 1_000).await?, None);

    // A revoked token's id is never reused (last-used throttling and logs go by id).
    let last = db
        .create_token(bo.id, "last", TokenRole::Read, b"h0", None, &[])
        .await?;
    assert!(db.revoke_token(bo.id, "last").await?);
    let next = db
        .create_token(bo.id, "next", TokenRole::Read, b"h0", None, &[])
        .await?;
    assert!(next.id > last.id);

    let scoped = db
        .create_token(
            bo.id,
            "ci",
            TokenRole::FineGrained,
            b"h2",
            None,
            &[
                NewScope::Repo {
                    repo_id: repo.id,
                    permissions: vec!["repo.write".into()],
                },
                NewScope::Namespace {
                    namespace: "bo".into(),
                    permissions: vec!["repo.content.read".into()],
                },
            ],
        )
        .await?;
    assert_eq!(scoped.scopes.len(), 2);
    db.move_repo(repo.id, &id("bo/detector-v2"), 2).await?;
    let (token, _) = db.token_owner_by_hash(b"h2", 3).await?.expect("token");
    assert_eq!(token.role, TokenRole::FineGrained);
    assert!(matches!(
        &token.scopes[0].target,
        ScopeTarget::Repo { name, .. } if name == "detector-v2"
    ));
    assert_eq!(token.scopes[0].permissions, vec!["repo.write".to_owned()]);
    assert_eq!(token.scopes[1].target, ScopeTarget::Namespace("bo".into()));
    Ok(())
}
}

trove_db::backend_tests! {
async fn moves_leave_redirects_that_a_new_repo_replaces(db) -> TestResult {
    let bo = user(&db, "bo").await;
    let repo = db
        .create_repo(RepoType::Model, &id("bo/a"), false, bo.id, 1)
        .await?;
    let moved = db.move_repo(repo.id, &id("bo/b"), 2).await?;
    assert_eq!(moved.name, "b");
    let (found, old) = db
        .repo_by_name_or_redirect(RepoType::Model, &id("BO/A"))
        .await?
        .expect("redirect");
    assert_eq!((found.id, old), (repo.id, true));
    assert_eq!(
        db.repo_by_name_or_redirect(RepoType::Dataset, &id("bo/a"))
            .await?,
        None
    );
    let other = db
        .create_repo(RepoType::Model, &id("bo/c"), false, bo.id, 3)
        .await?;
    assert!(matches!(
        db.move_repo(other.id, &id("bo/b"), 4).await,
        Err(DbError::Conflict { .. })
    ));
    let fresh = db
        .create_repo(RepoType::Model, &id("bo/a"), false, bo.id, 5)
        .await?;
    let (found, old) = db
        .repo_by_name_or_redirect(RepoType::Model, &id("bo/a"))
        .await?
        .expect("repo");
    assert_eq!((found.id, old), (fresh.id, false));
    Ok(())
}
}

trove_db::backend_tests! {
async fn settings_access_requests_and_audit(db) -> TestResult {
    let bo = user(&db, "bo").await;
    let cy = user(&db, "cy").await;
    let repo = db
        .create_repo(RepoType::Model, &id("bo/g"), true, bo.id, 1)
        .await?;
    let r = db
        .update_repo_settings(repo.id, Some(false), Some(Gating::Manual), None, None)
        .await?;
    assert!(!r.private && r.gated == Gating::Manual && !r.discussions_disabled);
    assert!(!r.inference_disabled);
    let r = db
        .update_repo_settings(repo.id, None, None, Some(true), None)
        .await?;
    assert!(r.gated == Gating::Manual && r.discussions_disabled);
    let r = db
        .update_repo_settings(repo.id, None, None, None, Some(true))
        .await?;
    assert!(r.inference_disabled && r.discussions_disabled);

    assert_eq!(db.access_request_status(repo.id, cy.id).await?, None);
    db.set_access_request(repo.id, cy.id, RequestStatus::Pending, Some("{}"), 5)
        .await?;
    let pending = db.access_requests(repo.id, RequestStatus::Pending).await?;
    assert_eq!(pending[0].user.name, "cy");
    db.set_access_request(repo.id, cy.id, RequestStatus::Accepted, None, 6)
        .await?;
    assert_eq!(
        db.access_request_status(repo.id, cy.id).await?,
        Some(RequestStatus::Accepted)
    );
    let accepted = db.access_requests(repo.id, RequestStatus::Accepted).await?;
    assert_eq!(accepted[0].fields.as_deref(), Some("{}"));

    for (ns, action) in [("acme", "org.member.add"), ("bo", "token.create")] {
        db.audit(NewAuditEvent {
            actor: "cli",
            action,
            namespace: Some(ns),
            target: Some("x"),
            detail: None,
        })
        .await?;
    }
    let acme = db.audit_events(Some("ACME"), None, 10).await?;
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].action, "org.member.add");
    let all = db.audit_events(None, None, 10).await?;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].action, "token.create", "newest first");
    assert_eq!(db.audit_events(None, Some(all[0].id), 10).await?.len(), 1);
    Ok(())
}
}

trove_db::backend_tests! {
async fn a_session_or_a_token_reads_its_user_and_memberships_in_one_go(db) -> TestResult {
    let cy = user(&db, "cy").await;
    let loner = user(&db, "loner").await;
    db.create_session(cy.id, b"s-cy", 1_000, None).await?;
    db.create_session(loner.id, b"s-loner", 1_000, None).await?;
    db.create_token(cy.id, "t", TokenRole::Read, b"t-cy", None, &[])
        .await?;
    db.create_token(loner.id, "t", TokenRole::Read, b"t-loner", None, &[])
        .await?;
    // In no organization: the user, and no membership.
    let s = db.session_member(b"s-cy", 10).await?.expect("session");
    assert_eq!((s.user.id, s.orgs.len(), s.token_id), (cy.id, 0, None));
    let (_, u, orgs) = db.token_member_by_hash(b"t-cy", 10).await?.expect("token");
    assert_eq!((u.id, orgs.len()), (cy.id, 0));

    let zeta = db
        .create_org(&RepoName::parse_namespace("zeta")?, None)
        .await?;
    let alpha = db
        .create_org(&RepoName::parse_namespace("alpha")?, None)
        .await?;
    db.set_org_member(zeta.id, cy.id, OrgRole::Admin).await?;
    db.set_org_member(alpha.id, cy.id, OrgRole::Read).await?;
    // The same memberships as the query of their own, in the same order (by name), one
    // user however many organizations.
    let expected = db.memberships(cy.id).await?;
    assert_eq!(expected.len(), 2);
    assert_eq!(expected[0].org.name, "alpha");
    let s = db.session_member(b"s-cy", 10).await?.expect("session");
    assert_eq!((s.user, s.orgs), (cy.clone(), expected.clone()));
    let (token, u, orgs) = db.token_member_by_hash(b"t-cy", 10).await?.expect("token");
    assert_eq!((token.user_id, u, orgs), (cy.id, cy.clone(), expected));
    // Another member's organizations are not theirs.
    let s = db.session_member(b"s-loner", 10).await?.expect("session");
    assert!(s.orgs.is_empty());
    let (_, _, orgs) = db.token_member_by_hash(b"t-loner", 10).await?.expect("token");
    assert!(orgs.is_empty());

    // Expired, unknown or disabled: nobody.
    assert_eq!(db.session_member(b"s-cy", 1_000).await?, None);
    assert_eq!(db.session_member(b"nope", 10).await?, None);
    db.set_user_disabled(cy.id, true).await?;
    assert_eq!(db.session_member(b"s-cy", 10).await?, None);
    assert_eq!(db.token_member_by_hash(b"t-cy", 10).await?, None);
    Ok(())
}
}

trove_db::backend_tests! {
async fn a_session_opened_with_a_token_ends_with_it_and_a_new_password_ends_all(db) -> TestResult {
    let cy = user(&db, "cy").await;
    let lasting = db
        .create_token(cy.id, "lasting", TokenRole::Write, b"t-1", None, &[])
        .await?;
    let brief = db
        .create_token(cy.id, "brief", TokenRole::Write, b"t-2", Some(500), &[])
        .await?;
    db.create_session(cy.id, b"s-lasting", 10_000, Some(lasting.id)).await?;
    db.create_session(cy.id, b"s-brief", 10_000, Some(brief.id)).await?;
    db.create_session(cy.id, b"s-password", 10_000, None).await?;
    let s = db.session_member(b"s-lasting", 10).await?.expect("session");
    assert_eq!(s.token_id, Some(lasting.id));
    // The token's expiry ends its session, however long the session was to last.
    assert!(db.session_member(b"s-brief", 10).await?.is_some());
    assert_eq!(db.session_member(b"s-brief", 600).await?, None);
    // Revoking the token ends its session, not the others.
    assert!(db.revoke_token(cy.id, "lasting").await?);
    assert_eq!(db.session_member(b"s-lasting", 10).await?, None);
    assert!(db.session_member(b"s-password", 10).await?.is_some());
    // A new password ends every session of the user.
    assert!(db.set_password_hash(cy.id, "$argon2id$v=19$x").await?);
    assert_eq!(db.session_member(b"s-password", 10).await?, None);
    Ok(())
}
}
