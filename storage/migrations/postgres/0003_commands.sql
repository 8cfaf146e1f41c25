-- CSMS-initiated commands and the settings their results told us (PostgreSQL): mirrors
-- ../0003_commands.sql.

CREATE TABLE commands (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    charger_id          TEXT COLLATE "C" NOT NULL,
    action              TEXT COLLATE "C" NOT NULL,
    request             TEXT COLLATE "C" NOT NULL,   -- JSON
    status              TEXT COLLATE "C" NOT NULL,
    deferred            INTEGER NOT NULL DEFAULT 0,  -- 0/1
    response            TEXT COLLATE "C",            -- JSON
    error               TEXT COLLATE "C",            -- JSON
    created_at          TEXT COLLATE "C" NOT NULL,
    sent_at             TEXT COLLATE "C",
    completed_at        TEXT COLLATE "C"
);
CREATE INDEX commands_open ON commands (charger_id, created_at) WHERE status = 'requested';

CREATE TABLE charger_settings (
    charger_id          TEXT COLLATE "C" NOT NULL,
    key                 TEXT COLLATE "C" NOT NULL,
    value               TEXT COLLATE "C" NOT NULL,   -- JSON
    updated_at          TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (charger_id, key)
);
