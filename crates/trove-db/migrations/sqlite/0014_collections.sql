-- Collections: ordered, annotated lists of repositories and other collections, owned by a
-- user or an organization (`namespace`), public or private. `object_id` is the 24-hex id
-- the Hub shows at the end of a slug (`{namespace}/{title-slug}-{object_id}`); the title
-- part of a slug follows the title, the id never changes.

CREATE TABLE collections (
    id           INTEGER PRIMARY KEY,
    object_id    TEXT    NOT NULL UNIQUE,
    namespace    TEXT    NOT NULL COLLATE NOCASE,
    title        TEXT    NOT NULL COLLATE NOCASE,
    description  TEXT,
    private      INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),
    theme        TEXT    NOT NULL,
    -- The collection's place among its namespace's collections, from 0.
    position     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    -- `create_collection(exists_ok=True)` finds an existing collection by its title.
    UNIQUE (namespace, title)
);

CREATE INDEX collections_updated_at ON collections (updated_at, id);

-- An item is a repository or another collection, never both; a deleted repository or
-- collection leaves the collections that listed it.
CREATE TABLE collection_items (
    id                    INTEGER PRIMARY KEY,
    object_id             TEXT    NOT NULL UNIQUE,
    collection_id         INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    repo_id               INTEGER REFERENCES repos (id) ON DELETE CASCADE,
    target_collection_id  INTEGER REFERENCES collections (id) ON DELETE CASCADE,
    -- The item's place in its collection, from 0.
    position              INTEGER NOT NULL,
    note                  TEXT,
    created_at            INTEGER NOT NULL,
    CHECK ((repo_id IS NULL) <> (target_collection_id IS NULL)),
    UNIQUE (collection_id, repo_id),
    UNIQUE (collection_id, target_collection_id)
);

CREATE INDEX collection_items_repo_id ON collection_items (repo_id);
CREATE INDEX collection_items_target ON collection_items (target_collection_id);
