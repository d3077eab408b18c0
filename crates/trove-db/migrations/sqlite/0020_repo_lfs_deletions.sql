-- LFS files an owner deleted permanently from a repository (`permanently_delete_lfs_files`).
-- The pointers stay in the repository's history, but it no longer holds the bytes: its link
-- (repo_lfs_objects) is gone, garbage collection does not mark the object from its history,
-- and its downloads answer as for bytes the store does not hold. A deletion counts only
-- while the repository does not link the object again (uploading the same bytes anew).

CREATE TABLE repo_lfs_deletions (
    repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    sha256      TEXT    NOT NULL,
    deleted_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, sha256)
) WITHOUT ROWID;
