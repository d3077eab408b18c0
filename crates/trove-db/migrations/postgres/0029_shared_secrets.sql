-- The PostgreSQL spelling of migrations/sqlite/0029_shared_secrets.sql.

CREATE TABLE shared_secrets (
    name        TEXT   PRIMARY KEY,
    value       BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL
);
