"""OCPP-J 1.6 protocol core: frames, schemas, and the pure message handlers."""
