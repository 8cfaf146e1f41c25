"""chargehook central system: OCPP 1.6J server, admin API, configuration and CLI."""
