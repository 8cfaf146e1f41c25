"""The webhook emitter: envelope, subscriptions, signing, ordered delivery.

Knows nothing of OCPP: the CSMS fills the ``Catalog`` with its event types, builds a
``DeliveryConfig`` from its settings, and starts a ``WebhookService`` on its store.
"""

from webhooks.catalog import Catalog, EventType
from webhooks.config import DeliveryConfig
from webhooks.endpoints import Endpoint, EndpointStatus, InvalidEndpoint
from webhooks.service import NotFound, WebhookService

__all__ = [
    "Catalog",
    "DeliveryConfig",
    "Endpoint",
    "EndpointStatus",
    "EventType",
    "InvalidEndpoint",
    "NotFound",
    "WebhookService",
]
