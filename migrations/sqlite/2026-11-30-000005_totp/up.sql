-- TOTP two-factor login (API.md "Two-factor login"). `users.mfa_enabled` is what the
-- user object shows and login checks; the secrets live in their own table, encrypted
-- (AES-256-GCM, nonce and tag included, base64), so a dump of it reveals none.
ALTER TABLE users ADD COLUMN mfa_enabled BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE user_totp (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The confirmed secret (NULL until an enrolment is confirmed).
    secret TEXT,
    -- A started, unconfirmed enrolment's secret.
    pending_secret TEXT,
    -- The newest 30-second step a code was accepted for: replays and older steps are
    -- refused, by a conditional UPDATE, so across replicas too.
    last_step INTEGER NOT NULL DEFAULT 0
);

-- Unused recovery codes, as SHA-256 hex of the normalised code: a code is used up by
-- deleting its row.
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- The step between a right password and the second factor: SHA-256 of the opaque token
-- handed to the client, whose password hash it was checked against (SHA-256 of it), and
-- how it has been used.
CREATE TABLE mfa_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_fingerprint TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    used BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX mfa_tokens_expires_at ON mfa_tokens (expires_at);
