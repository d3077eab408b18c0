//! Building commits from operations, and the compare-and-swap on the ref.

use crate::{Fixture, T0, alice, path};
use trove_git::{CommitError, EntryKind, TreeOp};

fn blob_of(fx: &Fixture, commit: &trove_types::GitOid, p: &str) -> Vec<u8> {
    match fx.repo.entry_at(commit, p).expect("entry").map(|e| e.kind) {
        Some(EntryKind::File { blob, .. }) => fx.repo.read_blob(&blob).expect("read"),
        other => panic!("{p} is not a file: {other:?}"),
    }
}

#[test]
fn adds_nested_files_and_replaces_one() {
    let mut fx = Fixture::init();
    let c1 = fx.commit_files(
        &[
            ("a/b/c.txt", b"one"),
            ("a/d.txt", b"two"),
            ("top.txt", b"three"),
        ],
        "add",
        1,
    );
    assert_eq!(fx.main(), c1);
    assert_eq!(
        fx.all_paths(&c1),
        [
            ".gitattributes",
            "a",
            "a/b",
            "a/b/c.txt",
            "a/d.txt",
            "top.txt"
        ]
    );
    let info = fx.repo.commit_info(&c1).expect("info");
    assert_eq!(info.parents, std::slice::from_ref(&fx.initial));
    assert_eq!(info.time_unix, T0 + 1);

    let c2 = fx.commit_files(&[("a/b/c.txt", b"ONE")], "replace", 2);
    assert_eq!(blob_of(&fx, &c2, "a/b/c.txt"), b"ONE");
    assert_eq!(blob_of(&fx, &c2, "a/d.txt"), b"two");
    assert_eq!(
        blob_of(&fx, &c1, "a/b/c.txt"),
        b"one",
        "old commit unchanged"
    );
}

#[test]
fn message_is_summary_then_description() {
    let mut fx = Fixture::init();
    let blob = fx.repo.write_blob(b"x").expect("blob");
    let ops = [TreeOp::Upsert {
        path: path("x"),
        blob,
    }];
    let c = fx
        .repo
        .commit(
            "refs/heads/main",
            Some(&fx.initial),
            &ops,
            "Add x",
            "Longer text.\n\nSecond paragraph.\n",
            &alice(),
            T0,
        )
        .expect("commit");
    let info = fx.repo.commit_info(&c).expect("info");
    assert_eq!(info.title, "Add x");
    assert_eq!(info.message, "Add x\n\nLonger text.\n\nSecond paragraph.");
}

#[test]
fn deletes_a_file_and_drops_folders_left_empty() {
    let mut fx = Fixture::init();
    fx.commit_files(&[("a/b/c.txt", b"1"), ("a/keep.txt", b"2")], "add", 1);
    let c = fx.apply(
        &[TreeOp::DeleteFile {
            path: path("a/b/c.txt"),
        }],
        "rm",
        2,
    );
    assert_eq!(fx.all_paths(&c), [".gitattributes", "a", "a/keep.txt"]);
    let c = fx.apply(
        &[TreeOp::DeleteFile {
            path: path("a/keep.txt"),
        }],
        "rm",
        3,
    );
    assert_eq!(fx.all_paths(&c), [".gitattributes"]);
}

#[test]
fn deletes_a_folder_with_its_content() {
    let mut fx = Fixture::init();
    fx.commit_files(
        &[
            ("data/x/1.csv", b"1"),
            ("data/2.csv", b"2"),
            ("data.txt", b"3"),
        ],
        "add",
        1,
    );
    let c = fx.apply(&[TreeOp::DeleteFolder { path: path("data") }], "rm data", 2);
    assert_eq!(fx.all_paths(&c), [".gitattributes", "data.txt"]);
}

#[test]
fn upsert_after_deleting_its_folder_is_fine() {
    let mut fx = Fixture::init();
    fx.commit_files(&[("data/1.csv", b"1")], "add", 1);
    let blob = fx.repo.write_blob(b"now a file").expect("blob");
    let c = fx.apply(
        &[
            TreeOp::DeleteFolder { path: path("data") },
            TreeOp::Upsert {
                path: path("data"),
                blob,
            },
        ],
        "swap",
        2,
    );
    assert_eq!(fx.all_paths(&c), [".gitattributes", "data"]);
    assert_eq!(blob_of(&fx, &c, "data"), b"now a file");
}

#[test]
fn can_delete_everything() {
    let mut fx = Fixture::init();
    let c = fx.apply(
        &[TreeOp::DeleteFile {
            path: path(".gitattributes"),
        }],
        "empty",
        1,
    );
    assert_eq!(fx.all_paths(&c), Vec::<String>::new());
}

