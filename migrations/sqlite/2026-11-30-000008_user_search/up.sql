-- Substring search for the staff user list (GET /users?search=): a trigram index over the
-- four searched fields, so a search of 3 or more characters reads the posting lists of
-- its trigrams instead of running four LIKEs over every user. The list uses it only as a
-- prefilter and keeps the exact LIKE test, so results are those of the scan: the
-- tokenizer folds case with Unicode rules (a superset of SQLite's ASCII-only lower() and
-- LIKE), so every row the LIKEs accept is among the rows it returns.
--
-- Keyed by users.rowid: users has no INTEGER PRIMARY KEY, but VACUUM copies the rowids of
-- a table that has indexes (users has several), so the keys stay valid.
-- The first and last names are indexed as stored; the keys are already lower case.
CREATE VIRTUAL TABLE users_search USING fts5(
    username_key, email_key, first_name, last_name,
    tokenize = 'trigram'
);
INSERT INTO users_search (rowid, username_key, email_key, first_name, last_name)
    SELECT rowid, username_key, email_key, first_name, last_name FROM users;

CREATE TRIGGER users_search_insert AFTER INSERT ON users BEGIN
    INSERT INTO users_search (rowid, username_key, email_key, first_name, last_name)
        VALUES (new.rowid, new.username_key, new.email_key, new.first_name, new.last_name);
END;
-- Only a change of a searched field touches the index (not a login's last_login).
CREATE TRIGGER users_search_update
    AFTER UPDATE OF username_key, email_key, first_name, last_name ON users
BEGIN
    UPDATE users_search
        SET username_key = new.username_key, email_key = new.email_key,
            first_name = new.first_name, last_name = new.last_name
        WHERE rowid = old.rowid;
END;
CREATE TRIGGER users_search_delete AFTER DELETE ON users BEGIN
    DELETE FROM users_search WHERE rowid = old.rowid;
END;
