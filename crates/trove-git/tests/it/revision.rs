//! What `resolve_revision` accepts, and what it refuses.

use crate::{Fixture, T0, alice};
use trove_types::BranchName;

fn branch(s: &str) -> BranchName {
    BranchName::parse(s).expect("valid name")
}

#[test]
fn resolves_branches_tags_and_full_refs() {
    let mut fx = Fixture::init();
    let head = fx.commit_files(&[("a", b"1")], "second", 1);
    let first = fx.initial.clone();
    fx.repo
        .create_branch(&branch("dev/x"), &first)
        .expect("branch");
    fx.repo
        .create_tag(&branch("v1"), &first, None, &alice(), T0)
        .expect("lightweight");
    fx.repo
        .create_tag(&branch("v2"), &head, Some("release 2"), &alice(), T0)
        .expect("annotated");
    fx.repo.create_ref("refs/pr/3", &first).expect("pr");
    fx.repo
        .create_ref("refs/convert/parquet", &head)
        .expect("convert");

    let r = |rev: &str| fx.repo.resolve_revision(rev).expect("resolve");
    assert_eq!(r("main"), Some(head.clone()));
    assert_eq!(r("dev/x"), Some(first.clone()));
    assert_eq!(r("v1"), Some(first.clone()));
    assert_eq!(
        r("v2"),
        Some(head.clone()),
        "annotated tag peels to its commit"
    );
    assert_eq!(r("refs/heads/main"), Some(head.clone()));
    assert_eq!(r("refs/tags/v2"), Some(head.clone()));
    assert_eq!(r("refs/pr/3"), Some(first.clone()));
    assert_eq!(r("refs/convert/parquet"), Some(head.clone()));
    assert_eq!(r(first.as_str()), Some(first.clone()));
    assert_eq!(r(&first.as_str().to_uppercase()), Some(first.clone()));
}

#[test]
fn branch_wins_over_tag() {
    let mut fx = Fixture::init();
    let head = fx.commit_files(&[("a", b"1")], "second", 1);
    fx.repo
        .create_tag(&branch("main"), &fx.initial, None, &alice(), T0)
        .expect("tag named main");
    assert_eq!(
        fx.repo.resolve_revision("main").expect("resolve"),
        Some(head)
    );
    assert_eq!(
        fx.repo.resolve_revision("refs/tags/main").expect("resolve"),
        Some(fx.initial.clone())
    );
}

#[test]
fn unknown_names_and_revspec_syntax_resolve_to_nothing() {
    let mut fx = Fixture::init();
    fx.commit_files(&[("a", b"1")], "second", 1);
    let initial = fx.initial.as_str();
    let tree = match fx
        .repo
        .entry_at(&fx.initial, "")
        .expect("root")
        .map(|e| e.kind)
    {
        Some(trove_git::EntryKind::Dir { tree }) => tree,
        other => panic!("{other:?}"),
    };
    let refused = [
        "nope".to_owned(),
        String::new(),
        initial[..6].to_owned(),
        initial[..7].to_uppercase(),
        "0".repeat(7),
        "0".repeat(40),
        tree.to_string(),
        "main~1".into(),
        "main^".into(),
        "main^{tree}".into(),
        "main@{0}".into(),
        "@{-1}".into(),
        "HEAD".into(),
        "HEAD~1".into(),
        "main..main".into(),
        "main:a".into(),
        ":/second".into(),
        "refs/heads/".into(),
        "refs/notes/x".into(),
        "refs/heads/../heads/main".into(),
        "heads/main".into(),
    ];
    for rev in refused {
        assert_eq!(
            fx.repo.resolve_revision(&rev).expect("no error"),
            None,
            "{rev:?}"
        );
    }
}

#[test]
fn abbreviated_commit_ids_resolve_when_unambiguous() {
    let mut fx = Fixture::init();
    let second = fx.commit_files(&[("a", b"1")], "second", 1);
    let initial = fx.initial.as_str();
    for len in [7, 12, 39] {
        assert_eq!(
            fx.repo.resolve_revision(&initial[..len]).expect("no error"),
            Some(fx.initial.clone()),
            "{len}"
        );
        assert_eq!(
            fx.repo
                .resolve_revision(&second.as_str()[..len])
                .expect("no error"),
            Some(second.clone())
        );
    }
    // A tree's id is not a commit's, however it is abbreviated.
    let tree = match fx
        .repo
        .entry_at(&fx.initial, "")
        .expect("root")
        .map(|e| e.kind)
    {
        Some(trove_git::EntryKind::Dir { tree }) => tree,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        fx.repo
            .resolve_revision(&tree.as_str()[..8])
            .expect("no error"),
        None
    );
}
