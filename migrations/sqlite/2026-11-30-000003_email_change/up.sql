-- A requested email change waiting for its confirmation: the new address (stored as it
-- will be, domain normalised) and when it was asked for. The emailed token binds both, so
-- a later request (which overwrites them) makes the earlier link stop working, and
-- confirming (which clears them) makes the link work once. Not unique: an address only
-- becomes someone's, and unique, when the change is confirmed.
ALTER TABLE users ADD COLUMN pending_email TEXT;
ALTER TABLE users ADD COLUMN email_change_requested_at TIMESTAMP;
