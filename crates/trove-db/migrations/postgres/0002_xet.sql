-- The PostgreSQL spelling of migrations/sqlite/0002_xet.sql.

CREATE TABLE xet_xorbs (
    hash          BYTEA   PRIMARY KEY CHECK (length(hash) = 32),
    stored_bytes  BIGINT  NOT NULL CHECK (stored_bytes > 0),
    raw_bytes     BIGINT  NOT NULL CHECK (raw_bytes >= 0),
    num_chunks    BIGINT  NOT NULL CHECK (num_chunks > 0),
    chunk_index   BYTEA   NOT NULL,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE xet_files (
    file_hash   BYTEA   PRIMARY KEY CHECK (length(file_hash) = 32),
    size        BIGINT  NOT NULL CHECK (size >= 0),
    sha256      TEXT    NOT NULL,
    terms       BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE INDEX xet_files_sha256 ON xet_files (sha256);
