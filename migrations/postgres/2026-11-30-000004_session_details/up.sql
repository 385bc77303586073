-- What the session list shows of a refresh family (API.md "Sessions"): when it was last
-- used (NULL: not since it started), the client's address and user agent as of then, and
-- how its login was authenticated (RFC 8176 `amr` values, space-separated). Rotation
-- writes the first three in the statement it already makes.
ALTER TABLE token_families ADD COLUMN last_used_at TIMESTAMP;
ALTER TABLE token_families ADD COLUMN ip TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
-- A user's live sessions, without reading their revoked ones. Only columns a rotation
-- leaves alone (not `expires_at`), so refreshing never rewrites an index entry.
CREATE INDEX token_families_live_by_user ON token_families (user_id)
    WHERE revoked_at IS NULL;
