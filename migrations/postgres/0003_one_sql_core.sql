-- One SQL core serves SQLite and Postgres: values read back have the same types in both.
ALTER TABLE secrets ALTER COLUMN failed_tries TYPE BIGINT;
ALTER TABLE outbox ALTER COLUMN attempts TYPE BIGINT;
-- Recipients one per line, as in SQLite (an address holds no line break).
ALTER TABLE metadata ALTER COLUMN recipients DROP DEFAULT;
ALTER TABLE metadata ALTER COLUMN recipients TYPE TEXT USING array_to_string(recipients, E'\n');
ALTER TABLE metadata ALTER COLUMN recipients SET DEFAULT '';

-- `recent` is newest first by insertion, also among records created in the same second.
ALTER TABLE metadata ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
DROP INDEX metadata_recent;
CREATE INDEX metadata_recent ON metadata (custid, created DESC, seq DESC);
