-- The staff user list (GET /users): exact filters and every ordering use an index.
-- username_key and email_key are already indexed by their UNIQUE constraints.
CREATE INDEX users_last_login ON users (last_login);
CREATE INDEX users_is_staff ON users (is_staff);
CREATE INDEX users_is_active ON users (is_active);
