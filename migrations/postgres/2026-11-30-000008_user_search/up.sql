-- Substring search for the staff user list (GET /users?search=): pg_trgm GIN indexes on
-- the four searched expressions, exactly as the list writes them, so PostgreSQL answers
-- the OR of the four LIKEs with a BitmapOr of index scans (and rechecks each LIKE on the
-- rows found: the results are those of a scan). A term of fewer than 3 characters has no
-- trigram to look up and is still answered by a scan.
--
-- CREATE EXTENSION needs a privilege (superuser, or CREATE on the database for a trusted
-- extension) that an operator's migration role may lack. Then this migration only says so
-- in a NOTICE and search keeps scanning; once someone with the privilege has run
-- `CREATE EXTENSION pg_trgm`, running this migration's statements again (see the README)
-- adds the indexes. The operator class is named with the schema the extension lives in,
-- which need not be on the search_path.
--
-- fastupdate = off: each new or changed user goes into the indexes at once (about 0.1 ms
-- for the four, next to a registration's bcrypt). With GIN's pending list instead, every
-- search reads the whole list until a vacuum merges it, and after a bulk import the
-- planner, pricing that in, scans the table (measured: 100k rows copied in, then
-- ANALYZE: 50 ms seq scans instead of 2 ms index scans).
DO $$
DECLARE
    trgm name;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE NOTICE 'pg_trgm not installed (%): GET /users?search= scans the users table', SQLERRM;
    END;
    SELECT n.nspname INTO trgm
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    IF trgm IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE INDEX users_search_username ON users USING gin (username_key %I.gin_trgm_ops) WITH (fastupdate = off)', trgm);
    EXECUTE format('CREATE INDEX users_search_email ON users USING gin (email_key %I.gin_trgm_ops) WITH (fastupdate = off)', trgm);
    EXECUTE format('CREATE INDEX users_search_first_name ON users USING gin (lower(first_name) %I.gin_trgm_ops) WITH (fastupdate = off)', trgm);
    EXECUTE format('CREATE INDEX users_search_last_name ON users USING gin (lower(last_name) %I.gin_trgm_ops) WITH (fastupdate = off)', trgm);
END
$$;
