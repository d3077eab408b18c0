-- The PostgreSQL spelling of migrations/sqlite/0009_card_parses.sql.

CREATE TABLE card_parses (
    repo_id   BIGINT  NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    blob_oid  TEXT    NOT NULL,
    data      TEXT,
    warning   TEXT,
    PRIMARY KEY (repo_id, blob_oid)
);
