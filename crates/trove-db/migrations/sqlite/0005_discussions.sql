-- Discussions and pull requests of a repository, numbered from 1 per repository, and the
-- events of each (comments, status changes, commits pushed to a pull request, renames).
-- A pull request's commits live in the repository's `refs/pr/<num>`; `base_ref` is the branch
-- it merges into.

CREATE TABLE discussions (
    id               INTEGER PRIMARY KEY,
    repo_id          INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    num              INTEGER NOT NULL CHECK (num > 0),
    title            TEXT    NOT NULL,
    is_pull_request  INTEGER NOT NULL CHECK (is_pull_request IN (0, 1)),
    status           TEXT    NOT NULL CHECK (status IN ('draft', 'open', 'closed', 'merged')),
    author_user_id   INTEGER REFERENCES users (id) ON DELETE SET NULL,
    base_ref         TEXT,
    merge_commit     TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (repo_id, num)
);

CREATE INDEX discussions_author_user_id ON discussions (author_user_id);

-- `body` by kind: comment = the current text; status-change = the new status; commit = the
-- commit's subject; title-change = the new title. `detail`: commit = its oid; title-change =
-- the old title.
CREATE TABLE discussion_events (
    id              INTEGER PRIMARY KEY,
    discussion_id   INTEGER NOT NULL REFERENCES discussions (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('comment', 'status-change', 'commit', 'title-change')),
    author_user_id  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    body            TEXT    NOT NULL,
    detail          TEXT,
    hidden          INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
    edited_at       INTEGER,
    editor_user_id  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at      INTEGER NOT NULL
);

CREATE INDEX discussion_events_discussion_id ON discussion_events (discussion_id, id);

-- Earlier versions of edited comments, oldest first.
CREATE TABLE comment_edits (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES discussion_events (id) ON DELETE CASCADE,
    body            TEXT    NOT NULL,
    author_user_id  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at      INTEGER NOT NULL
);

CREATE INDEX comment_edits_event_id ON comment_edits (event_id, id);
