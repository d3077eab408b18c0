-- The Xet chunk store: xorbs (containers of compressed chunks) and the files rebuilt from
-- them. Hashes are the 32 raw bytes of the Xet hash.
--
-- A Xet file whose SHA-256 the server has checked against its reconstructed bytes is also
-- an LFS object (lfs_objects, linked per repository in repo_lfs_objects): its bytes are
-- stored, as xorbs rather than as one blob. Commits, the LFS batch API and downloads then
-- treat both kinds alike, and the per-repository links decide who may read it either way.

CREATE TABLE xet_xorbs (
    hash          BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    stored_bytes  INTEGER NOT NULL CHECK (stored_bytes > 0),
    raw_bytes     INTEGER NOT NULL CHECK (raw_bytes >= 0),
    num_chunks    INTEGER NOT NULL CHECK (num_chunks > 0),
    -- Per chunk, 40 bytes: chunk hash, end offset in the stored bytes, end offset raw.
    chunk_index   BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE xet_files (
    file_hash   BLOB    PRIMARY KEY CHECK (length(file_hash) = 32),
    size        INTEGER NOT NULL CHECK (size >= 0),
    -- Computed by the server from the reconstructed bytes, never taken from the client.
    sha256      TEXT    NOT NULL,
    -- Per term, 44 bytes: xorb hash, first chunk, end chunk, unpacked bytes.
    terms       BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX xet_files_sha256 ON xet_files (sha256);
