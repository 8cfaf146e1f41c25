"""Wires the running central system: store, charger hub, OCPP endpoint, admin API.

``Csms.start(settings)`` brings everything up in the current event loop (tests use it
in-process); ``serve(settings)`` does the same and waits for SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from importlib import metadata
from typing import Any

from aiohttp import web

from csms.api.app import create_app
from csms.api.metrics import METRICS_PATH, PENDING_SOURCE
from csms.api.webhooks import WEBHOOK_SERVICE
from csms.api.webhooks import routes as webhook_routes
from csms.catalog import build_catalog
from csms.certificates import CertificateAuthority, CertificateSigner
from csms.cluster import PgCluster, Solo, default_node_id
from csms.commands import CommandDispatcher
from csms.config import Settings, WebhookSettings
from csms.handshake_security import TlsSetupError
from csms.hub import ChargerHub
from csms.ids import IdSource
from csms.logs import AccessLogger, access_logger
from csms.metrics import Metrics
from csms.protocol.state import CoreSettings
from csms.server import OcppServer
from csms.tokens import FIRST_TOKEN_ID, TokenCheck, create_token
from storage import display_url, open_store
from storage.cluster import ClusterTables
from storage.migrations import NewerSchemaError
from storage.pacing import CommitPacer
from storage.store import Store
from webhooks import Catalog, DeliveryConfig
from webhooks.secretbox import SecretBoxError
from webhooks.threaded import ThreadedWebhookService

log = logging.getLogger(__name__)

FIRST_TOKEN_LABEL = "generated at first start"


class StartError(Exception):
    """The server cannot start; the message says why in one line, naming the setting."""


class Csms:
    """The running central system; ``close()`` stops it in the reverse order of start."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()  # what to stop, in reverse order of start
        self.generated_token: str | None = None  # only on the first start without tokens
        self.store: Store
        self.hub: ChargerHub
        self.dispatcher: CommandDispatcher
        self.webhooks: ThreadedWebhookService
        self.metrics: Metrics
        self.ocpp: OcppServer
        self.cluster: Solo
        self._runner: web.AppRunner

    @classmethod
    async def start(cls, settings: Settings) -> Csms:
        csms = cls(settings)
        try:
            await csms._start()
        except BaseException:
            await csms.close()
            raise
        return csms

    async def _start(self) -> None:
        settings, stack = self.settings, self._stack
        try:
            self.store = store = await open_store(settings.storage.url)
        except NewerSchemaError as exc:
            raise StartError(f"storage.url {display_url(settings.storage.url)}: {exc}") from None
        stack.push_async_callback(store.close)
        # Chargers' messages come one by one under an open loop: while the process is busy,
        # their commits wait a few ms for company (storage/pacing.py).
        store.pacer = CommitPacer()
        tokens = TokenCheck(settings.api.tokens, store)
        core_settings = CoreSettings(
            authorization=settings.ocpp.authorization,
            heartbeat_interval=settings.ocpp.heartbeat_interval,
            retry_interval=min(60, settings.ocpp.heartbeat_interval),
            signs_certificates=bool(settings.ocpp.tls_ca_key),
        )
        self.cluster = cluster = _cluster(settings, store)
        if isinstance(cluster, PgCluster):
            # Transaction ids in blocks from the database: the nodes never hand out one twice.
            ids = IdSource(0, take_block=cluster.tables.take_transaction_ids)
            await cluster.start(
                api_url=f"http://{settings.api.host}:{settings.api.port}",
                ocpp_url=f"ws://{settings.ocpp.host}:{settings.ocpp.port}/ocpp",
                version=_version(),
            )
            stack.push_async_callback(cluster.close)  # after the sockets closed: released
            # Its sessions recorded (its webhook store's too): a node that finds this one
            # lost ends them, so a paused node cannot hold row locks the others wait for.
            await store.set_owner(cluster.node_id)  # type: ignore[attr-defined]
        else:
            ids = IdSource(await store.max_transaction_id())
        self.hub = hub = ChargerHub(store, ids, core_settings, cluster=cluster)
        cluster.handlers["taken"] = hub.on_taken
        cluster.on_lost_charger = hub.on_lost_charger
        cluster.on_fence_lost = hub.check_fences
        catalog = build_catalog()
        try:
            self.webhooks = webhooks = await ThreadedWebhookService.start(
                store,
                delivery_config(
                    settings.webhooks, node_id=cluster.node_id, lease_ttl=settings.cluster.lease_ttl
                ),
                catalog,
            )
        except SecretBoxError as exc:
            raise StartError(
                f"{exc}: restore it from a backup, or set webhooks.secret_key_file to where"
                " it is; if it is lost for good, `csms webhooks reset-secrets` (with the same"
                " --config) makes a new key and gives every endpoint a new secret"
            ) from None
        stack.push_async_callback(webhooks.close)
        store.add_commit_listener(webhooks.notify)
        hub.wants = webhooks.wants
        self.metrics = metrics = Metrics()
        metrics.count_connected(hub.connected_count)
        metrics.count_partitions(webhooks.partitions_held)
        metrics.count_held_back(webhooks.held_back)
        store.add_commit_listener(metrics.on_commit)
        webhooks.add_commit_listener(metrics.on_other_commit)
        webhooks.add_attempt_observer(metrics.delivery)
        recovered = await hub.recover_after_restart()
        if recovered:
            log.info("%d chargers were left connected by the last run", recovered)
        self.dispatcher = dispatcher = CommandDispatcher(
            hub, call_timeout=settings.ocpp.call_timeout, on_status=metrics.command
        )
        stack.push_async_callback(dispatcher.close)
        cluster.handlers["command"] = dispatcher.on_command_stored
        cluster.handlers["command_done"] = dispatcher.on_command_done
        cluster.handlers["cancel"] = dispatcher.on_cancel
        resumed = await dispatcher.resume()
        if resumed:
            log.info("%d queued commands wait for their chargers", resumed)
        self.ocpp = ocpp = OcppServer(hub, settings.ocpp, metrics)
        if settings.ocpp.tls_ca_key:
            try:
                authority = CertificateAuthority.load(
                    settings.ocpp.tls_ca, settings.ocpp.tls_ca_key
                )
            except TlsSetupError as exc:
                raise StartError(str(exc)) from None
            ocpp.after_reply.append(CertificateSigner(authority, dispatcher, hub.clock).after_reply)
        app = create_app(
            hub=hub,
            dispatcher=dispatcher,
            token_check=tokens.accepts,
            event_types=lambda: _event_types(catalog),
            forget_password=ocpp.forget_password,
            extra_routes=[webhook_routes],
            extra_keys={WEBHOOK_SERVICE: webhooks, PENDING_SOURCE: webhooks.pending_snapshot},
            public_paths=[METRICS_PATH] if settings.metrics.public else [],
            metrics_registry=metrics,
        )
        runner = web.AppRunner(
            app,
            access_log=access_logger(),
            access_log_class=AccessLogger,
            handle_signals=False,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        self._runner = runner
        await _listen(
            "api",
            settings.api.host,
            settings.api.port,
            web.TCPSite(runner, settings.api.host, settings.api.port).start(),
        )
        stack.push_async_callback(ocpp.close)
        try:
            await _listen("ocpp", settings.ocpp.host, settings.ocpp.port, ocpp.start())
        except TlsSetupError as exc:
            raise StartError(str(exc)) from None
        if not settings.cluster.node_id and not settings.ocpp.port and not cluster.shared:
            # Alone on SQLite, any free port: named by the port it got. (A cluster node needs
            # its id before it listens, to close what its last run left: set it there.)
            cluster.node_id = default_node_id(socket.gethostname(), ocpp.port)
        await cluster.describe(api_url=self.api_url, ocpp_url=self.ocpp_url)
        # Made only now that nothing else can fail, and printed by the caller at once: a
        # start that fails never leaves a stored token nobody saw.
        if tokens.uses_stored_tokens and not await store.list_api_tokens():
            self.generated_token = (
                await create_token(store, FIRST_TOKEN_LABEL, FIRST_TOKEN_ID)
            ).token

    @property
    def api_port(self) -> int:
        """The bound port (the configured one may be 0: any free port)."""
        return int(self._runner.addresses[0][1])

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api.host}:{self.api_port}"

    @property
    def ocpp_url(self) -> str:
        return self.ocpp.url

    async def close(self) -> None:
        await self._stack.aclose()


