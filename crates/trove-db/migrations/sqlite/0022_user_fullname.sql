-- A user's display name (the Hub's `fullname`); NULL shows the user name.
ALTER TABLE users ADD COLUMN fullname TEXT;
