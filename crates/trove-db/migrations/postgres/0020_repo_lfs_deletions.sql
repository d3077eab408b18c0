-- The PostgreSQL spelling of migrations/sqlite/0020_repo_lfs_deletions.sql.

CREATE TABLE repo_lfs_deletions (
    repo_id     BIGINT  NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    sha256      TEXT    NOT NULL,
    deleted_at  BIGINT  NOT NULL,
    PRIMARY KEY (repo_id, sha256)
);
