-- The PostgreSQL spelling of migrations/sqlite/0030_xet_user_xorbs.sql.

CREATE TABLE xet_user_xorbs (
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash        BYTEA   NOT NULL REFERENCES xet_xorbs (hash),
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (user_id, hash)
);

CREATE INDEX xet_user_xorbs_hash ON xet_user_xorbs (hash);
