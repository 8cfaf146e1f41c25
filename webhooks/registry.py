"""The endpoints as this node delivers to them: one owner of the dict that fan-out, dispatch
and the service read.

Changed only on the engine's loop. Readers on another thread (the admin API, ``wants``) copy
``by_id`` whole (one atomic step under the GIL) and never iterate over a live view.
"""

from __future__ import annotations

from webhooks.endpoints import Endpoint


class Registry:
    def __init__(self) -> None:
        self.by_id: dict[str, Endpoint] = {}  # in creation order
        self.version = 0  # bumped whenever an endpoint changes what it selects (for caches)
        self.active: list[Endpoint] = []  # none: the fan-out has nothing to do

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self.by_id.get(endpoint_id)

    def put(self, endpoint: Endpoint) -> bool:
        """Add or replace; True when it is the first active one (the fan-out idled)."""
        had_active = bool(self.active)
        self.by_id[endpoint.id] = endpoint
        self.version += 1
        self._actives()
        return bool(self.active) and not had_active

    def update(self, endpoint: Endpoint, *, selection: bool) -> None:
        """Its health changed (``selection``: and with it what it receives: disabled)."""
        self.by_id[endpoint.id] = endpoint
        if selection:
            self.version += 1
            self._actives()

    def remove(self, endpoint_id: str) -> None:
        self.by_id.pop(endpoint_id, None)
        self.version += 1
        self._actives()

    def _actives(self) -> None:
        self.active = [e for e in self.by_id.values() if e.active]
