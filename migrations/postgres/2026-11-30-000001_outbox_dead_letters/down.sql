-- The previous schema deleted delivered messages: delete them here, or they would be sent
-- again. Dead messages become pending again (the previous code retried without end).
DELETE FROM email_outbox WHERE sent_at IS NOT NULL;
DROP INDEX email_outbox_sent;
DROP INDEX email_outbox_recipient;
DROP INDEX email_outbox_due;
ALTER TABLE email_outbox DROP COLUMN failed_at;
ALTER TABLE email_outbox DROP COLUMN sent_at;
ALTER TABLE email_outbox DROP COLUMN purpose;
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at);
