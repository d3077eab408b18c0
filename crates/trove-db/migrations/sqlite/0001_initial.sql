-- Users, API tokens, repositories and the LFS objects each repository may reference.
-- Timestamps are integer unix milliseconds. Booleans are 0/1 integers.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    email       TEXT,
    is_admin    INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    disabled    INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at  INTEGER NOT NULL
);

-- Only a hash of each secret is stored; the secret is shown once, at creation.
CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('read', 'write')),
    token_hash    BLOB    NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    UNIQUE (user_id, name)
);

-- A repository outlives its creator's account: the owner link is cleared, not cascaded.
CREATE TABLE repos (
    id             INTEGER PRIMARY KEY,
    repo_type      TEXT    NOT NULL CHECK (repo_type IN ('model', 'dataset', 'space')),
    namespace      TEXT    NOT NULL COLLATE NOCASE,
    name           TEXT    NOT NULL COLLATE NOCASE,
    private        INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),
    owner_user_id  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (repo_type, namespace, name)
);

CREATE INDEX repos_owner_user_id ON repos (owner_user_id);

-- A large object whose bytes are stored and verified against its sha256.
CREATE TABLE lfs_objects (
    sha256      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL CHECK (size >= 0),
    created_at  INTEGER NOT NULL
);

-- Which repository may reference which object. An object is referenceable only from a
-- repository it was uploaded to, so knowing a hash never lets anyone link the bytes of a
-- private repository into their own.
CREATE TABLE repo_lfs_objects (
    repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    sha256      TEXT    NOT NULL REFERENCES lfs_objects (sha256),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, sha256)
);

-- Garbage collection asks "is this object still linked anywhere?".
CREATE INDEX repo_lfs_objects_sha256 ON repo_lfs_objects (sha256);
