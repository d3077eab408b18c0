-- The PostgreSQL spelling of migrations/sqlite/0026_migrate_progress.sql.

CREATE TABLE migrate_progress (
    step     TEXT   PRIMARY KEY,
    hub      TEXT   NOT NULL,
    count    BIGINT NOT NULL,
    done_at  BIGINT NOT NULL
);
