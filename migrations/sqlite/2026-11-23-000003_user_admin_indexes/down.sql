DROP INDEX users_is_staff;
DROP INDEX users_last_login;
