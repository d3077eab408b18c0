-- Webhooks: a user's subscriptions to events of repositories (watched by repo, or by the
-- user or organization that owns them), and the durable queue of their deliveries, which is
-- also each webhook's delivery log (the last deliveries are kept, older ones pruned).

CREATE TABLE webhooks (
    id             INTEGER PRIMARY KEY,
    -- The 24-hex id the API names the webhook by.
    object_id      TEXT    NOT NULL UNIQUE,
    owner_user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url            TEXT    NOT NULL,
    -- Sent as `X-Webhook-Secret`; it has to be sent, so it is stored as given.
    secret         TEXT,
    -- Comma-separated subset of `repo`, `discussion`.
    domains        TEXT    NOT NULL,
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE INDEX webhooks_owner_user_id ON webhooks (owner_user_id);

-- `name` is `namespace/name` for repositories, a namespace for users and organizations.
CREATE TABLE webhook_watched (
    webhook_id  INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('model', 'dataset', 'space', 'user', 'org')),
    name        TEXT    NOT NULL COLLATE NOCASE,
    position    INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, kind, name)
);

CREATE INDEX webhook_watched_name ON webhook_watched (kind, name);

-- One delivery of one event to one webhook. `repo_id` (NULL once the repository is gone)
-- with `repo_namespace` and `repo_private` let the worker ask, at delivery time, whether the
-- webhook's owner may still read the repository.
CREATE TABLE webhook_deliveries (
    id                INTEGER PRIMARY KEY,
    webhook_id        INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event             TEXT    NOT NULL,
    repo_id           INTEGER REFERENCES repos (id) ON DELETE SET NULL,
    repo_namespace    TEXT    NOT NULL,
    repo_private      INTEGER NOT NULL CHECK (repo_private IN (0, 1)),
    payload           TEXT    NOT NULL,
    state             TEXT    NOT NULL
                      CHECK (state IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    last_status       INTEGER,
    last_error        TEXT,
    last_duration_ms  INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
