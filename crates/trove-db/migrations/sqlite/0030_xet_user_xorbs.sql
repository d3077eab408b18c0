-- Which xorbs each user uploaded through the CAS (a xorb POSTed with a CAS token issued to
-- them, its bytes checked against its hash), so that they may name those xorbs in a shard
-- for any repository they write to, whatever its namespace and after the repository the
-- xorb went to is deleted. The Xet client trusts its local shard cache — every xorb it
-- uploaded, to any repository, for three weeks — and never sends those again: without
-- this, its next upload of the same bytes to another namespace names xorbs the namespace
-- rule (0007) calls unknown, and fails until the cache is wiped. The user sent the bytes,
-- so letting them name the xorb tells them nothing they did not know.
--
-- created_at is the user's last upload of the xorb (each accepted upload renews it). The
-- client trusts a xorb it uploaded for three weeks from that upload, so garbage collection
-- keeps a xorb no file names until the grace period (28 days by default) has passed since
-- its last upload by anyone, and no longer: a row never keeps a xorb beyond that. The sweep
-- drops a xorb's rows in its transaction, before the xorb, so a shard naming a swept xorb
-- is refused as naming an unknown one, to its uploaders too. Compaction gives the users of
-- a compacted xorb the new one (its chunks are a subset of the old one's).

CREATE TABLE xet_user_xorbs (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash        BLOB    NOT NULL REFERENCES xet_xorbs (hash),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, hash)
) WITHOUT ROWID;

-- The sweep and compaction look the rows of one xorb up.
CREATE INDEX xet_user_xorbs_hash ON xet_user_xorbs (hash);
