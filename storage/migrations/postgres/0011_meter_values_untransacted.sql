-- A charger's recent meter values (Store.recent_meter_digests, read when its snapshot loads)
-- no longer come from an index on (charger_id, id) over every sample: with many chargers
-- interleaving, each MeterValues dirtied a leaf page of it of its own, a whole page written
-- to the WAL per sample. Samples of the charger's own transactions are found through their
-- transactions (meter_values_transaction, and the charger's transactions newest first, by
-- the time the CSMS created them); only the samples of no transaction keep a (charger_id,
-- id) index, a partial one, which a transaction's MeterValues never writes.
CREATE INDEX meter_values_untransacted ON meter_values (charger_id, id)
    WHERE transaction_id IS NULL;
CREATE INDEX transactions_charger_created ON transactions (charger_id, created_at, id);
DROP INDEX meter_values_charger;
