-- The staff user list (GET /users): every ordering and the selective staff filter use an
-- index. No index on is_active: most users are active, and SQLite (without statistics)
-- would pick it over a scan and then sort, which measured slower than no index at all.
-- username_key and email_key are already indexed by their UNIQUE constraints.
CREATE INDEX users_last_login ON users (last_login);
CREATE INDEX users_is_staff ON users (is_staff);
