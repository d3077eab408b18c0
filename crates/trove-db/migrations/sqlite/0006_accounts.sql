-- Accounts: organizations and their members, passwords and web sessions, fine-grained and
-- expiring tokens, repository settings (gating, discussions), access requests to gated
-- repositories, redirects left by moves, and the audit log of security events.

-- An organization is a namespace like a user's. A name is a user or an organization, never
-- both: the triggers below refuse the second one in any case (names are NOCASE).
CREATE TABLE orgs (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    fullname    TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TRIGGER orgs_name_not_a_user BEFORE INSERT ON orgs
WHEN EXISTS (SELECT 1 FROM users WHERE name = NEW.name)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: namespace name');
END;

CREATE TRIGGER users_name_not_an_org BEFORE INSERT ON users
WHEN EXISTS (SELECT 1 FROM orgs WHERE name = NEW.name)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: namespace name');
END;

-- Roles as on the Hub: admin manages the organization and its repositories, write pushes,
-- contributor reads and opens pull requests, read reads private repositories.
CREATE TABLE org_members (
    org_id      INTEGER NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'write', 'contributor', 'read')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE INDEX org_members_user_id ON org_members (user_id);

-- Passwords for the web (argon2id PHC strings); NULL means no password login.
ALTER TABLE users ADD COLUMN password_hash TEXT;

-- Web sessions: only a hash of the cookie's secret is stored, like tokens.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash  BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

CREATE INDEX sessions_user_id ON sessions (user_id);

-- Tokens gain the fine-grained role and an optional expiry. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt (nothing references it). AUTOINCREMENT: a
-- revoked token's id is never given to a new one (the server throttles last-used writes
-- per id, and ids name tokens in logs).
CREATE TABLE tokens_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('read', 'write', 'fineGrained')),
    token_hash    BLOB    NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    expires_at    INTEGER,
    UNIQUE (user_id, name)
);

INSERT INTO tokens_new (id, user_id, name, role, token_hash, created_at, last_used_at)
SELECT id, user_id, name, role, token_hash, created_at, last_used_at FROM tokens;

DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;

-- What a fine-grained token may do, per repository (by id, so a move keeps the scope) or
-- per namespace (a user or an organization, by name). `permissions` is a space-separated
-- list of the Hub's names (repo.content.read, repo.write, discussion.write).
CREATE TABLE token_scopes (
    id           INTEGER PRIMARY KEY,
    token_id     INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    repo_id      INTEGER REFERENCES repos (id) ON DELETE CASCADE,
    namespace    TEXT    COLLATE NOCASE,
    permissions  TEXT    NOT NULL,
    CHECK ((repo_id IS NULL) <> (namespace IS NULL))
);

CREATE INDEX token_scopes_token_id ON token_scopes (token_id);

-- Repository settings. gated: 'off', 'auto' (requests are accepted at once) or 'manual'.
ALTER TABLE repos ADD COLUMN gated TEXT NOT NULL DEFAULT 'off'
    CHECK (gated IN ('off', 'auto', 'manual'));
ALTER TABLE repos ADD COLUMN discussions_disabled INTEGER NOT NULL DEFAULT 0
    CHECK (discussions_disabled IN (0, 1));

-- Requests for access to a gated repository, one per user and repository.
CREATE TABLE access_requests (
    repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    fields      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, user_id)
);

-- Old names of moved repositories. A name in use by a repository always wins over a
-- redirect; creating a repository at an old name removes the redirect.
CREATE TABLE repo_redirects (
    repo_type   TEXT    NOT NULL,
    namespace   TEXT    NOT NULL COLLATE NOCASE,
    name        TEXT    NOT NULL COLLATE NOCASE,
    repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_type, namespace, name)
);

CREATE TRIGGER repos_after_insert_redirect AFTER INSERT ON repos BEGIN
    DELETE FROM repo_redirects
    WHERE repo_type = NEW.repo_type AND namespace = NEW.namespace AND name = NEW.name;
END;

-- Security events. Names are copied, not referenced, so the log outlives what it names.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT,
    action      TEXT    NOT NULL,
    namespace   TEXT    COLLATE NOCASE,
    target      TEXT,
    detail      TEXT
);

CREATE INDEX audit_log_namespace ON audit_log (namespace, id);
