-- A charger's sequence is unique (as on PostgreSQL, where several nodes may compute the next
-- event of one charger; see postgres/0008_cluster.sql). The cluster's tables exist on
-- PostgreSQL only: a SQLite file has one node, which holds every charger it serves.
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
