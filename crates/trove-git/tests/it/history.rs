//! Logs and the last commit of each path.

use crate::{Fixture, path};
use trove_git::TreeOp;

#[test]
fn log_pages_newest_first() {
    let mut fx = Fixture::init();
    let mut ids = vec![fx.initial.clone()];
    for i in 1..=4 {
        ids.push(fx.commit_files(
            &[("f", format!("{i}").as_bytes())],
            &format!("commit {i}"),
            i,
        ));
    }
    ids.reverse();
    let head = ids[0].clone();
    let page = |skip, limit| {
        let (commits, more) = fx.repo.log(&head, skip, limit).expect("log");
        (commits.into_iter().map(|c| c.id).collect::<Vec<_>>(), more)
    };
    assert_eq!(page(0, 2), (ids[0..2].to_vec(), true));
    assert_eq!(page(2, 2), (ids[2..4].to_vec(), true));
    assert_eq!(page(4, 2), (ids[4..].to_vec(), false));
    assert_eq!(page(0, 5), (ids.clone(), false));
    assert_eq!(page(5, 2), (vec![], false));
    assert_eq!(page(0, 0), (vec![], true));
    let (commits, _) = fx.repo.log(&head, 0, 1).expect("log");
    assert_eq!(commits[0].title, "commit 4");
    // From an older commit, history starts there.
    assert_eq!(fx.repo.log(&ids[3], 0, 10).expect("log").0.len(), 2);
}

#[test]
fn last_commits_finds_who_touched_each_path() {
    let mut fx = Fixture::init();
    let c1 = fx.commit_files(&[("a/x", b"1"), ("b", b"1")], "c1", 1);
    let c2 = fx.commit_files(&[("a/x", b"2")], "c2", 2);
    let c3 = fx.commit_files(&[("c", b"1")], "c3", 3);
    let c4 = fx.apply(&[TreeOp::DeleteFile { path: path("b") }], "c4", 4);
    let paths: Vec<String> = [".gitattributes", "a", "a/x", "c", "b", "missing", ""]
        .iter()
        .map(|s| s.to_string())
        .collect();

    let found = fx
        .repo
        .last_commits(&c4, &paths, 100)
        .expect("last commits");
    let id = |p: &str| found.get(p).map(|c| c.id.clone());
    assert_eq!(id(".gitattributes"), Some(fx.initial.clone()));
    assert_eq!(id("a"), Some(c2.clone()));
    assert_eq!(id("a/x"), Some(c2.clone()));
    assert_eq!(id("c"), Some(c3.clone()));
    assert_eq!(id(""), Some(c4.clone()));
    assert_eq!(id("b"), None, "absent at the starting commit");
    assert_eq!(id("missing"), None);

    // From c3, b still exists and was last touched by c1.
    let found = fx
        .repo
        .last_commits(&c3, &paths, 100)
        .expect("last commits");
    assert_eq!(found.get("b").map(|c| c.id.clone()), Some(c1));

    // The walk stops after max_commits.
    let found = fx.repo.last_commits(&c4, &paths, 2).expect("last commits");
    let mut keys: Vec<_> = found.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["", "c"]);
}
