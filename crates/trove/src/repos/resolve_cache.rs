//! What a download's path names in a commit, and the bytes of small blobs, kept by the ids
//! that fix them, so that a download of a file read before needs only its revision resolved
//! (`http::resolve`).
//!
//! Why this cannot serve anything stale: a commit's tree never changes (the commit id is
//! the hash of its tree's id, which is the hash of its entries), so the entry at a path of a
//! commit is the same forever, and a blob's bytes are what its id hashes. What does change
//! is never kept here: the revision's commit, the caller, the repository row (visibility,
//! gating) and an LFS object's presence are read at every request, from git and the
//! database or from the caches in front of them (`throttle`), which every write that
//! concerns them empties before it answers (a ref moved, a token revoked, …). Entries
//! are keyed by repository id and the row's creation time as well as by commit, so a
//! repository only ever gets what was read from its own objects.
//!
//! Small LFS files held as Xet files are kept too, by their SHA-256 (checked when kept), so
//! that a download of one needs neither the store nor its chunk headers: their presence
//! and deletion are still asked at every request (`Db::lfs_download`, or its cache), and
//! the bytes are used only when that answer names a Xet file holding them.
//!
//! Bounds: [`MAX_ENTRIES`] entries, [`MAX_BLOB_BYTES`] bytes of blobs of at most
//! [`MAX_BLOB`] bytes each and [`MAX_LFS_BYTES`] of LFS files of at most [`MAX_LFS`]
//! bytes each; when one half fills, the older half is dropped (two generations: what was
//! used since the last turn stays).

use bytes::Bytes;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use trove_git::EntryKind;
use trove_types::{GitOid, Sha256Hex};

/// Path entries kept at most (a few hundred bytes each).
pub const MAX_ENTRIES: usize = 8192;
/// Blobs larger than this are not kept (they are read from git each time).
pub const MAX_BLOB: usize = 256 * 1024;
/// Bytes of blobs kept at most.
pub const MAX_BLOB_BYTES: usize = 16 * 1024 * 1024;

/// LFS files larger than this are not kept (they are sent from the store's files).
pub const MAX_LFS: u64 = 64 * 1024;
/// Bytes of LFS files kept at most.
pub const MAX_LFS_BYTES: usize = 8 * 1024 * 1024;

/// The key of a path entry: repository id, the row's creation time, commit, path.
type EntryKey = (i64, i64, GitOid, String);

/// Path entries and small blobs of the commits downloads read lately.
#[derive(Default)]
pub struct ResolveCache {
    entries: Mutex<Generations<EntryKey, EntryKind>>,
    blobs: Mutex<Generations<GitOid, Bytes>>,
    lfs: Mutex<Generations<Sha256Hex, Bytes>>,
}

impl std::fmt::Debug for ResolveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolveCache").finish_non_exhaustive()
    }
}

impl ResolveCache {
    /// The file entry at `path` of `commit` in repository `repo_id` (created at
    /// `generation`), if a download read it lately.
    pub fn entry(
        &self,
        repo_id: i64,
        generation: i64,
        commit: &GitOid,
        path: &str,
    ) -> Option<EntryKind> {
        let key = (repo_id, generation, commit.clone(), path.to_owned());
        lock(&self.entries).get(&key, MAX_ENTRIES / 2, |_| 1)
    }

    /// Keeps the file entry at `path` of `commit`, as read from repository `repo_id`'s git.
    /// Only files are kept (a folder is not a download).
    pub fn put_entry(
        &self,
        repo_id: i64,
        generation: i64,
        commit: &GitOid,
        path: &str,
        kind: &EntryKind,
    ) {
        if !matches!(kind, EntryKind::File { .. }) {
            return;
        }
        let key = (repo_id, generation, commit.clone(), path.to_owned());
        lock(&self.entries).put(key, kind.clone(), MAX_ENTRIES / 2, |_| 1);
    }

    /// The bytes of blob `blob`, if kept.
    pub fn blob(&self, blob: &GitOid) -> Option<Bytes> {
        lock(&self.blobs).get(blob, MAX_BLOB_BYTES / 2, Bytes::len)
    }

    /// Keeps the bytes of blob `blob` (read from git, whose reads check the id) when they
    /// are at most [`MAX_BLOB`] long.
    pub fn put_blob(&self, blob: &GitOid, bytes: &Bytes) {
        if bytes.len() > MAX_BLOB {
            return;
        }
        lock(&self.blobs).put(blob.clone(), bytes.clone(), MAX_BLOB_BYTES / 2, Bytes::len);
    }

    /// The bytes of the LFS object `oid`, if kept. The caller has asked whether the object
    /// is still held and not deleted from its repository.
    pub fn lfs(&self, oid: &Sha256Hex) -> Option<Bytes> {
        lock(&self.lfs).get(oid, MAX_LFS_BYTES / 2, Bytes::len)
    }

