-- Webhook delivery: endpoints, one delivery row per (endpoint, event) queued, the attempt log,
-- and counters the engine allocates from in the same transaction as the rows that use them.
-- Times the scheduler computes with are unix seconds (REAL); times shown to people are ISO.

CREATE TABLE webhook_endpoints (
    id                      TEXT PRIMARY KEY,    -- wh_...
    url                     TEXT NOT NULL,
    enabled_events          TEXT NOT NULL,       -- JSON list of names and globs
    charger_ids             TEXT,                -- JSON list; NULL: every charger
    description             TEXT NOT NULL DEFAULT '',
    headers                 TEXT NOT NULL DEFAULT '{}',  -- JSON object
    status                  TEXT NOT NULL,       -- active | inactive | disabled
    disabled_reason         TEXT,
    secret                  TEXT NOT NULL,       -- sealed (AES-GCM, key file outside the DB)
    previous_secret         TEXT,                -- sealed; still signs until it expires
    previous_secret_expires REAL,
    failing_since           REAL,                -- first failure since the last success
    from_pos                INTEGER NOT NULL,    -- events.pos when created
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);

-- id is allocated by the engine (counter 'delivery_id') and orders each (endpoint, charger)
-- stream: fan-out allocates in events.pos order, replays go to the back.
CREATE TABLE webhook_deliveries (
    id                      INTEGER PRIMARY KEY,
    endpoint_id             TEXT NOT NULL,
    event_pos               INTEGER NOT NULL,
    event_id                TEXT NOT NULL,
    charger_id              TEXT,
    status                  TEXT NOT NULL,       -- pending | succeeded | failed
    attempts                INTEGER NOT NULL DEFAULT 0,  -- counted before each post
    next_attempt_at         REAL NOT NULL,
    created_at              TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_pos, endpoint_id);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, event_pos);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

-- One row per POST, written before it is sent (outcome NULL until the answer).
CREATE TABLE webhook_attempts (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id             INTEGER NOT NULL,
    attempt                 INTEGER NOT NULL,
    endpoint_id             TEXT NOT NULL,
    event_id                TEXT NOT NULL,
    event_type              TEXT NOT NULL,
    started_at              TEXT NOT NULL,
    finished_at             TEXT,
    status_code             INTEGER,
    latency_ms              REAL,
    error                   TEXT,
    outcome                 TEXT,                -- succeeded | failed | interrupted; NULL: in flight
    UNIQUE (delivery_id, attempt)
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_started ON webhook_attempts (started_at);

-- fanout_pos: events up to it have their delivery rows; delivery_id: the last allocated;
-- system_sequence: the sequence of events of no charger (webhook.*).
CREATE TABLE webhook_counters (
    name                    TEXT PRIMARY KEY,
    value                   INTEGER NOT NULL
);
