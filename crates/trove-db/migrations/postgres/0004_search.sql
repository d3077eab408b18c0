-- The PostgreSQL spelling of migrations/sqlite/0004_search.sql: the same tables and
-- triggers. SQLite's two FTS5 tables have no counterpart: substring search over
-- `namespace/name` is a trigram index (pg_trgm, in Debian's server package) on the
-- lower-cased id, and facet filters are semi-joins on repo_tags' primary key, which the
-- planner orders by selectivity itself.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE repo_index (
    repo_id             BIGINT  PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    repo_type           TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    last_modified       BIGINT  NOT NULL,
    downloads           BIGINT  NOT NULL DEFAULT 0,
    downloads_all_time  BIGINT  NOT NULL DEFAULT 0,
    likes               BIGINT  NOT NULL DEFAULT 0,
    trending_score      BIGINT  NOT NULL DEFAULT 0,
    params_total        BIGINT,
    used_storage        BIGINT  NOT NULL DEFAULT 0,
    sha                 TEXT,
    pipeline_tag        TEXT,
    library_name        TEXT,
    sdk                 TEXT,
    tags                TEXT    NOT NULL DEFAULT '[]',
    safetensors         TEXT,
    config              TEXT,
    card_warnings       TEXT    NOT NULL DEFAULT '[]',
    card_data           TEXT,
    siblings            TEXT    NOT NULL DEFAULT '[]'
);

CREATE INDEX repo_index_downloads ON repo_index (repo_type, downloads, repo_id);
CREATE INDEX repo_index_likes ON repo_index (repo_type, likes, repo_id);
CREATE INDEX repo_index_last_modified ON repo_index (repo_type, last_modified, repo_id);
CREATE INDEX repo_index_created_at ON repo_index (repo_type, created_at, repo_id);
CREATE INDEX repo_index_trending ON repo_index (repo_type, trending_score, repo_id);
CREATE INDEX repo_index_unindexed ON repo_index (repo_id) WHERE sha IS NULL;

CREATE TABLE repo_tags (
    tag      TEXT    NOT NULL,
    repo_id  BIGINT  NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, repo_id)
);

CREATE INDEX repo_tags_repo_id ON repo_tags (repo_id);

CREATE TABLE facet_counts (
    tag  TEXT    PRIMARY KEY,
    n    BIGINT  NOT NULL
);

CREATE TABLE type_counts (
    repo_type  TEXT    PRIMARY KEY,
    n          BIGINT  NOT NULL
);

-- `search=`: LIKE '%term%' on this expression (ids are ASCII; "C" makes lower() fold ASCII
-- only, as SQLite's does, and allows LIKE on the case-insensitive columns).
CREATE INDEX repos_search ON repos
    USING gin ((lower((namespace || '/' || name) COLLATE "C")) gin_trgm_ops);

CREATE TABLE likes (
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    repo_id     BIGINT  NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (user_id, repo_id)
);

CREATE INDEX likes_repo_id ON likes (repo_id, created_at, user_id);
CREATE INDEX likes_user_id ON likes (user_id, created_at, repo_id);

CREATE TABLE repo_downloads (
    repo_id  BIGINT  NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    day      BIGINT  NOT NULL,
    count    BIGINT  NOT NULL CHECK (count >= 0),
    PRIMARY KEY (repo_id, day)
);

CREATE FUNCTION repos_after_insert_index() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO repo_index (repo_id, repo_type, created_at, last_modified)
    VALUES (NEW.id, NEW.repo_type, NEW.created_at, NEW.created_at);
    RETURN NULL;
END $$;
CREATE TRIGGER repos_after_insert_index AFTER INSERT ON repos
    FOR EACH ROW EXECUTE FUNCTION repos_after_insert_index();

CREATE FUNCTION repo_index_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO type_counts (repo_type, n) VALUES (NEW.repo_type, 1)
    ON CONFLICT (repo_type) DO UPDATE SET n = type_counts.n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER repo_index_after_insert AFTER INSERT ON repo_index
    FOR EACH ROW EXECUTE FUNCTION repo_index_after_insert();

CREATE FUNCTION repo_index_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE type_counts SET n = n - 1 WHERE repo_type = OLD.repo_type;
    RETURN NULL;
END $$;
CREATE TRIGGER repo_index_after_delete AFTER DELETE ON repo_index
    FOR EACH ROW EXECUTE FUNCTION repo_index_after_delete();

CREATE FUNCTION repo_tags_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO facet_counts (tag, n) VALUES (NEW.tag, 1)
    ON CONFLICT (tag) DO UPDATE SET n = facet_counts.n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER repo_tags_after_insert AFTER INSERT ON repo_tags
    FOR EACH ROW EXECUTE FUNCTION repo_tags_after_insert();

CREATE FUNCTION repo_tags_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE facet_counts SET n = n - 1 WHERE tag = OLD.tag;
    RETURN NULL;
END $$;
CREATE TRIGGER repo_tags_after_delete AFTER DELETE ON repo_tags
    FOR EACH ROW EXECUTE FUNCTION repo_tags_after_delete();

CREATE FUNCTION likes_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE repo_index SET likes = likes + 1, trending_score = trending_score + 1
    WHERE repo_id = NEW.repo_id;
    RETURN NULL;
END $$;
CREATE TRIGGER likes_after_insert AFTER INSERT ON likes
    FOR EACH ROW EXECUTE FUNCTION likes_after_insert();

CREATE FUNCTION likes_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE repo_index
    SET likes = GREATEST(likes - 1, 0),
        trending_score = GREATEST(trending_score - CASE
            WHEN OLD.created_at >= (floor(extract(epoch FROM now()))::bigint - 7 * 86400) * 1000
            THEN 1 ELSE 0 END, 0)
    WHERE repo_id = OLD.repo_id;
    RETURN NULL;
END $$;
CREATE TRIGGER likes_after_delete AFTER DELETE ON likes
    FOR EACH ROW EXECUTE FUNCTION likes_after_delete();
