-- The front matter of each README.md blob a repository has shown, parsed once (when a
-- commit is indexed, or the first time a revision's info is asked for) so that reads never
-- parse YAML. Derived data: deleting rows only costs a parse.

CREATE TABLE card_parses (
    repo_id   INTEGER NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    -- Git object id of the README.md blob.
    blob_oid  TEXT    NOT NULL,
    -- JSON object: the front matter as parsed; NULL when there is none or it was refused.
    data      TEXT,
    -- Why the front matter was refused, as shown to users; NULL when it was read.
    warning   TEXT,
    PRIMARY KEY (repo_id, blob_oid)
) WITHOUT ROWID;
