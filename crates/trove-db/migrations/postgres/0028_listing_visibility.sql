-- Listing without reading wide rows (issue #17): a copy of repos.private in repo_index, kept
-- in step by triggers, so the visibility filter of a listing needs no join with repos; and
-- narrow covering indexes (see the SQLite migration): repo_index_listing for candidates
-- found by id, and the sort indexes with private after the keyset columns.

ALTER TABLE repo_index ADD COLUMN private BOOLEAN NOT NULL DEFAULT FALSE;

-- Only the private ones change (the default is FALSE): every other row stays as it is.
UPDATE repo_index SET private = TRUE WHERE repo_id IN (SELECT id FROM repos WHERE private);

CREATE OR REPLACE FUNCTION repos_after_insert_index() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO repo_index (repo_id, repo_type, created_at, last_modified, private)
    VALUES (NEW.id, NEW.repo_type, NEW.created_at, NEW.created_at, NEW.private);
    RETURN NULL;
END $$;

CREATE FUNCTION repos_after_private_index() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE repo_index SET private = NEW.private WHERE repo_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER repos_after_private_index AFTER UPDATE OF private ON repos
    FOR EACH ROW EXECUTE FUNCTION repos_after_private_index();

CREATE INDEX repo_index_listing ON repo_index (repo_id)
    INCLUDE (repo_type, private, downloads, likes, trending_score, last_modified, created_at,
             params_total);

DROP INDEX repo_index_downloads;
DROP INDEX repo_index_likes;
DROP INDEX repo_index_last_modified;
DROP INDEX repo_index_created_at;
DROP INDEX repo_index_trending;
CREATE INDEX repo_index_downloads ON repo_index (repo_type, downloads, repo_id) INCLUDE (private);
CREATE INDEX repo_index_likes ON repo_index (repo_type, likes, repo_id) INCLUDE (private);
CREATE INDEX repo_index_last_modified ON repo_index (repo_type, last_modified, repo_id)
    INCLUDE (private);
CREATE INDEX repo_index_created_at ON repo_index (repo_type, created_at, repo_id) INCLUDE (private);
CREATE INDEX repo_index_trending ON repo_index (repo_type, trending_score, repo_id)
    INCLUDE (private);
