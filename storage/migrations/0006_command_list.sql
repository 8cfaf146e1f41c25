-- GET /api/v1/commands lists commands newest first, and pages through them by id.
-- A command is written as a whole-row upsert (INSERT OR REPLACE) when it is requested, sent
-- and finished; each upsert gives the row a new rowid, and created_at has millisecond
-- resolution, so neither keeps the order of commands created together. ``pos`` does: a
-- number given to a command when it is first written, kept in command_positions so the
-- upserts that follow find it again (the trigger writes it back into the new row).

CREATE TABLE command_positions (
    pos                 INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id          TEXT NOT NULL UNIQUE
);
INSERT INTO command_positions (command_id) SELECT id FROM commands ORDER BY created_at, rowid;

ALTER TABLE commands ADD COLUMN pos INTEGER;
UPDATE commands SET pos = (SELECT pos FROM command_positions WHERE command_id = commands.id);

-- Not INSERT OR IGNORE: inside a trigger, the outer statement's OR REPLACE would override
-- it and renumber the command.
CREATE TRIGGER commands_position AFTER INSERT ON commands
BEGIN
    INSERT INTO command_positions (command_id) SELECT NEW.id
        WHERE NOT EXISTS (SELECT 1 FROM command_positions WHERE command_id = NEW.id);
    UPDATE commands SET pos = (SELECT pos FROM command_positions WHERE command_id = NEW.id)
        WHERE id = NEW.id;
END;

CREATE INDEX commands_by_pos ON commands (pos);
CREATE INDEX commands_by_charger ON commands (charger_id, pos);
CREATE INDEX commands_by_status ON commands (status, pos);
