-- CSMS-initiated commands (DESIGN 6) and what their results told us about each charger.

CREATE TABLE commands (
    id                  TEXT PRIMARY KEY,     -- cmd_...; also the OCPP message id on the wire
    charger_id          TEXT NOT NULL,
    action              TEXT NOT NULL,        -- OCPP action, e.g. RemoteStartTransaction
    request             TEXT NOT NULL,        -- JSON payload as sent
    status              TEXT NOT NULL,        -- requested | accepted | rejected | failed
    deferred            INTEGER NOT NULL DEFAULT 0,  -- ?queue=true: waits for a connection
    response            TEXT,                 -- JSON CALLRESULT payload
    error               TEXT,                 -- JSON {code, message}
    created_at          TEXT NOT NULL,
    sent_at             TEXT,
    completed_at        TEXT
);
CREATE INDEX commands_open ON commands (charger_id, created_at) WHERE status = 'requested';

-- Settings a charger accepted through commands: availability, charging profiles, local list
-- version, configuration keys. One row per (charger, key), value as JSON.
CREATE TABLE charger_settings (
    charger_id          TEXT NOT NULL,
    key                 TEXT NOT NULL,
    value               TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (charger_id, key)
);