#[test]
fn deleting_a_file_that_names_a_folder_deletes_the_folder() {
    let mut fx = Fixture::init();
    let head = fx.commit_files(
        &[("dir/f.txt", b"1"), ("dir/sub/g.txt", b"2"), ("top", b"3")],
        "add",
        1,
    );
    let new = fx
        .repo
        .commit(
            "refs/heads/main",
            Some(&head),
            &[TreeOp::DeleteFile { path: path("dir") }],
            "rm",
            "",
            &alice(),
            T0,
        )
        .expect("deleted");
    assert!(fx.repo.entry_at(&new, "dir").expect("read").is_none());
    assert!(fx.repo.entry_at(&new, "top").expect("read").is_some());
}

#[test]
fn deleting_what_is_not_there_fails_and_leaves_the_ref() {
    let mut fx = Fixture::init();
    let head = fx.commit_files(&[("dir/f.txt", b"1")], "add", 1);
    let cases = [
        TreeOp::DeleteFile {
            path: path("missing.txt"),
        },
        TreeOp::DeleteFile {
            path: path("dir/f.txt/deeper"),
        },
        TreeOp::DeleteFolder {
            path: path("dir/f.txt"),
        },
        TreeOp::DeleteFolder {
            path: path("nodir"),
        },
    ];
    for op in cases {
        let err = fx
            .repo
            .commit(
                "refs/heads/main",
                Some(&head),
                std::slice::from_ref(&op),
                "rm",
                "",
                &alice(),
                T0,
            )
            .expect_err("must fail");
        assert!(
            matches!(&err, CommitError::EntryNotFound { .. }),
            "{op:?}: {err:?}"
        );
        assert_eq!(fx.main(), head);
    }
    // A folder emptied earlier in the same commit no longer exists.
    let err = fx
        .repo
        .commit(
            "refs/heads/main",
            Some(&head),
            &[
                TreeOp::DeleteFile {
                    path: path("dir/f.txt"),
                },
                TreeOp::DeleteFolder { path: path("dir") },
            ],
            "rm",
            "",
            &alice(),
            T0,
        )
        .expect_err("must fail");
    assert!(
        matches!(&err, CommitError::EntryNotFound { path } if path == "dir"),
        "{err:?}"
    );
}

#[test]
fn file_folder_conflicts_fail_and_leave_the_ref() {
    let mut fx = Fixture::init();
    let head = fx.commit_files(&[("dir/f.txt", b"1"), ("file", b"2")], "add", 1);
    let blob = fx.repo.write_blob(b"x").expect("blob");
    for p in ["dir", "file/below", "dir/f.txt/below"] {
        let op = TreeOp::Upsert {
            path: path(p),
            blob: blob.clone(),
        };
        let err = fx
            .repo
            .commit(
                "refs/heads/main",
                Some(&head),
                &[op],
                "bad",
                "",
                &alice(),
                T0,
            )
            .expect_err("must fail");
        assert!(
            matches!(&err, CommitError::PathConflict { path } if path == p),
            "{p}: {err:?}"
        );
        assert_eq!(fx.main(), head);
    }
}

#[test]
fn unknown_blob_is_refused() {
    let mut fx = Fixture::init();
    let blob = trove_types::GitOid::parse(&"1".repeat(40)).expect("oid");
    let err = fx
        .repo
        .commit(
            "refs/heads/main",
            Some(&fx.initial),
            &[TreeOp::Upsert {
                path: path("x"),
                blob,
            }],
            "x",
            "",
            &alice(),
            T0,
        )
        .expect_err("must fail");
    assert!(matches!(err, CommitError::BlobNotFound { .. }), "{err:?}");
    assert_eq!(fx.main(), fx.initial);
}

