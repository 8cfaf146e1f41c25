-- A charger's sequence is unique (as on PostgreSQL, where several nodes may compute the next
-- event of one charger; see postgres/0008_cluster.sql). The cluster's tables exist on
-- PostgreSQL only: a SQLite file has one node, which holds every charger it serves.
DROP INDEX events_charger;
CREATE UNIQUE INDEX events_charger ON events (charger_id, sequence);
