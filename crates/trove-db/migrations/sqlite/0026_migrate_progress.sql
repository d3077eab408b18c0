-- What `trove migrate` has finished copying into this database (it writes here only when
-- this database is the target of a move from an embedded hub; an embedded hub's own file
-- keeps the table empty). `hub` names the source hub, so that a second hub is never merged
-- into the first. Steps: 'hub' (the claim), 'table:<name>' (every row of one table, written
-- in the same transaction as the rows), 'sequences', 'objects', 'repos'.
CREATE TABLE migrate_progress (
    step     TEXT    PRIMARY KEY NOT NULL,
    hub      TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    done_at  INTEGER NOT NULL
);
