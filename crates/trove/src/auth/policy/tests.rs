//! Table-driven checks of the one authorization decision, and of the listing filter
//! agreeing with it for every caller and repository in the tables.

use super::*;
use crate::auth::{Caller, Credential};
use Access::{Admin, Gated, None as No, Read, Write};
use trove_db::{Gating, Org, TokenScope};
use trove_types::RepoType;

fn user(id: i64, name: &str, is_admin: bool) -> User {
    User {
        id,
        name: name.into(),
        email: None,
        is_admin,
        disabled: false,
        created_at_ms: 0,
        fullname: None,
    }
}

fn repo(id: i64, namespace: &str, private: bool, gated: Gating) -> Repo {
    Repo {
        id,
        repo_type: RepoType::Model,
        namespace: namespace.into(),
        name: format!("r{id}"),
        private,
        owner_user_id: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        gated,
        discussions_disabled: false,
        inference_disabled: false,
    }
}

fn member(org: &str, role: OrgRole) -> Membership {
    Membership {
        org: Org {
            id: 100,
            name: org.into(),
            fullname: None,
            created_at_ms: 0,
        },
        role,
    }
}

fn token(role: TokenRole) -> Credential {
    Credential {
        token_id: Some(1),
        name: "t".into(),
        role,
        scopes: Vec::new(),
        expires_at_ms: None,
    }
}

fn scoped(target: ScopeTarget, perms: &[&str]) -> Credential {
    Credential {
        scopes: vec![TokenScope {
            target,
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
        }],
        ..token(TokenRole::FineGrained)
    }
}

fn as_user(u: User, token: Credential, orgs: Vec<Membership>) -> Caller {
    Caller::User {
        user: u,
        token,
        orgs,
    }
}

fn repo_scope(r: &Repo) -> ScopeTarget {
    ScopeTarget::Repo {
        repo_id: r.id,
        repo_type: r.repo_type,
        namespace: r.namespace.clone(),
        name: r.name.clone(),
    }
}

/// The callers of the matrix, by name.
fn callers(target: &Repo, other: &Repo) -> Vec<(&'static str, Caller)> {
    let w = || token(TokenRole::Write);
    vec![
        ("anonymous", Caller::Anonymous),
        ("outsider", as_user(user(2, "eve", false), w(), vec![])),
        (
            "read member",
            as_user(
                user(3, "cy", false),
                w(),
                vec![member("acme", OrgRole::Read)],
            ),
        ),
        (
            "contributor",
            as_user(
                user(3, "cy", false),
                w(),
                vec![member("acme", OrgRole::Contributor)],
            ),
        ),
        (
            "write member",
            as_user(
                user(4, "bo", false),
                w(),
                vec![member("ACME", OrgRole::Write)],
            ),
        ),
        (
            "org admin",
            as_user(
                user(5, "ana", false),
                w(),
                vec![member("acme", OrgRole::Admin)],
            ),
        ),
        (
            "admin, read token",
            as_user(
                user(5, "ana", false),
                token(TokenRole::Read),
                vec![member("acme", OrgRole::Admin)],
            ),
        ),
        ("site admin", as_user(user(1, "root", true), w(), vec![])),
        (
            "owner of namespace",
            as_user(user(6, "acme2", false), w(), vec![]),
        ),
        (
            "writer, fine-grained write on this repo",
            as_user(
                user(4, "bo", false),
                scoped(repo_scope(target), &[PERM_WRITE]),
                vec![member("acme", OrgRole::Write)],
            ),
        ),
        (
            "writer, fine-grained write on another repo",
            as_user(
                user(4, "bo", false),
                scoped(repo_scope(other), &[PERM_WRITE]),
                vec![member("acme", OrgRole::Write)],
            ),
        ),
        (
            "writer, fine-grained read on the namespace",
            as_user(
                user(4, "bo", false),
                scoped(ScopeTarget::Namespace("Acme".into()), &[PERM_CONTENT_READ]),
                vec![member("acme", OrgRole::Write)],
            ),
        ),
        (
            "outsider, fine-grained write on this repo",
            as_user(
                user(2, "eve", false),
                scoped(repo_scope(target), &[PERM_WRITE]),
                vec![],
            ),
        ),
    ]
}

