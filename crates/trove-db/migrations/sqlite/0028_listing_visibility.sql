-- Listing without reading wide rows (issue #17). A copy of repos.private in repo_index, kept
-- in step by triggers, so the visibility filter of a listing needs no join with repos; and
-- narrow covering indexes, so a listing reads its candidates' type, visibility and sort
-- values from an index instead of their repo_index rows (which carry the card, file list
-- and config JSON, several rows per page at best):
--   * repo_index_listing, keyed by repo_id: for candidates found by id (the facet and
--     search inverted indexes, an author's repositories), one probe each;
--   * the sort indexes, now with private after the keyset columns: a walk in sort order
--     checks visibility from the index entry.

ALTER TABLE repo_index ADD COLUMN private INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1));

-- Only the private ones change: rewriting every (wide) row would copy the whole table
-- through the WAL.
UPDATE repo_index SET private = 1 WHERE repo_id IN (SELECT id FROM repos WHERE private = 1);

DROP TRIGGER repos_after_insert_index;
CREATE TRIGGER repos_after_insert_index AFTER INSERT ON repos BEGIN
    INSERT INTO repo_index (repo_id, repo_type, created_at, last_modified, private)
    VALUES (new.id, new.repo_type, new.created_at, new.created_at, new.private);
    INSERT INTO repo_search (rowid, id) VALUES (new.id, new.namespace || '/' || new.name);
END;

CREATE TRIGGER repos_after_private_index AFTER UPDATE OF private ON repos BEGIN
    UPDATE repo_index SET private = new.private WHERE repo_id = new.id;
END;

CREATE INDEX repo_index_listing ON repo_index
    (repo_id, repo_type, private, downloads, likes, trending_score, last_modified, created_at,
     params_total);

DROP INDEX repo_index_downloads;
DROP INDEX repo_index_likes;
DROP INDEX repo_index_last_modified;
DROP INDEX repo_index_created_at;
DROP INDEX repo_index_trending;
CREATE INDEX repo_index_downloads ON repo_index (repo_type, downloads, repo_id, private);
CREATE INDEX repo_index_likes ON repo_index (repo_type, likes, repo_id, private);
CREATE INDEX repo_index_last_modified ON repo_index (repo_type, last_modified, repo_id, private);
CREATE INDEX repo_index_created_at ON repo_index (repo_type, created_at, repo_id, private);
CREATE INDEX repo_index_trending ON repo_index (repo_type, trending_score, repo_id, private);
