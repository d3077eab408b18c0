-- Garbage collections of the chunk store, one row per finished run (the CLI's and the admin
-- API's alike), so that `/metrics` reports GC progress whichever process ran it.

CREATE TABLE storage_gc_runs (
    id              INTEGER PRIMARY KEY,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER NOT NULL,
    dry_run         INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    xorbs_deleted   INTEGER NOT NULL CHECK (xorbs_deleted >= 0),
    bytes_freed     INTEGER NOT NULL CHECK (bytes_freed >= 0),
    chunks_freed    INTEGER NOT NULL CHECK (chunks_freed >= 0),
    objects_forgotten INTEGER NOT NULL CHECK (objects_forgotten >= 0)
);
