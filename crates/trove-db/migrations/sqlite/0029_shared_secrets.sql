-- Secrets every node of a hub must hold alike, by name ('url-signing': the key of the HMAC
-- that signs LFS transfer URLs and Xet access tokens). A hub on PostgreSQL keeps its key
-- here so that a URL or token one node signs is accepted by every other node; the first
-- node to start stores one and the others read it. An embedded hub (SQLite) keeps its key
-- in `<data dir>/secret.key` and leaves this table empty; `trove migrate` puts that key here
-- in the target.
CREATE TABLE shared_secrets (
    name        TEXT    PRIMARY KEY NOT NULL,
    value       BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);
