"""``WebhookService``: what the CSMS and the admin API call. Endpoint management (validation,
target checks, sealed secrets), test sends, replays, and the engine's life cycle.

Wiring (in the CSMS)::

    service = await WebhookService.start(store, config, catalog)
    store.add_commit_listener(service.notify)
    ...
    if service.wants("ocpp.message"): ...
    await service.close()   # before store.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage import webhook_tables as tables
from storage.ids import time_ordered_id
from storage.records import Event
from storage.store import Store
from webhooks import secretbox
from webhooks.catalog import WEBHOOK_TEST, Catalog
from webhooks.config import DeliveryConfig
from webhooks.endpoints import (
    Endpoint,
    EndpointStatus,
    InvalidEndpoint,
    check_charger_ids,
    check_description,
    check_enabled_events,
    check_headers,
    check_status,
)
from webhooks.engine import Engine
from webhooks.filters import selects
from webhooks.poster import AttemptResult, Poster
from webhooks.signing import SecretFormatError, new_secret, secret_key
from webhooks.targets import TargetError, check_target
from webhooks.timefmt import iso_utc

log = logging.getLogger(__name__)

REPLAY_CHUNK = 1000


def new_id(prefix: str) -> str:
    """``prefix_`` + a time-ordered id, as the CSMS's events have (``storage.ids``)."""
    return time_ordered_id(prefix + "_")


