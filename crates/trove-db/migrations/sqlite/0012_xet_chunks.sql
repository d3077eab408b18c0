-- The chunk index: where each chunk the store holds can be read, one location per chunk
-- (the first xorb recorded with it). Server-side packing of plain LFS uploads looks chunks up
-- here so that bytes already held, whichever path brought them, are not stored again; GC
-- removes a xorb's rows before the xorb itself, so an entry never outlives its bytes.

CREATE TABLE xet_chunks (
    hash   BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    xorb   BLOB    NOT NULL REFERENCES xet_xorbs (hash),
    idx    INTEGER NOT NULL CHECK (idx >= 0)
) WITHOUT ROWID;

CREATE INDEX xet_chunks_xorb ON xet_chunks (xorb);

-- Xorbs recorded before this migration: their chunk index is 40-byte records starting with
-- the chunk hash.
WITH RECURSIVE chunk (xorb, chunk_index, i) AS (
    SELECT hash, chunk_index, 0 FROM xet_xorbs WHERE length(chunk_index) >= 40
    UNION ALL
    SELECT xorb, chunk_index, i + 1 FROM chunk WHERE (i + 2) * 40 <= length(chunk_index)
)
INSERT OR IGNORE INTO xet_chunks (hash, xorb, idx)
SELECT substr(chunk_index, i * 40 + 1, 32), xorb, i FROM chunk;
