-- Spaces: what the owner asked of the runtime (paused, sleep time), the revision last built
-- successfully (so a restarted server brings the app back without waiting for a push), and
-- the Space's variables and secrets. Secret values are given to the app's environment only.

CREATE TABLE space_settings (
    repo_id         INTEGER PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    paused          INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- Seconds of no requests after which the app is stopped; NULL: never.
    sleep_time_secs INTEGER,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE space_env (
    repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    -- 'variable' (shown through the API) or 'secret' (never shown back).
    kind        TEXT    NOT NULL CHECK (kind IN ('variable', 'secret')),
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    description TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, kind, key)
) WITHOUT ROWID;
