-- The PostgreSQL spelling of migrations/sqlite/0007_xet_repo_xorbs.sql.

CREATE TABLE xet_repo_xorbs (
    repo_id     BIGINT  NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    hash        BYTEA   NOT NULL REFERENCES xet_xorbs (hash),
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (repo_id, hash)
);

CREATE TABLE xet_file_xorbs (
    file_hash   BYTEA   NOT NULL REFERENCES xet_files (file_hash),
    xorb        BYTEA   NOT NULL CHECK (length(xorb) = 32),
    PRIMARY KEY (file_hash, xorb)
);

CREATE INDEX xet_file_xorbs_xorb ON xet_file_xorbs (xorb);

-- Files recorded before this migration (terms are 44-byte records starting with the xorb
-- hash), as in the SQLite migration.
INSERT INTO xet_file_xorbs (file_hash, xorb)
SELECT f.file_hash, substring(f.terms FROM i * 44 + 1 FOR 32)
FROM xet_files f, generate_series(0, length(f.terms) / 44 - 1) AS i
ON CONFLICT DO NOTHING;

CREATE INDEX repos_namespace ON repos (namespace);