def _version() -> str:
    try:
        return metadata.version("chargehook")
    except metadata.PackageNotFoundError:
        return "unknown"


def _cluster(settings: Settings, store: Store) -> Solo:
    """This node: one of a cluster on PostgreSQL, alone on SQLite (DESIGN 8)."""
    # The same id after a restart: what the last run held is this one's to close.
    node_id = settings.cluster.node_id or default_node_id(socket.gethostname(), settings.ocpp.port)
    if settings.storage.is_postgres:
        return PgCluster(
            ClusterTables(store), settings.storage.url, node_id, settings.cluster.lease_ttl
        )
    return Solo(node_id)


def _event_types(catalog: Catalog) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "example": t.example} for t in catalog]


def delivery_config(
    settings: WebhookSettings, *, node_id: str = "", lease_ttl: float = 10.0
) -> DeliveryConfig:
    """The engine's settings; ``node_id`` and ``lease_ttl`` are the cluster's (its leases)."""
    return DeliveryConfig(
        node_id=node_id or socket.gethostname(),
        lease_ttl=lease_ttl,
        allow_private_targets=settings.allow_private_targets,
        timeout=settings.timeout,
        retry_schedule=tuple(settings.retry_schedule),
        disable_after=settings.disable_after,
        retention=settings.retention,
        max_in_flight=settings.max_in_flight,
        pending_in_memory=settings.pending_in_memory,
        secret_key_file=settings.secret_key_file or None,
    )


