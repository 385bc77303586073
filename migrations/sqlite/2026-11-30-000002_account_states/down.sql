ALTER TABLE token_families DROP COLUMN current_issued_at;
ALTER TABLE users DROP COLUMN disabled_by_staff;
