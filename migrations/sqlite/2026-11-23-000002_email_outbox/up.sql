-- Outgoing email waits here until a worker delivers it: nothing is lost when the process
-- stops, and with several replicas each message is claimed (leased) by exactly one.
CREATE TABLE email_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    last_error TEXT
);
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at);
