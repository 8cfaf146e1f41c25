-- A charger's OCPP security profile (Security Whitepaper 2.1; DESIGN 3): 0 no auth, 1 HTTP Basic,
-- 2 TLS + Basic, 3 TLS + client certificate. A connection below it is refused. Chargers
-- registered before it existed keep what they did: Basic auth when they have a password.
ALTER TABLE chargers ADD COLUMN security_profile INTEGER NOT NULL DEFAULT 0;
UPDATE chargers SET security_profile = 1 WHERE password_hash IS NOT NULL;
