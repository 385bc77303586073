-- Delivered and dead messages stay in the outbox instead of being deleted:
-- * `failed_at`: the worker gave up on the message (too many attempts, or too old). It is
--   kept for the operator to inspect (`last_error`) and never attempted again.
-- * `sent_at`: delivered. Kept for an hour, so that the per-recipient limit on emailed
--   account links (`purpose`) sees every link sent recently, on every replica.
ALTER TABLE email_outbox ADD COLUMN purpose TEXT;
ALTER TABLE email_outbox ADD COLUMN sent_at TIMESTAMP;
ALTER TABLE email_outbox ADD COLUMN failed_at TIMESTAMP;
DROP INDEX email_outbox_due;
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX email_outbox_recipient ON email_outbox (recipient, created_at);
CREATE INDEX email_outbox_sent ON email_outbox (sent_at) WHERE sent_at IS NOT NULL;
