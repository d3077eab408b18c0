-- The PostgreSQL spelling of migrations/sqlite/0012_xet_chunks.sql.

CREATE TABLE xet_chunks (
    hash   BYTEA   PRIMARY KEY CHECK (length(hash) = 32),
    xorb   BYTEA   NOT NULL REFERENCES xet_xorbs (hash),
    idx    BIGINT  NOT NULL CHECK (idx >= 0)
);

CREATE INDEX xet_chunks_xorb ON xet_chunks (xorb);

-- Xorbs recorded before this migration (40-byte chunk-index records starting with the
-- chunk hash), as in the SQLite migration: the first xorb recorded with a chunk wins.
INSERT INTO xet_chunks (hash, xorb, idx)
SELECT substring(x.chunk_index FROM i * 40 + 1 FOR 32), x.hash, i
FROM xet_xorbs x, generate_series(0, length(x.chunk_index) / 40 - 1) AS i
ORDER BY x.created_at, x.hash, i
ON CONFLICT DO NOTHING;
