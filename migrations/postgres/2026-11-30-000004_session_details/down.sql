DROP INDEX token_families_live_by_user;
ALTER TABLE token_families DROP COLUMN amr;
ALTER TABLE token_families DROP COLUMN user_agent;
ALTER TABLE token_families DROP COLUMN ip;
ALTER TABLE token_families DROP COLUMN last_used_at;
