-- Paging of pending deliveries (webhooks/scheduler.py): a stream (endpoint, charger) keeps a
-- window of its pending deliveries in memory and reads the next ones from the store by id.
-- This index makes that read a range scan, and the start's count per stream an index-only
-- scan. It replaces the index on pending ids alone, which nothing reads any more.
CREATE INDEX webhook_deliveries_stream ON webhook_deliveries (endpoint_id, charger_id, id)
    WHERE status = 'pending';
DROP INDEX webhook_deliveries_pending;
