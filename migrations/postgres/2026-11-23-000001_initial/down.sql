DROP TABLE blacklisted_tokens;
DROP TABLE outstanding_tokens;
DROP TABLE token_families;
DROP TABLE user_groups;
DROP TABLE groups;
DROP TABLE users;
