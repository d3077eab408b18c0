//! Creating and opening repositories.

use crate::{Fixture, GITATTRIBUTES, T0, alice, git, stdout};
use trove_git::{EntryKind, GitError, GitRepo};

#[test]
fn init_makes_one_commit_with_gitattributes_on_main() {
    let fx = Fixture::init();
    assert_eq!(fx.main(), fx.initial);
    let info = fx.repo.commit_info(&fx.initial).expect("info");
    assert_eq!(info.title, "initial commit");
    assert_eq!(info.message, "initial commit");
    assert_eq!(
        (info.author_name.as_str(), info.author_email.as_str()),
        ("Alice Example", "alice@example.com")
    );
    assert_eq!(info.time_unix, T0);
    assert!(info.parents.is_empty());

    let entries = fx
        .repo
        .list_tree(&fx.initial, "", true)
        .expect("list")
        .expect("root");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].path, ".gitattributes");
    let EntryKind::File { blob, size, lfs } = &entries[0].kind else {
        panic!("a file")
    };
    assert_eq!((*size, lfs), (GITATTRIBUTES.len() as u64, &None));
    assert_eq!(fx.repo.read_blob(blob).expect("blob"), GITATTRIBUTES);

    let (log, more) = fx.repo.log(&fx.initial, 0, 10).expect("log");
    assert_eq!((log.len(), more), (1, false));
}

#[test]
fn head_is_a_symref_to_main() {
    let fx = Fixture::init();
    let head = std::fs::read_to_string(fx.path().join("HEAD")).expect("HEAD file");
    assert_eq!(head, "ref: refs/heads/main\n");
    assert_eq!(
        stdout(&git(&fx.path(), &["symbolic-ref", "HEAD"])),
        "refs/heads/main\n"
    );
    assert_eq!(
        stdout(&git(&fx.path(), &["rev-parse", "--is-bare-repository"])),
        "true\n"
    );
}

#[test]
fn init_refuses_an_existing_path() {
    let fx = Fixture::init();
    let err = GitRepo::init_bare(&fx.path(), &[], &alice(), T0)
        .err()
        .expect("refused");
    assert!(matches!(err, GitError::RepoExists { .. }), "{err:?}");
    // The repository that was there is untouched.
    assert_eq!(fx.main(), fx.initial);
}

#[test]
fn init_refuses_bad_paths_and_leaves_nothing_behind() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let target = dir.path().join("r.git");
    let err = GitRepo::init_bare(&target, &[("../x", b"x")], &alice(), T0)
        .err()
        .expect("refused");
    assert!(matches!(err, GitError::InvalidPath { .. }), "{err:?}");
    assert!(!target.exists());
}

#[test]
fn open_finds_the_repo_and_refuses_a_missing_one() {
    let fx = Fixture::init();
    let reopened = GitRepo::open(&fx.path()).expect("open");
    assert_eq!(
        reopened.resolve_revision("main").expect("resolve"),
        Some(fx.initial.clone())
    );
    let err = GitRepo::open(&fx.dir.path().join("nope.git"))
        .err()
        .expect("missing");
    assert!(matches!(err, GitError::RepoNotFound { .. }), "{err:?}");
}

#[test]
fn signature_with_angle_brackets_is_refused() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let bad = trove_git::Signature {
        name: "<evil>".into(),
        email: "e@example.com".into(),
    };
    let err = GitRepo::init_bare(&dir.path().join("r.git"), &[], &bad, T0)
        .err()
        .expect("refused");
    assert!(matches!(err, GitError::InvalidSignature { .. }), "{err:?}");
}