class NotFound(LookupError):
    """No such endpoint or event; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TestResult:
    event_id: str
    result: AttemptResult


class WebhookService:
    def __init__(
        self,
        store: Store,
        config: DeliveryConfig,
        catalog: Catalog,
        engine: Engine,
        box: secretbox.SecretBox,
        poster: Poster,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.config = config
        self.catalog = catalog
        self.engine = engine
        self._box = box  # seals secrets at rest
        self._poster = poster  # closed last: the engine's POSTs use it
        self._clock = clock
        self._wants: dict[str, bool] = {}  # event type -> any active endpoint selects it
        self._wants_version = -1  # the engine's endpoint version the cache was made for
        self._sync: asyncio.Task[None] | None = None
        if engine.clustered:
            self._sync = asyncio.create_task(self._sync_endpoints(), name="webhook-endpoints")

    @classmethod
    async def start(
        cls,
        store: Store,
        config: DeliveryConfig,
        catalog: Catalog,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> WebhookService:
        """Load endpoints and pending deliveries, catch up on events, start delivering."""
        rows = await tables.load_endpoints(store)
        key_file = config.secret_key_file or store.default_key_file
        box = secretbox.SecretBox(secretbox.load_or_create_key(key_file, create=not rows))
        endpoints = [_endpoint(row, box) for row in rows]
        poster = Poster.of(config)
        engine = Engine(
            store=store, config=config, poster=poster, clock=clock, rand=rand, new_id=new_id
        )
        await engine.start(endpoints)
        return cls(store, config, catalog, engine, box, poster, clock)

    async def close(self) -> None:
        await self._stop_sync()
        await self.engine.close()
        await self._poster.close()

    async def halt(self) -> None:
        """Stop as a node that dies would (no lease given back): for tests of take-over."""
        await self._stop_sync()
        await self.engine.halt()
        await self._poster.close()

    async def _stop_sync(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync

    async def _sync_endpoints(self) -> None:
        """Clustered: endpoints created, changed or deleted through another node's API (or
        disabled by its deliveries) reach this node's engine within a lease round."""
        while True:
            await asyncio.sleep(self.config.lease_ttl / 3)
            version = self.engine.version
            try:
                rows = await tables.load_endpoints(self.store)
            except Exception as exc:
                log.debug("endpoints not synchronised: %s", exc)
                continue
            if version == self.engine.version:  # else changed here meanwhile: next round
                self.sync_endpoints(rows)

    def sync_endpoints(self, rows: list[tables.EndpointRow]) -> None:
        engine = self.engine
        seen = set()
        for row in rows:
            seen.add(row.id)
            current = engine.endpoints.get(row.id)
            if current is None or current.updated_at != row.updated_at:
                try:
                    engine.put_endpoint(_endpoint(row, self._box))
                except secretbox.SecretBoxError:
                    log.exception("webhook endpoint %s cannot be opened", row.id)
        for endpoint_id in [i for i in engine.endpoints if i not in seen]:
            engine.remove_endpoint(endpoint_id)

    def notify(self, events: Sequence[Event], first_pos: int) -> None:
        """Give this to ``store.add_commit_listener``: it hands the events to the fan-out."""
        self.engine.notify(events, first_pos)

    def wants(self, event_type: str) -> bool:
        """Is any active endpoint subscribed to this type? (Store ``ocpp.message`` only then.)"""
        if self._wants_version != self.engine.version:
            self._wants.clear()
            self._wants_version = self.engine.version
        known = self._wants.get(event_type)
        if known is None:
            known = self._wants[event_type] = any(
                e.active and selects(e.enabled_events, event_type)
                for e in tuple(self.engine.endpoints.values())  # one atomic copy
            )
        return known

    # -- endpoints -----------------------------------------------------------------------

    def list_endpoints(self) -> list[Endpoint]:
        return list(self.engine.endpoints.values())

    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        endpoint = self.engine.endpoints.get(endpoint_id)
        if endpoint is None:
            raise NotFound(f"webhook {endpoint_id}")
        return endpoint

    async def _check_url(self, url: Any) -> str:
        if not isinstance(url, str):
            raise InvalidEndpoint("url", "is required and must be a string")
        try:
            await check_target(url, allow_private=self.config.allow_private_targets)
        except TargetError as exc:
            raise InvalidEndpoint("url", str(exc)) from None
        return url

    @staticmethod
    def _check_secret(value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidEndpoint("secret", "must be a string")
        try:
            secret_key(value)
        except SecretFormatError as exc:
            raise InvalidEndpoint("secret", str(exc)) from None
        return value

    async def create_endpoint(self, spec: Mapping[str, Any]) -> Endpoint:
        """From the API's fields (camelCase); raises ``InvalidEndpoint`` naming a field."""
        enabled = check_enabled_events(spec.get("enabledEvents"), self.catalog)
        url = await self._check_url(spec.get("url"))
        secret = spec.get("secret")
        secret = new_secret(secrets.token_bytes) if secret is None else self._check_secret(secret)
        now = iso_utc(self._clock())
        endpoint = Endpoint(
            id=new_id("wh"),
            url=url,
            enabled_events=enabled,
            charger_ids=check_charger_ids(spec.get("chargerIds")),
            description=check_description(spec.get("description")),
            headers=check_headers(spec.get("headers")),
            status=check_status(spec.get("status", EndpointStatus.ACTIVE)),
            disabled_reason=None,
            secret=secret,
            previous_secret=None,
            previous_secret_expires=None,
            failing_since=None,
            from_pos=await tables.max_event_pos(self.store),
            created_at=now,
            updated_at=now,
        )
        await self._save(endpoint)
        return endpoint

    async def update_endpoint(self, endpoint_id: str, patch: Mapping[str, Any]) -> Endpoint:
        current = self.get_endpoint(endpoint_id)
        changes: dict[str, Any] = {}
        if "url" in patch:
            changes["url"] = await self._check_url(patch["url"])
        if "enabledEvents" in patch:
            changes["enabled_events"] = check_enabled_events(patch["enabledEvents"], self.catalog)
        if "chargerIds" in patch:
            changes["charger_ids"] = check_charger_ids(patch["chargerIds"])
        if "description" in patch:
            changes["description"] = check_description(patch["description"])
        if "headers" in patch:
            changes["headers"] = check_headers(patch["headers"])
        if "status" in patch:
            status = check_status(patch["status"])
            if status is not current.status:
                changes["status"] = status
                changes["disabled_reason"] = None
                changes["failing_since"] = None  # re-enabled: the failure clock starts over
                if status is EndpointStatus.ACTIVE:
                    # What came while it was off is not queued (replay fills that gap):
                    # its fan-out starts again from the log's end.
                    changes["from_pos"] = await tables.max_event_pos(self.store)
        current = self.get_endpoint(endpoint_id)  # the awaits above may have raced
        updated = dataclasses.replace(current, **changes, updated_at=iso_utc(self._clock()))
        await self._save(updated)
        return updated

    async def delete_endpoint(self, endpoint_id: str) -> None:
        self.get_endpoint(endpoint_id)
        await self.engine.delete_endpoint(endpoint_id)

    async def rotate_secret(self, endpoint_id: str, secret: Any = None) -> Endpoint:
        """A new secret; the old one keeps signing beside it for ``rotation_overlap``."""
        current = self.get_endpoint(endpoint_id)
        fresh = new_secret(secrets.token_bytes) if secret is None else self._check_secret(secret)
        now = self._clock()
        updated = dataclasses.replace(
            current,
            secret=fresh,
            previous_secret=current.secret,
            previous_secret_expires=now + self.config.rotation_overlap,
            updated_at=iso_utc(now),
        )
        await self._save(updated)
        return updated

    async def _save(self, endpoint: Endpoint) -> None:
        row = tables.EndpointRow(
            id=endpoint.id,
            url=endpoint.url,
            enabled_events=list(endpoint.enabled_events),
            charger_ids=None if endpoint.charger_ids is None else list(endpoint.charger_ids),
            description=endpoint.description,
            headers=dict(endpoint.headers),
            status=endpoint.status.value,
            disabled_reason=endpoint.disabled_reason,
            secret=self._box.seal(endpoint.secret, bound_to=endpoint.id),
            previous_secret=(
                None
                if endpoint.previous_secret is None
                else self._box.seal(endpoint.previous_secret, bound_to=endpoint.id)
            ),
            previous_secret_expires=endpoint.previous_secret_expires,
            failing_since=endpoint.failing_since,
            from_pos=endpoint.from_pos,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )
        await self.engine.save_endpoint(row, endpoint)

    # -- sending -------------------------------------------------------------------------

    async def send_test(self, endpoint_id: str) -> TestResult:
        """Post a ``webhook.test`` event to this endpoint now (whatever its status) and answer
        with the outcome. Recorded like any attempt; not retried."""
        event, result = await self.engine.send_test(self.get_endpoint(endpoint_id))
        return TestResult(event_id=event.id, result=result)

    async def replay(
        self, endpoint_id: str, *, since: str, until: str | None, only_failed: bool
    ) -> int:
        """Queue again, in order, this endpoint's events in [since, until) that it selects;
        events already pending for it are skipped, and with ``only_failed`` so are those it
        already received. Returns how many were queued."""
        return await self.engine.replay(
            self.get_endpoint(endpoint_id),
            since=since,
            until=until,
            only_failed=only_failed,
            chunk=REPLAY_CHUNK,
        )

    async def redeliver(self, event_id: str, endpoint_id: str | None) -> list[str]:
        """Queue one event again: for one endpoint, or for every active endpoint selecting it.
        Returns the endpoint ids it was queued for."""
        event = await tables.event_by_id(self.store, event_id)
        if event is None or event.pos is None:
            raise NotFound(f"event {event_id}")
        if endpoint_id is not None:
            targets = [self.get_endpoint(endpoint_id)]
        else:
            targets = [
                e
                for e in self.engine.endpoints.values()
                if e.active and e.wants(event.type, event.charger_id) and event.type != WEBHOOK_TEST
            ]
        head = tables.EventHead(
            pos=event.pos, id=event.id, type=event.type, charger_id=event.charger_id
        )
        for target in targets:
            await self.engine.enqueue(target.id, [head])
        return [t.id for t in targets]

    async def attempts(
        self, endpoint_id: str, *, limit: int, starting_after: str | None, event_id: str | None
    ) -> tuple[list[tables.AttemptRow], bool]:
        self.get_endpoint(endpoint_id)
        # The answers recorded so far, written first (the journal lets them linger); a
        # store that is away fails the request at once, as the read would.
        await self.engine.ledger.write([])
        before = None
        if starting_after is not None:
            before = _attempt_number(starting_after)
        return await tables.list_attempts(
            self.store, endpoint_id, limit=limit, before_id=before, event_id=event_id
        )


def attempt_id(number: int) -> str:
    return f"att_{number}"


def _attempt_number(text: str) -> int:
    prefix, _, digits = text.partition("_")
    if prefix != "att" or not digits.isdigit():
        raise InvalidEndpoint("startingAfter", "must be an attempt id such as att_42")
    return int(digits)


def _endpoint(row: tables.EndpointRow, box: secretbox.SecretBox) -> Endpoint:
    return Endpoint(
        id=row.id,
        url=row.url,
        enabled_events=tuple(row.enabled_events),
        charger_ids=None if row.charger_ids is None else tuple(row.charger_ids),
        description=row.description,
        headers=dict(row.headers),
        status=EndpointStatus(row.status),
        disabled_reason=row.disabled_reason,
        secret=box.open(row.secret, bound_to=row.id),
        previous_secret=(
            None if row.previous_secret is None else box.open(row.previous_secret, bound_to=row.id)
        ),
        previous_secret_expires=row.previous_secret_expires,
        failing_since=row.failing_since,
        from_pos=row.from_pos,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
