-- Search and discovery: what each repository's card and files say (derived from git by
-- reindex, so it can always be rebuilt), likes and download counters, and the indexes that
-- listing and search run on.
--
-- Every repository has exactly one repo_index row and one repo_search row from the moment it
-- exists: triggers on repos keep them in step, whichever code path creates, renames or
-- deletes a repository. Reindex then fills in the card and file columns.

CREATE TABLE repo_index (
    repo_id             INTEGER PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    -- Small columns first: rows are read column by column, and the JSON columns at the end
    -- may spill into overflow pages that a listing should not have to walk.
    -- Copies of immutable repos columns, so each sort has one index to walk.
    repo_type           TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    -- Commit time of the indexed head (unix ms).
    last_modified       INTEGER NOT NULL,
    -- Counters. downloads = the last 30 days; trending_score = downloads and likes of the
    -- last 7 days. Both are kept current on every event and recomputed by a periodic job.
    downloads           INTEGER NOT NULL DEFAULT 0,
    downloads_all_time  INTEGER NOT NULL DEFAULT 0,
    likes               INTEGER NOT NULL DEFAULT 0,
    trending_score      INTEGER NOT NULL DEFAULT 0,
    params_total        INTEGER,
    used_storage        INTEGER NOT NULL DEFAULT 0,
    -- Head of main when last indexed; NULL until the first reindex.
    sha                 TEXT,
    pipeline_tag        TEXT,
    library_name        TEXT,
    sdk                 TEXT,
    -- JSON array of the tags shown to clients, in display order.
    tags                TEXT    NOT NULL DEFAULT '[]',
    -- JSON {"parameters": {dtype: n}, "total": n} from the safetensors headers, or NULL.
    safetensors         TEXT,
    -- JSON: a summary of config.json (architectures, model_type), or NULL.
    config              TEXT,
    -- JSON array of strings: what was wrong with the card (never blocks a commit).
    card_warnings       TEXT    NOT NULL DEFAULT '[]',
    -- JSON object: the card's front matter as written; NULL when there is no card.
    card_data           TEXT,
    -- JSON array of file paths at sha.
    siblings            TEXT    NOT NULL DEFAULT '[]'
);

-- One index per sort order; SQLite walks them backwards for descending sorts, and the
-- trailing repo_id makes the (value, id) keyset cursor an index range.
CREATE INDEX repo_index_downloads ON repo_index (repo_type, downloads, repo_id);
CREATE INDEX repo_index_likes ON repo_index (repo_type, likes, repo_id);
CREATE INDEX repo_index_last_modified ON repo_index (repo_type, last_modified, repo_id);
CREATE INDEX repo_index_created_at ON repo_index (repo_type, created_at, repo_id);
CREATE INDEX repo_index_trending ON repo_index (repo_type, trending_score, repo_id);
CREATE INDEX repo_index_unindexed ON repo_index (repo_id) WHERE sha IS NULL;

-- Every value `filter=` can match: the displayed tags plus a few internal facets.
CREATE TABLE repo_tags (
    tag      TEXT    NOT NULL,
    repo_id  INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, repo_id)
) WITHOUT ROWID;

CREATE INDEX repo_tags_repo_id ON repo_tags (repo_id);

-- How many repositories carry each facet, and how many of each type there are: listing
-- estimates from them how selective a filter is, to pick its plan.
CREATE TABLE facet_counts (
    tag  TEXT    PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE type_counts (
    repo_type  TEXT    PRIMARY KEY,
    n          INTEGER NOT NULL
) WITHOUT ROWID;

-- The same facets as an inverted index: a row per repository (rowid = repos.id) whose
-- tokens are the facets, each hashed to one `f<16 hex>` token by trove-db. An AND of
-- selective facets is a merge of compressed posting lists instead of one B-tree probe per
-- candidate row. Written with repo_tags by the same transactions.
CREATE VIRTUAL TABLE repo_facets USING fts5 (
    f, content = '', contentless_delete = 1, detail = none
);

-- Substring search over `namespace/name`, as the Hub's `search=` does: trigram tokens make
-- any query of three characters or more an index lookup. rowid = repos.id.
CREATE VIRTUAL TABLE repo_search USING fts5 (id, tokenize = 'trigram');

CREATE TABLE likes (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    repo_id     INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, repo_id)
);

CREATE INDEX likes_repo_id ON likes (repo_id, created_at, user_id);
CREATE INDEX likes_user_id ON likes (user_id, created_at, repo_id);

-- Counted downloads per repository and day (unix day number).
CREATE TABLE repo_downloads (
    repo_id  INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    day      INTEGER NOT NULL,
    count    INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (repo_id, day)
) WITHOUT ROWID;

CREATE TRIGGER repos_after_insert_index AFTER INSERT ON repos BEGIN
    INSERT INTO repo_index (repo_id, repo_type, created_at, last_modified)
    VALUES (new.id, new.repo_type, new.created_at, new.created_at);
    INSERT INTO repo_search (rowid, id) VALUES (new.id, new.namespace || '/' || new.name);
END;

CREATE TRIGGER repos_after_rename_index AFTER UPDATE OF namespace, name ON repos BEGIN
    UPDATE repo_search SET id = new.namespace || '/' || new.name WHERE rowid = new.id;
END;

CREATE TRIGGER repos_after_delete_index AFTER DELETE ON repos BEGIN
    DELETE FROM repo_search WHERE rowid = old.id;
    DELETE FROM repo_facets WHERE rowid = old.id;
END;

CREATE TRIGGER repo_index_after_insert AFTER INSERT ON repo_index BEGIN
    INSERT INTO type_counts (repo_type, n) VALUES (new.repo_type, 1)
    ON CONFLICT (repo_type) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER repo_index_after_delete AFTER DELETE ON repo_index BEGIN
    UPDATE type_counts SET n = n - 1 WHERE repo_type = old.repo_type;
END;

CREATE TRIGGER repo_tags_after_insert AFTER INSERT ON repo_tags BEGIN
    INSERT INTO facet_counts (tag, n) VALUES (new.tag, 1)
    ON CONFLICT (tag) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER repo_tags_after_delete AFTER DELETE ON repo_tags BEGIN
    UPDATE facet_counts SET n = n - 1 WHERE tag = old.tag;
END;

-- The like count changes in the same transaction as the like itself.
CREATE TRIGGER likes_after_insert AFTER INSERT ON likes BEGIN
    UPDATE repo_index SET likes = likes + 1, trending_score = trending_score + 1
    WHERE repo_id = new.repo_id;
END;

CREATE TRIGGER likes_after_delete AFTER DELETE ON likes BEGIN
    UPDATE repo_index
    SET likes = max(likes - 1, 0),
        trending_score = max(trending_score
            - (old.created_at >= (unixepoch() - 7 * 86400) * 1000), 0)
    WHERE repo_id = old.repo_id;
END;

-- Repositories that existed before this migration: listed at once, indexed at next start.
INSERT INTO repo_index (repo_id, repo_type, created_at, last_modified)
SELECT id, repo_type, created_at, updated_at FROM repos;

INSERT INTO repo_search (rowid, id) SELECT id, namespace || '/' || name FROM repos;
