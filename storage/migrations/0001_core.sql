-- Core schema: chargers, connectors, transactions, meter values, id tags, the event log.
-- Timestamps are ISO 8601 UTC strings with milliseconds and a trailing Z (sortable as text).

-- Registration, owned by the admin API.
CREATE TABLE chargers (
    id                  TEXT PRIMARY KEY,
    password_hash       TEXT,            -- scrypt, see csms/passwords.py; NULL: no Basic auth
    description         TEXT NOT NULL DEFAULT '',
    registration_policy TEXT NOT NULL DEFAULT 'Accepted',  -- BootNotification answer
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

-- What the charger told us, owned by its OCPP session (written as whole rows).
CREATE TABLE charger_state (
    charger_id          TEXT PRIMARY KEY,
    registration_status TEXT,            -- last BootNotification answer; NULL: never booted
    boot                TEXT,            -- JSON: the last BootNotification.req
    booted_at           TEXT,
    connected           INTEGER NOT NULL DEFAULT 0,
    connected_at        TEXT,
    disconnected_at     TEXT,
    last_seen_at        TEXT,
    remote_address      TEXT,
    last_sequence       INTEGER NOT NULL DEFAULT 0,  -- per-charger event sequence
    firmware_status     TEXT,
    diagnostics_status  TEXT
);

CREATE TABLE connectors (
    charger_id          TEXT NOT NULL,
    connector_id        INTEGER NOT NULL,  -- 0 is the charger itself
    status              TEXT NOT NULL,
    error_code          TEXT NOT NULL,
    info                TEXT,
    vendor_id           TEXT,
    vendor_error_code   TEXT,
    status_timestamp    TEXT,            -- as the charger reported it
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (charger_id, connector_id)
);

CREATE TABLE transactions (
    id                  INTEGER PRIMARY KEY,  -- assigned by the CSMS, unique across chargers
    charger_id          TEXT NOT NULL,
    connector_id        INTEGER NOT NULL,
    id_tag              TEXT NOT NULL,
    id_tag_status       TEXT NOT NULL,
    meter_start         INTEGER NOT NULL,
    started_at          TEXT NOT NULL,   -- StartTransaction.timestamp
    reservation_id      INTEGER,
    command_id          TEXT,            -- the RemoteStartTransaction that led to it
    meter_stop          INTEGER,
    stopped_at          TEXT,            -- StopTransaction.timestamp; NULL while active
    stop_reason         TEXT,
    stop_id_tag         TEXT,
    last_meter          TEXT,            -- JSON: the latest normalised reading
    energy_wh           REAL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX transactions_charger ON transactions (charger_id, id);
CREATE INDEX transactions_active ON transactions (charger_id) WHERE stopped_at IS NULL;
CREATE INDEX transactions_start_key ON transactions (charger_id, connector_id, started_at);

CREATE TABLE meter_values (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    charger_id          TEXT NOT NULL,
    connector_id        INTEGER NOT NULL,
    transaction_id      INTEGER,
    timestamp           TEXT NOT NULL,
    digest              TEXT NOT NULL,   -- of the raw meterValue element, to drop re-sent ones
    sampled_value       TEXT NOT NULL    -- JSON: the raw sampledValue list
);
CREATE INDEX meter_values_transaction ON meter_values (transaction_id, id);
CREATE INDEX meter_values_charger ON meter_values (charger_id, id);

CREATE TABLE id_tags (
    id_tag              TEXT PRIMARY KEY,
    status              TEXT NOT NULL,
    expiry_date         TEXT,
    parent_id_tag       TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

-- The event log. pos is the global commit order the delivery engine follows.
CREATE TABLE events (
    pos                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    type                TEXT NOT NULL,
    charger_id          TEXT,            -- NULL: an event of no charger (webhook.*)
    sequence            INTEGER,         -- gapless per charger; NULL for ocpp.message
    timestamp           TEXT NOT NULL,
    data                TEXT NOT NULL    -- JSON
);
CREATE INDEX events_charger ON events (charger_id, sequence);
CREATE INDEX events_type ON events (type, pos);
CREATE INDEX events_timestamp ON events (timestamp);

-- Small settings the server keeps for itself (generated API token hash, ...).
CREATE TABLE meta (
    key                 TEXT PRIMARY KEY,
    value               TEXT NOT NULL
);
