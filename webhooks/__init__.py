"""The webhook emitter: event envelope, subscriptions, signing, ordered delivery. Knows nothing of OCPP."""
