//! Trees with names the path rule refuses, written by the real git (`hash-object
//! --literally`, which checks nothing): a push that brings one is seen for what it is, and a
//! stored one is never served.

use crate::Fixture;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use trove_git::PushView;
use trove_types::GitOid;

/// Names the commit API refuses, each planted as a folder holding `config`.
const HOSTILE: &[&[u8]] = &[
    b".git",
    b".GIT",
    b"..",
    b".",
    b"a/b",
    b"..\\..\\x",
    b"\xff\xfe",
];

/// Writes an object of `kind` with exactly `data`, unchecked, to `objects` (the repository's
/// own object folder, or a quarantine with the repository as alternate).
fn write_object(repo: &Path, objects: &Path, kind: &str, data: &[u8]) -> GitOid {
    let mut child = Command::new("git")
        .args(["hash-object", "-t", kind, "-w", "--literally", "--stdin"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_DIR", repo)
        .env("GIT_OBJECT_DIRECTORY", objects)
        .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", repo.join("objects"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = child.wait_with_output().expect("git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    GitOid::parse(String::from_utf8_lossy(&out.stdout).trim()).expect("object id")
}

/// A raw tree of `(mode, name, id)` entries, sorted as git sorts them (folders as `name/`).
fn raw_tree(entries: &[(&str, &[u8], &GitOid)]) -> Vec<u8> {
    let mut sorted: Vec<_> = entries.to_vec();
    let key = |(mode, name, _): &(&str, &[u8], &GitOid)| {
        let mut k = name.to_vec();
        if *mode == "40000" {
            k.push(b'/');
        }
        k
    };
    sorted.sort_by_key(key);
    let mut out = Vec::new();
    for (mode, name, id) in sorted {
        out.extend_from_slice(mode.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name);
        out.push(0);
        let hex = id.as_str();
        for i in (0..hex.len()).step_by(2) {
            out.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"));
        }
    }
    out
}

/// A commit on top of main whose root holds `README.md` and every hostile folder.
fn hostile_commit(fx: &Fixture, objects: &Path) -> GitOid {
    let repo = fx.path();
    let blob = write_object(&repo, objects, "blob", b"[core]\n\tbare = false\n");
    let folder = write_object(
        &repo,
        objects,
        "tree",
        &raw_tree(&[("100644", b"config", &blob)]),
    );
    let readme = write_object(&repo, objects, "blob", b"# fine\n");
    let mut entries: Vec<(&str, &[u8], &GitOid)> = vec![("100644", b"README.md", &readme)];
    for name in HOSTILE {
        entries.push(("40000", name, &folder));
    }
    let root = write_object(&repo, objects, "tree", &raw_tree(&entries));
    let commit = format!(
        "tree {root}\nparent {}\nauthor Eve <eve@example.com> 1700000000 +0000\n\
         committer Eve <eve@example.com> 1700000000 +0000\n\nplant\n",
        fx.main()
    );
    write_object(&repo, objects, "commit", commit.as_bytes())
}

#[test]
fn a_push_view_names_every_hostile_entry_of_the_new_trees() {
    let fx = Fixture::init();
    let quarantine = fx.dir.path().join("incoming");
    std::fs::create_dir_all(&quarantine).expect("quarantine");
    hostile_commit(&fx, &quarantine);
    let view = PushView::open(&fx.path(), &quarantine).expect("open");
    let found = view
        .new_objects(10 << 20, &crate::git_checks(fx.dir.path()))
        .expect("inspect");
    assert_eq!(
        found.bad_names.len(),
        HOSTILE.len(),
        "{:?}",
        found.bad_names
    );
    for bad in &found.bad_names {
        assert!(bad.reason.starts_with("Invalid path"), "{}", bad.reason);
    }
}

#[test]
fn stored_hostile_entries_are_neither_listed_nor_resolved() {
    let fx = Fixture::init();
    let commit = hostile_commit(&fx, &fx.path().join("objects"));
    assert_eq!(fx.all_paths(&commit), ["README.md"]);
    for path in [".git/config", ".GIT/config", "../config", "a", "a/b/config"] {
        assert_eq!(
            fx.repo.entry_at(&commit, path).expect("read"),
            None,
            "{path}"
        );
    }
    assert!(
        fx.repo
            .entry_at(&commit, "README.md")
            .expect("read")
            .is_some()
    );
}

/// A commit on top of main whose root holds `entries`, written to `objects`.
fn commit_of(fx: &Fixture, objects: &Path, entries: &[(&str, &[u8], &GitOid)]) -> GitOid {
    let repo = fx.path();
    let root = write_object(&repo, objects, "tree", &raw_tree(entries));
    let commit = format!(
        "tree {root}\nparent {}\nauthor Eve <eve@example.com> 1700000000 +0000\n\
         committer Eve <eve@example.com> 1700000000 +0000\n\nplant\n",
        fx.main()
    );
    write_object(&repo, objects, "commit", commit.as_bytes())
}

/// A root tree holding one `README.md`, written into `objects`.
fn readme_tree(repo: &Path, objects: &Path) -> GitOid {
    let readme = write_object(repo, objects, "blob", b"# model\n");
    write_object(
        repo,
        objects,
        "tree",
        &raw_tree(&[("100644", b"README.md", &readme)]),
    )
}

/// What a push view finds of a quarantine holding what `plant` writes into it.
fn examined(plant: impl FnOnce(&Fixture, &Path)) -> trove_git::NewObjects {
    let fx = Fixture::init();
    let quarantine = fx.dir.path().join("incoming");
    std::fs::create_dir_all(&quarantine).expect("quarantine");
    plant(&fx, &quarantine);
    let scratch = fx.dir.path().join("scratch");
    let found = PushView::open(&fx.path(), &quarantine)
        .expect("open")
        .new_objects(10 << 20, &crate::git_checks(&scratch))
        .expect("inspect");
    // git's checks leave nothing behind, neither in the quarantine nor in the scratch.
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    found
}

#[test]
fn plain_objects_are_vouched_for_without_git() {
    let found = examined(|fx, q| {
        let repo = fx.path();
        let attrs = write_object(
            &repo,
            q,
            "blob",
            b"*.bin filter=lfs diff=lfs merge=lfs -text\n",
        );
        let readme = write_object(&repo, q, "blob", b"# model\n");
        commit_of(
            fx,
            q,
            &[
                ("100644", b".gitattributes", &attrs),
                ("100644", b"README.md", &readme),
            ],
        );
    });
    assert_eq!(found.doubted, None);
    assert_eq!(found.refused_by_git, None);
}

#[test]
fn what_git_refuses_is_found_by_git_checks() {
    // A `.gitmodules` whose URL reads as an option: doubted by name, refused by git.
    let found = examined(|fx, q| {
        let modules = write_object(
            &fx.path(),
            q,
            "blob",
            b"[submodule \"x\"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n",
        );
        commit_of(fx, q, &[("100644", b".gitmodules", &modules)]);
    });
    assert!(found.doubted.is_some(), "{found:?}");
    let said = found.refused_by_git.expect("refused");
    assert!(said.contains("gitmodulesUrl"), "{said}");

    // A tree naming an object neither pushed nor held.
    let found = examined(|fx, q| {
        let missing = GitOid::parse(&"12".repeat(20)).expect("id");
        commit_of(fx, q, &[("100644", b"ghost", &missing)]);
    });
    assert!(
        found
            .doubted
            .expect("doubted")
            .contains("neither pushed nor held")
    );
    assert!(found.refused_by_git.is_some());

    // A commit without an author.
    let found = examined(|fx, q| {
        let repo = fx.path();
        let root = readme_tree(&repo, q);
        let commit = format!(
            "tree {root}\nparent {}\ncommitter Eve <eve@example.com> 1700000000 +0000\n\nx\n",
            fx.main()
        );
        write_object(&repo, q, "commit", commit.as_bytes());
    });
    let said = found.refused_by_git.expect("refused");
    assert!(said.contains("missingAuthor"), "{said}");

    // A tree whose `.gitattributes` has a line longer than git reads.
    let found = examined(|fx, q| {
        let mut long = b"*.bin ".to_vec();
        long.extend(vec![b'x'; 4096]);
        let attrs = write_object(&fx.path(), q, "blob", &long);
        commit_of(fx, q, &[("100644", b".gitattributes", &attrs)]);
    });
    let said = found.refused_by_git.expect("refused");
    assert!(said.contains("gitattributesLineLength"), "{said}");
}

#[test]
fn what_git_accepts_after_a_doubt_is_not_refused() {
    // A well-formed `.gitmodules`: doubted by name, passed by git.
    let found = examined(|fx, q| {
        let modules = write_object(
            &fx.path(),
            q,
            "blob",
            b"[submodule \"lib\"]\n\tpath = lib\n\turl = https://example.com/lib.git\n",
        );
        commit_of(fx, q, &[("100644", b".gitmodules", &modules)]);
    });
    assert!(found.doubted.is_some(), "{found:?}");
    assert_eq!(found.refused_by_git, None);
}

#[test]
fn a_commit_too_large_to_read_here_is_left_to_git() {
    // 2 MiB of message: past the examination's budget, nothing of it read; git passes it.
    let found = examined(|fx, q| {
        let repo = fx.path();
        let root = readme_tree(&repo, q);
        let mut commit = format!(
            "tree {root}\nparent {}\nauthor Eve <eve@example.com> 1700000000 +0000\n\
             committer Eve <eve@example.com> 1700000000 +0000\n\n",
            fx.main()
        )
        .into_bytes();
        commit.extend(b"long message\n".repeat(160 * 1024));
        write_object(&repo, q, "commit", &commit);
    });
    assert!(
        found
            .doubted
            .as_deref()
            .is_some_and(|d| d.contains("too large")),
        "{found:?}"
    );
    assert_eq!(found.refused_by_git, None);
}
