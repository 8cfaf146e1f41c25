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

-- A charger's sequence is unique (DESIGN 4, 8): two nodes that both computed the next event of
-- one charger (a charger moving between nodes, an API call on a node that does not hold it)
-- cannot both commit it. The loser's unit is refused and computed again from the stored state,
-- so the sequence stays gapless and unique across nodes at no cost to the common path.
-- Before the index: a charger given queued commands before its first connect got its first
-- events numbered again from 1 (the state row was missing, so the sequence restarted). Such a
-- charger's events are numbered anew in the order they were committed (pos): gapless and
-- unique, as the contract says. Other chargers are untouched.
UPDATE events SET sequence = renumbered.n
FROM (
    SELECT id, row_number() OVER (PARTITION BY charger_id ORDER BY pos) AS n
    FROM events
    WHERE sequence IS NOT NULL AND charger_id IN (
        SELECT charger_id FROM events WHERE sequence IS NOT NULL
        GROUP BY charger_id, sequence HAVING count(*) > 1
    )
) AS renumbered
WHERE events.id = renumbered.id;
UPDATE charger_state SET last_sequence = (
    SELECT max(sequence) FROM events WHERE events.charger_id = charger_state.charger_id
)
WHERE last_sequence < (
    SELECT max(sequence) FROM events WHERE events.charger_id = charger_state.charger_id
);
DROP INDEX events_charger;
CREATE UNIQUE INDEX events_charger ON events (charger_id, sequence);

-- Transaction ids: each node takes blocks of them from this counter (UPDATE ... RETURNING), so
-- two nodes never hand out the same id; an unused rest of a block is a gap, never a duplicate.
INSERT INTO store_counters (name, value)
    SELECT 'transaction_ids', COALESCE(max(id), 0) FROM transactions;
