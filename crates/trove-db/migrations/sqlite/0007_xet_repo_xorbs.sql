-- Which xorbs a repository references, so that the CAS answers about a xorb (HEAD, and the
-- terms a shard may name) only to tokens of repositories of a namespace that references it:
-- knowing a hash must not confirm that another owner's repository holds those bytes.
--
-- A repository references a xorb it uploaded (the upload proved it has the bytes), and every
-- xorb of a Xet file linked to it (repo_lfs_objects, the same links that decide who reads
-- the file). The namespace, not the repository, is the unit: the client reuses xorbs it
-- uploaded before (its local cache) without uploading them again, and whoever writes to a
-- namespace's repository is its owner or a member of its organization.

CREATE TABLE xet_repo_xorbs (
    repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    hash        BLOB    NOT NULL REFERENCES xet_xorbs (hash),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, hash)
) WITHOUT ROWID;

-- The xorbs each file's terms name, one row per (file, xorb).
CREATE TABLE xet_file_xorbs (
    file_hash   BLOB    NOT NULL REFERENCES xet_files (file_hash),
    xorb        BLOB    NOT NULL CHECK (length(xorb) = 32),
    PRIMARY KEY (file_hash, xorb)
) WITHOUT ROWID;

CREATE INDEX xet_file_xorbs_xorb ON xet_file_xorbs (xorb);

-- Files recorded before this migration: terms are 44-byte records starting with the xorb
-- hash. Xorbs uploaded but not yet named by a registered file are not linked: the client's
-- retry uploads them again, which links them.
WITH RECURSIVE term (file_hash, terms, i) AS (
    SELECT file_hash, terms, 0 FROM xet_files WHERE length(terms) >= 44
    UNION ALL
    SELECT file_hash, terms, i + 1 FROM term WHERE (i + 2) * 44 <= length(terms)
)
INSERT OR IGNORE INTO xet_file_xorbs (file_hash, xorb)
SELECT file_hash, substr(terms, i * 44 + 1, 32) FROM term;

-- The visibility check looks repositories up by namespace.
CREATE INDEX repos_namespace ON repos (namespace);
