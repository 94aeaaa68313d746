-- Mail waiting to be sent, written in the same transaction as its secret. A row lives only as
-- long as its metadata (the recipient's address with it).
CREATE TABLE outbox (
    id              TEXT    PRIMARY KEY,
    metadata_key    TEXT    NOT NULL REFERENCES metadata (key) ON DELETE CASCADE,
    recipient       TEXT    NOT NULL,
    from_custid     TEXT    NOT NULL,
    secret_key      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL
) STRICT;

CREATE INDEX outbox_due ON outbox (next_attempt_at);
CREATE INDEX outbox_metadata ON outbox (metadata_key);
