-- The cluster tables exist on PostgreSQL only (storage/migrations/postgres/0008_cluster.sql):
-- a SQLite file has one node, which holds every charger it serves.
SELECT 1;
