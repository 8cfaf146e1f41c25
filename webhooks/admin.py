"""``WebhookAdmin``: what the admin API asks of the webhook service, spelled out.

Both ``WebhookService`` (on the caller's loop) and ``ThreadedWebhookService`` (on a thread of
its own) offer exactly these methods; the API is typed against this protocol, so nothing
reaches the delivery thread but through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from storage.webhook_tables import AttemptRow
from webhooks.endpoints import Endpoint
from webhooks.service import TestResult


class WebhookAdmin(Protocol):
    def list_endpoints(self) -> list[Endpoint]: ...

    def get_endpoint(self, endpoint_id: str) -> Endpoint: ...

    async def create_endpoint(self, spec: Mapping[str, Any]) -> Endpoint: ...

    async def update_endpoint(self, endpoint_id: str, patch: Mapping[str, Any]) -> Endpoint: ...

    async def delete_endpoint(self, endpoint_id: str) -> None: ...

    async def rotate_secret(self, endpoint_id: str, secret: Any = None) -> Endpoint: ...

    async def send_test(self, endpoint_id: str) -> TestResult: ...

    async def replay(
        self, endpoint_id: str, *, since: str, until: str | None, only_failed: bool
    ) -> int: ...

    async def redeliver(self, event_id: str, endpoint_id: str | None) -> list[str]: ...

    async def attempts(
        self, endpoint_id: str, *, limit: int, starting_after: str | None, event_id: str | None
    ) -> tuple[list[AttemptRow], bool]: ...
