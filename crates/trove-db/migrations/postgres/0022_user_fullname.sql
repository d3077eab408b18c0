-- The PostgreSQL spelling of migrations/sqlite/0022_user_fullname.sql.
ALTER TABLE users ADD COLUMN fullname TEXT;
