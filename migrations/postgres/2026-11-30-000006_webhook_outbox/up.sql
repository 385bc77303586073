-- Webhook deliveries wait here until a worker has them accepted: one row per event and
-- endpoint, written in the transaction of the change that caused the event (so a change
-- that rolls back sends nothing, and one that commits always sends), leased to one worker
-- at a time by a conditional UPDATE (`locked_until`), like `email_outbox`.
-- A row is pending (`delivered_at` and `failed_at` unset), delivered (kept an hour), or
-- failed: given up after 24 hours of retries, kept with its `last_error` for the
-- operator, never attempted again.
CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    last_error TEXT,
    delivered_at TIMESTAMP,
    failed_at TIMESTAMP
);
CREATE UNIQUE INDEX webhook_outbox_event ON webhook_outbox (event_id, endpoint);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_outbox_delivered ON webhook_outbox (delivered_at)
    WHERE delivered_at IS NOT NULL;
