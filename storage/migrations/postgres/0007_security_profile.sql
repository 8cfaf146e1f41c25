-- A charger's OCPP security profile: mirrors ../0007_security_profile.sql.
ALTER TABLE chargers ADD COLUMN security_profile BIGINT NOT NULL DEFAULT 0;
UPDATE chargers SET security_profile = 1 WHERE password_hash IS NOT NULL;
