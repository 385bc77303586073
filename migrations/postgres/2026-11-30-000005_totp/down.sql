DROP TABLE mfa_tokens;
DROP TABLE recovery_codes;
DROP TABLE user_totp;
ALTER TABLE users DROP COLUMN mfa_enabled;
