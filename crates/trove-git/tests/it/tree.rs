//! Tree listings, entries, and LFS pointer detection.

use crate::Fixture;
use trove_git::{Entry, EntryKind};
use trove_types::{LfsPointer, Sha256Hex};

fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

fn fixture() -> (Fixture, trove_types::GitOid) {
    let mut fx = Fixture::init();
    let head = fx.commit_files(
        &[
            ("a.txt", b"a"),
            ("a/x.txt", b"x"),
            ("a/deep/y.txt", b"y"),
            ("b/z.txt", b"z"),
            ("dir with space/é ü.json", b"{}"),
            ("日本語/ファイル.txt", b"jp"),
        ],
        "add",
        1,
    );
    (fx, head)
}

#[test]
fn lists_direct_children() {
    let (fx, head) = fixture();
    let root = fx
        .repo
        .list_tree(&head, "", false)
        .expect("list")
        .expect("root");
    // git's tree order: "a.txt" before the folder "a", which compares as "a/".
    assert_eq!(
        names(&root),
        [
            ".gitattributes",
            "a.txt",
            "a",
            "b",
            "dir with space",
            "日本語"
        ]
    );
    assert!(matches!(root[2].kind, EntryKind::Dir { .. }));
    let sub = fx
        .repo
        .list_tree(&head, "a", false)
        .expect("list")
        .expect("a");
    assert_eq!(names(&sub), ["a/deep", "a/x.txt"]);
    let sub = fx
        .repo
        .list_tree(&head, "a/", false)
        .expect("list")
        .expect("a/");
    assert_eq!(names(&sub), ["a/deep", "a/x.txt"]);
}

#[test]
fn lists_recursively_depth_first() {
    let (fx, head) = fixture();
    let all = fx
        .repo
        .list_tree(&head, "", true)
        .expect("list")
        .expect("root");
    assert_eq!(
        names(&all),
        [
            ".gitattributes",
            "a.txt",
            "a",
            "a/deep",
            "a/deep/y.txt",
            "a/x.txt",
            "b",
            "b/z.txt",
            "dir with space",
            "dir with space/é ü.json",
            "日本語",
            "日本語/ファイル.txt",
        ]
    );
    let sub = fx
        .repo
        .list_tree(&head, "a", true)
        .expect("list")
        .expect("a");
    assert_eq!(names(&sub), ["a/deep", "a/deep/y.txt", "a/x.txt"]);
}

#[test]
fn missing_dir_or_file_is_none() {
    let (fx, head) = fixture();
    assert_eq!(fx.repo.list_tree(&head, "nope", false).expect("list"), None);
    assert_eq!(fx.repo.list_tree(&head, "a.txt", true).expect("list"), None);
    assert_eq!(
        fx.repo.list_tree(&head, "a//deep", true).expect("list"),
        None
    );
}

#[test]
fn entry_at_finds_files_folders_and_root() {
    let (fx, head) = fixture();
    let file = fx
        .repo
        .entry_at(&head, "dir with space/é ü.json")
        .expect("entry")
        .expect("exists");
    let EntryKind::File { blob, size, lfs } = file.kind else {
        panic!("a file")
    };
    assert_eq!((size, lfs), (2, None));
    assert_eq!(fx.repo.read_blob(&blob).expect("read"), b"{}");
    assert!(matches!(
        fx.repo
            .entry_at(&head, "日本語")
            .expect("entry")
            .map(|e| e.kind),
        Some(EntryKind::Dir { .. })
    ));
    let root = fx.repo.entry_at(&head, "").expect("entry").expect("root");
    assert_eq!(root.path, "");
    assert!(matches!(root.kind, EntryKind::Dir { .. }));
    assert_eq!(fx.repo.entry_at(&head, "a.txt/below").expect("entry"), None);
    assert_eq!(fx.repo.entry_at(&head, "missing").expect("entry"), None);
}

#[test]
fn lfs_pointers_report_the_real_size() {
    let mut fx = Fixture::init();
    let pointer = LfsPointer {
        oid: Sha256Hex::parse(&"ab".repeat(32)).expect("sha"),
        size: 5_000_000_000,
    };
    let text = pointer.to_text();
    // Starts like a pointer but is too large to be one: ordinary content.
    let big = format!("{text}{}", "x".repeat(2000));
    let head = fx.commit_files(
        &[
            ("model.safetensors", text.as_bytes()),
            ("big.txt", big.as_bytes()),
            ("small.txt", b"hi"),
        ],
        "lfs",
        1,
    );
    let entries = fx
        .repo
        .list_tree(&head, "", false)
        .expect("list")
        .expect("root");
    let kind = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == p)
            .map(|e| e.kind.clone())
            .expect("listed")
    };
    let EntryKind::File {
        size,
        lfs: Some(info),
        ..
    } = kind("model.safetensors")
    else {
        panic!("an LFS file")
    };
    assert_eq!(size, 5_000_000_000);
    assert_eq!(info.pointer, pointer);
    assert_eq!(info.pointer_size, text.len() as u64);
    assert!(
        matches!(kind("big.txt"), EntryKind::File { lfs: None, size, .. } if size == big.len() as u64)
    );
    assert!(matches!(
        kind("small.txt"),
        EntryKind::File {
            lfs: None,
            size: 2,
            ..
        }
    ));
    let entry = fx
        .repo
        .entry_at(&head, "model.safetensors")
        .expect("entry")
        .expect("exists");
    assert!(matches!(
        entry.kind,
        EntryKind::File {
            size: 5_000_000_000,
            lfs: Some(_),
            ..
        }
    ));
}