#[test]
fn stale_base_is_refused_and_leaves_the_ref() {
    let mut fx = Fixture::init();
    let head = fx.commit_files(&[("a", b"1")], "first writer", 1);
    let blob = fx.repo.write_blob(b"2").expect("blob");
    let err = fx
        .repo
        .commit(
            "refs/heads/main",
            Some(&fx.initial),
            &[TreeOp::Upsert {
                path: path("b"),
                blob,
            }],
            "late",
            "",
            &alice(),
            T0,
        )
        .expect_err("stale");
    match err {
        CommitError::RefMoved {
            expected, actual, ..
        } => {
            assert_eq!(expected, Some(fx.initial.clone()));
            assert_eq!(actual, Some(head.clone()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.main(), head);

    // `None` means "the ref must not exist yet".
    let err = fx
        .repo
        .commit("refs/heads/main", None, &[], "x", "", &alice(), T0)
        .expect_err("exists");
    assert!(matches!(err, CommitError::RefMoved { .. }), "{err:?}");
    // A base given for a ref that does not exist.
    let err = fx
        .repo
        .commit("refs/heads/nope", Some(&head), &[], "x", "", &alice(), T0)
        .expect_err("absent");
    assert!(
        matches!(err, CommitError::RefMoved { actual: None, .. }),
        "{err:?}"
    );
    assert_eq!(fx.repo.ref_target("refs/heads/nope").expect("read"), None);
}

#[test]
fn commits_on_a_pull_request_ref_leave_main_alone() {
    let mut fx = Fixture::init();
    fx.repo
        .create_ref("refs/pr/1", &fx.initial)
        .expect("create pr ref");
    let blob = fx.repo.write_blob(b"pr").expect("blob");
    let c = fx
        .repo
        .commit(
            "refs/pr/1",
            Some(&fx.initial),
            &[TreeOp::Upsert {
                path: path("pr.txt"),
                blob,
            }],
            "pr",
            "",
            &alice(),
            T0,
        )
        .expect("commit");
    assert_eq!(
        fx.repo.ref_target("refs/pr/1").expect("read"),
        Some(c.clone())
    );
    assert_eq!(fx.main(), fx.initial);
    // A fast-forward merge is a compare-and-swap of main.
    fx.repo
        .update_ref("refs/heads/main", Some(&fx.initial), &c)
        .expect("fast-forward");
    assert_eq!(fx.main(), c);
    let err = fx
        .repo
        .update_ref("refs/heads/main", Some(&fx.initial), &c)
        .expect_err("stale");
    assert!(matches!(err, CommitError::RefMoved { .. }), "{err:?}");
}

#[test]
fn new_ref_from_nothing_gets_a_root_commit() {
    let mut fx = Fixture::init();
    let blob = fx.repo.write_blob(b"orphan").expect("blob");
    let c = fx
        .repo
        .commit(
            "refs/heads/orphan",
            None,
            &[TreeOp::Upsert {
                path: path("o.txt"),
                blob,
            }],
            "orphan",
            "",
            &alice(),
            T0,
        )
        .expect("commit");
    assert!(fx.repo.commit_info(&c).expect("info").parents.is_empty());
    assert_eq!(fx.all_paths(&c), ["o.txt"]);
}

#[test]
fn invalid_ref_names_are_refused() {
    let mut fx = Fixture::init();
    for bad in ["main", "refs/heads/a..b", "refs/heads/x~1", "HEAD"] {
        let err = fx
            .repo
            .commit(bad, Some(&fx.initial), &[], "x", "", &alice(), T0)
            .expect_err("refused");
        assert!(
            matches!(err, CommitError::InvalidRef { .. }),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn ops_apply_in_order() {
    let mut fx = Fixture::init();
    let one = fx.repo.write_blob(b"1").expect("blob");
    let two = fx.repo.write_blob(b"2").expect("blob");
    let c = fx.apply(
        &[
            TreeOp::Upsert {
                path: path("f"),
                blob: one,
            },
            TreeOp::Upsert {
                path: path("f"),
                blob: two,
            },
            TreeOp::Upsert {
                path: path("g/h"),
                blob: fx.repo.write_blob(b"3").expect("blob"),
            },
            TreeOp::DeleteFile { path: path("g/h") },
        ],
        "ordered",
        1,
    );
    assert_eq!(blob_of(&fx, &c, "f"), b"2");
    assert_eq!(fx.all_paths(&c), [".gitattributes", "f"]);
}

#[test]
fn squash_keeps_the_tree_drops_the_parents_and_refuses_a_moved_ref() {
    let mut fx = Fixture::init();
    fx.commit_files(&[("a.txt", b"1")], "one", 1);
    let head = fx.commit_files(&[("a.txt", b"2"), ("b/c.txt", b"3")], "two", 2);
    let stale = fx.initial.clone();
    // A head the caller did not observe: refused, the ref left alone.
    let err = fx
        .repo
        .squash("refs/heads/main", &stale, "squash", &alice(), T0 + 3)
        .expect_err("stale");
    assert!(matches!(err, CommitError::RefMoved { .. }), "{err:?}");
    assert_eq!(fx.main(), head);
    let err = fx
        .repo
        .squash("heads/main", &head, "squash", &alice(), T0 + 3)
        .expect_err("invalid ref");
    assert!(matches!(err, CommitError::InvalidRef { .. }), "{err:?}");

    let squashed = fx
        .repo
        .squash("refs/heads/main", &head, "All in one", &alice(), T0 + 3)
        .expect("squash");
    assert_eq!(fx.main(), squashed);
    let info = fx.repo.commit_info(&squashed).expect("info");
    assert!(info.parents.is_empty(), "{:?}", info.parents);
    assert_eq!(info.time_unix, T0 + 3);
    assert_eq!(fx.all_paths(&squashed), fx.all_paths(&head));
    assert_eq!(blob_of(&fx, &squashed, "a.txt"), b"2");
    assert_eq!(blob_of(&fx, &squashed, "b/c.txt"), b"3");
    let (log, more) = fx.repo.log(&squashed, 0, 10).expect("log");
    let titles: Vec<&str> = log.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles, ["All in one"]);
    assert!(!more);
}
