-- The cluster (DESIGN 8): every `csms serve` on this database is a node.
--
-- cluster_nodes: one row per node id. A node writes heartbeat_at = now() (the database's
-- clock, so nodes' clocks never have to agree) every lease_ttl / 3; a node whose heartbeat is
-- older than lease_ttl is dead. ``incarnation`` is random per process start: a heartbeat that
-- finds another incarnation in its row means a second process took the same node id.
CREATE TABLE cluster_nodes (
    node_id             TEXT COLLATE "C" PRIMARY KEY,
    incarnation         TEXT NOT NULL,
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    api_url             TEXT,
    ocpp_url            TEXT,
    version             TEXT,
    stopped             BOOLEAN NOT NULL DEFAULT false
);

-- charger_owners: which node holds a charger's socket. Taking a charger bumps ``fence``; a row
-- exists only while some node holds (or held, until it is found dead) a socket.
CREATE TABLE charger_owners (
    charger_id          TEXT COLLATE "C" PRIMARY KEY,
    node_id             TEXT COLLATE "C" NOT NULL,
    fence               BIGINT NOT NULL,
    since               TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX charger_owners_by_node ON charger_owners (node_id);

-- charger_sequences: the last per-charger event sequence committed. Every unit that changes a
-- charger names the sequence it was computed from; its commit moves this row from that value
-- to the unit's last one, or the unit is refused (another node wrote first) and computed
-- again from the stored state. Gapless and unique across nodes (optimistic concurrency).
CREATE TABLE charger_sequences (
    charger_id          TEXT COLLATE "C" PRIMARY KEY,
    last                BIGINT NOT NULL
);
INSERT INTO charger_sequences (charger_id, last)
    SELECT charger_id, max(sequence) FROM events
    WHERE charger_id IS NOT NULL AND sequence IS NOT NULL
    GROUP BY charger_id;
