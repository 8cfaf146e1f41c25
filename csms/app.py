"""Wires the running central system: store, charger hub, OCPP endpoint, admin API.

``Csms.start(settings)`` brings everything up in the current event loop (tests use it
in-process); ``serve(settings)`` does the same and waits for SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys
from typing import Any

from aiohttp import web

from csms.api.app import create_app
from csms.api.common import token_digest
from csms.catalog import CSMS_EVENT_TYPES
from csms.commands import CommandDispatcher
from csms.config import Settings
from csms.hub import ChargerHub
from csms.ids import IdSource
from csms.protocol.state import CoreSettings
from csms.server import OcppServer
from storage.records import Meta, UnitOfWork
from storage.sqlite import SqliteStore

log = logging.getLogger(__name__)

TOKEN_META_KEY = "api_token_sha256"


class Csms:
    def __init__(
        self,
        settings: Settings,
        store: SqliteStore,
        hub: ChargerHub,
        ocpp: OcppServer,
        runner: web.AppRunner,
        site: web.TCPSite,
        generated_token: str | None,
        dispatcher: CommandDispatcher,
    ) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        self.store = store
        self.hub = hub
        self.ocpp = ocpp
        self._runner = runner
        self._site = site
        self.generated_token = generated_token  # only on the first start without tokens

    @classmethod
    async def start(cls, settings: Settings) -> Csms:
        store = await SqliteStore.open(settings.storage.sqlite_path)
        try:
            digests, generated = await _api_tokens(settings, store)
            ids = IdSource(await store.max_transaction_id())
            core_settings = CoreSettings(
                authorization=settings.ocpp.authorization,
                heartbeat_interval=settings.ocpp.heartbeat_interval,
                retry_interval=min(60, settings.ocpp.heartbeat_interval),
            )
            hub = ChargerHub(store, ids, core_settings)
            recovered = await hub.recover_after_restart()
            if recovered:
                log.info("%d chargers were left connected by the last run", recovered)
            dispatcher = CommandDispatcher(hub, call_timeout=settings.ocpp.call_timeout)
            resumed = await dispatcher.resume()
            if resumed:
                log.info("%d queued commands wait for their chargers", resumed)
            ocpp = OcppServer(hub, settings.ocpp)
            app = create_app(
                settings=settings,
                hub=hub,
                dispatcher=dispatcher,
                token_digests=lambda: digests,
                event_types=_event_types,
                forget_password=ocpp.forget_password,
            )
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, settings.api.host, settings.api.port)
            await site.start()
            await ocpp.start()
        except BaseException:
            await store.close()
            raise
        return cls(settings, store, hub, ocpp, runner, site, generated, dispatcher)

    @property
    def api_port(self) -> int:
        server: Any = self._site._server
        return server.sockets[0].getsockname()[1]

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api.host}:{self.api_port}"

    @property
    def ocpp_url(self) -> str:
        return self.ocpp.url

    async def close(self) -> None:
        await self.ocpp.close()
        await self.dispatcher.close()
        await self._runner.cleanup()
        await self.store.close()


def _event_types() -> list[dict[str, Any]]:
    return [
        {"name": t.name, "description": t.description, "example": t.example}
        for t in CSMS_EVENT_TYPES
    ]


async def _api_tokens(settings: Settings, store: SqliteStore) -> tuple[list[str], str | None]:
    """Digests of the accepted bearer tokens; a new token if none is configured or stored."""
    if settings.api.tokens:
        return [token_digest(t) for t in settings.api.tokens], None
    stored = await store.get_meta(TOKEN_META_KEY)
    if stored is not None:
        return [stored], None
    token = "chk_" + secrets.token_urlsafe(32)
    await store.commit(UnitOfWork().put(Meta(key=TOKEN_META_KEY, value=token_digest(token))))
    return [token_digest(token)], token


async def serve(settings: Settings) -> None:
    csms = await Csms.start(settings)
    print(f"chargehook: OCPP endpoint {csms.ocpp_url}/{{chargerId}}", flush=True)
    print(f"chargehook: admin API {csms.api_url}/api/v1", flush=True)
    print(f"chargehook: storage {settings.storage.url}", flush=True)
    if csms.generated_token:
        print(
            "chargehook: no [api] tokens configured; generated an admin API token. It is shown"
            " only now, store it:\n"
            f"  {csms.generated_token}",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("chargehook: shutting down", file=sys.stderr, flush=True)
        await csms.close()
