-- Traces are the bulk of the execution log (about 5 KB of JSON per run of the reference
-- workflow) and are written on every execute. lz4 compresses them several times faster than
-- the default pglz for a similar size, which is CPU the database gets back on the hot path.
-- Servers built without lz4 (or older than 14) keep pglz: the change is an optimisation, not a
-- requirement.
DO $$
BEGIN
    ALTER TABLE executions ALTER COLUMN trace SET COMPRESSION lz4;
    ALTER TABLE evaluation_results ALTER COLUMN trace SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 compression unavailable (%); traces stay pglz-compressed', SQLERRM;
END
$$;
