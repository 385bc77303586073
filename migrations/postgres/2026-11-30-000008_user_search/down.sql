-- The extension stays: other databases' objects or the operator may use it.
DROP INDEX IF EXISTS users_search_last_name;
DROP INDEX IF EXISTS users_search_first_name;
DROP INDEX IF EXISTS users_search_email;
DROP INDEX IF EXISTS users_search_username;
