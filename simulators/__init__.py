"""Charger simulator and load driver. Speaks OCPP over the wire only."""