#[test]
fn the_access_matrix() {
    let public = repo(1, "acme", false, Gating::Off);
    let private = repo(2, "acme", true, Gating::Off);
    let gated = repo(3, "acme", false, Gating::Manual);
    let other = repo(9, "acme", true, Gating::Off);
    // Expected access to (public, private, gated) for each caller of `callers`.
    let expected: &[(&str, [Access; 3])] = &[
        ("anonymous", [Read, No, Gated]),
        ("outsider", [Read, No, Gated]),
        ("read member", [Read, Read, Read]),
        ("contributor", [Read, Read, Read]),
        ("write member", [Write, Write, Write]),
        ("org admin", [Admin, Admin, Admin]),
        ("admin, read token", [Read, Read, Read]),
        ("site admin", [Admin, Admin, Admin]),
        ("owner of namespace", [Read, No, Gated]),
        (
            "writer, fine-grained write on this repo",
            [Write, Write, Write],
        ),
        (
            "writer, fine-grained write on another repo",
            [Read, No, Gated],
        ),
        (
            "writer, fine-grained read on the namespace",
            [Read, Read, Read],
        ),
        (
            "outsider, fine-grained write on this repo",
            [Read, No, Gated],
        ),
    ];
    for (i, target) in [&public, &private, &gated].into_iter().enumerate() {
        let table = callers(target, &other);
        assert_eq!(table.len(), expected.len());
        for ((name, caller), (want_name, want)) in table.iter().zip(expected) {
            assert_eq!(name, want_name);
            assert_eq!(
                Access::for_repo(caller, target, false),
                want[i],
                "{name} on {target:?}"
            );
        }
    }
}

#[test]
fn a_passed_gate_opens_the_files_to_users_and_tokens_that_may_read() {
    let gated = repo(3, "acme", false, Gating::Auto);
    let outsider = as_user(user(2, "eve", false), token(TokenRole::Write), vec![]);
    assert_eq!(Access::for_repo(&outsider, &gated, true), Read);
    let read_token = as_user(user(2, "eve", false), token(TokenRole::Read), vec![]);
    assert_eq!(Access::for_repo(&read_token, &gated, true), Read);
    let other = repo(9, "x", false, Gating::Off);
    let elsewhere = as_user(
        user(2, "eve", false),
        scoped(repo_scope(&other), &[PERM_WRITE]),
        vec![],
    );
    assert_eq!(Access::for_repo(&elsewhere, &gated, true), Gated);
    assert_eq!(Access::for_repo(&Caller::Anonymous, &gated, true), Gated);
    // Private wins over gated: a passed gate is no way into a private repository.
    let hidden = repo(4, "acme", true, Gating::Auto);
    assert_eq!(Access::for_repo(&outsider, &hidden, true), No);
}

#[test]
fn creating_in_a_namespace_needs_write_standing_and_a_token_that_writes_there() {
    let cases: &[(Caller, &str, bool)] = &[
        (Caller::Anonymous, "acme", false),
        (
            as_user(user(2, "eve", false), token(TokenRole::Write), vec![]),
            "eve",
            true,
        ),
        (
            as_user(user(2, "eve", false), token(TokenRole::Read), vec![]),
            "eve",
            false,
        ),
        (
            as_user(user(2, "eve", false), token(TokenRole::Write), vec![]),
            "acme",
            false,
        ),
        (
            as_user(
                user(3, "cy", false),
                token(TokenRole::Write),
                vec![member("acme", OrgRole::Read)],
            ),
            "acme",
            false,
        ),
        (
            as_user(
                user(4, "bo", false),
                token(TokenRole::Write),
                vec![member("acme", OrgRole::Write)],
            ),
            "acme",
            true,
        ),
        (
            as_user(user(1, "root", true), token(TokenRole::Write), vec![]),
            "anyone",
            true,
        ),
        (
            as_user(
                user(4, "bo", false),
                scoped(ScopeTarget::Namespace("acme".into()), &[PERM_WRITE]),
                vec![member("acme", OrgRole::Write)],
            ),
            "acme",
            true,
        ),
        (
            as_user(
                user(4, "bo", false),
                scoped(ScopeTarget::Namespace("acme".into()), &[PERM_CONTENT_READ]),
                vec![member("acme", OrgRole::Write)],
            ),
            "acme",
            false,
        ),
    ];
    for (caller, ns, may) in cases {
        assert_eq!(
            Access::in_namespace(caller, ns) >= Write,
            *may,
            "{caller:?} in {ns}"
        );
    }
}

