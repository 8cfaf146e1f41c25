-- Delivery partitions (DESIGN 5, 8): chargers hash into 64 partitions (crc32 of the charger
-- id, events of no charger in partition 0). One node at a time holds a partition's lease and
-- delivers its streams (order per endpoint and charger holds cluster-wide). Taking a lease
-- bumps ``token``; every delivery row, attempt, outcome and cursor a node writes for the
-- partition checks (node_id, token) in the same transaction, so a node that lost its lease
-- (paused past expires_at: unix seconds of the database's clock, as
-- SQLite's column is REAL) can record nothing for it. fanout_pos is
-- the partition's durable fan-out cursor: its events up to it have every delivery row they
-- need; a new holder fans out again from there. It starts where the single cursor of 0002 was.
CREATE TABLE delivery_leases (
    partition               BIGINT PRIMARY KEY,
    node_id                 TEXT COLLATE "C",
    token                   BIGINT NOT NULL DEFAULT 0,
    expires_at              DOUBLE PRECISION,        -- unix seconds, the database's clock
    fanout_pos              BIGINT NOT NULL DEFAULT 0
);
INSERT INTO delivery_leases (partition, fanout_pos)
SELECT n, COALESCE((SELECT value FROM webhook_counters WHERE name = 'fanout_pos'), 0)
FROM generate_series(0, 63) AS n;
-- The journal's flush mark becomes one row per node ('journal_flush:<node id>').
DELETE FROM webhook_counters WHERE name IN ('fanout_pos', 'journal_flush');
-- Deliveries queued by one node for a partition another node holds (replay, redeliver
-- through any node's API) wait as 'handoff' until the holder takes them into its streams.
CREATE INDEX webhook_deliveries_handoff ON webhook_deliveries (id) WHERE status = 'handoff';
