//! What a pre-receive hook sees, with objects written by the real git into a quarantine
//! directory exactly as receive-pack arranges it (`GIT_OBJECT_DIRECTORY` = the quarantine,
//! the repository's objects as an alternate).

use crate::Fixture;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use trove_git::{PushView, RefMove};
use trove_types::{GitOid, LfsPointer, Sha256Hex};

const TEN_MIB: u64 = 10 * 1024 * 1024;

/// Runs git against the repository with new objects going to `quarantine`; returns stdout.
fn quarantined_git(repo: &Path, quarantine: &Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_DIR", repo)
        .env("GIT_OBJECT_DIRECTORY", quarantine)
        .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", repo.join("objects"))
        .env("GIT_AUTHOR_NAME", "Bob")
        .env("GIT_AUTHOR_EMAIL", "bob@example.com")
        .env("GIT_COMMITTER_NAME", "Bob")
        .env("GIT_COMMITTER_EMAIL", "bob@example.com")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let output = child.wait_with_output().expect("git output");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn oid(s: &str) -> GitOid {
    GitOid::parse(s).expect("git prints object ids")
}

#[test]
fn new_objects_large_blobs_pointers_and_ref_moves_are_seen_through_the_quarantine() {
    let fx = Fixture::init();
    let repo = fx.path();
    let quarantine = fx.dir.path().join("incoming");
    std::fs::create_dir_all(&quarantine).expect("quarantine dir");
    let hash = |data: &[u8]| {
        oid(&quarantined_git(
            &repo,
            &quarantine,
            &["hash-object", "-w", "--stdin"],
            data,
        ))
    };

    let big = vec![7u8; TEN_MIB as usize];
    let big_blob = hash(&big);
    let pointer = LfsPointer {
        oid: Sha256Hex::parse(&"ab".repeat(32)).expect("hex"),
        size: 123_456_789,
    };
    let pointer_blob = hash(pointer.to_text().as_bytes());
    let small_blob = hash(b"just text\n");
    // Already in the repository: not new, whatever git does with it.
    let old_blob = hash(crate::GITATTRIBUTES);

    let listing = format!(
        "100644 blob {big_blob}\tbig.bin\n100644 blob {pointer_blob}\tmodel.safetensors\n\
         100644 blob {small_blob}\tnotes.txt\n100644 blob {old_blob}\t.gitattributes\n"
    );
    let tree = oid(&quarantined_git(
        &repo,
        &quarantine,
        &["mktree"],
        listing.as_bytes(),
    ));
    let main = fx.main();
    let child = oid(&quarantined_git(
        &repo,
        &quarantine,
        &[
            "commit-tree",
            tree.as_str(),
            "-p",
            main.as_str(),
            "-m",
            "child",
        ],
        b"",
    ));
    let orphan = oid(&quarantined_git(
        &repo,
        &quarantine,
        &["commit-tree", tree.as_str(), "-m", "orphan"],
        b"",
    ));

    // A pointer and a large blob the repository holds already, brought again (as the bases
    // of a thin pack are): not new, not reported.
    let known_pointer = LfsPointer {
        oid: Sha256Hex::parse(&"cd".repeat(32)).expect("hex"),
        size: 1,
    };
    let mut known_big = big.clone();
    known_big[0] = 8;
    for data in [known_pointer.to_text().as_bytes(), &known_big] {
        quarantined_git(
            &repo,
            &repo.join("objects"),
            &["hash-object", "-w", "--stdin"],
            data,
        );
        hash(data);
    }

    let view = PushView::open(&repo, &quarantine).expect("open");
    let found = view
        .new_objects(TEN_MIB, &crate::git_checks(fx.dir.path()))
        .expect("inspect");
    assert_eq!(found.large_blobs, vec![(big_blob.clone(), TEN_MIB)]);
    assert_eq!(found.lfs_pointers, vec![(pointer_blob, pointer)]);

    assert_eq!(
        view.ref_move(Some(&main), Some(&child)).expect("move"),
        RefMove::FastForward
    );
    assert_eq!(
        view.ref_move(Some(&main), Some(&orphan)).expect("move"),
        RefMove::Rewrite
    );
    assert_eq!(
        view.ref_move(Some(&child), Some(&main)).expect("move"),
        RefMove::Rewrite
    );
    assert_eq!(
        view.ref_move(None, Some(&child)).expect("move"),
        RefMove::Create
    );
    assert_eq!(
        view.ref_move(Some(&main), None).expect("move"),
        RefMove::Delete
    );
    assert!(view.is_commit(&child).expect("kind"));
    assert!(!view.is_commit(&tree).expect("kind"));

    let paths = view
        .paths_of(
            std::slice::from_ref(&big_blob),
            &[child],
            std::slice::from_ref(&main),
        )
        .expect("paths");
    assert_eq!(paths.get(&big_blob).map(String::as_str), Some("big.bin"));

    // The repository itself never saw any of it: nothing was published.
    assert!(fx.repo.read_blob(&big_blob).is_err());
    let without = PushView::open_without_quarantine(&repo).expect("open");
    assert_eq!(
        without
            .new_objects(TEN_MIB, &crate::git_checks(fx.dir.path()))
            .expect("none"),
        Default::default()
    );
    assert!(!without.is_commit(&orphan).expect("kind"));
}

#[test]
fn ref_targets_list_every_ref_sorted() {
    let mut fx = Fixture::init();
    let main = fx.main();
    fx.repo
        .create_tag(
            &trove_types::BranchName::parse("v1").expect("name"),
            &main,
            None,
            &crate::alice(),
            crate::T0,
        )
        .expect("tag");
    let refs = fx.repo.ref_targets().expect("refs");
    assert_eq!(
        refs,
        vec![
            ("refs/heads/main".to_owned(), main.clone()),
            ("refs/tags/v1".to_owned(), main)
        ]
    );
}

#[test]
fn a_large_push_is_examined_whole_whatever_the_number_of_threads() {
    // Enough objects for the examination to be shared out between threads on a machine of
    // two cores or more; the findings must be those of one thread reading them all.
    const BLOBS: usize = 6000;
    let fx = Fixture::init();
    let repo = fx.path();
    let quarantine = fx.dir.path().join("incoming");
    std::fs::create_dir_all(&quarantine).expect("quarantine dir");
    let mut stream = Vec::new();
    let mut pointers = Vec::new();
    for n in 0..BLOBS {
        let data = if n % 7 == 0 {
            let pointer = LfsPointer {
                oid: Sha256Hex::parse(&format!("{n:064x}")).expect("hex"),
                size: n as u64,
            };
            pointers.push(pointer.clone());
            pointer.to_text().into_bytes()
        } else {
            format!("file {n}\n").into_bytes()
        };
        stream.extend_from_slice(format!("blob\ndata {}\n", data.len()).as_bytes());
        stream.extend_from_slice(&data);
        stream.push(b'\n');
    }
    // Blobs only, no commit: fast-import writes one pack into the quarantine, moves no ref.
    quarantined_git(&repo, &quarantine, &["fast-import", "--quiet"], &stream);

    let found = PushView::open(&repo, &quarantine)
        .expect("open")
        .new_objects(TEN_MIB, &crate::git_checks(fx.dir.path()))
        .expect("inspect");
    assert!(found.large_blobs.is_empty() && found.bad_names.is_empty());
    let blob_ids: Vec<&GitOid> = found.lfs_pointers.iter().map(|(blob, _)| blob).collect();
    let mut sorted = blob_ids.clone();
    sorted.sort();
    assert_eq!(blob_ids, sorted, "findings come out in id order");
    let mut seen: Vec<LfsPointer> = found.lfs_pointers.into_iter().map(|(_, p)| p).collect();
    seen.sort_by_key(|p| p.size);
    assert_eq!(seen, pointers);
}