    /// Keeps `bytes` as the LFS object `oid` if they are at most [`MAX_LFS`] long and their
    /// SHA-256 is `oid` (`false` when it is not: they are not what the object holds).
    pub fn put_lfs(&self, oid: &Sha256Hex, bytes: &Bytes) -> bool {
        use sha2::{Digest, Sha256};
        if bytes.len() as u64 > MAX_LFS {
            return true;
        }
        if hex::encode(Sha256::digest(bytes)) != oid.as_str() {
            return false;
        }
        lock(&self.lfs).put(oid.clone(), bytes.clone(), MAX_LFS_BYTES / 2, Bytes::len);
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every operation leaves the maps consistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Two maps: new entries go into `young`; when it holds `half` (counted by `weight`), it
/// becomes `old` and the previous `old` is dropped. A hit in `old` moves to `young`.
struct Generations<K, V> {
    young: HashMap<K, V>,
    young_weight: usize,
    old: HashMap<K, V>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Generations {
            young: HashMap::new(),
            young_weight: 0,
            old: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Generations<K, V> {
    fn get(&mut self, key: &K, half: usize, weight: impl Fn(&V) -> usize) -> Option<V> {
        if let Some(v) = self.young.get(key) {
            return Some(v.clone());
        }
        let v = self.old.remove(key)?;
        self.put(key.clone(), v.clone(), half, weight);
        Some(v)
    }

    fn put(&mut self, key: K, value: V, half: usize, weight: impl Fn(&V) -> usize) {
        let w = weight(&value);
        if self.young_weight + w > half {
            self.old = std::mem::take(&mut self.young);
            self.young_weight = 0;
        }
        self.young_weight += w;
        if let Some(replaced) = self.young.insert(key, value) {
            self.young_weight -= weight(&replaced);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> GitOid {
        GitOid::parse(&format!("{n:02x}").repeat(20)).expect("40 hex digits")
    }

    fn file(n: u8) -> EntryKind {
        EntryKind::File {
            blob: oid(n),
            size: u64::from(n),
            lfs: None,
        }
    }

    #[test]
    fn an_entry_is_found_only_under_its_repository_generation_commit_and_path() {
        let cache = ResolveCache::default();
        cache.put_entry(1, 10, &oid(1), "a.bin", &file(7));
        assert_eq!(cache.entry(1, 10, &oid(1), "a.bin"), Some(file(7)));
        assert_eq!(
            cache.entry(2, 10, &oid(1), "a.bin"),
            None,
            "another repository"
        );
        assert_eq!(
            cache.entry(1, 11, &oid(1), "a.bin"),
            None,
            "a repository made anew"
        );
        assert_eq!(cache.entry(1, 10, &oid(2), "a.bin"), None, "another commit");
        assert_eq!(cache.entry(1, 10, &oid(1), "b.bin"), None, "another path");
    }

    #[test]
    fn folders_and_large_blobs_are_not_kept() {
        let cache = ResolveCache::default();
        cache.put_entry(1, 1, &oid(1), "dir", &EntryKind::Dir { tree: oid(3) });
        assert_eq!(cache.entry(1, 1, &oid(1), "dir"), None);
        cache.put_blob(&oid(4), &Bytes::from(vec![0; MAX_BLOB + 1]));
        assert_eq!(cache.blob(&oid(4)), None);
        cache.put_blob(&oid(5), &Bytes::from_static(b"small"));
        assert_eq!(cache.blob(&oid(5)), Some(Bytes::from_static(b"small")));
    }

    #[test]
    fn an_lfs_file_is_kept_only_small_and_under_its_own_sha256() {
        use sha2::{Digest, Sha256};
        let cache = ResolveCache::default();
        let bytes = Bytes::from_static(b"an lfs file");
        let oid = Sha256Hex::parse(&hex::encode(Sha256::digest(&bytes))).expect("hex");
        let other = Sha256Hex::parse(&"ab".repeat(32)).expect("hex");
        assert!(
            !cache.put_lfs(&other, &bytes),
            "bytes that are not the object"
        );
        assert_eq!(cache.lfs(&other), None);
        assert!(cache.put_lfs(&oid, &bytes));
        assert_eq!(cache.lfs(&oid), Some(bytes));
        let large = Bytes::from(vec![7u8; MAX_LFS as usize + 1]);
        let large_oid = Sha256Hex::parse(&hex::encode(Sha256::digest(&large))).expect("hex");
        assert!(cache.put_lfs(&large_oid, &large));
        assert_eq!(cache.lfs(&large_oid), None, "too large to keep");
    }

    #[test]
    fn the_cache_stays_within_its_bounds_and_keeps_what_is_used() {
        let mut g: Generations<u32, u32> = Generations::default();
        for k in 0..1000 {
            g.put(k, k, 10, |_| 1);
            // Key 0 is read all along: it survives every turn.
            assert_eq!(g.get(&0, 10, |_| 1), Some(0));
            assert!(g.young.len() + g.old.len() <= 20);
        }
        assert_eq!(
            g.get(&1, 10, |_| 1),
            None,
            "an old key unused since is gone"
        );
        assert_eq!(g.get(&999, 10, |_| 1), Some(999));

        let cache = ResolveCache::default();
        let blob = Bytes::from(vec![1u8; MAX_BLOB]);
        for n in 0..200u8 {
            cache.put_blob(&oid(n), &blob);
        }
        let blobs = lock(&cache.blobs);
        let held: usize = blobs
            .young
            .values()
            .chain(blobs.old.values())
            .map(Bytes::len)
            .sum();
        assert!(held <= MAX_BLOB_BYTES, "{held} bytes held");
    }
}
