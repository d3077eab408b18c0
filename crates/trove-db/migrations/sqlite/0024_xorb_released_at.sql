-- When garbage collection's compaction moved a xorb's live chunks into a new xorb and
-- repointed every file away from it (milliseconds; NULL: never released). The old xorb is
-- then unreferenced, but clients may still hold shards naming it: the sweep keeps it until
-- the grace period has passed since its release, not only since its creation.
ALTER TABLE xet_xorbs ADD COLUMN released_at INTEGER;
