-- Leases: which node runs a piece of background work that must run once across the nodes
-- sharing this database (the search index's jobs, webhook delivery, garbage collection).
-- A holder renews its lease before `expires_at`; once expired, any node may take it over.
-- Times are unix milliseconds.

CREATE TABLE leases (
    name       TEXT    PRIMARY KEY NOT NULL,
    holder     TEXT    NOT NULL,
    taken_at   INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
