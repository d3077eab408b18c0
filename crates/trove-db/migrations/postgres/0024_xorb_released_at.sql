-- The PostgreSQL spelling of migrations/sqlite/0024_xorb_released_at.sql.
ALTER TABLE xet_xorbs ADD COLUMN released_at BIGINT;
