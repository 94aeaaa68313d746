-- `recent` is newest first by insertion, also among records created in the same second: the
-- rowid grows with every insert (a new row gets one past the largest), and an index ends
-- with the rowid, so this index serves the order.
DROP INDEX metadata_recent;
CREATE INDEX metadata_recent ON metadata (custid, created DESC);
