-- A web session opened with an access token ("sign in with a token") stands for that token:
-- it ends when the token is revoked (the row is deleted: the cascade deletes the session)
-- or expires (the session lookup checks), and it may not mint tokens (a session made from
-- a token must not outlive it through a token of its own). NULL: a password sign-in.
ALTER TABLE sessions ADD COLUMN token_id INTEGER REFERENCES tokens (id) ON DELETE CASCADE;
