-- StopTransaction.req for a transaction we do not know (or -1, errata 3.18): answered and
-- recorded here, never guessed onto a connector. The digest recognises a re-sent copy, also
-- after a restart.
CREATE TABLE unknown_stops (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    charger_id          TEXT NOT NULL,
    transaction_id      INTEGER NOT NULL,     -- as the charger sent it
    digest              TEXT NOT NULL,
    payload             TEXT NOT NULL,        -- JSON: the StopTransaction.req
    recorded_at         TEXT NOT NULL
);
CREATE INDEX unknown_stops_charger ON unknown_stops (charger_id, id);
