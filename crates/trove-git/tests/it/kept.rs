//! `KeptRepos`: a handle given back is the one the next read of the same repository and
//! generation takes; another generation, another folder or a full set opens anew; and a kept
//! handle sees what was written behind its back (a commit through another handle, a pack
//! pushed by git, `git gc`).

use crate::{Fixture, git};
use trove_git::{GitRepo, KeptRepos};

#[test]
fn a_handle_given_back_is_taken_again_within_the_bounds() {
    let a = Fixture::init();
    let b = Fixture::init();
    let kept = KeptRepos::new(2);
    let first = kept.take(&a.path(), 1).expect("open");
    assert!(kept.is_empty());
    kept.give_back(first, 1);
    assert_eq!(kept.len(), 1);
    // Another generation of the same folder does not get it.
    let other = kept.take(&a.path(), 2).expect("open");
    assert_eq!(kept.len(), 1);
    let again = kept.take(&a.path(), 1).expect("kept");
    assert!(kept.is_empty());
    kept.give_back(again, 1);
    kept.give_back(other, 2);
    kept.give_back(kept.take(&b.path(), 1).expect("open"), 1);
    // At most two idle: the one given back longest ago (a, generation 1) was closed.
    assert_eq!(kept.len(), 2);
    let b_handle = kept.take(&b.path(), 1).expect("kept");
    let _a2 = kept.take(&a.path(), 2).expect("kept");
    assert!(kept.is_empty());
    kept.give_back(b_handle, 1);
    kept.forget(&b.path());
    assert!(kept.is_empty());
    // None kept at all with a bound of zero.
    let none = KeptRepos::new(0);
    none.give_back(none.take(&a.path(), 1).expect("open"), 1);
    assert!(none.is_empty());
}

/// `take_idle` never opens: only a handle given back, of the same generation and the folder
/// that is there now, comes out of it.
#[test]
fn take_idle_gives_only_a_kept_handle_of_the_folder_there_now() {
    let mut f = Fixture::init();
    let head = f.commit_files(&[("a.txt", b"a")], "a", 1);
    let kept = KeptRepos::new(4);
    let path = f.path();
    assert!(kept.take_idle(&path, 1).is_none(), "nothing idle: no open");
    kept.give_back(kept.take(&path, 1).expect("open"), 1);
    assert!(kept.take_idle(&path, 2).is_none(), "another generation");
    let idle = kept.take_idle(&path, 1).expect("the kept handle");
    assert_eq!(idle.resolve_revision("main").expect("resolve"), Some(head));
    assert!(kept.take_idle(&path, 1).is_none(), "taken: no longer idle");
    kept.give_back(idle, 1);

    let moved = tempfile::TempDir::new().expect("temp dir");
    let aside = moved.path().join("aside.git");
    std::fs::rename(&path, &aside).expect("move the folder away");
    assert!(kept.take_idle(&path, 1).is_none(), "the folder is gone");
    GitRepo::init_bare(&path, &[("b.txt", b"new")], &crate::alice(), 7).expect("init");
    assert!(
        kept.take_idle(&path, 1).is_none(),
        "another folder at the path"
    );
    assert!(kept.is_empty(), "the old folder's handle was closed");
}

#[test]
fn a_folder_removed_or_made_again_never_gets_the_old_folders_handle() {
    let mut f = Fixture::init();
    let first = f.commit_files(&[("a.txt", b"old")], "old", 1);
    let kept = KeptRepos::new(4);
    let path = f.path();
    let handle = kept.take(&path, 1).expect("open");
    assert_eq!(
        handle.resolve_revision("main").expect("resolve"),
        Some(first.clone())
    );
    kept.give_back(handle, 1);
    assert_eq!(kept.len(), 1);

    // Removed: the take opens, and the open finds it missing, as without kept handles (the
    // kept handle would still answer from the refs and packs it has open).
    let moved = tempfile::TempDir::new().expect("temp dir");
    let aside = moved.path().join("aside.git");
    std::fs::rename(&path, &aside).expect("move the folder away");
    assert!(matches!(
        kept.take(&path, 1),
        Err(trove_git::GitError::RepoNotFound { .. })
    ));
    assert!(kept.is_empty(), "the removed folder's handle was closed");

    // Made again at the same path, same generation (a folder put back after it went
    // missing): its own, new history, never the old handle's.
    let handle = kept.take(&aside, 1).expect("open");
    kept.give_back(handle, 1);
    let (_, new_head) =
        GitRepo::init_bare(&path, &[("b.txt", b"new")], &crate::alice(), 7).expect("init");
    assert_ne!(new_head, first);
    let fresh = kept.take(&path, 1).expect("open");
    assert_eq!(
        fresh.resolve_revision("main").expect("resolve"),
        Some(new_head)
    );
    kept.give_back(fresh, 1);
    // The old folder, back at the same path: again not the handle of the folder before it.
    std::fs::remove_dir_all(&path).expect("remove");
    std::fs::rename(&aside, &path).expect("move back");
    let back = kept.take(&path, 1).expect("open");
    assert_eq!(back.resolve_revision("main").expect("resolve"), Some(first));
}

#[test]
fn a_kept_handle_sees_every_write_made_behind_its_back() {
    let mut f = Fixture::init();
    let kept = KeptRepos::new(4);
    let folder = f.path();
    let read = |path: &str| {
        let repo = kept.take(&folder, 1).expect("open");
        let head = repo
            .resolve_revision("main")
            .expect("resolve")
            .expect("main exists");
        let blob = match repo.entry_at(&head, path).expect("tree") {
            Some(trove_git::Entry {
                kind: trove_git::EntryKind::File { blob, .. },
                ..
            }) => blob,
            other => panic!("{path} is not a file at {head}: {other:?}"),
        };
        let bytes = repo.read_blob(&blob).expect("blob");
        kept.give_back(repo, 1);
        (head, bytes)
    };
    let c1 = f.commit_files(&[("a.txt", b"one")], "one", 1);
    assert_eq!(read("a.txt"), (c1, b"one".to_vec()));
    // Through another handle, as a commit of the API.
    let c2 = f.commit_files(&[("a.txt", b"two")], "two", 2);
    assert_eq!(read("a.txt"), (c2, b"two".to_vec()));
    // Through git in another process: a pushed pack, then loose objects, then a gc that
    // packs the refs and deletes every pack and loose object read so far.
    let scratch = tempfile::TempDir::new().expect("temp dir");
    let work = scratch.path().join("work");
    let bare = f.path();
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(git(
        scratch.path(),
        &[
            "clone",
            "-q",
            bare.to_str().expect("utf-8"),
            work.to_str().expect("utf-8"),
        ],
    ));
    for (round, unpack) in [(3, "1"), (4, "1000"), (5, "1")] {
        let content = format!("v{round}");
        std::fs::write(work.join("a.txt"), &content).expect("write");
        ok(git(&work, &["commit", "-q", "-am", &content]));
        let receive = format!("--receive-pack=git -c receive.unpackLimit={unpack} receive-pack");
        ok(git(&work, &["push", "-q", &receive, "origin", "HEAD:main"]));
        if round == 5 {
            ok(git(&bare, &["gc", "-q", "--prune=now"]));
        }
        let head = f.main();
        assert_eq!(read("a.txt"), (head, content.into_bytes()));
    }
}