async def _listen(section: str, host: str, port: int, bind: Awaitable[None]) -> None:
    try:
        await bind
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "the address is already in use (another csms running?)"
        raise StartError(
            f"{section}.port: cannot listen on {host}:{port}: {reason}; change {section}.port"
            f" (or CSMS_{section.upper()}__PORT)"
        ) from None


# Young collections every 50,000 allocations instead of 700, and a full one every 100
# middle ones instead of 10: with the defaults, collections of the live chargers' state took
# about a third of the server's CPU under load (ingest N=1000: 3,960 -> 5,090 calls/s).
# Cyclic garbage is still collected, later; the objects of start-up are frozen out of it.
GC_THRESHOLDS = (50_000, 20, 100)
# The webhook engine's loop runs in a thread: a loop waiting for the GIL gets it after at
# most this long instead of 5 ms (end-to-end latency at 1,000 events/s: p99 55 -> 33 ms).
SWITCH_INTERVAL = 0.001


def tune_runtime() -> None:
    """Interpreter settings for a long-running server, measured with ``benchmarks/``."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)


async def serve(settings: Settings) -> None:
    csms = await Csms.start(settings)
    tune_runtime()
    print(f"chargehook: OCPP endpoint {csms.ocpp_url}/{{chargerId}}", flush=True)
    print(f"chargehook: admin API {csms.api_url}/api/v1", flush=True)
    print(f"chargehook: storage {display_url(settings.storage.url)}", flush=True)
    if csms.generated_token:
        print(
            "chargehook: no [api] tokens configured; generated an admin API token. It is shown"
            " only now, store it:\n"
            f"  {csms.generated_token}",
            flush=True,
        )
    elif not settings.api.tokens:
        print(
            "chargehook: admin API tokens: the stored ones (`csms token list`); lost yours?"
            " `csms token create` makes a new one",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await csms.close()
