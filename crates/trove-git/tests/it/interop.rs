//! The real git CLI reads what we write, and we read what it writes.

use crate::{Fixture, T0, alice, git, path, stdout};
use trove_git::{EntryKind, GitRepo, TreeOp};
use trove_types::{BranchName, LfsPointer, Sha256Hex};

#[test]
fn git_cli_clones_and_fscks_what_we_write() {
    let mut fx = Fixture::init();
    let pointer = LfsPointer {
        oid: Sha256Hex::parse(&"cd".repeat(32)).expect("sha"),
        size: 123_456,
    }
    .to_text();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("README.md", b"# Model\n".to_vec()),
        ("model.safetensors", pointer.into_bytes()),
        ("dir with space/é ü.json", b"{\"a\": 1}".to_vec()),
        ("日本語/ファイル.txt", "こんにちは".as_bytes().to_vec()),
        ("a/b/c/d.bin", (0u8..=255).collect()),
        ("old/gone.txt", b"bye".to_vec()),
    ];
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_slice())).collect();
    fx.commit_files(&borrowed, "Upload files", 1);
    let head = fx.apply(
        &[TreeOp::DeleteFolder { path: path("old") }],
        "Remove old",
        2,
    );
    let tag = BranchName::parse("v1.0").expect("tag name");
    fx.repo
        .create_tag(&tag, &head, Some("First release"), &alice(), T0 + 3)
        .expect("tag");

    let bare = fx.path();
    git(&bare, &["fsck", "--strict", "--no-dangling"]);
    let ours: Vec<String> = fx
        .repo
        .log(&head, 0, 100)
        .expect("log")
        .0
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    let theirs = stdout(&git(&bare, &["log", "--format=%H", "main"]));
    assert_eq!(theirs.lines().collect::<Vec<_>>(), ours);
    assert_eq!(
        stdout(&git(&bare, &["log", "-1", "--format=%s|%an|%ae|%at"])),
        format!("Remove old|Alice Example|alice@example.com|{}\n", T0 + 2)
    );
    assert_eq!(
        stdout(&git(&bare, &["rev-parse", "v1.0^{commit}"])).trim(),
        head.as_str()
    );

    let work = fx.dir.path().join("work");
    git(
        fx.dir.path(),
        &[
            "clone",
            "--quiet",
            bare.to_str().expect("utf-8 path"),
            work.to_str().expect("utf-8 path"),
        ],
    );
    for (p, content) in &files {
        let on_disk = std::fs::read(work.join(p));
        if p.starts_with("old/") {
            assert!(on_disk.is_err(), "{p} was deleted");
        } else {
            assert_eq!(&on_disk.expect("cloned file"), content, "{p}");
        }
    }
    assert_eq!(
        std::fs::read(work.join(".gitattributes")).expect("attributes"),
        crate::GITATTRIBUTES
    );
    assert_eq!(
        stdout(&git(&work, &["rev-parse", "HEAD"])).trim(),
        head.as_str()
    );
}

#[test]
fn we_read_what_git_cli_pushes() {
    let fx = Fixture::init();
    let bare = fx.path();
    let work = fx.dir.path().join("work");
    git(
        fx.dir.path(),
        &[
            "clone",
            "--quiet",
            bare.to_str().expect("utf-8 path"),
            work.to_str().expect("utf-8 path"),
        ],
    );
    std::fs::create_dir_all(work.join("sub dir")).expect("mkdir");
    std::fs::write(work.join("sub dir/ünï.txt"), b"from git").expect("write");
    std::fs::write(work.join("run.sh"), b"#!/bin/sh\n").expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["update-index", "--chmod=+x", "run.sh"]);
    git(
        &work,
        &[
            "commit",
            "--quiet",
            "-m",
            "From the CLI",
            "-m",
            "Body text.",
        ],
    );
    git(&work, &["push", "--quiet", "origin", "main"]);

    let mut repo = GitRepo::open(&bare).expect("open");
    let head = repo
        .resolve_revision("main")
        .expect("resolve")
        .expect("main");
    assert_eq!(
        stdout(&git(&work, &["rev-parse", "HEAD"])).trim(),
        head.as_str()
    );
    let info = repo.commit_info(&head).expect("info");
    assert_eq!(
        (info.title.as_str(), info.message.as_str()),
        ("From the CLI", "From the CLI\n\nBody text.")
    );
    assert_eq!(
        (info.author_name.as_str(), info.time_unix),
        ("Bob", 1_700_000_900)
    );
    let entry = repo
        .entry_at(&head, "sub dir/ünï.txt")
        .expect("entry")
        .expect("exists");
    let EntryKind::File { blob, .. } = entry.kind else {
        panic!("a file")
    };
    assert_eq!(repo.read_blob(&blob).expect("read"), b"from git");

    // Editing a sibling keeps the executable file's mode as git wrote it.
    let blob = repo.write_blob(b"new").expect("blob");
    repo.commit(
        "refs/heads/main",
        Some(&head),
        &[TreeOp::Upsert {
            path: path("sub dir/new.txt"),
            blob,
        }],
        "add",
        "",
        &alice(),
        T0,
    )
    .expect("commit");
    git(&bare, &["fsck", "--strict", "--no-dangling"]);
    assert!(stdout(&git(&bare, &["ls-tree", "main", "run.sh"])).starts_with("100755 "));
}
