-- Requests for an emailed account link (activation, password reset), written before the
-- request is answered, for any address, known or not: the answer takes the same time
-- either way, and a crash right after it loses no email. A worker resolves each one
-- (finds the account, decides whether it gets a link, queues the email within the
-- per-recipient limit), leased like the outboxes; resolved rows are deleted.
CREATE TABLE link_requests (
    id TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    email_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    last_error TEXT,
    resolved_at TIMESTAMP,
    failed_at TIMESTAMP
);
CREATE INDEX link_requests_due ON link_requests (next_attempt_at)
    WHERE resolved_at IS NULL AND failed_at IS NULL;
CREATE INDEX link_requests_resolved ON link_requests (resolved_at)
    WHERE resolved_at IS NOT NULL;
