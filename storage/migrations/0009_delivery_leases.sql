-- Delivery partitions (DESIGN 5, 8): chargers hash into 64 partitions (crc32 of the charger
-- id, events of no charger in partition 0). A partition's streams are delivered by the one
-- node holding its lease; SQLite has one node, which holds them all (node_id and token stay
-- unused here). fanout_pos is the partition's durable fan-out cursor: its events up to it
-- have every delivery row they need. It starts where the single cursor of 0002 was.
CREATE TABLE delivery_leases (
    partition               INTEGER PRIMARY KEY,
    node_id                 TEXT,
    token                   INTEGER NOT NULL DEFAULT 0,
    expires_at              REAL,
    fanout_pos              INTEGER NOT NULL DEFAULT 0
);
WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n < 63)
INSERT INTO delivery_leases (partition, fanout_pos)
SELECT n, COALESCE((SELECT value FROM webhook_counters WHERE name = 'fanout_pos'), 0) FROM p;
DELETE FROM webhook_counters WHERE name IN ('fanout_pos', 'journal_flush');
-- Deliveries queued by one node for a partition another node holds (replay, redeliver
-- through any node's API) wait as 'handoff' until the holder takes them into its streams.
CREATE INDEX webhook_deliveries_handoff ON webhook_deliveries (id) WHERE status = 'handoff';