#[test]
fn listing_visibility_agrees_with_per_repo_access() {
    let repos = [
        repo(1, "acme", false, Gating::Off),
        repo(2, "acme", true, Gating::Off),
        repo(3, "acme", false, Gating::Manual),
        repo(4, "bo", true, Gating::Off),
        repo(5, "eve", true, Gating::Off),
        repo(6, "other", true, Gating::Auto),
        repo(9, "acme", true, Gating::Off),
    ];
    for target in &repos {
        for (name, caller) in callers(target, &repos[6]) {
            let visibility = Access::listing_visibility(&caller);
            for r in &repos {
                let listed = match &visibility {
                    Visibility::Public => !r.private,
                    Visibility::PublicAnd {
                        namespaces,
                        repo_ids,
                    } => {
                        !r.private
                            || namespaces
                                .iter()
                                .any(|ns| ns.eq_ignore_ascii_case(&r.namespace))
                            || repo_ids.contains(&r.id)
                    }
                    Visibility::All => true,
                };
                assert_eq!(
                    listed,
                    Access::for_repo(&caller, r, false) != No,
                    "{name} listing {r:?}"
                );
            }
        }
    }
}

#[test]
fn contributing_needs_a_visible_repo_and_a_token_that_may_write_there() {
    let public = repo(1, "acme", false, Gating::Off);
    let hidden = repo(2, "acme", true, Gating::Off);
    let eve = |t| as_user(user(2, "eve", false), t, vec![]);
    let cases: Vec<(&str, Caller, &Repo, bool)> = vec![
        ("anonymous", Caller::Anonymous, &public, false),
        (
            "write token reader",
            eve(token(TokenRole::Write)),
            &public,
            true,
        ),
        (
            "read token reader",
            eve(token(TokenRole::Read)),
            &public,
            false,
        ),
        (
            "write token, hidden repo",
            eve(token(TokenRole::Write)),
            &hidden,
            false,
        ),
        (
            "fine-grained discussion.write here",
            eve(scoped(repo_scope(&public), &[PERM_DISCUSSION_WRITE])),
            &public,
            true,
        ),
        (
            "fine-grained read here",
            eve(scoped(repo_scope(&public), &[PERM_CONTENT_READ])),
            &public,
            false,
        ),
        (
            "fine-grained write elsewhere",
            eve(scoped(repo_scope(&hidden), &[PERM_WRITE])),
            &public,
            false,
        ),
        (
            "fine-grained write on the namespace",
            eve(scoped(ScopeTarget::Namespace("acme".into()), &[PERM_WRITE])),
            &public,
            true,
        ),
    ];
    for (name, caller, r, may) in cases {
        let access = Access::for_repo(&caller, r, false);
        assert_eq!(Access::may_contribute(&caller, r, access), may, "{name}");
    }
}

#[test]
fn only_site_admins_reach_the_site_and_a_read_token_only_reads() {
    let admin = || user(1, "root", true);
    let cases = [
        ("anonymous", Caller::Anonymous, No),
        (
            "ordinary user, write token",
            as_user(user(2, "eve", false), token(TokenRole::Write), vec![]),
            No,
        ),
        (
            "org admin, write token",
            as_user(
                user(2, "eve", false),
                token(TokenRole::Write),
                vec![member("acme", OrgRole::Admin)],
            ),
            No,
        ),
        (
            "site admin, read token",
            as_user(admin(), token(TokenRole::Read), vec![]),
            Read,
        ),
        (
            "site admin, write token",
            as_user(admin(), token(TokenRole::Write), vec![]),
            Admin,
        ),
        (
            "site admin, fine-grained write on a namespace",
            as_user(
                admin(),
                scoped(ScopeTarget::Namespace("root".into()), &[PERM_WRITE]),
                vec![],
            ),
            No,
        ),
    ];
    for (name, caller, expected) in cases {
        assert_eq!(Access::on_site(&caller), expected, "{name}");
    }
}
