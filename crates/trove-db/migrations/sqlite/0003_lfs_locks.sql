-- Git LFS file locks (`git lfs lock`): at most one per path and repository, held by a user.
-- The ref a client names when locking is kept for display only; locks apply to every branch,
-- as on the major forges.

CREATE TABLE lfs_locks (
    id             INTEGER PRIMARY KEY,
    repo_id        INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path           TEXT    NOT NULL,
    ref_name       TEXT,
    owner_user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    locked_at      INTEGER NOT NULL,
    UNIQUE (repo_id, path)
);

CREATE INDEX lfs_locks_owner_user_id ON lfs_locks (owner_user_id);
