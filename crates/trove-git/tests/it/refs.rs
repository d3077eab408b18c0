//! Branches, tags and the listing of refs.

use crate::{Fixture, T0, alice};
use trove_git::{GitError, Refs};
use trove_types::BranchName;

fn name(s: &str) -> BranchName {
    BranchName::parse(s).expect("valid name")
}

#[test]
fn branches_are_created_once_and_deleted() {
    let mut fx = Fixture::init();
    fx.repo
        .create_branch(&name("dev"), &fx.initial)
        .expect("create");
    let err = fx
        .repo
        .create_branch(&name("dev"), &fx.initial)
        .expect_err("exists");
    assert!(
        matches!(err, GitError::AlreadyExists { ref name } if name == "refs/heads/dev"),
        "{err:?}"
    );
    // git's hierarchy rule: "dev" blocks "dev/x".
    let err = fx
        .repo
        .create_branch(&name("dev/x"), &fx.initial)
        .expect_err("collides");
    assert!(matches!(err, GitError::AlreadyExists { .. }), "{err:?}");

    fx.repo.delete_branch("dev").expect("delete");
    assert_eq!(fx.repo.ref_target("refs/heads/dev").expect("read"), None);
    let err = fx.repo.delete_branch("dev").expect_err("gone");
    assert!(matches!(err, GitError::RefNotFound { .. }), "{err:?}");
    let err = fx.repo.delete_branch("bad..name").expect_err("invalid");
    assert!(matches!(err, GitError::RefNotFound { .. }), "{err:?}");
}

#[test]
fn branch_needs_a_commit() {
    let mut fx = Fixture::init();
    let blob = fx.repo.write_blob(b"x").expect("blob");
    let err = fx
        .repo
        .create_branch(&name("b"), &blob)
        .expect_err("not a commit");
    assert!(matches!(err, GitError::WrongObjectType { .. }), "{err:?}");
    let missing = trove_types::GitOid::parse(&"2".repeat(40)).expect("oid");
    let err = fx
        .repo
        .create_branch(&name("b"), &missing)
        .expect_err("missing");
    assert!(matches!(err, GitError::ObjectNotFound { .. }), "{err:?}");
}

#[test]
fn tags_lightweight_and_annotated() {
    let mut fx = Fixture::init();
    fx.repo
        .create_tag(&name("v1"), &fx.initial, None, &alice(), T0)
        .expect("lightweight");
    fx.repo
        .create_tag(&name("v2"), &fx.initial, Some("Release two"), &alice(), T0)
        .expect("annotated");
    // The lightweight tag points at the commit, the annotated one at a tag object.
    assert_eq!(
        fx.repo.ref_target("refs/tags/v1").expect("read"),
        Some(fx.initial.clone())
    );
    let v2 = fx
        .repo
        .ref_target("refs/tags/v2")
        .expect("read")
        .expect("exists");
    assert_ne!(v2, fx.initial);
    for tag in ["v1", "v2"] {
        let err = fx
            .repo
            .create_tag(&name(tag), &fx.initial, Some("again"), &alice(), T0)
            .expect_err("exists");
        assert!(
            matches!(err, GitError::AlreadyExists { .. }),
            "{tag}: {err:?}"
        );
        let err = fx
            .repo
            .create_tag(&name(tag), &fx.initial, None, &alice(), T0)
            .expect_err("exists");
        assert!(
            matches!(err, GitError::AlreadyExists { .. }),
            "{tag}: {err:?}"
        );
    }
    fx.repo.delete_tag("v2").expect("delete");
    assert_eq!(fx.repo.resolve_revision("v2").expect("resolve"), None);
    assert!(matches!(
        fx.repo.delete_tag("v2"),
        Err(GitError::RefNotFound { .. })
    ));
}

#[test]
fn refs_lists_every_kind_sorted() {
    let mut fx = Fixture::init();
    let head = fx.commit_files(&[("a", b"1")], "second", 1);
    let first = fx.initial.clone();
    fx.repo
        .create_branch(&name("zeta"), &first)
        .expect("branch");
    fx.repo
        .create_branch(&name("dev/x"), &first)
        .expect("branch");
    fx.repo
        .create_tag(&name("v1"), &first, None, &alice(), T0)
        .expect("tag");
    fx.repo
        .create_tag(&name("v0"), &head, Some("annotated"), &alice(), T0)
        .expect("tag");
    for (r, target) in [
        ("refs/pr/10", &head),
        ("refs/pr/2", &first),
        ("refs/convert/parquet", &head),
    ] {
        fx.repo.create_ref(r, target).expect("ref");
    }
    fx.repo
        .create_ref("refs/pr/not-a-number", &first)
        .expect("ref");
    assert!(matches!(
        fx.repo.create_ref("refs/pr/2", &first),
        Err(GitError::AlreadyExists { .. })
    ));
    assert!(matches!(
        fx.repo.create_ref("pr/2", &first),
        Err(GitError::InvalidRefName { .. })
    ));

    let refs = fx.repo.refs().expect("refs");
    assert_eq!(
        refs,
        Refs {
            branches: vec![
                ("dev/x".into(), first.clone()),
                ("main".into(), head.clone()),
                ("zeta".into(), first.clone())
            ],
            tags: vec![("v0".into(), head.clone()), ("v1".into(), first.clone())],
            pull_requests: vec![(2, first.clone()), (10, head.clone())],
            converts: vec![("parquet".into(), head.clone())],
        }
    );
}
