-- The PostgreSQL spelling of migrations/sqlite/0016_spaces.sql.

CREATE TABLE space_settings (
    repo_id         BIGINT  PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    paused          BOOLEAN NOT NULL DEFAULT FALSE,
    sleep_time_secs BIGINT,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE space_env (
    repo_id     BIGINT  NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('variable', 'secret')),
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    description TEXT,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (repo_id, kind, key)
);
