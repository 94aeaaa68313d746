-- Keys are no longer stored: rows are found by digests of keys (64 hex digits in the old key
-- columns), and what must come back is sealed (hex in the old text columns). Rows written
-- before keep their 31-character keys until the server upgrades them at start.

-- How a value opens: 1 = written by a release that stored keys (passphrase verifier in
-- passphrase_hash, the metadata key it is bound to sealed in legacy_aad); 2 = the value key
-- derives from master secret key_id and, with a passphrase, bcrypt at passphrase_cost under
-- passphrase_salt.
ALTER TABLE secrets ADD COLUMN scheme BIGINT NOT NULL DEFAULT 1;
ALTER TABLE secrets ADD COLUMN key_id TEXT;
ALTER TABLE secrets ADD COLUMN passphrase_cost BIGINT;
ALTER TABLE secrets ADD COLUMN passphrase_salt BYTEA;
ALTER TABLE secrets ADD COLUMN legacy_aad TEXT;

-- A customer's metadata key sealed under the master secret, for `recent`.
ALTER TABLE metadata ADD COLUMN sealed_key TEXT;

-- Which master secret sealed this store: one row, sealed under it.
CREATE TABLE keyring_check (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    sealed TEXT    NOT NULL
);
