-- Secrets, their metadata, customers and API tokens. Times are unix seconds (UTC).

CREATE TABLE metadata (
    key                 TEXT    PRIMARY KEY,
    custid              TEXT    NOT NULL,
    secret_key          TEXT,
    ttl                 INTEGER NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN ('new', 'received', 'burned')),
    created             INTEGER NOT NULL,
    updated             INTEGER NOT NULL,
    received            INTEGER,
    burned              INTEGER,
    -- Full addresses, one per line; shown only obfuscated.
    recipients          TEXT    NOT NULL DEFAULT '',
    passphrase_required INTEGER NOT NULL,
    secret_expires_at   INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL
) STRICT;

CREATE INDEX metadata_recent ON metadata (custid, created DESC, key DESC);
CREATE INDEX metadata_expiry ON metadata (expires_at);

-- A row exists only while its secret may be revealed: reveal and burn delete it.
CREATE TABLE secrets (
    key             TEXT    PRIMARY KEY,
    metadata_key    TEXT    NOT NULL REFERENCES metadata (key) ON DELETE CASCADE,
    ciphertext      BLOB    NOT NULL,
    nonce           BLOB    NOT NULL,
    salt            BLOB    NOT NULL,
    passphrase_hash TEXT,
    failed_tries    INTEGER NOT NULL DEFAULT 0,
    created         INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX secrets_expiry ON secrets (expires_at);
CREATE INDEX secrets_metadata ON secrets (metadata_key);

CREATE TABLE customers (
    custid  TEXT    PRIMARY KEY,
    email   TEXT,
    plan    TEXT    NOT NULL,
    created INTEGER NOT NULL
) STRICT;

-- Only a SHA-256 of each token is kept; the prefix lets an admin name a token to revoke.
CREATE TABLE api_tokens (
    custid  TEXT    NOT NULL REFERENCES customers (custid) ON DELETE CASCADE,
    prefix  TEXT    NOT NULL,
    hash    BLOB    NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (custid, prefix)
) STRICT;
