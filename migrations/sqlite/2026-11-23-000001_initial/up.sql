-- Types are the portable subset diesel's MultiConnection maps on both backends:
-- ids are UUID text, timestamps are UTC (microsecond precision), booleans are BOOLEAN.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    -- Lower-cased copies computed by the domain types carry the case-insensitive
    -- uniqueness, identically on both backends (SQLite's lower() is ASCII-only).
    username_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    bio TEXT NOT NULL DEFAULT '',
    is_active BOOLEAN NOT NULL,
    is_staff BOOLEAN NOT NULL DEFAULT FALSE,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    approval_pending BOOLEAN NOT NULL DEFAULT FALSE,
    claims TEXT NOT NULL DEFAULT '{}',
    date_joined TIMESTAMP NOT NULL,
    last_login TIMESTAMP
);
CREATE INDEX users_date_joined ON users (date_joined);

CREATE TABLE groups (
    name TEXT PRIMARY KEY NOT NULL
);

CREATE TABLE user_groups (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_name)
);
CREATE INDEX user_groups_group ON user_groups (group_name);

-- One row per refresh-token family (one login). `current_jti` is the family's only live
-- token; rotation swaps it with a conditional UPDATE, which serializes concurrent refreshes.
CREATE TABLE token_families (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    current_jti TEXT NOT NULL,
    previous_jti TEXT,
    rotated_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    revoked_reason TEXT
);
CREATE INDEX token_families_user ON token_families (user_id);
CREATE INDEX token_families_expires ON token_families (expires_at);

-- Every refresh token ever issued (simplejwt's OutstandingToken).
CREATE TABLE outstanding_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX outstanding_tokens_family ON outstanding_tokens (family_id);
CREATE INDEX outstanding_tokens_user ON outstanding_tokens (user_id);
CREATE INDEX outstanding_tokens_expires ON outstanding_tokens (expires_at);

-- Refresh tokens that no longer work, with when and why (simplejwt's BlacklistedToken).
CREATE TABLE blacklisted_tokens (
    jti TEXT PRIMARY KEY NOT NULL REFERENCES outstanding_tokens (jti) ON DELETE CASCADE,
    family_id TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    blacklisted_at TIMESTAMP NOT NULL
);
CREATE INDEX blacklisted_tokens_family ON blacklisted_tokens (family_id);
