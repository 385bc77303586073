ALTER TABLE users DROP COLUMN email_change_requested_at;
ALTER TABLE users DROP COLUMN pending_email;
